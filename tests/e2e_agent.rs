//! End to end with the real binary and two real softphones: a baresip
//! caller presses 0 at the main menu inside agent hours, the service puts
//! it in the agent queue and INVITEs the agent (a baresip that auto-answers)
//! as a B2BUA, and relays RTP both ways. Each phone plays its own sine tone
//! (caller 550 Hz, agent 1250 Hz); each recording must contain the other's
//! tone. Then one side hangs up and the other leg must be torn down.
//!
//! A second test has two callers wait for a logged-out agent and checks the
//! position announcements (2, then 1 once the first caller has gone).

mod common;

use std::path::Path;

use common::{Baresip, Service, tone_frames, write_source_wav};

const CALLER_HZ: f32 = 550.0;
const AGENT_HZ: f32 = 1250.0;

fn config(dir: &Path, agent_contact: Option<&str>) -> std::path::PathBuf {
    let agent = match agent_contact {
        Some(c) => format!("[[agent]]\nid = \"agent1\"\ncontact = \"{c}\"\n"),
        None => "[[agent]]\nid = \"agent1\"\npassword = \"secret-1\"\n".to_owned(),
    };
    let text = format!(
        "[agent_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         open = \"00:00\"\nclose = \"23:59\"\n\n{agent}\n\
         [[queue]]\nname = \"agents\"\nagents = [\"agent1\"]\nring_timeout_secs = 10\n\
         wrap_up_secs = 0\nfirst_announce_after_secs = 1\nannounce_every_secs = 4\nmax_wait_secs = 120\n"
    );
    let p = dir.join("queues.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Caller dials, presses 0, talks to the agent; `agent_hangs_up` picks who
/// sends BYE.
fn bridged_call(agent_hangs_up: bool) {
    let dir = tempfile::tempdir().unwrap();
    let caller_wav = dir.path().join("caller.wav");
    let agent_wav = dir.path().join("agent.wav");
    write_source_wav(&caller_wav, 90, CALLER_HZ, 0.3);
    write_source_wav(&agent_wav, 90, AGENT_HZ, 0.3);
    let mut agent = Baresip::start("agent", &agent_wav, true);
    let cfg = config(dir.path(), Some(&agent.sip_uri()));
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);

    let mut caller = Baresip::start("caller", &caller_wav, false);
    caller.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(
        caller.wait_event("CALL_ESTABLISHED", 100),
        "caller not connected:\n{}",
        caller.log_text()
    );
    caller.idle(20);
    caller.command("sndcode", "0");
    // The "transferring you" prompt, then the agent's phone answers.
    assert!(
        agent.wait_event("CALL_ESTABLISHED", 300),
        "agent leg not established\nservice log:\n{}\nagent log:\n{}",
        svc.log_text(),
        agent.log_text()
    );
    // Talk for a few seconds.
    caller.idle(60);
    agent.idle(1);
    if agent_hangs_up {
        agent.command("hangup", "");
        assert!(
            caller.wait_event("CALL_CLOSED", 100),
            "caller leg not hung up after the agent's BYE\nservice log:\n{}",
            svc.log_text()
        );
    } else {
        caller.command("hangup", "");
        assert!(
            agent.wait_event("CALL_CLOSED", 100),
            "agent leg not hung up after the caller's BYE\nservice log:\n{}",
            svc.log_text()
        );
    }
    caller.idle(5);
    caller.quit();
    agent.quit();

    let heard_by_caller = caller.received_audio();
    let heard_by_agent = agent.received_audio();
    let agent_tone_at_caller = tone_frames(&heard_by_caller, AGENT_HZ);
    let caller_tone_at_agent = tone_frames(&heard_by_agent, CALLER_HZ);
    // ≥ 2 s of the other side's tone in each direction (6 s were bridged).
    assert!(
        agent_tone_at_caller >= 100,
        "caller heard the agent's tone in only {agent_tone_at_caller} frames\nservice log:\n{}",
        svc.log_text()
    );
    assert!(
        caller_tone_at_agent >= 100,
        "agent heard the caller's tone in only {caller_tone_at_agent} frames\nservice log:\n{}",
        svc.log_text()
    );
    // Each side never heard its own tone back (no loop in the relay).
    assert!(tone_frames(&heard_by_caller, CALLER_HZ) < 10);
    assert!(tone_frames(&heard_by_agent, AGENT_HZ) < 10);
    let log = svc.log_text();
    assert!(log.contains("caller bridged to agent"), "{log}");
}

#[test]
fn caller_and_agent_hear_each_other_caller_hangs_up() {
    bridged_call(false);
}

#[test]
fn caller_and_agent_hear_each_other_agent_hangs_up() {
    bridged_call(true);
}

/// Positions announced to the second caller: 2 while the first waits,
/// then 1 after the first hangs up. The agent never logs in.
#[test]
fn two_callers_hear_positions_two_then_one() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    write_source_wav(&wav, 90, CALLER_HZ, 0.02);
    let cfg = config(dir.path(), None);
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);

    let mut first = Baresip::start("caller1", &wav, false);
    first.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(first.wait_event("CALL_ESTABLISHED", 100));
    first.idle(10);
    first.command("sndcode", "0");
    // Let the first caller reach the queue before the second one dials.
    let mut joined = false;
    for _ in 0..150 {
        first.idle(1);
        if svc.log_text().contains("caller joined the agent queue") {
            joined = true;
            break;
        }
    }
    assert!(joined, "first caller never queued:\n{}", svc.log_text());

    let mut second = Baresip::start("caller2", &wav, false);
    second.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(second.wait_event("CALL_ESTABLISHED", 100));
    second.idle(10);
    second.command("sndcode", "0");
    let second_call = loop_until(&svc, &mut second, |log| {
        call_ids_with(log, "caller joined the agent queue")
            .get(1)
            .cloned()
    })
    .expect("second caller never queued");
    // It hears position 2 at least once.
    loop_until(&svc, &mut second, |log| {
        positions_of(log, &second_call).contains(&2).then_some(())
    })
    .unwrap_or_else(|| panic!("no position 2 for the second caller:\n{}", svc.log_text()));
    first.command("hangup", "");
    first.idle(5);
    first.quit();
    loop_until(&svc, &mut second, |log| {
        positions_of(log, &second_call).contains(&1).then_some(())
    })
    .unwrap_or_else(|| panic!("no position 1 after the first left:\n{}", svc.log_text()));
    second.command("hangup", "");
    second.idle(5);
    second.quit();

    let positions = positions_of(&svc.log_text(), &second_call);
    let first_one = positions.iter().position(|&p| p == 1).unwrap();
    assert!(
        positions[..first_one].iter().all(|&p| p == 2) && first_one > 0,
        "positions {positions:?}"
    );
}

/// Polls the service log (≤ 30 s) while draining the phone's events.
fn loop_until<T>(
    svc: &Service,
    phone: &mut Baresip,
    mut f: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    for _ in 0..300 {
        if let Some(t) = f(&svc.log_text()) {
            return Some(t);
        }
        phone.idle(1);
    }
    None
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    Some(rest.split_whitespace().next().unwrap_or(rest))
}

fn call_ids_with(log: &str, what: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| field(l, "call_id").map(str::to_owned))
        .collect()
}

fn positions_of(log: &str, call_id: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("queue position announced") && l.contains(call_id))
        .filter_map(|l| field(l, "position")?.parse().ok())
        .collect()
}

fn refer_config(dir: &Path, target: &str) -> std::path::PathBuf {
    let text = format!(
        "[agent_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         open = \"00:00\"\nclose = \"23:59\"\n\n\
         [[agent]]\nid = \"agent1\"\npassword = \"secret-1\"\n\n\
         [[queue]]\nname = \"agents\"\nagents = [\"agent1\"]\nmode = \"refer\"\nrefer_target = \"{target}\"\n"
    );
    let p = dir.join("refer.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// REFER mode: the caller (baresip follows REFER) is blind-transferred to
/// the configured desk, which answers; the IVR then hangs up its leg.
#[test]
fn refer_mode_transfers_the_caller_to_the_configured_desk() {
    let dir = tempfile::tempdir().unwrap();
    let caller_wav = dir.path().join("caller.wav");
    let desk_wav = dir.path().join("desk.wav");
    write_source_wav(&caller_wav, 90, CALLER_HZ, 0.3);
    write_source_wav(&desk_wav, 90, AGENT_HZ, 0.3);
    let mut desk = Baresip::start("desk", &desk_wav, true);
    let cfg = refer_config(dir.path(), &desk.sip_uri());
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let mut caller = Baresip::start("caller", &caller_wav, false);
    caller.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(caller.wait_event("CALL_ESTABLISHED", 100));
    caller.idle(20);
    caller.command("sndcode", "0");
    assert!(
        desk.wait_event("CALL_ESTABLISHED", 300),
        "the desk never got the transferred call\nservice log:\n{}\ncaller log:\n{}",
        svc.log_text(),
        caller.log_text()
    );
    let ok = loop_until(&svc, &mut caller, |log| {
        log.contains("REFER succeeded").then_some(())
    });
    assert!(ok.is_some(), "no REFER success:\n{}", svc.log_text());
    // The desk hears the caller directly (the IVR is out of the media path).
    caller.idle(30);
    desk.command("hangup", "");
    desk.idle(5);
    caller.quit();
    desk.quit();
    assert!(tone_frames(&desk.received_audio(), CALLER_HZ) >= 50);
}

/// REFER to a target that refuses (baresip answers 404 for an unknown
/// user): the caller is not lost; with no agent free it hears the apology
/// and goodbye.
#[test]
fn refer_failure_falls_back_to_the_apology() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    write_source_wav(&wav, 90, CALLER_HZ, 0.02);
    let mut desk = Baresip::start("desk", &wav, true);
    let target = desk.sip_uri().replace("sip:desk@", "sip:nobody@");
    let cfg = refer_config(dir.path(), &target);
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let mut caller = Baresip::start("caller", &wav, false);
    caller.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(caller.wait_event("CALL_ESTABLISHED", 100));
    caller.idle(20);
    caller.command("sndcode", "0");
    let ok = loop_until(&svc, &mut caller, |log| {
        log.contains("REFER fallback: no agent free").then_some(())
    });
    desk.idle(1);
    assert!(ok.is_some(), "no fallback:\n{}", svc.log_text());
    caller.quit();
    desk.quit();
}

/// What the agent's phone receives: a verified caller (demo ID and PIN
/// keyed with RFC 4733) presses 0 at the insurance menu; the INVITE to the
/// agent carries the masked ID and the account status, Max-Forwards one
/// less than the caller's, and never the PIN or the full ID. The "agent"
/// is a bare UDP socket that never answers.
#[test]
fn agent_invite_carries_masked_verified_identity() {
    const DEMO_ID: &str = "310104198507151239";
    const DEMO_PIN: &str = "123456";
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    write_source_wav(&wav, 90, CALLER_HZ, 0.02);
    let agent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    agent
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let contact = format!("sip:agent1@{}", agent.local_addr().unwrap());
    let cfg = config(dir.path(), Some(&contact));
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let mut caller = Baresip::start("caller", &wav, false);
    caller.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(caller.wait_event("CALL_ESTABLISHED", 100));
    caller.idle(30);
    let keys = format!("1{DEMO_ID}#{DEMO_PIN}#");
    caller.command("sndcode", &keys);
    caller.idle(keys.len() as u32 * 3 + 60);
    caller.command("sndcode", "0");
    let mut invite = None;
    let mut buf = [0u8; 8192];
    for _ in 0..300 {
        caller.idle(1);
        if let Ok((n, _)) = agent.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("INVITE ") {
                invite = Some(text);
                break;
            }
        }
    }
    caller.command("hangup", "");
    caller.idle(5);
    caller.quit();
    let invite = invite.unwrap_or_else(|| panic!("no INVITE to the agent:\n{}", svc.log_text()));
    let header = |name: &str| {
        invite
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    assert_eq!(
        header("X-IVR-Verified:").as_deref(),
        Some("310104********1239"),
        "{invite}"
    );
    assert_eq!(header("X-IVR-Account-Status:").as_deref(), Some("verified"));
    // baresip sends Max-Forwards: 70.
    assert_eq!(header("Max-Forwards:").as_deref(), Some("69"), "{invite}");
    assert!(!invite.contains(DEMO_ID) && !invite.contains(DEMO_PIN));
    // Nor does the service log hold the ID (full or masked) or the PIN.
    let log: String = svc
        .log_text()
        .lines()
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [DEMO_ID, DEMO_PIN, "310104********1239"] {
        assert!(!log.contains(secret), "service log contains {secret}");
    }
}

/// Round robin over two agents; the first one's phone refuses (404): the
/// caller is not dropped, the second agent is rung and answers.
#[test]
fn refused_agent_is_skipped_and_the_next_one_answers() {
    let dir = tempfile::tempdir().unwrap();
    let caller_wav = dir.path().join("caller.wav");
    let agent_wav = dir.path().join("agent.wav");
    write_source_wav(&caller_wav, 90, CALLER_HZ, 0.3);
    write_source_wav(&agent_wav, 90, AGENT_HZ, 0.3);
    let mut agent = Baresip::start("agent", &agent_wav, true);
    let refusing = agent.sip_uri().replace("sip:agent@", "sip:nobody@");
    let text = format!(
        "[agent_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         open = \"00:00\"\nclose = \"23:59\"\n\n\
         [[agent]]\nid = \"a1\"\ncontact = \"{refusing}\"\n\
         [[agent]]\nid = \"a2\"\ncontact = \"{good}\"\n\
         [[queue]]\nname = \"agents\"\nstrategy = \"round_robin\"\nagents = [\"a1\", \"a2\"]\n",
        good = agent.sip_uri()
    );
    let cfg = dir.path().join("rr.toml");
    std::fs::write(&cfg, text).unwrap();
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let mut caller = Baresip::start("caller", &caller_wav, false);
    caller.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(caller.wait_event("CALL_ESTABLISHED", 100));
    caller.idle(20);
    caller.command("sndcode", "0");
    assert!(
        agent.wait_event("CALL_ESTABLISHED", 300),
        "second agent never answered:\n{}",
        svc.log_text()
    );
    caller.idle(30);
    caller.command("hangup", "");
    assert!(agent.wait_event("CALL_CLOSED", 100));
    caller.quit();
    agent.quit();
    let log = svc.log_text();
    assert!(
        log.contains("agent did not take the call") && log.contains("agent=a1"),
        "{log}"
    );
    assert!(tone_frames(&caller.received_audio(), AGENT_HZ) >= 50);
}

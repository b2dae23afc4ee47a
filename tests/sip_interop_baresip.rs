//! Interop with a real softphone: baresip (Debian `baresip-core`) dials the
//! endpoint over UDP on 127.0.0.1. First the endpoint answers, then hangs
//! up with its own BYE, which baresip must accept (200): this checks our
//! 200 OK (Contact, tags, SDP framing) and our in-dialog request building
//! (remote target from baresip's Contact) against an independent stack.
//! Then a transfer: our REFER (RFC 3515) to a second endpoint playing the
//! agent, baresip's 202, its INVITE to the agent and its sipfrag NOTIFYs.
//! Last, baresip as an agent phone REGISTERing with digest credentials to
//! the endpoint as registrar (checked with the queue's `DigestAuth`). Seen
//! here: baresip 1.0 does not answer a 401 whose first challenge is
//! SHA-256 (RFC 8760 order), so the test offers MD5 only.
//!
//! Runs in CI (`.ci/setup` installs `baresip-core`); without the `baresip`
//! binary it fails with a message saying so. Bounded: one call per test, a 40 s
//! wall-clock cap on each loop (baresip itself quits after `-t 30`), one
//! baresip at a time (they share the RTP port range), and the
//! child is killed and reaped on every exit path (a guard's `Drop`).

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivr12333::sip::wire::{Parsed, WireLimits, parse};
use ivr12333::sip::{EndReason, Endpoint, EndpointConfig, SipEvent, Transport};

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

/// Kills and reaps the child however the test ends (panic included).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails with a clear message when `bin` is not installed.
fn require(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(
        found,
        "`{bin}` not found in PATH: this interop test needs it; run .ci/setup as root (Debian package {package})"
    );
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One baresip at a time (they share the RTP port range).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts baresip dialling `sip:12333@{target}` with a silent WAV as its
/// microphone; the directory holds its config while it runs.
fn start_baresip(target: std::net::SocketAddr) -> (tempfile::TempDir, Reaped) {
    start_baresip_with(
        |port| format!("<sip:caller@127.0.0.1:{port}>;regint=0;audio_codecs=pcmu,pcma"),
        Some(format!("/dial sip:12333@{target}")),
    )
}

/// Starts baresip with the account line `account(sip_port)` and, if given,
/// one command to run at start.
fn start_baresip_with(
    account: impl Fn(u16) -> String,
    command: Option<String>,
) -> (tempfile::TempDir, Reaped) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for _ in 0..8000 * 30 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let bare_port = free_port();
    let config = format!(
        "sip_listen\t\t127.0.0.1:{bare_port}\n\
         net_interface\t\t127.0.0.1\n\
         audio_player\t\talsa,null\n\
         audio_alert\t\talsa,null\n\
         audio_source\t\taufile,{}\n\
         rtp_ports\t\t42000-42100\n\
         statmode_default\toff\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n",
        wav.display()
    );
    std::fs::write(dir.path().join("config"), config).unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!("{}\n", account(bare_port)),
    )
    .unwrap();
    let mut args = vec![
        "-4".to_owned(),
        "-f".to_owned(),
        dir.path().to_str().unwrap().to_owned(),
        "-t".to_owned(),
        "30".to_owned(),
    ];
    if let Some(c) = command {
        args.push("-e".to_owned());
        args.push(c);
    }
    let child = Command::new("baresip")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip must be installed");
    let child = Reaped(child);
    (dir, child)
}

#[test]
fn baresip_call_answered_then_our_bye() {
    require("baresip", "baresip-core");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let local = udp.local_addr().unwrap();
    let (_dir, child) = start_baresip(local);

    let mut ep = Endpoint::new(EndpointConfig {
        local_addr: local,
        ..EndpointConfig::default()
    });
    let mut buf = vec![0u8; 65_536];
    let mut answered_at = None;
    let mut hung_up = false;
    let mut bye_ok = false;
    let mut incoming = 0;
    let mut ended = Vec::new();
    // Bounded in count and in wall-clock time (a loaded machine makes each
    // pass slower, never the loop endless).
    let cap = Instant::now() + Duration::from_secs(40);
    for _ in 0..1_000_000 {
        let now = Instant::now();
        if now > cap {
            break;
        }
        if let Ok((n, src)) = udp.recv_from(&mut buf) {
            if let Ok(Parsed::Message(m)) = parse(&buf[..n], &WireLimits::default())
                && m.status() == Some(200)
                && m.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
            {
                bye_ok = true;
            }
            ep.handle_input(now, Transport::Udp, src, &buf[..n]);
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(e) = ep.poll_event() {
            match e {
                SipEvent::IncomingCall { call, .. } => {
                    incoming += 1;
                    ep.ringing(now, call);
                    ep.answer(now, call, SDP.to_vec());
                }
                SipEvent::CallConfirmed { call, .. } => answered_at = Some((now, call)),
                SipEvent::CallEnded { reason, .. } => ended.push(reason),
                _ => {}
            }
        }
        if let Some((t, call)) = answered_at
            && !hung_up
            && now.duration_since(t) > Duration::from_secs(1)
        {
            ep.hangup(now, call);
            hung_up = true;
        }
        while let Some(t) = ep.poll_transmit() {
            udp.send_to(&t.bytes, t.dest).unwrap();
        }
        if !ended.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(child);
    assert_eq!(incoming, 1, "baresip's INVITE arrived");
    assert!(answered_at.is_some(), "baresip ACKed our 200");
    assert!(bye_ok, "baresip answered our BYE with 200");
    assert_eq!(ended, [EndReason::LocalBye]);
    assert_eq!(ep.active_calls(), 0);
}

/// Transfer against a real transferee: baresip calls the IVR, the IVR
/// REFERs it to an "agent" (a second endpoint on its own socket), baresip
/// accepts (202), calls the agent and reports progress in NOTIFYs
/// (`message/sipfrag`); on the final 200 NOTIFY the IVR hangs up its leg.
#[test]
fn baresip_accepts_refer_to_an_agent() {
    require("baresip", "baresip-core");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ivr_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let agent_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    ivr_sock.set_nonblocking(true).unwrap();
    agent_sock.set_nonblocking(true).unwrap();
    let ivr_addr = ivr_sock.local_addr().unwrap();
    let agent_addr = agent_sock.local_addr().unwrap();
    let mut ivr = Endpoint::new(EndpointConfig {
        local_addr: ivr_addr,
        ..EndpointConfig::default()
    });
    let mut agent = Endpoint::new(EndpointConfig {
        local_addr: agent_addr,
        ..EndpointConfig::default()
    });
    let (_dir, child) = start_baresip(ivr_addr);

    let mut buf = vec![0u8; 65_536];
    let mut confirmed_at = None;
    let mut referred = false;
    let mut accepted = 0;
    let mut notifies: Vec<(u16, bool)> = Vec::new();
    let mut ivr_ended = Vec::new();
    let mut agent_confirmed = false;
    let mut agent_call = None;
    let mut agent_ended = Vec::new();
    let cap = Instant::now() + Duration::from_secs(40);
    for _ in 0..1_000_000 {
        let now = Instant::now();
        if now > cap {
            break;
        }
        for (sock, ep) in [(&ivr_sock, &mut ivr), (&agent_sock, &mut agent)] {
            // Bounded drain of what arrived.
            for _ in 0..64 {
                match sock.recv_from(&mut buf) {
                    Ok((n, src)) => ep.handle_input(now, Transport::Udp, src, &buf[..n]),
                    Err(_) => break,
                }
            }
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
        while let Some(e) = ivr.poll_event() {
            match e {
                SipEvent::IncomingCall { call, .. } => ivr.answer(now, call, SDP.to_vec()),
                SipEvent::CallConfirmed { call, .. } => confirmed_at = Some((now, call)),
                // baresip puts us on hold before it calls the target.
                SipEvent::ReInvite { call, .. } => ivr.answer_reinvite(now, call, Ok(SDP.to_vec())),
                SipEvent::ReferAccepted { .. } => accepted += 1,
                SipEvent::ReferNotify {
                    call,
                    status,
                    terminated,
                } => {
                    notifies.push((status, terminated));
                    if terminated && status == 200 {
                        ivr.hangup(now, call);
                    }
                }
                SipEvent::ReferFailed { status, .. } => panic!("REFER failed: {status}"),
                SipEvent::CallEnded { reason, .. } => ivr_ended.push(reason),
                _ => {}
            }
        }
        while let Some(e) = agent.poll_event() {
            match e {
                SipEvent::IncomingCall { call, .. } => {
                    agent_call = Some(call);
                    agent.answer(now, call, SDP.to_vec());
                }
                SipEvent::CallConfirmed { .. } => agent_confirmed = true,
                SipEvent::ReInvite { call, .. } => {
                    agent.answer_reinvite(now, call, Ok(SDP.to_vec()))
                }
                SipEvent::CallEnded { reason, .. } => agent_ended.push(reason),
                _ => {}
            }
        }
        if let Some((t, call)) = confirmed_at
            && !referred
            && now.duration_since(t) > Duration::from_millis(500)
        {
            ivr.refer(now, call, &format!("sip:agent01@{agent_addr}"))
                .expect("REFER in a confirmed dialog");
            referred = true;
        }
        // The agent ends the transferred call once the IVR leg is gone.
        if !ivr_ended.is_empty()
            && agent_confirmed
            && agent_ended.is_empty()
            && let Some(c) = agent_call.take()
        {
            agent.hangup(now, c);
        }
        for (sock, ep) in [(&ivr_sock, &mut ivr), (&agent_sock, &mut agent)] {
            while let Some(t) = ep.poll_transmit() {
                sock.send_to(&t.bytes, t.dest).unwrap();
            }
        }
        if !ivr_ended.is_empty() && !agent_ended.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(child);
    eprintln!("NOTIFYs {notifies:?}; IVR leg {ivr_ended:?}; agent leg {agent_ended:?}");
    assert!(referred, "baresip's call to the IVR was confirmed");
    assert_eq!(accepted, 1, "baresip accepted the REFER");
    assert!(agent_confirmed, "baresip called the Refer-To target");
    assert_eq!(
        notifies.last(),
        Some(&(200, true)),
        "final NOTIFY: sipfrag 200, subscription terminated ({notifies:?})"
    );
    assert_eq!(ivr_ended.len(), 1);
    assert!(matches!(
        ivr_ended[0],
        EndReason::LocalBye | EndReason::RemoteBye
    ));
    assert_eq!(agent_ended.len(), 1);
    assert_eq!(ivr.active_calls(), 0);
    assert_eq!(agent.active_calls(), 0);
}

/// An agent phone registers: baresip REGISTERs with digest credentials
/// (RFC 3261 §22.4) to the endpoint acting as registrar; the test plays the
/// application with the queue's `DigestAuth`: 401 with its challenges,
/// then 200 once the credentials verify against the Request-URI.
#[test]
fn baresip_registers_with_digest_auth() {
    use ivr12333::queue::digest::{Algorithm, DigestAuth};
    use ivr12333::sip::{RegisterReply, SipEvent};

    require("baresip", "baresip-core");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let local = udp.local_addr().unwrap();
    let mut ep = Endpoint::new(EndpointConfig {
        local_addr: local,
        registrar: true,
        ..EndpointConfig::default()
    });
    // baresip 1.0 (libre) answers MD5 challenges only.
    let mut auth = DigestAuth::new(b"interop-test-secret", 300).with_algorithms(&[Algorithm::Md5]);
    let (_dir, child) = start_baresip_with(
        |_port| format!("<sip:agent01@{local}>;auth_pass=pw-agent01;regint=60;audio_codecs=pcmu"),
        None,
    );
    let mut buf = vec![0u8; 65_536];
    let mut challenged = 0;
    let mut registered: Option<(String, Option<String>, u32)> = None;
    let mut ok_sent = false;
    let cap = Instant::now() + Duration::from_secs(40);
    for _ in 0..1_000_000 {
        let now = Instant::now();
        if now > cap || registered.is_some() {
            break;
        }
        if let Ok((n, src)) = udp.recv_from(&mut buf) {
            ep.handle_input(now, Transport::Udp, src, &buf[..n]);
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(e) = ep.poll_event() {
            let SipEvent::Register {
                reg,
                user,
                contact,
                expires,
                authorization,
                method_uri,
                ..
            } = e
            else {
                continue;
            };
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let verified = authorization.as_deref().map(|a| {
                auth.verify_for_uri(
                    "REGISTER",
                    &method_uri,
                    a,
                    |u| (u == "agent01").then(|| "pw-agent01".to_owned()),
                    unix,
                )
            });
            match verified {
                Some(Ok(name)) if name == user => {
                    ep.respond_register(
                        now,
                        reg,
                        RegisterReply::Ok {
                            contact: contact.clone(),
                            expires,
                        },
                    );
                    registered = Some((user, contact, expires));
                }
                other => {
                    assert!(
                        other.is_none(),
                        "baresip's credentials were refused: {:?}",
                        other.map(|r| r.map(|_| ()))
                    );
                    challenged += 1;
                    ep.respond_register(
                        now,
                        reg,
                        RegisterReply::Challenge {
                            www_authenticate: auth.challenges(unix, "12333", false),
                            stale: false,
                        },
                    );
                }
            }
        }
        while let Some(t) = ep.poll_transmit() {
            ok_sent |= t.bytes.starts_with(b"SIP/2.0 200 ");
            udp.send_to(&t.bytes, t.dest).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(child);
    assert!(challenged >= 1, "the first REGISTER was challenged");
    let (user, contact, expires) = registered.expect("baresip registered with digest credentials");
    assert_eq!(user, "agent01");
    // baresip's contact user is `agent01-0x<address>`.
    assert!(contact.is_some_and(|c| c.starts_with("sip:agent01") && c.contains("@127.0.0.1:")));
    assert_eq!(expires, 60);
    assert!(ok_sent, "our 200 went out");
}

//! End to end with a real softphone: baresip dials the real service running
//! a dial plan with ID read-back on, keys the menu choice and a demo ID with
//! RFC 4733 digits, hears "您输入的身份证号码是", the ID digit by digit in
//! 6-4-4-4 groups (1 as 幺, the synthetic voice's number segments) and
//! "确认请按1，重新输入请按2", confirms with 1, keys the PIN and hears the
//! pension balance. The service's log must not contain the ID or the PIN.

mod common;

use common::{Baresip, Service, match_fraction, through_pcmu, write_source_wav};
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::say::Seg;

const DEMO_ID: &str = "310104198507151239";
const DEMO_PIN: &str = "123456";

fn audio(prompts: &PromptLibrary, segs: &[Seg]) -> Vec<i16> {
    let clips = prompts.render(segs).unwrap();
    let pcm: Vec<i16> = clips.iter().flat_map(|c| c.pcm().iter().copied()).collect();
    through_pcmu(&pcm)
}

#[test]
fn baresip_hears_its_id_read_back_and_confirms() {
    let src = std::fs::read_to_string("dialplans/12333.toml").unwrap();
    let plan = src.replacen("# read_back = true", "read_back = true", 1);
    assert_ne!(plan, src, "the shipped plan has the read-back line");
    let tmp = tempfile::tempdir().unwrap();
    let plan_path = tmp.path().join("12333-readback.toml");
    std::fs::write(&plan_path, plan).unwrap();
    let svc = Service::start_with(&["--dialplan", plan_path.to_str().unwrap()], &[]);

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    write_source_wav(&wav, 120, 300.0, 0.02);
    let mut phone = Baresip::start("caller", &wav, false);
    phone.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(
        phone.wait_event("CALL_ESTABLISHED", 100),
        "call not established:\n{}",
        phone.log_text()
    );
    phone.idle(30);
    // 1 at the main menu, then the ID: the 18th digit ends it.
    let keys = format!("1{DEMO_ID}");
    phone.command("sndcode", &keys);
    // ≈ 240 ms a key, then the read-back (≈ 9 s) and the question (≈ 3 s).
    phone.idle(keys.len() as u32 * 3 + 140);
    phone.command("sndcode", &format!("1{DEMO_PIN}#1"));
    phone.idle(8 * 3 + 250);
    phone.command("hangup", "");
    phone.idle(10);
    phone.quit();

    let heard = phone.received_audio();
    assert!(
        heard.len() > 8000 * 20,
        "recording too short: {}",
        heard.len()
    );
    let prompts = PromptLibrary::load(std::path::Path::new("prompts")).unwrap();
    let intro = audio(&prompts, &[Seg::Prompt("id_readback")]);
    let m = match_fraction(&heard, &intro, 64);
    assert!(m > 0.8, "read-back intro not heard (match {m:.2})");
    // the ID itself, as the speller reads it (R11), in 6-4-4-4 groups
    let mut segs = Vec::new();
    for (i, (a, b)) in [(0, 6), (6, 10), (10, 14), (14, 18)]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            segs.push(Seg::Pause(ivr12333::say::ID_GROUP_PAUSE_MS));
        }
        segs.extend(ivr12333::say::digits(&DEMO_ID[a..b]));
    }
    let digits = audio(&prompts, &segs);
    let m = match_fraction(&heard, &digits, 64);
    assert!(
        m > 0.8,
        "ID read-back not heard (match {m:.2})\nservice log:\n{}",
        svc.log_text()
    );
    let confirm = audio(&prompts, &[Seg::Prompt("id_confirm")]);
    let m = match_fraction(&heard, &confirm[..confirm.len().min(8000)], 64);
    assert!(m > 0.8, "confirmation question not heard (match {m:.2})");
    // confirmed: the PIN was asked for and the balance read
    let pension = audio(&prompts, &[Seg::Prompt("pension_balance")]);
    let m = match_fraction(&heard, &pension, 64);
    assert!(
        m > 0.8,
        "pension phrase not heard after confirming (match {m:.2})\nservice log:\n{}",
        svc.log_text()
    );
    // without the timestamp that starts each line (it may hold any digits)
    let log: String = svc
        .log_text()
        .lines()
        .map(|l| l.split_once(' ').map(|(_, rest)| rest).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [DEMO_ID, DEMO_PIN] {
        assert!(!log.contains(secret), "service log contains `{secret}`");
    }
}

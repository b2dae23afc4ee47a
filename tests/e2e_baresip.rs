//! End to end with a real softphone: baresip dials the real service over
//! UDP or TCP, keys a demo ID, its PIN and 1 (pension) with RFC 4733
//! digits, and what it recorded must contain the welcome prompt and the
//! pension balance read out, frame for frame. The service's log must not
//! contain the ID, the PIN or the balance.

mod common;

use std::process::Command;

use common::{Baresip, Service, match_fraction, through_pcmu, write_source_wav};
use ivr12333::domain::Fen;
use ivr12333::media::prompts::PromptLibrary;

const DEMO_ID: &str = "310104198507151239";
const DEMO_PIN: &str = "123456";
/// The demo account's pension balance: 12345.67 yuan.
const PENSION_FEN: i64 = 1_234_567;

fn expected_audio(prompts: &PromptLibrary, ids: &[&str]) -> Vec<i16> {
    let mut pcm = Vec::new();
    for id in ids {
        pcm.extend_from_slice(
            prompts
                .get(id)
                .unwrap_or_else(|| panic!("prompt {id}"))
                .pcm(),
        );
    }
    through_pcmu(&pcm)
}

fn readout_audio(prompts: &PromptLibrary) -> Vec<i16> {
    let segs = ivr12333::say::amount(Fen(PENSION_FEN), &Default::default()).unwrap();
    let clips = prompts.render(&segs).unwrap();
    let pcm: Vec<i16> = clips.iter().flat_map(|c| c.pcm().iter().copied()).collect();
    through_pcmu(&pcm)
}

/// Strips the timestamp that starts each log line (it may contain any digits).
fn log_without_timestamps(log: &str) -> String {
    log.lines()
        .map(|l| l.split_once(' ').map(|(_, rest)| rest).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pension_call(svc: &Service, transport_param: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("caller.wav");
    write_source_wav(&src, 90, 300.0, 0.02);
    let mut phone = Baresip::start("caller", &src, false);
    phone.command("dial", &format!("sip:12333@{}{transport_param}", svc.sip));
    assert!(
        phone.wait_event("CALL_ESTABLISHED", 100),
        "call not established:\n{}",
        phone.log_text()
    );
    phone.idle(30);
    // Main menu 1, the ID (X keyed as *), #, the PIN, #, then 1 for pension:
    // keys typed during prompts barge in or are kept for the next question.
    let keys = format!("1{}#{DEMO_PIN}#1", DEMO_ID.replace('X', "*"));
    phone.command("sndcode", &keys);
    // ≈ 240 ms a key, then authentication, the readout and the after-menu.
    phone.idle(((keys.len() as u32) * 3) + 250);
    phone.command("hangup", "");
    phone.idle(10);
    phone.quit();

    let heard = phone.received_audio();
    assert!(
        heard.len() > 8000 * 10,
        "recording too short: {} samples",
        heard.len()
    );
    let prompts = PromptLibrary::load(std::path::Path::new("prompts")).unwrap();
    // The keys barge into the welcome after about 3 s: look for its first 2 s.
    let welcome_pcm = expected_audio(&prompts, &["welcome"]);
    let welcome = match_fraction(&heard, &welcome_pcm[..welcome_pcm.len().min(16_000)], 64);
    assert!(
        welcome > 0.8,
        "welcome prompt not heard (match {welcome:.2})"
    );
    let readout = match_fraction(&heard, &readout_audio(&prompts), 64);
    assert!(
        readout > 0.8,
        "pension readout not heard (match {readout:.2})\nservice log:\n{}",
        svc.log_text()
    );
    let phrase = match_fraction(&heard, &expected_audio(&prompts, &["pension_balance"]), 64);
    assert!(phrase > 0.8, "pension phrase not heard (match {phrase:.2})");

    let log = log_without_timestamps(&svc.log_text());
    for secret in [DEMO_ID, DEMO_PIN, "12345.67", "1234567", "1 2 3 4 5 6"] {
        assert!(!log.contains(secret), "service log contains `{secret}`");
    }
}

#[test]
fn baresip_hears_pension_balance_over_udp() {
    let svc = Service::start();
    pension_call(&svc, "");
}

#[test]
fn baresip_hears_pension_balance_over_tcp() {
    let svc = Service::start();
    pension_call(&svc, ";transport=tcp");
}

/// Creates a fresh PostgreSQL database and drops it at the end.
struct PgDb {
    name: String,
}

impl PgDb {
    fn create() -> PgDb {
        let name = format!("ivr_e2e_{}", rand::random::<u32>());
        psql(&format!("CREATE DATABASE {name}"));
        PgDb { name }
    }
    fn url(&self) -> String {
        let base = std::env::var("IVR_TEST_PG_BASE")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qtAc",
            sql,
        ])
        .output()
        .expect("psql (run .ci/setup)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn baresip_hears_pension_balance_with_postgres_ledger() {
    let db = PgDb::create();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start_db(
        dir,
        db.url(),
        &[],
        &[("IVR12333_LEDGER__PIN_PEPPER", "e2e-test-pepper")],
    );
    pension_call(&svc, "");
    drop(svc);
}

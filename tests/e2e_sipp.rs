//! Interop with SIPp: 100 calls, 20 at a time, each offering PCMU +
//! telephone-event, keying one RFC 2833 digit from Debian's sip-tester
//! captures and hanging up. SIPp exits 0 only if every call succeeded; the
//! service must have written a CDR for each call showing the key reached
//! the main menu.

mod common;

use std::process::Command;

use common::{Service, free_port, free_port_range, require_program};

#[test]
fn sipp_100_calls_20_concurrent_with_rfc2833_digit() {
    require_program("sipp");
    let svc = Service::start();
    let local = free_port();
    let (media, _) = free_port_range(4);
    let stats = svc.dir.path().join("sipp_stats.csv");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uac_pcmu_dtmf.xml");
    let out = Command::new("sipp")
        .args(["-sf", scenario, "-s", "12333"])
        .arg(svc.sip.to_string())
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &local.to_string(), "-mp", &media.to_string()])
        .args(["-l", "20", "-r", "20", "-m", "100"])
        .args([
            "-timeout",
            "120s",
            "-timeout_error",
            "-nostdin",
            "-trace_stat",
            "-stf",
        ])
        .arg(&stats)
        .current_dir(svc.dir.path())
        .output()
        .expect("run sipp");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipp failed ({}):\n{}\n{}\nservice log tail:\n{}",
        out.status,
        screen
            .chars()
            .rev()
            .take(3000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>(),
        String::from_utf8_lossy(&out.stderr),
        svc.log_text()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let screen_tail: String = screen
        .chars()
        .rev()
        .take(4000)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    assert!(screen_tail.contains("Successful call"), "{screen_tail}");

    // Every call left a CDR in which the digit moved the caller past the main menu.
    let db = svc.db_url.clone();
    let (total, keyed): (i64, i64) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
            // CDRs are written as calls end; allow the last ones a moment.
            let mut total = 0;
            for _ in 0..50 {
                total = sqlx::query_scalar("SELECT count(*) FROM call_records")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                if total >= 100 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let keyed =
                sqlx::query_scalar("SELECT count(*) FROM call_records WHERE menu_keys LIKE '1%'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (total, keyed)
        });
    assert_eq!(total, 100, "one CDR per call");
    assert_eq!(
        keyed, 100,
        "the RFC 2833 digit reached the menu in every call"
    );
}

//! The records writer against real databases: a spool left by an earlier
//! run (with a torn last record) is replayed first and in order; replaying
//! the same rows twice stores them once; a PostgreSQL outage (a private
//! cluster stopped and started) loses no CDR, no audit row and no callback
//! booking, and the audit chain verifies afterwards.

#[macro_use]
mod ledger_support;
mod records_support;

use std::path::Path;
use std::time::Duration;

use ivr12333::domain::{CallRecord, Insurance};
use ivr12333::ledger::callbacks::{CallbackBooking, NewCallback};
use ivr12333::ledger::{AuditAction, CdrRow, Ledger, LedgerConfig, new_row_id};
use ivr12333::records::spool::Spool;
use ivr12333::records::{Durable, Records, RecordsConfig, Row, frame};
use ledger_support::{NORMAL, TestDb, ctx, id};
use records_support::PrivatePg;

fn cdr(call_id: &str) -> CallRecord {
    CallRecord {
        call_id: call_id.to_owned(),
        caller_masked: "138****5678".to_owned(),
        started_at_ms: 1_795_737_600_000,
        answered_at_ms: Some(1_795_737_600_100),
        ended_at_ms: 1_795_737_660_000,
        end_reason: "goodbye".to_owned(),
        states: vec!["welcome".to_owned()],
        prompts: vec!["welcome".to_owned()],
        menu_keys: "1".to_owned(),
    }
}

/// A callback booking for `call_id` (the caller verified as NORMAL).
fn booking(ledger: &Ledger, call_id: &str) -> CallbackBooking {
    let nc = NewCallback {
        call_id,
        number: "13800138000",
        id: Some(&id(NORMAL.0)),
        queue: "general",
    };
    ledger
        .callback_booking(&nc, std::time::SystemTime::now())
        .unwrap()
}

fn config(dir: &Path) -> RecordsConfig {
    let mut c = RecordsConfig {
        spool_dir: dir.to_owned(),
        ..RecordsConfig::default()
    };
    c.policy.retry_min = Duration::from_millis(50);
    c.policy.retry_max = Duration::from_millis(400);
    c.policy.probe_every = Duration::from_millis(200);
    c
}

/// Waits (bounded) until the writer has nothing in memory or in the spool.
async fn drained(r: &Records) {
    for _ in 0..600 {
        let s = r.status();
        if s.db_up && s.queue_depth == 0 && s.spooled_rows == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("records not drained: {:?}", r.status());
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ivrspool"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// Audit call ids in chain order.
async fn audit_calls(db: &TestDb, n: i64) -> Vec<String> {
    let mut out = Vec::new();
    for seq in 1..=n {
        out.push(
            db.text(&format!("SELECT call_id FROM audit_log WHERE seq = {seq}"))
                .await
                .unwrap_or_default(),
        );
    }
    out
}

fn spool_rows(dir: &Path, ledger: &Ledger, tag: &str, torn: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for i in 0..4 {
        rows.push(Row::Audit(ledger.audit_row(
            &ctx(&format!("{tag}-{i}")),
            Some(&id(NORMAL.0)),
            AuditAction::Query(Insurance::Pension),
            "played",
        )));
        rows.push(Row::Cdr(CdrRow {
            row_id: new_row_id(),
            record: cdr(&format!("{tag}-{i}")),
        }));
        rows.push(Row::Callback(booking(ledger, &format!("{tag}-{i}"))));
    }
    let mut s = Spool::open(dir).unwrap();
    let payloads: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    s.append(&payloads).unwrap();
    drop(s);
    if torn {
        // The process died while writing one more record.
        let file = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".ivrspool"))
            .unwrap();
        let mut half = Vec::new();
        frame::encode(
            b"{\"kind\":\"cdr\",\"row_id\":\"never-finished\"}",
            &mut half,
        )
        .unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&half[..half.len() / 2]);
        std::fs::write(&file, bytes).unwrap();
    }
    rows
}

async fn leftover_spool_is_replayed_first_in_order(db: TestDb) {
    let ledger = db.open().await;
    ledger.seed_demo().await.unwrap();
    // One row already in the chain before the spool.
    ledger
        .audit(&ctx("before"), None, AuditAction::Authenticate, "verified")
        .await
        .unwrap();
    let spool = db.dir.path().join("spool");
    spool_rows(&spool, &ledger, "spooled", true);

    let records = Records::start(ledger.clone(), config(&spool)).unwrap();
    assert_eq!(records.status().spooled_rows, 12);
    // A row enqueued now lands after the spooled ones.
    let ack = records
        .audit(ledger.audit_row(&ctx("after"), None, AuditAction::Authenticate, "verified"))
        .await
        .unwrap();
    assert!(matches!(ack, Durable::Spool | Durable::Database));
    records.cdr(cdr("after"));
    drained(&records).await;
    records.shutdown(Duration::from_secs(10)).await;

    assert_eq!(
        audit_calls(&db, 6).await,
        vec![
            "before",
            "spooled-0",
            "spooled-1",
            "spooled-2",
            "spooled-3",
            "after"
        ]
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log").await, 6);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM call_records").await, 5);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM callbacks").await, 4);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM call_records WHERE row_id = 'never-finished'")
            .await,
        0
    );
    assert!(ledger.verify_audit().await.unwrap().is_intact());
    assert_eq!(spool_files(&spool), 0, "a replayed spool file is removed");
}

async fn replaying_the_same_rows_twice_stores_them_once(db: TestDb) {
    let ledger = db.open().await;
    let spool = db.dir.path().join("spool");
    let rows = spool_rows(&spool, &ledger, "dup", false);
    let r = Records::start(ledger.clone(), config(&spool)).unwrap();
    drained(&r).await;
    r.shutdown(Duration::from_secs(10)).await;
    // The same rows again (a crash after the insert, before the spool file
    // was removed).
    let mut s = Spool::open(&spool).unwrap();
    let payloads: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    s.append(&payloads).unwrap();
    drop(s);
    let r = Records::start(ledger.clone(), config(&spool)).unwrap();
    drained(&r).await;
    r.shutdown(Duration::from_secs(10)).await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log").await, 4);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM call_records").await, 4);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM callbacks").await, 4);
    // The booking's fields survive the spool (the number an agent dials).
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM callbacks WHERE caller_number = '13800138000' \
                   AND status = 'open' AND id_masked IS NOT NULL"
        )
        .await,
        4
    );
    assert!(ledger.verify_audit().await.unwrap().is_intact());
}

both!(
    leftover_spool_is_replayed_first_in_order,
    replaying_the_same_rows_twice_stores_them_once
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_no_cdr_and_no_audit_row() {
    let mut pg = PrivatePg::start();
    let mut cfg = LedgerConfig::with_pepper(ledger_support::PEPPER.to_vec());
    cfg.query_timeout = Duration::from_millis(1500);
    let ledger = Ledger::open(&pg.url(), cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let records = Records::start(ledger.clone(), config(dir.path())).unwrap();

    let mut acks = Vec::new();
    for i in 0..10 {
        records.cdr(cdr(&format!("up-{i}")));
        acks.push(records.audit(ledger.audit_row(
            &ctx(&format!("up-{i}")),
            None,
            AuditAction::Authenticate,
            "rejected",
        )));
    }
    for a in acks.drain(..) {
        assert_eq!(a.await, Ok(Durable::Database));
    }

    pg.down();
    for i in 0..50 {
        records.cdr(cdr(&format!("down-{i}")));
        records.callback(booking(&ledger, &format!("down-{i}")));
        acks.push(records.audit(ledger.audit_row(
            &ctx(&format!("down-{i}")),
            Some(&id(NORMAL.0)),
            AuditAction::Query(Insurance::Medical),
            "played",
        )));
    }
    let mut spooled = 0;
    for a in acks.drain(..) {
        match a.await {
            Ok(Durable::Spool) => spooled += 1,
            other => panic!("expected the spool to take the row, got {other:?}"),
        }
    }
    assert_eq!(spooled, 50);
    // The status is published by the writer after it acknowledged the rows.
    let mut s = records.status();
    for _ in 0..200 {
        if s.spooled_rows >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        s = records.status();
    }
    assert!(!s.db_up, "{s:?}");
    assert!(s.spooled_rows >= 50, "{s:?}");

    pg.up();
    drained(&records).await;
    records.shutdown(Duration::from_secs(10)).await;

    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let n = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(n("SELECT COUNT(*) FROM call_records").await, 60);
    assert_eq!(n("SELECT COUNT(*) FROM audit_log").await, 60);
    assert_eq!(n("SELECT COUNT(*) FROM callbacks").await, 50);
    assert_eq!(
        n("SELECT COUNT(DISTINCT call_id) FROM audit_log WHERE call_id LIKE 'down-%'").await,
        50
    );
    // In order: the down-rows follow the up-rows in the chain.
    let order: Vec<String> = sqlx::query_scalar("SELECT call_id FROM audit_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    let expect: Vec<String> = (0..10)
        .map(|i| format!("up-{i}"))
        .chain((0..50).map(|i| format!("down-{i}")))
        .collect();
    assert_eq!(order, expect);
    pool.close().await;
    assert!(ledger.verify_audit().await.unwrap().is_intact());
    assert_eq!(spool_files(dir.path()), 0);
    ledger.close().await;
}

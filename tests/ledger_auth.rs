//! Authentication, lockout, audit chain, CDRs and outage behaviour of the
//! ledger, each on SQLite and PostgreSQL.

#[macro_use]
mod ledger_support;

use std::time::{Duration, SystemTime};

use ivr12333::domain::{AuthOutcome, CallRecord, Fen, InsuranceStatus, Pin, YearMonth};
use ivr12333::ledger::{AuditAction, AuditReport, Ledger, LedgerConfig, LedgerError};
use ledger_support::{NORMAL, RETIREE, TestDb, UNKNOWN, ctx, id};

fn pin(s: &str) -> Pin {
    Pin::new(s).unwrap()
}

async fn verified_summary_matches_demo(db: TestDb) {
    let l = db.open().await;
    assert!(l.is_empty().await.unwrap());
    assert_eq!(l.seed_demo().await.unwrap(), 6);
    assert_eq!(l.seed_demo().await.unwrap(), 6, "seeding is idempotent");
    assert!(!l.is_empty().await.unwrap());
    assert_eq!(db.scalar("SELECT COUNT(*) FROM person").await, 6);
    let out = l
        .authenticate(&id(NORMAL.0), &pin(NORMAL.1), &ctx("c1"))
        .await
        .unwrap();
    let AuthOutcome::Verified(s) = out else {
        panic!("expected Verified, got {out:?}");
    };
    let p = s.pension.as_ref().unwrap();
    assert_eq!(p.balance, Fen(1_234_567));
    assert_eq!(p.months_contributed, 156);
    assert_eq!(p.last_paid, YearMonth::new(2026, 9));
    assert_eq!(s.medical.as_ref().unwrap().balance, Fen(200_008));
    assert_eq!(s.data_as_of, YearMonth::new(2026, 10).unwrap());
    assert_eq!(s.unemployment.status, InsuranceStatus::Active);
    // The account without a pension record and the suspended one.
    let AuthOutcome::Verified(s) = l
        .authenticate(&id("440106199203150022"), &pin("112233"), &ctx("c2"))
        .await
        .unwrap()
    else {
        panic!("expected Verified");
    };
    assert!(s.pension.is_none());
    let AuthOutcome::Verified(s) = l
        .authenticate(&id("510107200002290061"), &pin("20000229"), &ctx("c3"))
        .await
        .unwrap()
    else {
        panic!("expected Verified");
    };
    assert_eq!(s.unemployment.status, InsuranceStatus::Suspended);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'verified'")
            .await,
        3
    );
    l.close().await;
}

async fn unknown_id_and_wrong_pin_look_the_same(db: TestDb) {
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    let a = l
        .authenticate(&id(UNKNOWN), &pin("123456"), &ctx("u"))
        .await
        .unwrap();
    let b = l
        .authenticate(&id(NORMAL.0), &pin("999999"), &ctx("w"))
        .await
        .unwrap();
    assert_eq!(a, AuthOutcome::Rejected);
    assert_eq!(b, AuthOutcome::Rejected);
    // The lock after N tries does not tell them apart either: an unknown
    // ID gets the same sequence of answers as a known one.
    let mut seq_unknown = vec![a];
    let mut seq_known = vec![b];
    for i in 0..5 {
        seq_unknown.push(
            l.authenticate(&id(UNKNOWN), &pin("123456"), &ctx(&format!("uu{i}")))
                .await
                .unwrap(),
        );
        seq_known.push(
            l.authenticate(&id(NORMAL.0), &pin("999999"), &ctx(&format!("ww{i}")))
                .await
                .unwrap(),
        );
    }
    assert_eq!(seq_unknown, seq_known);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM unknown_id_lock").await, 1);
    // Expired counters are purged; live ones are kept.
    assert_eq!(l.purge_unknown_locks(SystemTime::now()).await.unwrap(), 0);
    let far = SystemTime::now() + Duration::from_secs(3 * 24 * 3600);
    assert_eq!(l.purge_unknown_locks(far).await.unwrap(), 1);
    assert_eq!(seq_unknown[4], AuthOutcome::Locked);
    assert_eq!(seq_unknown[3], AuthOutcome::Rejected);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'lockout'")
            .await,
        2
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'rejected'")
            .await,
        8
    );
    // The audit row holds the keyed hash, never the clear ID.
    let h = db
        .text("SELECT id_hash FROM audit_log WHERE call_id = 'u'")
        .await
        .unwrap();
    assert_eq!(h, l.id_hash(&id(UNKNOWN)));
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE id_hash LIKE '%{}%' OR call_id LIKE '%{}%'",
            UNKNOWN, UNKNOWN
        ))
        .await,
        0
    );
    assert_eq!(
        db.text("SELECT caller_masked FROM audit_log WHERE call_id = 'u'")
            .await
            .unwrap(),
        "138****5678"
    );
    l.close().await;
}

async fn concurrent_wrong_pins_lock_exactly_once(db: TestDb) {
    let cfg = LedgerConfig {
        hash_concurrency: 2,
        ..TestDb::cfg()
    };
    let l = db.open_with(cfg.clone()).await;
    l.seed_demo().await.unwrap();
    // A second ledger on the same database stands for a second node.
    let l2 = db.open_with(cfg).await;
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let l = if i % 2 == 0 { l.clone() } else { l2.clone() };
        tasks.push(tokio::spawn(async move {
            l.authenticate(&id(NORMAL.0), &pin("000001"), &ctx(&format!("x{i}")))
                .await
        }));
    }
    let mut rejected = 0;
    let mut locked = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            AuthOutcome::Rejected => rejected += 1,
            AuthOutcome::Locked => locked += 1,
            AuthOutcome::Verified(_) => panic!("wrong PIN verified"),
        }
    }
    assert_eq!(rejected, 4, "N-1 failures counted before the lock");
    assert_eq!(locked, 20);
    let st = l.lock_status(&id(NORMAL.0)).await.unwrap().unwrap();
    assert_eq!(st.failures, 5, "the count never exceeds N");
    assert!(st.locked_until_ms.is_some());
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'lockout'")
            .await,
        1,
        "locked exactly once"
    );
    // During the lock even the right PIN gets Locked.
    assert_eq!(
        l.authenticate(&id(NORMAL.0), &pin(NORMAL.1), &ctx("ok"))
            .await
            .unwrap(),
        AuthOutcome::Locked
    );
    assert!(l.verify_audit().await.unwrap().is_intact());
    l.close().await;
    l2.close().await;
}

async fn lock_survives_restart_and_unlock_clears_it(db: TestDb) {
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    for i in 0..5 {
        l.authenticate(&id(RETIREE.0), &pin("111111"), &ctx(&format!("r{i}")))
            .await
            .unwrap();
    }
    l.close().await;
    let l = db.open().await;
    assert_eq!(
        l.authenticate(&id(RETIREE.0), &pin(RETIREE.1), &ctx("after"))
            .await
            .unwrap(),
        AuthOutcome::Locked
    );
    l.unlock(&id(RETIREE.0)).await.unwrap();
    assert!(matches!(
        l.authenticate(&id(RETIREE.0), &pin(RETIREE.1), &ctx("unlocked"))
            .await
            .unwrap(),
        AuthOutcome::Verified(_)
    ));
    assert!(matches!(
        l.unlock(&id(UNKNOWN)).await,
        Err(LedgerError::NotFound)
    ));
    l.close().await;
}

async fn correct_pin_resets_counter_and_windows_expire(db: TestDb) {
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    let who = id(NORMAL.0);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for i in 0..4 {
        let o = l
            .authenticate_at(&who, &pin("000002"), &ctx("a"), t0 + Duration::from_secs(i))
            .await
            .unwrap();
        assert_eq!(o, AuthOutcome::Rejected);
    }
    assert_eq!(l.lock_status(&who).await.unwrap().unwrap().failures, 4);
    // A correct PIN before the lock resets the counter.
    assert!(matches!(
        l.authenticate_at(
            &who,
            &pin(NORMAL.1),
            &ctx("b"),
            t0 + Duration::from_secs(10)
        )
        .await
        .unwrap(),
        AuthOutcome::Verified(_)
    ));
    assert_eq!(l.lock_status(&who).await.unwrap().unwrap().failures, 0);
    // Failures older than the window do not count.
    for i in 0..4 {
        l.authenticate_at(
            &who,
            &pin("000003"),
            &ctx("c"),
            t0 + Duration::from_secs(20 + i),
        )
        .await
        .unwrap();
    }
    let later = t0 + Duration::from_secs(20 + 25 * 3600);
    assert_eq!(
        l.authenticate_at(&who, &pin("000003"), &ctx("d"), later)
            .await
            .unwrap(),
        AuthOutcome::Rejected
    );
    assert_eq!(l.lock_status(&who).await.unwrap().unwrap().failures, 1);
    // Five in the window lock; the lock ends after lock_duration.
    for i in 1..4 {
        l.authenticate_at(
            &who,
            &pin("000003"),
            &ctx("e"),
            later + Duration::from_secs(i),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        l.authenticate_at(
            &who,
            &pin("000003"),
            &ctx("f"),
            later + Duration::from_secs(5)
        )
        .await
        .unwrap(),
        AuthOutcome::Locked
    );
    assert_eq!(
        l.authenticate_at(
            &who,
            &pin(NORMAL.1),
            &ctx("g"),
            later + Duration::from_secs(3600)
        )
        .await
        .unwrap(),
        AuthOutcome::Locked
    );
    assert!(matches!(
        l.authenticate_at(
            &who,
            &pin(NORMAL.1),
            &ctx("h"),
            later + Duration::from_secs(25 * 3600)
        )
        .await
        .unwrap(),
        AuthOutcome::Verified(_)
    ));
    l.close().await;
}

async fn audit_chain_detects_tampering(db: TestDb) {
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    let c = ctx("call-1");
    l.authenticate(&id(NORMAL.0), &pin(NORMAL.1), &c)
        .await
        .unwrap();
    l.audit(
        &c,
        Some(&id(NORMAL.0)),
        AuditAction::Query(ivr12333::domain::Insurance::Pension),
        "ok",
    )
    .await
    .unwrap();
    l.audit(
        &c,
        None,
        AuditAction::Transfer {
            queue: "agents".into(),
        },
        "queued",
    )
    .await
    .unwrap();
    l.audit(&c, None, AuditAction::Authenticate, "rejected")
        .await
        .unwrap();
    assert_eq!(
        l.verify_audit().await.unwrap(),
        AuditReport::Intact { rows: 4 }
    );
    db.exec("UPDATE audit_log SET outcome = 'verified' WHERE seq = 4")
        .await;
    match l.verify_audit().await.unwrap() {
        AuditReport::Broken { seq, .. } => assert_eq!(seq, 4),
        other => panic!("tampering not detected: {other:?}"),
    }
    db.exec("UPDATE audit_log SET outcome = 'rejected' WHERE seq = 4")
        .await;
    assert!(l.verify_audit().await.unwrap().is_intact());
    // Deleting the last row is caught by the chain head.
    db.exec("DELETE FROM audit_log WHERE seq = 4").await;
    assert!(matches!(
        l.verify_audit().await.unwrap(),
        AuditReport::Broken { seq: 4, .. }
    ));
    // Deleting a middle row too.
    db.exec("DELETE FROM audit_log WHERE seq = 2").await;
    assert!(matches!(
        l.verify_audit().await.unwrap(),
        AuditReport::Broken { seq: 2, .. }
    ));
    l.close().await;
}

async fn concurrent_audit_appends_form_one_chain(db: TestDb) {
    let l = db.open().await;
    let l2 = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let l = if i % 2 == 0 { l.clone() } else { l2.clone() };
        tasks.push(tokio::spawn(async move {
            l.audit(
                &ctx(&format!("k{i}")),
                None,
                AuditAction::Authenticate,
                "rejected",
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        l.verify_audit().await.unwrap(),
        AuditReport::Intact { rows: 40 }
    );
    l.close().await;
    l2.close().await;
}

async fn cdr_is_stored(db: TestDb) {
    let l = db.open().await;
    let cdr = CallRecord {
        call_id: "abc@host".into(),
        caller_masked: "138****5678".into(),
        started_at_ms: 1_700_000_000_000,
        answered_at_ms: Some(1_700_000_000_500),
        ended_at_ms: 1_700_000_060_000,
        end_reason: "goodbye".into(),
        states: vec!["welcome".into(), "menu".into()],
        prompts: vec!["welcome".into(), "<amount>".into()],
        menu_keys: "11".into(),
    };
    l.write_cdr(&cdr).await.unwrap();
    assert_eq!(db.scalar("SELECT COUNT(*) FROM call_records").await, 1);
    assert_eq!(
        db.text("SELECT states_json FROM call_records")
            .await
            .unwrap(),
        r#"["welcome","menu"]"#
    );
    l.close().await;
}

async fn closed_ledger_is_unavailable(db: TestDb) {
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    l.close().await;
    let r = l
        .authenticate(&id(NORMAL.0), &pin(NORMAL.1), &ctx("down"))
        .await;
    assert!(matches!(r, Err(LedgerError::Unavailable(_))), "{r:?}");
    let r = l
        .audit(&ctx("down"), None, AuditAction::Authenticate, "x")
        .await;
    assert!(matches!(r, Err(LedgerError::Unavailable(_))), "{r:?}");
    assert!(matches!(
        l.is_empty().await,
        Err(LedgerError::Unavailable(_))
    ));
}

both!(
    verified_summary_matches_demo,
    unknown_id_and_wrong_pin_look_the_same,
    concurrent_wrong_pins_lock_exactly_once,
    lock_survives_restart_and_unlock_clears_it,
    correct_pin_resets_counter_and_windows_expire,
    audit_chain_detects_tampering,
    concurrent_audit_appends_form_one_chain,
    cdr_is_stored,
    closed_ledger_is_unavailable,
);

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 9 (discard) is not a PostgreSQL server on this machine.
    let cfg = LedgerConfig {
        query_timeout: Duration::from_millis(500),
        ..TestDb::cfg()
    };
    let r = Ledger::open("postgres://postgres@127.0.0.1:9/postgres", cfg).await;
    assert!(matches!(r, Err(LedgerError::Unavailable(_))));
}

#[tokio::test]
async fn refuses_missing_or_demo_pepper_for_postgres() {
    let url = ledger_support::pg_base();
    let r = Ledger::open(&url, LedgerConfig::demo()).await;
    assert!(matches!(r, Err(LedgerError::Config(_))));
    let r = Ledger::open("sqlite::memory:", LedgerConfig::with_pepper(Vec::new())).await;
    assert!(matches!(r, Err(LedgerError::Config(_))));
    // The demo pepper is fine for an embedded demo ledger.
    let l = Ledger::open("sqlite::memory:", LedgerConfig::demo())
        .await
        .unwrap();
    assert_eq!(l.seed_demo().await.unwrap(), 6);
    l.close().await;
}

//! CDR search is index-backed on both backends: 100 000 generated call
//! records (and their audit rows), then the query plan of page queries —
//! `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL — must use an
//! index on `call_records` and no full scan or sort of it. Plans, not
//! timings. Also checks the page results and keyset paging on that data.

mod ledger_support;

use ivr12333::ledger::cdr_query::{self, CdrFilter, Cursor};
use ledger_support::{Backend, TestDb};

const ROWS: i64 = 100_000;
const T0: i64 = 1_790_000_000_000;

/// Inserts ROWS records one second apart; every 10th call was verified and
/// every 7th transferred to queue `agents` (audit rows like the call task
/// writes).
async fn generate(db: &TestDb) {
    let (series, reason) = match db.backend {
        Backend::Sqlite => (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) ",
            "CASE i % 4 WHEN 0 THEN 'goodbye' WHEN 1 THEN 'caller_hangup' WHEN 2 THEN 'transfer' ELSE 'rtp_timeout' END",
        ),
        Backend::Postgres => (
            "WITH n(i) AS (SELECT generate_series(1, 100000)) ",
            "CASE i % 4 WHEN 0 THEN 'goodbye' WHEN 1 THEN 'caller_hangup' WHEN 2 THEN 'transfer' ELSE 'rtp_timeout' END",
        ),
    };
    db.exec(&format!(
        "{series}INSERT INTO call_records (call_id, caller_masked, started_at_ms, answered_at_ms, \
         ended_at_ms, end_reason, states_json, prompts_json, menu_keys) \
         SELECT 'c' || i, '138****5678', {T0} + i * 1000, {T0} + i * 1000 + 200, {T0} + i * 1000 + 60000, \
         {reason}, '[\"welcome\",\"main_menu\"]', '[\"welcome\",\"main_menu\"]', '1' FROM n"
    ))
    .await;
    db.exec(&format!(
        "{series}INSERT INTO audit_log (seq, at_ms, call_id, caller_masked, id_hash, action, insurance, \
         queue, outcome, prev_hash, row_hash) \
         SELECT i, {T0} + i * 1000, 'c' || i, '138****5678', NULL, \
         CASE WHEN i % 10 = 0 THEN 'authenticate' ELSE 'transfer' END, NULL, \
         CASE WHEN i % 10 = 0 THEN NULL ELSE 'agents' END, \
         CASE WHEN i % 10 = 0 THEN 'verified' ELSE 'queued' END, 'x', 'y' \
         FROM n WHERE i % 10 = 0 OR i % 7 = 0"
    ))
    .await;
    db.exec("ANALYZE").await;
}

fn assert_indexed(backend: Backend, what: &str, plan: &[String]) {
    let text = plan.join("\n");
    match backend {
        Backend::Sqlite => {
            assert!(
                !text.contains("SCAN call_records")
                    && !text.contains("SCAN c\n")
                    && !text.ends_with("SCAN c"),
                "{what}: full scan of call_records:\n{text}"
            );
            assert!(
                !text.contains("TEMP B-TREE"),
                "{what}: sorts instead of reading the index in order:\n{text}"
            );
            assert!(
                text.contains("USING INDEX call_records_")
                    || text.contains("USING INTEGER PRIMARY KEY"),
                "{what}: no call_records index in the plan:\n{text}"
            );
        }
        Backend::Postgres => {
            assert!(
                !text.contains("Seq Scan on call_records"),
                "{what}: sequential scan of call_records:\n{text}"
            );
            assert!(
                text.contains("Index Scan Backward using call_records_")
                    || text.contains("Index Scan using call_records_"),
                "{what}: no call_records index in the plan:\n{text}"
            );
            assert!(
                !text.contains("Seq Scan on audit_log"),
                "{what}: sequential scan of audit_log:\n{text}"
            );
        }
    }
}

async fn page_queries_use_indexes(db: TestDb) {
    let ledger = db.open().await;
    generate(&db).await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM call_records").await,
        ROWS,
        "generated rows"
    );
    let cursor = Some(Cursor {
        started_at_ms: T0 + 50_000 * 1000,
        id: 50_000,
    });
    let cases: Vec<(&str, CdrFilter, Option<Cursor>)> = vec![
        ("first page", CdrFilter::default(), None),
        ("deep page", CdrFilter::default(), cursor),
        (
            "time range",
            CdrFilter {
                from_ms: Some(T0 + 10_000 * 1000),
                to_ms: Some(T0 + 20_000 * 1000),
                ..Default::default()
            },
            None,
        ),
        (
            "end reason",
            CdrFilter {
                end_reason: Some("transfer".into()),
                ..Default::default()
            },
            cursor,
        ),
        (
            "verified",
            CdrFilter {
                verified: Some(true),
                ..Default::default()
            },
            None,
        ),
        (
            "queue",
            CdrFilter {
                queue: Some("agents".into()),
                ..Default::default()
            },
            None,
        ),
    ];
    for (what, f, after) in &cases {
        let plan = cdr_query::explain_page(&ledger, f, *after).await.unwrap();
        println!("{:?} {what}:\n  {}", db.backend, plan.join("\n  "));
        assert_indexed(db.backend, what, &plan);
    }

    // The pages themselves: newest first, keyset-paged, filters applied.
    let (p1, next) = cdr_query::page(&ledger, &CdrFilter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(p1.len(), 50);
    assert_eq!(p1[0].id, ROWS);
    let (p2, _) = cdr_query::page(&ledger, &CdrFilter::default(), next, 50)
        .await
        .unwrap();
    assert_eq!(p2[0].id, ROWS - 50);
    let verified = CdrFilter {
        verified: Some(true),
        ..Default::default()
    };
    let (v, _) = cdr_query::page(&ledger, &verified, None, 20).await.unwrap();
    assert_eq!(v.len(), 20);
    assert!(v.iter().all(|r| r.verified && r.id % 10 == 0), "{v:?}");
    let queued = CdrFilter {
        queue: Some("agents".into()),
        end_reason: Some("transfer".into()),
        ..Default::default()
    };
    let (q, _) = cdr_query::page(&ledger, &queued, None, 20).await.unwrap();
    assert!(!q.is_empty());
    assert!(
        q.iter().all(|r| r.queue.as_deref() == Some("agents")
            && r.end_reason == "transfer"
            && r.id % 7 == 0),
        "{q:?}"
    );
    ledger.close().await;
}

both!(page_queries_use_indexes);

//! The append-only, tamper-evident audit log (DOMAIN.md, "Privacy and
//! audit"): time, call id, masked caller, keyed ID hash, action, outcome,
//! transfer queue; never a balance, PIN or clear ID.
//!
//! Hash chain: row n stores `row_hash = sha256(prev_hash ‖ "\n" ‖ canonical)`
//! where `canonical` is the JSON array of the row's fields (unambiguous, so
//! no two different rows serialise alike) and `prev_hash` is row n−1's hash
//! (64 zeros for the first row). The chain head (last seq and hash) lives in
//! `audit_head`; every append locks that one row first — `SELECT ... FOR
//! UPDATE` in PostgreSQL, a write (hence the database write lock) in SQLite —
//! so appends from concurrent calls and several nodes form one chain, and
//! truncating the tail is detected by comparing the head with the last row.

use sha2::{Digest, Sha256};

use super::{AuditAction, Ledger, LedgerError};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry before it is chained.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub at_ms: i64,
    pub call_id: String,
    pub caller_masked: String,
    pub id_hash: Option<String>,
    pub action: AuditAction,
    pub outcome: String,
}

/// Result of [`Ledger::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditReport {
    /// Every row links and matches its hash.
    Intact { rows: u64 },
    /// The first row (by `seq`) where the chain breaks, and why.
    Broken { seq: i64, reason: String },
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        matches!(self, AuditReport::Intact { .. })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    seq: i64,
    at_ms: i64,
    call_id: String,
    caller_masked: String,
    id_hash: Option<String>,
    action: String,
    insurance: Option<String>,
    queue: Option<String>,
    outcome: String,
    prev_hash: String,
    row_hash: String,
}

fn action_columns(a: &AuditAction) -> (&'static str, Option<String>, Option<String>) {
    match a {
        AuditAction::Authenticate => ("authenticate", None, None),
        AuditAction::Query(i) => ("query", Some(i.as_str().to_owned()), None),
        AuditAction::Transfer { queue } => ("transfer", None, Some(queue.clone())),
    }
}

#[allow(clippy::too_many_arguments)]
fn chain_hash(
    prev: &str,
    seq: i64,
    at_ms: i64,
    call_id: &str,
    caller_masked: &str,
    id_hash: Option<&str>,
    action: &str,
    insurance: Option<&str>,
    queue: Option<&str>,
    outcome: &str,
) -> String {
    let canonical = serde_json::json!([
        seq,
        at_ms,
        call_id,
        caller_masked,
        id_hash,
        action,
        insurance,
        queue,
        outcome
    ])
    .to_string();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize().as_slice())
}

pub(crate) async fn append(l: &Ledger, e: &Entry) -> Result<(), LedgerError> {
    let (action, insurance, queue) = action_columns(&e.action);
    let lock_head = if l.db().is_postgres() {
        "SELECT seq + 1, head_hash FROM audit_head WHERE id = 1 FOR UPDATE"
    } else {
        // SQLite: writing first takes the database write lock for the whole
        // transaction (a read-then-write upgrade could fail with BUSY).
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, head_hash"
    };
    with_db!(l, p => async {
        let mut tx = p.begin().await?;
        let (seq, prev): (i64, String) = sqlx::query_as(lock_head).fetch_one(&mut *tx).await?;
        let hash = chain_hash(
            &prev,
            seq,
            e.at_ms,
            &e.call_id,
            &e.caller_masked,
            e.id_hash.as_deref(),
            action,
            insurance.as_deref(),
            queue.as_deref(),
            &e.outcome,
        );
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, call_id, caller_masked, id_hash, action, \
             insurance, queue, outcome, prev_hash, row_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(seq)
        .bind(e.at_ms)
        .bind(e.call_id.as_str())
        .bind(e.caller_masked.as_str())
        .bind(e.id_hash.as_deref())
        .bind(action)
        .bind(insurance.as_deref())
        .bind(queue.as_deref())
        .bind(e.outcome.as_str())
        .bind(prev.as_str())
        .bind(hash.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, head_hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(hash.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    })
}

const PAGE: i64 = 10_000;

pub(crate) async fn verify(l: &Ledger) -> Result<AuditReport, LedgerError> {
    let mut expect_prev = GENESIS.to_owned();
    let mut last_seq = 0i64;
    let mut rows = 0u64;
    loop {
        let page: Vec<Row> = with_db!(l, p => sqlx::query_as(
            "SELECT seq, at_ms, call_id, caller_masked, id_hash, action, insurance, queue, \
             outcome, prev_hash, row_hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(last_seq)
        .bind(PAGE)
        .fetch_all(p))?;
        let n = page.len();
        for r in page {
            if r.seq != last_seq + 1 {
                return Ok(AuditReport::Broken {
                    seq: last_seq + 1,
                    reason: "row missing (sequence gap)".into(),
                });
            }
            if r.prev_hash != expect_prev {
                return Ok(AuditReport::Broken {
                    seq: r.seq,
                    reason: "prev_hash does not link to the previous row".into(),
                });
            }
            let h = chain_hash(
                &r.prev_hash,
                r.seq,
                r.at_ms,
                &r.call_id,
                &r.caller_masked,
                r.id_hash.as_deref(),
                &r.action,
                r.insurance.as_deref(),
                r.queue.as_deref(),
                &r.outcome,
            );
            if h != r.row_hash {
                return Ok(AuditReport::Broken {
                    seq: r.seq,
                    reason: "row content does not match its hash".into(),
                });
            }
            expect_prev = r.row_hash;
            last_seq = r.seq;
            rows += 1;
        }
        if i64::try_from(n).unwrap_or(0) < PAGE {
            break;
        }
    }
    let (head_seq, head_hash): (i64, String) = with_db!(l, p => sqlx::query_as(
        "SELECT seq, head_hash FROM audit_head WHERE id = 1",
    )
    .fetch_one(p))?;
    if head_seq != last_seq || head_hash != expect_prev {
        return Ok(AuditReport::Broken {
            seq: last_seq + 1,
            reason: "chain head does not match the last row (rows removed at the end?)".into(),
        });
    }
    Ok(AuditReport::Intact { rows })
}

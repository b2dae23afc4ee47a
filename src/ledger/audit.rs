//! The append-only, tamper-evident audit log (docs/domain.md#privacy-and-audit):
//! time, call id, masked caller, keyed ID hash, action, outcome,
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

use super::{AuditAction, CdrRow, Ledger, LedgerError};

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

/// One audit row as the records writer carries it (and spools it): the
/// stored columns except the chain (`seq`, `prev_hash`, `row_hash`), which
/// are computed when the row is inserted, under the chain-head lock. So a
/// row that waited in the spool links to whatever the chain head is when it
/// finally lands, and several nodes still form one chain. `row_id` makes a
/// replay idempotent: a row already stored is not inserted twice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    pub row_id: String,
    pub at_ms: i64,
    pub call_id: String,
    pub caller_masked: String,
    pub id_hash: Option<String>,
    pub action: String,
    pub insurance: Option<String>,
    pub queue: Option<String>,
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

pub(crate) fn action_columns(a: &AuditAction) -> (&'static str, Option<String>, Option<String>) {
    match a {
        AuditAction::Authenticate => ("authenticate", None, None),
        AuditAction::Query(i) => ("query", Some(i.as_str().to_owned()), None),
        AuditAction::Transfer { queue } => ("transfer", None, Some(queue.clone())),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn chain_hash(
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

/// Columns of one multi-row CDR insert.
const CDR_COLS: usize = 10;
/// Columns of one multi-row audit insert.
const AUDIT_COLS: usize = 12;
/// Columns of one callback booking in a batch insert.
const CALLBACK_COLS: usize = 7;

fn values_clause(rows: usize, cols: usize, first: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push('$');
            s.push_str(&(first + r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// Writes a batch of CDRs and audit rows in one transaction: CDRs with one
/// multi-row `INSERT ... ON CONFLICT (row_id) DO NOTHING`; audit rows not
/// already stored (by `row_id`) chained from the locked head, in the order
/// given, with one multi-row insert, then the head moved.
pub(crate) async fn write_batch(
    l: &Ledger,
    cdrs: &[CdrRow],
    audits: &[AuditRow],
    callbacks: &[super::callbacks::CallbackBooking],
) -> Result<(), LedgerError> {
    let mut cdr_json = Vec::with_capacity(cdrs.len());
    for c in cdrs {
        let states = serde_json::to_string(&c.record.states)
            .map_err(|e| LedgerError::Invalid(format!("CDR states: {e}")))?;
        let prompts = serde_json::to_string(&c.record.prompts)
            .map_err(|e| LedgerError::Invalid(format!("CDR prompts: {e}")))?;
        cdr_json.push((states, prompts));
    }
    let lock_head = if l.db().is_postgres() {
        "SELECT seq, head_hash FROM audit_head WHERE id = 1 FOR UPDATE"
    } else {
        // SQLite: write first so the transaction holds the write lock.
        "UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, head_hash"
    };
    with_db!(l, p => async {
        let mut tx = p.begin().await?;
        if !cdrs.is_empty() {
            let sql = format!(
                "INSERT INTO call_records (row_id, call_id, caller_masked, started_at_ms, \
                 answered_at_ms, ended_at_ms, end_reason, states_json, prompts_json, menu_keys) \
                 VALUES {} ON CONFLICT (row_id) DO NOTHING",
                values_clause(cdrs.len(), CDR_COLS, 0)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (c, (states, prompts)) in cdrs.iter().zip(&cdr_json) {
                let r = &c.record;
                q = q
                    .bind(c.row_id.as_str())
                    .bind(r.call_id.as_str())
                    .bind(r.caller_masked.as_str())
                    .bind(r.started_at_ms)
                    .bind(r.answered_at_ms)
                    .bind(r.ended_at_ms)
                    .bind(r.end_reason.as_str())
                    .bind(states.as_str())
                    .bind(prompts.as_str())
                    .bind(r.menu_keys.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        if !callbacks.is_empty() {
            let sql = format!(
                "INSERT INTO callbacks (row_id, created_at_ms, call_id, caller_number, id_hash, \
                 id_masked, queue) VALUES {} ON CONFLICT (row_id) DO NOTHING",
                values_clause(callbacks.len(), CALLBACK_COLS, 0)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in callbacks {
                q = q
                    .bind(b.row_id.as_str())
                    .bind(b.created_at_ms)
                    .bind(b.call_id.as_str())
                    .bind(b.caller_number.as_str())
                    .bind(b.id_hash.as_deref())
                    .bind(b.id_masked.as_deref())
                    .bind(b.queue.as_str());
            }
            q.execute(&mut *tx).await?;
        }
        if !audits.is_empty() {
            let (mut seq, mut prev): (i64, String) =
                sqlx::query_as(lock_head).fetch_one(&mut *tx).await?;
            // Rows a previous attempt stored (its commit raced a timeout):
            // not again.
            let sql = format!(
                "SELECT row_id FROM audit_log WHERE row_id IN ({})",
                (1..=audits.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
            );
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for a in audits {
                q = q.bind(a.row_id.as_str());
            }
            let stored: std::collections::HashSet<String> =
                q.fetch_all(&mut *tx).await?.into_iter().collect();
            let mut seen = std::collections::HashSet::new();
            let fresh: Vec<&AuditRow> = audits
                .iter()
                .filter(|a| !stored.contains(&a.row_id) && seen.insert(a.row_id.as_str()))
                .collect();
            if !fresh.is_empty() {
                let mut chained = Vec::with_capacity(fresh.len());
                for a in &fresh {
                    seq += 1;
                    let hash = chain_hash(
                        &prev,
                        seq,
                        a.at_ms,
                        &a.call_id,
                        &a.caller_masked,
                        a.id_hash.as_deref(),
                        &a.action,
                        a.insurance.as_deref(),
                        a.queue.as_deref(),
                        &a.outcome,
                    );
                    chained.push((seq, std::mem::replace(&mut prev, hash.clone()), hash));
                }
                let sql = format!(
                    "INSERT INTO audit_log (seq, at_ms, call_id, caller_masked, id_hash, action, \
                     insurance, queue, outcome, prev_hash, row_hash, row_id) VALUES {}",
                    values_clause(fresh.len(), AUDIT_COLS, 0)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (a, (seq, prev_hash, hash)) in fresh.iter().zip(&chained) {
                    q = q
                        .bind(*seq)
                        .bind(a.at_ms)
                        .bind(a.call_id.as_str())
                        .bind(a.caller_masked.as_str())
                        .bind(a.id_hash.as_deref())
                        .bind(a.action.as_str())
                        .bind(a.insurance.as_deref())
                        .bind(a.queue.as_deref())
                        .bind(a.outcome.as_str())
                        .bind(prev_hash.as_str())
                        .bind(hash.as_str())
                        .bind(a.row_id.as_str());
                }
                q.execute(&mut *tx).await?;
                sqlx::query("UPDATE audit_head SET seq = $1, head_hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(prev.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
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

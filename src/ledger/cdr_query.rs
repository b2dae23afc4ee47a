//! Reading call records and audit rows for the operators' console: paged
//! CDR search (time range, end reason, queue, verified or not), one call's
//! transcript, and the incremental feeds the wallboard counts from.
//!
//! Every query is index-backed on both backends (indexes in the
//! `20261203000003_console_indexes` migrations): pages are keyset-paged on
//! `(started_at_ms, id)` newest first, so page 1000 costs what page 1
//! costs; "verified" and "queue" are looked up in the audit log by call id
//! (`audit_log (call_id, action, seq)`), since a CDR carries neither. Rows carry
//! masked callers, prompt ids and placeholders only — never an ID number,
//! PIN or balance.

use super::{Ledger, LedgerError};

/// What to search for. `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    /// Calls started at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Calls started before (Unix ms).
    pub to_ms: Option<i64>,
    pub end_reason: Option<String>,
    /// Transferred to this agent queue.
    pub queue: Option<String>,
    /// The caller's ID and PIN were verified during the call.
    pub verified: Option<bool>,
}

/// Where the next page starts (exclusive): the last row of this page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub started_at_ms: i64,
    pub id: i64,
}

/// One call in a result page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CdrRow {
    pub id: i64,
    pub call_id: String,
    pub caller_masked: String,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: i64,
    pub end_reason: String,
    /// Keys pressed at menus (never ID or PIN digits).
    pub menu_keys: String,
    pub verified: bool,
    /// Last authentication outcome in the audit log (`verified`,
    /// `rejected`, `lockout`, `locked`), if the caller tried.
    pub auth_outcome: Option<String>,
    /// The agent queue the caller was transferred to.
    pub queue: Option<String>,
}

/// One call with what it heard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transcript {
    pub call: CdrRow,
    /// Dialplan states visited, in order.
    pub states: Vec<String>,
    /// Prompt ids heard, in order, values as placeholders.
    pub prompts: Vec<String>,
}

/// A finished call as the wallboard's funnel counts it.
#[derive(Debug, Clone)]
pub struct FinishedCall {
    pub id: i64,
    pub ended_at_ms: i64,
    pub answered: bool,
    pub end_reason: String,
    pub states: Vec<String>,
}

/// One audit row of a call (screen pop).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallAudit {
    pub action: String,
    pub insurance: Option<String>,
    pub queue: Option<String>,
    pub outcome: String,
}

/// An authentication outcome (failed PINs and lockouts per hour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    pub seq: i64,
    pub at_ms: i64,
    pub outcome: String,
}

/// Largest page.
pub const MAX_PAGE: i64 = 500;

enum Arg {
    I64(i64),
    Str(String),
}

type RowTuple = (
    i64,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
);

const SELECT_ROW: &str = "SELECT c.id, c.call_id, c.caller_masked, c.started_at_ms, \
     c.answered_at_ms, c.ended_at_ms, c.end_reason, c.menu_keys, \
     (SELECT a.outcome FROM audit_log a WHERE a.call_id = c.call_id \
      AND a.action = 'authenticate' ORDER BY a.seq DESC LIMIT 1) AS auth_outcome, \
     (SELECT a.queue FROM audit_log a WHERE a.call_id = c.call_id \
      AND a.action = 'transfer' ORDER BY a.seq DESC LIMIT 1) AS queue \
     FROM call_records c";

fn row(t: RowTuple) -> CdrRow {
    CdrRow {
        id: t.0,
        call_id: t.1,
        caller_masked: t.2,
        started_at_ms: t.3,
        answered_at_ms: t.4,
        ended_at_ms: t.5,
        end_reason: t.6,
        menu_keys: t.7,
        verified: t.8.as_deref() == Some("verified"),
        auth_outcome: t.8,
        queue: t.9,
    }
}

/// The page query and its arguments.
fn page_sql(f: &CdrFilter, after: Option<Cursor>, limit: i64) -> (String, Vec<Arg>) {
    let mut sql = String::from(SELECT_ROW);
    let mut args = Vec::new();
    let mut conds: Vec<String> = Vec::new();
    let next = |args: &mut Vec<Arg>, a: Arg| {
        args.push(a);
        format!("${}", args.len())
    };
    if let Some(v) = f.from_ms {
        let p = next(&mut args, Arg::I64(v));
        conds.push(format!("c.started_at_ms >= {p}"));
    }
    if let Some(v) = f.to_ms {
        let p = next(&mut args, Arg::I64(v));
        conds.push(format!("c.started_at_ms < {p}"));
    }
    if let Some(v) = &f.end_reason {
        let p = next(&mut args, Arg::Str(v.clone()));
        conds.push(format!("c.end_reason = {p}"));
    }
    if let Some(v) = &f.queue {
        let p = next(&mut args, Arg::Str(v.clone()));
        conds.push(format!(
            "EXISTS (SELECT 1 FROM audit_log q WHERE q.call_id = c.call_id \
             AND q.action = 'transfer' AND q.queue = {p})"
        ));
    }
    if let Some(v) = f.verified {
        let not = if v { "" } else { "NOT " };
        conds.push(format!(
            "{not}EXISTS (SELECT 1 FROM audit_log v WHERE v.call_id = c.call_id \
             AND v.action = 'authenticate' AND v.outcome = 'verified')"
        ));
    }
    if let Some(c) = after {
        let a = next(&mut args, Arg::I64(c.started_at_ms));
        let b = next(&mut args, Arg::I64(c.id));
        conds.push(format!("(c.started_at_ms, c.id) < ({a}, {b})"));
    }
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let l = next(&mut args, Arg::I64(limit));
    sql.push_str(&format!(
        " ORDER BY c.started_at_ms DESC, c.id DESC LIMIT {l}"
    ));
    (sql, args)
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::I64(v) => q.bind(*v),
                Arg::Str(s) => q.bind(s.clone()),
            };
        }
        q
    }};
}

/// One page of calls, newest first, and the cursor of the next page (if
/// there may be one). `limit` is clamped to 1..=[`MAX_PAGE`].
pub async fn page(
    l: &Ledger,
    f: &CdrFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<CdrRow>, Option<Cursor>), LedgerError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let (sql, args) = page_sql(f, after, limit + 1);
    let mut rows: Vec<RowTuple> = with_db!(l, p => async {
        bind_all!(sqlx::query_as::<_, RowTuple>(sqlx::AssertSqlSafe(sql.clone())), &args).fetch_all(p).await
    })?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let rows: Vec<CdrRow> = rows.into_iter().map(row).collect();
    let next = if more {
        rows.last().map(|r| Cursor {
            started_at_ms: r.started_at_ms,
            id: r.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

/// The query plan of a page query, one line per plan row (`EXPLAIN QUERY
/// PLAN` on SQLite, `EXPLAIN` on PostgreSQL). For tests and operators.
pub async fn explain_page(
    l: &Ledger,
    f: &CdrFilter,
    after: Option<Cursor>,
) -> Result<Vec<String>, LedgerError> {
    let (sql, args) = page_sql(f, after, 51);
    if l.db().is_postgres() {
        let sql = format!("EXPLAIN {sql}");
        with_db!(l, p => async {
            let rows: Vec<(String,)> =
                bind_all!(sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql.clone())), &args).fetch_all(p).await?;
            Ok::<_, sqlx::Error>(rows.into_iter().map(|r| r.0).collect())
        })
    } else {
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        with_db!(l, p => async {
            let rows: Vec<(i64, i64, i64, String)> =
                bind_all!(sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql.clone())), &args)
                    .fetch_all(p)
                    .await?;
            Ok::<_, sqlx::Error>(rows.into_iter().map(|r| r.3).collect())
        })
    }
}

/// One call by its row id, with its states and prompts.
pub async fn transcript(l: &Ledger, id: i64) -> Result<Option<Transcript>, LedgerError> {
    let sql = format!("{SELECT_ROW} WHERE c.id = $1");
    let r: Option<RowTuple> = with_db!(l, p => async {
        sqlx::query_as::<_, RowTuple>(sqlx::AssertSqlSafe(sql.clone())).bind(id).fetch_optional(p).await
    })?;
    let Some(r) = r else { return Ok(None) };
    let (states, prompts): (String, String) = with_db!(l, p => async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT states_json, prompts_json FROM call_records WHERE id = $1",
        )
        .bind(id)
        .fetch_one(p)
        .await
    })?;
    Ok(Some(Transcript {
        call: row(r),
        states: serde_json::from_str(&states).unwrap_or_default(),
        prompts: serde_json::from_str(&prompts).unwrap_or_default(),
    }))
}

/// Calls whose record has an id above `after_id` (oldest first), or, with
/// `after_id = None`, those started since `since_ms`.
pub async fn finished_since(
    l: &Ledger,
    after_id: Option<i64>,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<FinishedCall>, LedgerError> {
    type T = (i64, i64, Option<i64>, String, String);
    let rows: Vec<T> = match after_id {
        Some(id) => with_db!(l, p => async {
            sqlx::query_as::<_, T>(
                "SELECT id, ended_at_ms, answered_at_ms, end_reason, states_json \
                 FROM call_records WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(id)
            .bind(limit)
            .fetch_all(p)
            .await
        })?,
        None => with_db!(l, p => async {
            sqlx::query_as::<_, T>(
                "SELECT id, ended_at_ms, answered_at_ms, end_reason, states_json \
                 FROM call_records WHERE started_at_ms >= $1 ORDER BY started_at_ms, id LIMIT $2",
            )
            .bind(since_ms)
            .bind(limit)
            .fetch_all(p)
            .await
        })?,
    };
    Ok(rows
        .into_iter()
        .map(
            |(id, ended_at_ms, answered, end_reason, states)| FinishedCall {
                id,
                ended_at_ms,
                answered: answered.is_some(),
                end_reason,
                states: serde_json::from_str(&states).unwrap_or_default(),
            },
        )
        .collect())
}

/// The highest call record id (0 when none).
pub async fn last_record_id(l: &Ledger) -> Result<i64, LedgerError> {
    let (v,): (Option<i64>,) = with_db!(l, p => async {
        sqlx::query_as::<_, (Option<i64>,)>("SELECT MAX(id) FROM call_records").fetch_one(p).await
    })?;
    Ok(v.unwrap_or(0))
}

/// Authentication outcomes: after audit row `after_seq`, or with `None`
/// those since `since_ms`.
pub async fn auth_events_since(
    l: &Ledger,
    after_seq: Option<i64>,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<AuthEvent>, LedgerError> {
    type T = (i64, i64, String);
    let rows: Vec<T> = match after_seq {
        Some(seq) => with_db!(l, p => async {
            sqlx::query_as::<_, T>(
                "SELECT seq, at_ms, outcome FROM audit_log \
                 WHERE seq > $1 AND action = 'authenticate' ORDER BY seq LIMIT $2",
            )
            .bind(seq)
            .bind(limit)
            .fetch_all(p)
            .await
        })?,
        None => with_db!(l, p => async {
            sqlx::query_as::<_, T>(
                "SELECT seq, at_ms, outcome FROM audit_log \
                 WHERE action = 'authenticate' AND at_ms >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(since_ms)
            .bind(limit)
            .fetch_all(p)
            .await
        })?,
    };
    Ok(rows
        .into_iter()
        .map(|(seq, at_ms, outcome)| AuthEvent {
            seq,
            at_ms,
            outcome,
        })
        .collect())
}

/// The highest audit sequence number (0 when none).
pub async fn last_audit_seq(l: &Ledger) -> Result<i64, LedgerError> {
    let (v,): (Option<i64>,) = with_db!(l, p => async {
        sqlx::query_as::<_, (Option<i64>,)>("SELECT MAX(seq) FROM audit_log").fetch_one(p).await
    })?;
    Ok(v.unwrap_or(0))
}

/// A call's audit rows in order (authentication, balances played,
/// transfer): what the screen pop shows.
pub async fn call_audit(l: &Ledger, call_id: &str) -> Result<Vec<CallAudit>, LedgerError> {
    type T = (String, Option<String>, Option<String>, String);
    let rows: Vec<T> = with_db!(l, p => async {
        sqlx::query_as::<_, T>(
            "SELECT action, insurance, queue, outcome FROM audit_log \
             WHERE call_id = $1 ORDER BY seq LIMIT 200",
        )
        .bind(call_id)
        .fetch_all(p)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(action, insurance, queue, outcome)| CallAudit {
            action,
            insurance,
            queue,
            outcome,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sql_numbers_its_arguments() {
        let f = CdrFilter {
            from_ms: Some(1),
            to_ms: Some(2),
            end_reason: Some("goodbye".into()),
            queue: Some("agents".into()),
            verified: Some(false),
        };
        let (sql, args) = page_sql(
            &f,
            Some(Cursor {
                started_at_ms: 5,
                id: 6,
            }),
            51,
        );
        assert_eq!(args.len(), 7);
        assert!(sql.contains("c.started_at_ms >= $1"), "{sql}");
        assert!(sql.contains("q.queue = $4"), "{sql}");
        assert!(sql.contains("NOT EXISTS"), "{sql}");
        assert!(sql.contains("(c.started_at_ms, c.id) < ($5, $6)"), "{sql}");
        assert!(sql.ends_with("LIMIT $7"), "{sql}");
    }
}

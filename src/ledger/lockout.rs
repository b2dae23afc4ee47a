//! Per-account PIN lockout (docs/domain.md#pin-and-lockout): N failures
//! (default 5) within a window (default 24 h) lock the account for a
//! configured time (default 24 h).
//!
//! The counter lives in the database and is advanced by one conditional
//! `UPDATE ... RETURNING`: the row is updated only while it is not locked,
//! and the new count and the lock are computed from the row's current
//! values in the same statement. PostgreSQL re-evaluates the `WHERE` of a
//! waiting `UPDATE` against the row version it finally locks (READ
//! COMMITTED), SQLite has a single writer: either way concurrent calls, or
//! several nodes, can never push the count past N nor lock twice.

use super::{AccountRow, Ledger, LedgerError, ms};
use crate::domain::AuthOutcome;
use crate::domain::IdNumber;

/// What `authenticate` needs, read in one query: PIN hash and lock state
/// of `person`, and the `account` row (LEFT JOIN, so all optional). One
/// round trip instead of two keeps the lookup's tail latency down. No
/// `Debug`: it holds the PIN hash and balances.
#[derive(sqlx::FromRow)]
pub(crate) struct AuthRow {
    pub pin_hash: Option<String>,
    pub status: String,
    pub locked_until: Option<i64>,
    pub data_as_of: Option<String>,
    pub pension_balance_fen: Option<i64>,
    pub pension_months: Option<i64>,
    pub pension_last_paid: Option<String>,
    pub medical_balance_fen: Option<i64>,
    pub unemployment_status: Option<String>,
    pub unemployment_last_paid: Option<String>,
    pub work_injury_status: Option<String>,
    pub work_injury_last_paid: Option<String>,
    pub maternity_status: Option<String>,
    pub maternity_last_paid: Option<String>,
}

impl AuthRow {
    /// The account part, if the person has an account row.
    pub fn account(&self) -> Option<AccountRow> {
        let none = || "none".to_owned();
        Some(AccountRow {
            data_as_of: self.data_as_of.clone()?,
            pension_balance_fen: self.pension_balance_fen,
            pension_months: self.pension_months,
            pension_last_paid: self.pension_last_paid.clone(),
            medical_balance_fen: self.medical_balance_fen,
            unemployment_status: self.unemployment_status.clone().unwrap_or_else(none),
            unemployment_last_paid: self.unemployment_last_paid.clone(),
            work_injury_status: self.work_injury_status.clone().unwrap_or_else(none),
            work_injury_last_paid: self.work_injury_last_paid.clone(),
            maternity_status: self.maternity_status.clone().unwrap_or_else(none),
            maternity_last_paid: self.maternity_last_paid.clone(),
        })
    }
}

/// Result of counting one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Counted, still below the limit.
    Counted,
    /// This failure reached the limit and set the lock.
    JustLocked,
    /// The account was locked meanwhile (nothing counted).
    AlreadyLocked,
}

impl Failure {
    /// What the caller is told and the audit outcome for this failure.
    pub(crate) fn outcome(self) -> (AuthOutcome, &'static str) {
        match self {
            Failure::Counted => (AuthOutcome::Rejected, "rejected"),
            Failure::JustLocked => (AuthOutcome::Locked, "lockout"),
            Failure::AlreadyLocked => (AuthOutcome::Locked, "locked"),
        }
    }
}

/// Lock state of one account, for admin tools and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockStatus {
    /// Failures in the current window.
    pub failures: u32,
    /// Unix ms until which the account is locked (may be in the past).
    pub locked_until_ms: Option<i64>,
}

pub(crate) async fn load(l: &Ledger, id: &IdNumber) -> Result<Option<AuthRow>, LedgerError> {
    with_db!(l, p => sqlx::query_as(
        "SELECT p.pin_hash, p.status, p.locked_until, a.data_as_of, a.pension_balance_fen, \
         a.pension_months, a.pension_last_paid, a.medical_balance_fen, a.unemployment_status, \
         a.unemployment_last_paid, a.work_injury_status, a.work_injury_last_paid, \
         a.maternity_status, a.maternity_last_paid \
         FROM person p LEFT JOIN account a ON a.id_number = p.id_number \
         WHERE p.id_number = $1",
    )
    .bind(id.expose())
    .fetch_optional(p))
}

/// A correct PIN before the lock: clear the counter. Returns false if the
/// account got locked in the meantime (then the caller gets `Locked`).
pub(crate) async fn reset_on_success(
    l: &Ledger,
    id: &IdNumber,
    now_ms: i64,
) -> Result<bool, LedgerError> {
    let n = with_db!(l, p => async {
        sqlx::query(
            "UPDATE person SET fail_count = 0, fail_window_start = NULL, locked_until = NULL \
             WHERE id_number = $1 AND (locked_until IS NULL OR locked_until <= $2)",
        )
        .bind(id.expose())
        .bind(now_ms)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Counts one wrong PIN atomically. A new window starts when there is none,
/// when the old one is older than `failure_window`, or after an expired
/// lock.
pub(crate) async fn record_failure(
    l: &Ledger,
    id: &IdNumber,
    now_ms: i64,
) -> Result<Failure, LedgerError> {
    let cfg = l.config();
    let window = ms(cfg.failure_window);
    let lock = ms(cfg.lock_duration);
    let max = i64::from(cfg.max_failures);
    let row: Option<(i64, Option<i64>)> = with_db!(l, p => sqlx::query_as(
        "UPDATE person SET \
           fail_count = CASE WHEN fail_window_start IS NULL OR fail_window_start <= $2 - $3 \
                              OR locked_until IS NOT NULL THEN 1 ELSE fail_count + 1 END, \
           fail_window_start = CASE WHEN fail_window_start IS NULL OR fail_window_start <= $2 - $3 \
                              OR locked_until IS NOT NULL THEN $2 ELSE fail_window_start END, \
           locked_until = CASE WHEN (CASE WHEN fail_window_start IS NULL \
                              OR fail_window_start <= $2 - $3 OR locked_until IS NOT NULL \
                              THEN 1 ELSE fail_count + 1 END) >= $4 THEN $2 + $5 ELSE NULL END \
         WHERE id_number = $1 AND (locked_until IS NULL OR locked_until <= $2) \
         RETURNING fail_count, locked_until",
    )
    .bind(id.expose())
    .bind(now_ms)
    .bind(window)
    .bind(max)
    .bind(lock)
    .fetch_optional(p))?;
    Ok(match row {
        None => Failure::AlreadyLocked,
        Some((_, Some(_))) => Failure::JustLocked,
        Some((_, None)) => Failure::Counted,
    })
}

/// Whether an ID that is not in the ledger is locked (by its keyed hash).
pub(crate) async fn unknown_locked(
    l: &Ledger,
    id_hash: &str,
    now_ms: i64,
) -> Result<bool, LedgerError> {
    let until: Option<Option<i64>> = with_db!(l, p => sqlx::query_scalar(
        "SELECT locked_until FROM unknown_id_lock WHERE id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(p))?;
    Ok(until.flatten().is_some_and(|t| t > now_ms))
}

/// Counts one failure for an ID that is not in the ledger, with exactly
/// the rules of [`record_failure`], so unknown IDs lock like real ones.
pub(crate) async fn record_unknown_failure(
    l: &Ledger,
    id_hash: &str,
    now_ms: i64,
) -> Result<Failure, LedgerError> {
    let cfg = l.config();
    let window = ms(cfg.failure_window);
    let lock = ms(cfg.lock_duration);
    let max = i64::from(cfg.max_failures);
    let row: Option<(i64, Option<i64>)> = with_db!(l, p => sqlx::query_as(
        "INSERT INTO unknown_id_lock AS u (id_hash, fail_count, fail_window_start, locked_until) \
         VALUES ($1, 1, $2, CASE WHEN 1 >= $4 THEN $2 + $5 ELSE NULL END) \
         ON CONFLICT (id_hash) DO UPDATE SET \
           fail_count = CASE WHEN u.fail_window_start IS NULL OR u.fail_window_start <= $2 - $3 \
                              OR u.locked_until IS NOT NULL THEN 1 ELSE u.fail_count + 1 END, \
           fail_window_start = CASE WHEN u.fail_window_start IS NULL \
                              OR u.fail_window_start <= $2 - $3 \
                              OR u.locked_until IS NOT NULL THEN $2 ELSE u.fail_window_start END, \
           locked_until = CASE WHEN (CASE WHEN u.fail_window_start IS NULL \
                              OR u.fail_window_start <= $2 - $3 OR u.locked_until IS NOT NULL \
                              THEN 1 ELSE u.fail_count + 1 END) >= $4 THEN $2 + $5 ELSE NULL END \
         WHERE u.locked_until IS NULL OR u.locked_until <= $2 \
         RETURNING fail_count, locked_until",
    )
    .bind(id_hash)
    .bind(now_ms)
    .bind(window)
    .bind(max)
    .bind(lock)
    .fetch_optional(p))?;
    Ok(match row {
        None => Failure::AlreadyLocked,
        Some((_, Some(_))) => Failure::JustLocked,
        Some((_, None)) => Failure::Counted,
    })
}

/// Clears counter and lock (`ledger unlock`).
pub(crate) async fn unlock(l: &Ledger, id: &IdNumber) -> Result<(), LedgerError> {
    let n = with_db!(l, p => async {
        sqlx::query(
            "UPDATE person SET fail_count = 0, fail_window_start = NULL, locked_until = NULL \
             WHERE id_number = $1",
        )
        .bind(id.expose())
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    if n == 0 {
        return Err(LedgerError::NotFound);
    }
    Ok(())
}

impl Ledger {
    /// The failure counter and lock of an account (`None`: no such ID).
    pub async fn lock_status(&self, id: &IdNumber) -> Result<Option<LockStatus>, LedgerError> {
        let row: Option<(i64, Option<i64>)> = with_db!(self, p => sqlx::query_as(
            "SELECT fail_count, locked_until FROM person WHERE id_number = $1",
        )
        .bind(id.expose())
        .fetch_optional(p))?;
        Ok(row.map(|(n, until)| LockStatus {
            failures: u32::try_from(n).unwrap_or(u32::MAX),
            locked_until_ms: until,
        }))
    }
}

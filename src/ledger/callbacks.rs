//! Callback bookings (预约回拨): stored when a waiting caller asks to be
//! called back, listed for agents in the admin API (`GET /callbacks`) and
//! closed when an agent marks one done (`POST /callbacks/{id}/done`).
//! Nothing here dials: agents call back by hand.
//!
//! Privacy: the verified ID is stored only as the ledger's keyed hash
//! ([`Ledger::id_hash`]) and its masked form; the number to call back is
//! stored in clear because an agent must dial it, and is never logged.

use std::time::SystemTime;

use crate::domain::IdNumber;

use super::{Ledger, LedgerError, unix_ms};

/// Longest `done_by` (agent name) accepted.
pub const MAX_DONE_BY: usize = 64;

/// A booking to store.
pub struct NewCallback<'a> {
    pub call_id: &'a str,
    /// The number to call back (digits, as confirmed by the caller).
    pub number: &'a str,
    /// The verified caller, if any.
    pub id: Option<&'a IdNumber>,
    pub queue: &'a str,
}

/// One booking as the admin API shows it (the ID masked only). Its `Debug`
/// hides the number to call back, so a stray `{:?}` cannot log it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct CallbackRow {
    pub id: i64,
    pub created_at_ms: i64,
    pub call_id: String,
    pub caller_number: String,
    pub id_masked: Option<String>,
    pub queue: String,
    pub status: String,
    pub done_by: Option<String>,
    pub done_at_ms: Option<i64>,
}

impl std::fmt::Debug for CallbackRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackRow")
            .field("id", &self.id)
            .field("created_at_ms", &self.created_at_ms)
            .field("call_id", &self.call_id)
            .field("caller_number", &"<number>")
            .field("id_masked", &self.id_masked)
            .field("queue", &self.queue)
            .field("status", &self.status)
            .field("done_by", &self.done_by)
            .field("done_at_ms", &self.done_at_ms)
            .finish()
    }
}

/// A booking ready to store: validated, the ID reduced to its keyed hash
/// and masked form, with a row id made once so that a booking written
/// twice (replayed from the records spool after a crash) is stored once.
/// It travels through the records writer ([`crate::records::Row`]) and may
/// wait in the spool. Its `Debug` hides the number to call back.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallbackBooking {
    pub row_id: String,
    pub created_at_ms: i64,
    pub call_id: String,
    pub caller_number: String,
    pub id_hash: Option<String>,
    pub id_masked: Option<String>,
    pub queue: String,
}

impl std::fmt::Debug for CallbackBooking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackBooking")
            .field("row_id", &self.row_id)
            .field("created_at_ms", &self.created_at_ms)
            .field("call_id", &self.call_id)
            .field("caller_number", &"<number>")
            .field("id_masked", &self.id_masked)
            .field("queue", &self.queue)
            .finish()
    }
}

impl Ledger {
    /// Validates a booking (a number of 5 to 20 digits) and makes the row
    /// to store; nothing is written yet.
    pub fn callback_booking(
        &self,
        b: &NewCallback<'_>,
        now: SystemTime,
    ) -> Result<CallbackBooking, LedgerError> {
        let valid_number =
            (5..=20).contains(&b.number.len()) && b.number.bytes().all(|c| c.is_ascii_digit());
        if !valid_number {
            return Err(LedgerError::Invalid(
                "a callback number has 5 to 20 digits".into(),
            ));
        }
        Ok(CallbackBooking {
            row_id: super::new_row_id(),
            created_at_ms: unix_ms(now),
            call_id: b.call_id.to_owned(),
            caller_number: b.number.to_owned(),
            id_hash: b.id.map(|id| self.id_hash(id)),
            id_masked: b.id.map(IdNumber::masked),
            queue: b.queue.to_owned(),
        })
    }

    /// Stores a booking at once (bypassing the records writer); returns its
    /// id. The service books through [`crate::records::Records::callback`].
    pub async fn book_callback(&self, b: &NewCallback<'_>) -> Result<i64, LedgerError> {
        self.book_callback_at(b, SystemTime::now()).await
    }

    pub async fn book_callback_at(
        &self,
        b: &NewCallback<'_>,
        now: SystemTime,
    ) -> Result<i64, LedgerError> {
        let row = self.callback_booking(b, now)?;
        self.write_records(&[], &[], std::slice::from_ref(&row))
            .await?;
        let id: i64 = with_db!(self, p => sqlx::query_scalar(
            "SELECT id FROM callbacks WHERE row_id = $1",
        )
        .bind(row.row_id.as_str())
        .fetch_one(p))?;
        Ok(id)
    }

    /// Bookings, oldest first: the open ones only, or all with `all`.
    pub async fn list_callbacks(&self, all: bool) -> Result<Vec<CallbackRow>, LedgerError> {
        let sql = if all {
            "SELECT id, created_at_ms, call_id, caller_number, id_masked, queue, status, \
             done_by, done_at_ms FROM callbacks ORDER BY created_at_ms, id LIMIT 1000"
        } else {
            "SELECT id, created_at_ms, call_id, caller_number, id_masked, queue, status, \
             done_by, done_at_ms FROM callbacks WHERE status = 'open' \
             ORDER BY created_at_ms, id LIMIT 1000"
        };
        with_db!(self, p => sqlx::query_as::<_, CallbackRow>(sql).fetch_all(p))
    }

    /// Marks a booking done by `done_by` now. `NotFound` for an unknown id;
    /// a booking already done keeps its first `done_by`/`done_at` and is
    /// returned as it is.
    pub async fn callback_done(&self, id: i64, done_by: &str) -> Result<CallbackRow, LedgerError> {
        self.callback_done_at(id, done_by, SystemTime::now()).await
    }

    pub async fn callback_done_at(
        &self,
        id: i64,
        done_by: &str,
        now: SystemTime,
    ) -> Result<CallbackRow, LedgerError> {
        if done_by.is_empty()
            || done_by.len() > MAX_DONE_BY
            || done_by.chars().any(char::is_control)
        {
            return Err(LedgerError::Invalid(format!(
                "done_by is 1 to {MAX_DONE_BY} printable characters"
            )));
        }
        let at = unix_ms(now);
        with_db!(self, p => async {
            sqlx::query(
            "UPDATE callbacks SET status = 'done', done_by = $1, done_at_ms = $2 \
             WHERE id = $3 AND status = 'open'",
        )
        .bind(done_by)
        .bind(at)
        .bind(id)
        .execute(p)
        .await
        .map(|_| ())
        })?;
        let row: Option<CallbackRow> = with_db!(self, p => sqlx::query_as::<_, CallbackRow>(
            "SELECT id, created_at_ms, call_id, caller_number, id_masked, queue, status, \
             done_by, done_at_ms FROM callbacks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p))?;
        row.ok_or(LedgerError::NotFound)
    }
}

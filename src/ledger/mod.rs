//! The account ledger: SQLite (embedded default) and PostgreSQL.
//!
//! Implements docs/domain.md#accounts, #pin-and-lockout and
//! #privacy-and-audit: account summaries for authenticated callers, argon2id + pepper PIN
//! checks ([`pin`]), an atomic per-account lockout ([`lockout`]), a
//! hash-chained audit log ([`audit`]), CDR storage, CSV import ([`import`])
//! and the demo accounts ([`demo`]).
//!
//! One enum over `SqlitePool`/`PgPool` ([`db::Db`]) with shared SQL using
//! `$1` placeholders (docs/interop.md#crates, sqlx 0.9); money is BIGINT fen in both
//! dialects. This is I/O code (tokio, the system clock), not a sans-IO core;
//! every database call is bounded by a timeout so an outage turns into
//! [`LedgerError::Unavailable`] ("system busy") instead of a stuck call.

/// Runs the same body on whichever pool the ledger holds (the body is
/// type-checked once per backend), bounded by the query timeout.
macro_rules! with_db {
    ($ledger:expr, $p:ident => $body:expr) => {
        match $ledger.db() {
            $crate::ledger::db::Db::Sqlite($p) => $ledger.timed($body).await,
            $crate::ledger::db::Db::Postgres($p) => $ledger.timed($body).await,
        }
    };
}

pub mod audit;
pub mod callbacks;
pub mod cdr_query;
pub mod db;
pub mod demo;
pub mod import;
pub mod lockout;
pub mod pin;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use crate::domain::{
    AccountSummary, AuthOutcome, CallRecord, IdNumber, Insurance, InsuranceStatus, MedicalRecord,
    PensionRecord, Pin, StatusRecord, YearMonth,
};

pub use audit::{AuditReport, AuditRow};
pub use import::{ImportOptions, ImportReport, RejectedRow};

use db::Db;

/// The pepper of the demo ledger. Public on purpose: it protects nothing.
pub const DEMO_PEPPER: &[u8] = b"ivr12333-demo-pepper-NOT-A-SECRET";

/// Ledger settings. `pepper` is the server-side PIN secret (from
/// `IVR12333_LEDGER__PIN_PEPPER`), never stored in the database.
#[derive(Clone)]
pub struct LedgerConfig {
    pub pepper: Vec<u8>,
    /// Failures within `failure_window` that lock the account (default 5).
    pub max_failures: u32,
    /// Default 24 h.
    pub failure_window: Duration,
    /// Default 24 h.
    pub lock_duration: Duration,
    /// Accepted PIN length for `set-pin` and import (default 6–8).
    pub pin_min_len: usize,
    pub pin_max_len: usize,
    /// Maximum parallel argon2 verifications (default 1: leaves the other
    /// core to the media path).
    pub hash_concurrency: usize,
    /// Bound on every database call (default 2 s); beyond it the call gets
    /// [`LedgerError::Unavailable`]. (Extension of the agreed API.)
    pub query_timeout: Duration,
}

impl std::fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("pepper", &"<redacted>")
            .field("max_failures", &self.max_failures)
            .field("failure_window", &self.failure_window)
            .field("lock_duration", &self.lock_duration)
            .field("pin_min_len", &self.pin_min_len)
            .field("pin_max_len", &self.pin_max_len)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

impl LedgerConfig {
    /// Defaults with the given pepper.
    pub fn with_pepper(pepper: Vec<u8>) -> LedgerConfig {
        LedgerConfig {
            pepper,
            max_failures: 5,
            failure_window: Duration::from_secs(24 * 3600),
            lock_duration: Duration::from_secs(24 * 3600),
            pin_min_len: 6,
            pin_max_len: 8,
            hash_concurrency: 1,
            query_timeout: Duration::from_secs(2),
        }
    }

    /// Defaults with the public demo pepper: only for the demo ledger.
    pub fn demo() -> LedgerConfig {
        LedgerConfig::with_pepper(DEMO_PEPPER.to_vec())
    }

    /// Defaults with the pepper from `IVR12333_LEDGER__PIN_PEPPER`, if set and non-empty.
    pub fn from_env() -> Option<LedgerConfig> {
        let p = std::env::var_os("IVR12333_LEDGER__PIN_PEPPER")?;
        let bytes = p.into_encoded_bytes();
        (!bytes.is_empty()).then(|| LedgerConfig::with_pepper(bytes))
    }

    fn is_demo_pepper(&self) -> bool {
        self.pepper == DEMO_PEPPER
    }
}

/// Who is calling, for the audit log. `Debug` shows the caller masked.
#[derive(Clone)]
pub struct AuditContext {
    /// SIP Call-ID.
    pub call_id: String,
    /// Raw From user part; the ledger masks it before storing.
    pub caller: String,
}

impl std::fmt::Debug for AuditContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditContext")
            .field("call_id", &self.call_id)
            .field("caller", &crate::domain::mask_caller(&self.caller))
            .finish()
    }
}

/// What an audit row records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditAction {
    Authenticate,
    Query(Insurance),
    Transfer { queue: String },
}

/// A CDR as the records writer carries it: the record and a unique row id
/// (random, made at enqueue time) so that replaying a spool after a crash
/// never stores the same call twice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CdrRow {
    pub row_id: String,
    pub record: CallRecord,
}

/// A fresh random row id (128 bits, hex).
pub fn new_row_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Ledger failures. Messages never carry an ID number, PIN or balance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The database is unreachable, closed or too slow: the flow says
    /// "system busy".
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// Bad configuration (URL, missing pepper).
    #[error("ledger configuration: {0}")]
    Config(String),
    /// Bad input (e.g. a PIN of the wrong length, a bad CSV file).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The ID is not in the ledger (admin commands only; the call flow never
    /// sees this, it gets `AuthOutcome::Rejected`).
    #[error("no such account")]
    NotFound,
    /// The database refused a statement (constraint, schema).
    #[error("database error: {0}")]
    Database(String),
    /// The schema could not be migrated.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(d) => {
                // Only code and message: PostgreSQL puts row values in the
                // *detail* field, which is deliberately left out.
                let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
                LedgerError::Database(format!("{} ({code})", d.message()))
            }
            sqlx::Error::Configuration(c) => LedgerError::Config(c.to_string()),
            sqlx::Error::RowNotFound => LedgerError::NotFound,
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
                LedgerError::Database("unexpected column type or schema".into())
            }
            other => LedgerError::Unavailable(other.to_string()),
        }
    }
}

/// The ledger. Cheap to clone (pools and keys behind `Arc`s).
#[derive(Clone)]
pub struct Ledger {
    db: Db,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = if self.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        };
        f.debug_struct("Ledger")
            .field("backend", &backend)
            .field("config", &self.inner.cfg)
            .finish()
    }
}

struct Inner {
    cfg: LedgerConfig,
    hasher: pin::PinHasher,
    id_key: [u8; 32],
    /// Hash of a random PIN, verified for unknown IDs so that they cost the
    /// same time as a wrong PIN.
    dummy_hash: String,
    hash_permits: Arc<Semaphore>,
}

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_status(s: &str) -> InsuranceStatus {
    match s {
        "active" => InsuranceStatus::Active,
        "suspended" => InsuranceStatus::Suspended,
        _ => InsuranceStatus::None,
    }
}

pub(crate) fn status_str(s: InsuranceStatus) -> &'static str {
    match s {
        InsuranceStatus::Active => "active",
        InsuranceStatus::Suspended => "suspended",
        InsuranceStatus::None => "none",
    }
}

/// One `account` row as stored. No `Debug`: it holds balances.
#[derive(Clone, sqlx::FromRow)]
pub(crate) struct AccountRow {
    pub data_as_of: String,
    pub pension_balance_fen: Option<i64>,
    pub pension_months: Option<i64>,
    pub pension_last_paid: Option<String>,
    pub medical_balance_fen: Option<i64>,
    pub unemployment_status: String,
    pub unemployment_last_paid: Option<String>,
    pub work_injury_status: String,
    pub work_injury_last_paid: Option<String>,
    pub maternity_status: String,
    pub maternity_last_paid: Option<String>,
}

impl AccountRow {
    fn summary(&self) -> Result<AccountSummary, LedgerError> {
        let ym = |s: &Option<String>| s.as_deref().and_then(YearMonth::parse);
        let data_as_of = YearMonth::parse(&self.data_as_of)
            .ok_or_else(|| LedgerError::Database("bad data_as_of month in account row".into()))?;
        Ok(AccountSummary {
            pension: self.pension_balance_fen.map(|b| PensionRecord {
                balance: crate::domain::Fen(b),
                months_contributed: self
                    .pension_months
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(0),
                last_paid: ym(&self.pension_last_paid),
            }),
            medical: self.medical_balance_fen.map(|b| MedicalRecord {
                balance: crate::domain::Fen(b),
            }),
            unemployment: StatusRecord {
                status: parse_status(&self.unemployment_status),
                last_paid: ym(&self.unemployment_last_paid),
            },
            work_injury: StatusRecord {
                status: parse_status(&self.work_injury_status),
                last_paid: ym(&self.work_injury_last_paid),
            },
            maternity: StatusRecord {
                status: parse_status(&self.maternity_status),
                last_paid: ym(&self.maternity_last_paid),
            },
            data_as_of,
        })
    }
}

impl Ledger {
    /// Opens (and migrates) a ledger: `sqlite://path` (created if missing),
    /// `sqlite::memory:`, or `postgres://...`.
    ///
    /// Refuses an empty pepper, and refuses PostgreSQL (production) with the
    /// public demo pepper.
    pub async fn open(url: &str, cfg: LedgerConfig) -> Result<Ledger, LedgerError> {
        if cfg.pepper.is_empty() {
            return Err(LedgerError::Config(
                "no PIN pepper configured (set IVR12333_LEDGER__PIN_PEPPER)".into(),
            ));
        }
        if db::is_postgres_url(url) && cfg.is_demo_pepper() {
            return Err(LedgerError::Config(
                "refusing to open a PostgreSQL ledger with the demo pepper (set IVR12333_LEDGER__PIN_PEPPER)"
                    .into(),
            ));
        }
        if cfg.max_failures == 0 || cfg.pin_min_len == 0 || cfg.pin_min_len > cfg.pin_max_len {
            return Err(LedgerError::Config(
                "max_failures and PIN lengths must be positive and ordered".into(),
            ));
        }
        let db = db::Db::connect(url, cfg.query_timeout).await?;
        db.migrate(cfg.query_timeout.max(Duration::from_secs(30)))
            .await?;
        let hasher = pin::PinHasher::new(&cfg.pepper);
        let dummy_pin = format!("{:08}", rand::random::<u32>() % 100_000_000);
        let h2 = hasher.clone();
        let dummy_hash = tokio::task::spawn_blocking(move || h2.hash_random(&dummy_pin))
            .await
            .map_err(|e| LedgerError::Unavailable(format!("hash task failed: {e}")))?;
        let id_key = pin::hmac(&cfg.pepper, &[b"ivr12333 id hash v1"]);
        let permits = Arc::new(Semaphore::new(cfg.hash_concurrency.max(1)));
        let ledger = Ledger {
            db,
            inner: Arc::new(Inner {
                cfg,
                hasher,
                id_key,
                dummy_hash,
                hash_permits: permits,
            }),
        };
        // Housekeeping only: a failure here must not stop the service.
        if let Err(e) = ledger.purge_unknown_locks(SystemTime::now()).await {
            tracing::warn!(error = %e, "could not purge expired unknown-ID counters");
        }
        Ok(ledger)
    }

    /// The PostgreSQL pool, when the ledger is on PostgreSQL (the shared
    /// agent queue uses the same database).
    pub fn pg_pool(&self) -> Option<sqlx::PgPool> {
        match &self.db {
            db::Db::Postgres(p) => Some(p.clone()),
            db::Db::Sqlite(_) => None,
        }
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.inner.cfg
    }

    pub(crate) fn hasher(&self) -> &pin::PinHasher {
        &self.inner.hasher
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Bounds a database future by the query timeout.
    pub(crate) async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, LedgerError> {
        match tokio::time::timeout(self.inner.cfg.query_timeout, fut).await {
            Ok(r) => r.map_err(LedgerError::from),
            Err(_) => Err(LedgerError::Unavailable("database call timed out".into())),
        }
    }

    /// Keyed hash of an ID number (HMAC-SHA256 with a key derived from the
    /// pepper), hex: correlates audit rows with a person without storing the
    /// ID.
    pub fn id_hash(&self, id: &IdNumber) -> String {
        hex::encode(pin::hmac(&self.inner.id_key, &[id.expose().as_bytes()]))
    }

    /// Whether the ledger has no accounts.
    pub async fn is_empty(&self) -> Result<bool, LedgerError> {
        let n: i64 =
            with_db!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM person").fetch_one(p))?;
        Ok(n == 0)
    }

    /// Loads the demo accounts (idempotent). Returns how many there are.
    pub async fn seed_demo(&self) -> Result<usize, LedgerError> {
        demo::seed(self).await
    }

    /// Runs a PIN check on the blocking pool, at most `hash_concurrency` at
    /// a time, so argon2 never starves the async (media) threads.
    async fn verify_pin(&self, pin: &Pin, stored: Option<String>) -> Result<bool, LedgerError> {
        // Waiting for a hash slot is bounded like a query: an overloaded
        // node answers "system busy" instead of holding the call.
        let permit = tokio::time::timeout(
            self.inner.cfg.query_timeout,
            self.inner.hash_permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| LedgerError::Unavailable("PIN verification overloaded".into()))?
        .map_err(|_| LedgerError::Unavailable("ledger closed".into()))?;
        let hasher = self.inner.hasher.clone();
        let pin = pin.clone();
        // Unknown ID / no PIN: verify against the dummy hash anyway so the
        // time taken does not reveal whether the ID exists.
        let (hash, real) = match stored {
            Some(h) => (h, true),
            None => (self.inner.dummy_hash.clone(), false),
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hasher.verify(pin.expose(), &hash)
        })
        .await
        .map_err(|e| LedgerError::Unavailable(format!("hash task failed: {e}")))?;
        Ok(ok && real)
    }

    /// Checks an ID + PIN and records an audit row (outcome `verified`,
    /// `rejected`, `locked`, or `lockout` for the failure that locks).
    pub async fn authenticate(
        &self,
        id: &IdNumber,
        pin: &Pin,
        ctx: &AuditContext,
    ) -> Result<AuthOutcome, LedgerError> {
        self.authenticate_at(id, pin, ctx, SystemTime::now()).await
    }

    /// [`Ledger::authenticate`] at a given wall-clock time (tests, replays).
    pub async fn authenticate_at(
        &self,
        id: &IdNumber,
        pin: &Pin,
        ctx: &AuditContext,
        now: SystemTime,
    ) -> Result<AuthOutcome, LedgerError> {
        let now_ms = unix_ms(now);
        let (outcome, label) = self.check_credentials_at(id, pin, now).await?;
        self.audit_at(ctx, Some(id), AuditAction::Authenticate, label, now_ms)
            .await?;
        tracing::debug!(call_id = %ctx.call_id, outcome = label, "ledger authenticate");
        Ok(outcome)
    }

    /// The check of [`Ledger::authenticate`] (lockout included) without the
    /// audit row: returns the outcome and its audit label (`verified`,
    /// `rejected`, `locked`, `lockout`). The caller must audit it, e.g.
    /// through [`crate::records::Records::audit`], before acting on it.
    pub async fn check_credentials(
        &self,
        id: &IdNumber,
        pin: &Pin,
    ) -> Result<(AuthOutcome, &'static str), LedgerError> {
        self.check_credentials_at(id, pin, SystemTime::now()).await
    }

    async fn check_credentials_at(
        &self,
        id: &IdNumber,
        pin: &Pin,
        now: SystemTime,
    ) -> Result<(AuthOutcome, &'static str), LedgerError> {
        let now_ms = unix_ms(now);
        let state = lockout::load(self, id).await?;
        let (outcome, label) = match state {
            Some(st) if st.locked_until.is_some_and(|t| t > now_ms) => {
                // Locked: not verified, even if the PIN is right.
                (AuthOutcome::Locked, "locked")
            }
            Some(st) if st.status == "active" && st.pin_hash.is_some() => {
                let account = st.account();
                if self.verify_pin(pin, st.pin_hash).await? {
                    if lockout::reset_on_success(self, id, now_ms).await? {
                        match account.map(|a| a.summary()).transpose()? {
                            Some(s) => (AuthOutcome::Verified(Box::new(s)), "verified"),
                            None => (AuthOutcome::Rejected, "rejected"),
                        }
                    } else {
                        // Another call locked the account meanwhile.
                        (AuthOutcome::Locked, "locked")
                    }
                } else {
                    lockout::record_failure(self, id, now_ms).await?.outcome()
                }
            }
            Some(_) => {
                // No PIN yet or closed account: the same work and answers
                // as a wrong PIN (dummy verification, the same counting).
                let _ = self.verify_pin(pin, None).await?;
                lockout::record_failure(self, id, now_ms).await?.outcome()
            }
            None => {
                // Unknown ID: dummy verification and a failure counter of
                // its own (by keyed hash), so neither words, timing nor a
                // lock after N tries reveal which IDs exist.
                let h = self.id_hash(id);
                if lockout::unknown_locked(self, &h, now_ms).await? {
                    (AuthOutcome::Locked, "locked")
                } else {
                    let _ = self.verify_pin(pin, None).await?;
                    lockout::record_unknown_failure(self, &h, now_ms)
                        .await?
                        .outcome()
                }
            }
        };
        Ok((outcome, label))
    }

    /// The lookup `authenticate` does (lock state and account row, one
    /// query) without PIN check or audit, for `benches/ledger.rs`. Returns
    /// only whether the account exists, so it cannot be misused to read
    /// balances.
    #[doc(hidden)]
    pub async fn bench_lookup(&self, id: &IdNumber) -> Result<bool, LedgerError> {
        let st = lockout::load(self, id).await?;
        Ok(st.is_some_and(|s| s.account().is_some()))
    }

    /// Appends an audit row (no balances, no PINs; the ID as keyed hash, the
    /// caller masked).
    pub async fn audit(
        &self,
        ctx: &AuditContext,
        id: Option<&IdNumber>,
        action: AuditAction,
        outcome: &str,
    ) -> Result<(), LedgerError> {
        self.audit_at(ctx, id, action, outcome, unix_ms(SystemTime::now()))
            .await
    }

    async fn audit_at(
        &self,
        ctx: &AuditContext,
        id: Option<&IdNumber>,
        action: AuditAction,
        outcome: &str,
        at_ms: i64,
    ) -> Result<(), LedgerError> {
        let entry = audit::Entry {
            at_ms,
            call_id: ctx.call_id.clone(),
            caller_masked: crate::domain::mask_caller(&ctx.caller),
            id_hash: id.map(|i| self.id_hash(i)),
            action,
            outcome: outcome.to_owned(),
        };
        audit::append(self, &entry).await
    }

    /// An audit row for the records writer, stamped now: the ID as keyed
    /// hash, the caller masked, a fresh row id. The chain link is made when
    /// the row is inserted ([`Ledger::write_records`]).
    pub fn audit_row(
        &self,
        ctx: &AuditContext,
        id: Option<&IdNumber>,
        action: AuditAction,
        outcome: &str,
    ) -> AuditRow {
        let (action, insurance, queue) = audit::action_columns(&action);
        AuditRow {
            row_id: new_row_id(),
            at_ms: unix_ms(SystemTime::now()),
            call_id: ctx.call_id.clone(),
            caller_masked: crate::domain::mask_caller(&ctx.caller),
            id_hash: id.map(|i| self.id_hash(i)),
            action: action.to_owned(),
            insurance,
            queue,
            outcome: outcome.to_owned(),
        }
    }

    /// Stores a batch of CDRs and audit rows in one transaction (see
    /// [`audit::write_batch`]); idempotent by row id, so a batch may be
    /// written again after an ambiguous failure.
    pub async fn write_records(
        &self,
        cdrs: &[CdrRow],
        audits: &[AuditRow],
        callbacks: &[callbacks::CallbackBooking],
    ) -> Result<(), LedgerError> {
        audit::write_batch(self, cdrs, audits, callbacks).await
    }

    /// Whether the database answers a trivial query (for health).
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let _: i64 =
            with_db!(self, p => sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(p))?;
        Ok(())
    }

    /// Verifies the audit hash chain.
    pub async fn verify_audit(&self) -> Result<AuditReport, LedgerError> {
        audit::verify(self).await
    }

    /// Stores a call detail record.
    pub async fn write_cdr(&self, cdr: &CallRecord) -> Result<(), LedgerError> {
        let states = serde_json::to_string(&cdr.states)
            .map_err(|e| LedgerError::Invalid(format!("CDR states: {e}")))?;
        let prompts = serde_json::to_string(&cdr.prompts)
            .map_err(|e| LedgerError::Invalid(format!("CDR prompts: {e}")))?;
        with_db!(self, p => async {
            sqlx::query(
            "INSERT INTO call_records (call_id, caller_masked, started_at_ms, answered_at_ms, \
             ended_at_ms, end_reason, states_json, prompts_json, menu_keys) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(cdr.call_id.as_str())
        .bind(cdr.caller_masked.as_str())
        .bind(cdr.started_at_ms)
        .bind(cdr.answered_at_ms)
        .bind(cdr.ended_at_ms)
        .bind(cdr.end_reason.as_str())
        .bind(states.as_str())
        .bind(prompts.as_str())
        .bind(cdr.menu_keys.as_str())
        .execute(p)
        .await
        .map(|_| ())
        })?;
        Ok(())
    }

    /// Clears the failure counter and any lock (`ledger unlock`). Also
    /// clears the counter an unknown ID may have; `NotFound` if the ID is
    /// not an account.
    pub async fn unlock(&self, id: &IdNumber) -> Result<(), LedgerError> {
        let h = self.id_hash(id);
        with_db!(self, p => async {
            sqlx::query("DELETE FROM unknown_id_lock WHERE id_hash = $1")
                .bind(h.as_str())
                .execute(p)
                .await
                .map(|_| ())
        })?;
        lockout::unlock(self, id).await
    }

    /// Deletes unknown-ID failure counters whose window and lock are over
    /// (they only matter within `failure_window`). Run at open; returns how
    /// many rows went.
    pub async fn purge_unknown_locks(&self, now: SystemTime) -> Result<u64, LedgerError> {
        let now_ms = unix_ms(now);
        let window = ms(self.inner.cfg.failure_window);
        with_db!(self, p => async {
            sqlx::query(
                "DELETE FROM unknown_id_lock WHERE (locked_until IS NULL OR locked_until <= $1) \
                 AND (fail_window_start IS NULL OR fail_window_start <= $1 - $2)",
            )
            .bind(now_ms)
            .bind(window)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })
    }

    /// Sets a PIN (`ledger set-pin`): random salt, current parameters; also
    /// clears the failure counter.
    pub async fn set_pin(&self, id: &IdNumber, pin: &Pin) -> Result<(), LedgerError> {
        let len = pin.expose().len();
        let cfg = &self.inner.cfg;
        if len < cfg.pin_min_len || len > cfg.pin_max_len {
            return Err(LedgerError::Invalid(format!(
                "a PIN has {}–{} digits",
                cfg.pin_min_len, cfg.pin_max_len
            )));
        }
        let hasher = self.inner.hasher.clone();
        let p2 = pin.clone();
        let hash = tokio::task::spawn_blocking(move || hasher.hash_random(p2.expose()))
            .await
            .map_err(|e| LedgerError::Unavailable(format!("hash task failed: {e}")))?;
        let r = with_db!(self, p => async {
            sqlx::query(
                "UPDATE person SET pin_hash = $2, fail_count = 0, fail_window_start = NULL, \
                 locked_until = NULL WHERE id_number = $1",
            )
            .bind(id.expose())
            .bind(hash.as_str())
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        if r == 0 {
            return Err(LedgerError::NotFound);
        }
        Ok(())
    }

    /// Runs the migrations (also done by [`Ledger::open`]).
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        self.db.migrate(Duration::from_secs(30)).await
    }

    /// Closes the pools; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

//! Records that survive: every CDR, audit row and callback booking goes through one bounded
//! queue to one writer task, which inserts them in multi-row batches, backs
//! off and retries when the database fails, and meanwhile keeps them in a
//! durable spool on local disk, replayed in order once the database is back
//! (and at the next start if the process died). See `docs/records.md`.
//!
//! - [`frame`] (sans-IO): the spool's record framing (length + checksum).
//! - [`policy`] (sans-IO): what the writer does next (write, spool, replay,
//!   probe, wait) and the retry backoff, on `now` passed in.
//! - [`spool`]: the spool files (blocking file I/O).
//! - [`writer`]: the tokio task that runs the policy.
//!
//! Callers use [`Records::cdr`] (never fails, never waits) and
//! [`Records::audit`], whose future resolves once the row is durable: in
//! the database or fsynced in the spool. The flow discloses a balance only
//! after that acknowledgement.

pub mod frame;
pub mod policy;
pub mod spool;
mod writer;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::domain::CallRecord;
use crate::ledger::callbacks::CallbackBooking;
use crate::ledger::{AuditRow, CdrRow, Ledger};

pub use policy::PolicyConfig;

/// Where an acknowledged row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Committed in the database.
    Database,
    /// Fsynced in the local spool; it reaches the database later.
    Spool,
}

/// Neither the database nor the spool could take the row (or the queue is
/// full, or the writer stopped). The row was withdrawn: what it records
/// must not happen (no balance is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("records unavailable: neither the database nor the spool took the row")]
pub struct Unavailable;

/// Settings of the records writer.
#[derive(Debug, Clone)]
pub struct RecordsConfig {
    /// Directory of the spool files (default `var/spool`).
    pub spool_dir: PathBuf,
    /// Rows waiting in memory beyond which audit rows are refused
    /// ([`Unavailable`]); CDRs are still taken (never dropped).
    pub queue_capacity: usize,
    pub policy: PolicyConfig,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            spool_dir: PathBuf::from("var/spool"),
            queue_capacity: 50_000,
            policy: PolicyConfig::default(),
        }
    }
}

/// One row in the queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Row {
    Cdr(CdrRow),
    Audit(AuditRow),
    Callback(CallbackBooking),
}

type Ack = oneshot::Sender<Result<Durable, Unavailable>>;

struct Item {
    row: Row,
    ack: Option<Ack>,
}

struct Shared {
    queue: Mutex<VecDeque<Item>>,
    notify: Notify,
    /// Rows in memory (queue + the writer's hands).
    depth: AtomicUsize,
    spooled: AtomicU64,
    db_up: AtomicBool,
    closed: AtomicBool,
    capacity: usize,
}

/// A snapshot for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The last database attempt (write, replay or probe) succeeded.
    pub db_up: bool,
    /// Rows waiting in memory.
    pub queue_depth: usize,
    /// Rows in the spool, not yet in the database.
    pub spooled_rows: u64,
}

/// The handle to the records writer. Cheap to clone.
#[derive(Clone)]
pub struct Records {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("status", &self.status())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Declares the writer's metrics (so `/metrics` lists them at zero).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "ivr_records_queue_depth",
        "CDR and audit rows waiting in memory for the records writer"
    );
    metrics::describe_gauge!(
        "ivr_records_spooled_rows",
        "Rows in the local spool, not yet in the database"
    );
    metrics::describe_histogram!(
        "ivr_records_write_seconds",
        "Time of one batch insert of CDR and audit rows"
    );
    metrics::describe_gauge!(
        "ivr_db_up",
        "1 while the ledger database answers, 0 while it is unreachable"
    );
    metrics::gauge!("ivr_records_queue_depth").set(0.0);
    metrics::gauge!("ivr_records_spooled_rows").set(0.0);
    metrics::gauge!("ivr_db_up").set(1.0);
}

impl Records {
    /// Opens the spool (scanning what an earlier run left, which is replayed
    /// before anything new) and starts the writer task.
    pub fn start(ledger: Ledger, cfg: RecordsConfig) -> std::io::Result<Records> {
        let spool = spool::Spool::open(&cfg.spool_dir)?;
        describe_metrics();
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            depth: AtomicUsize::new(0),
            spooled: AtomicU64::new(spool.pending()),
            db_up: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            capacity: cfg.queue_capacity.max(1),
        });
        let task = tokio::spawn(writer::run(ledger, spool, cfg.policy, shared.clone()));
        Ok(Records {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    fn push(&self, item: Item) {
        self.shared.depth.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.queue).push_back(item);
        self.shared.notify.notify_one();
    }

    /// Enqueues a CDR. Never fails and never waits: the row is kept in
    /// memory until the database or the spool has it.
    pub fn cdr(&self, record: CallRecord) {
        let row = Row::Cdr(CdrRow {
            row_id: crate::ledger::new_row_id(),
            record,
        });
        self.push(Item { row, ack: None });
    }

    /// Enqueues a callback booking. Like a CDR it is never refused and
    /// never waits: it is kept in memory until the database or the spool
    /// has it, so a caller who was told "we will call you back" is.
    pub fn callback(&self, booking: CallbackBooking) {
        self.push(Item {
            row: Row::Callback(booking),
            ack: None,
        });
    }

    /// Enqueues an audit row now (before this returns) and gives a future
    /// that resolves once the row is durable. Dropping the future does not
    /// withdraw the row (fire and forget); a row whose future is still
    /// awaited when neither the database nor the spool can take it is
    /// withdrawn and the future says [`Unavailable`].
    pub fn audit(
        &self,
        row: AuditRow,
    ) -> impl Future<Output = Result<Durable, Unavailable>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let refused = self.shared.closed.load(Ordering::Relaxed)
            || self.shared.depth.load(Ordering::Relaxed) >= self.shared.capacity;
        if refused {
            tracing::warn!(
                call_id = %row.call_id,
                "records queue full or closed: audit row refused"
            );
            let _ = tx.send(Err(Unavailable));
        } else {
            self.push(Item {
                row: Row::Audit(row),
                ack: Some(tx),
            });
        }
        async move { rx.await.unwrap_or(Err(Unavailable)) }
    }

    pub fn status(&self) -> Status {
        Status {
            db_up: self.shared.db_up.load(Ordering::Relaxed),
            queue_depth: self.shared.depth.load(Ordering::Relaxed),
            spooled_rows: self.shared.spooled.load(Ordering::Relaxed),
        }
    }

    /// Stops taking audit rows, writes what is queued (to the database, or
    /// to the spool if the database is down) and replays the spool while the
    /// database answers, for at most `grace`. Whatever is still spooled
    /// then stays on disk for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.notify.notify_one();
        let task = lock(&self.task).take();
        if let Some(mut t) = task
            && tokio::time::timeout(grace, &mut t).await.is_err()
        {
            tracing::warn!(
                status = ?self.status(),
                "records writer did not finish within the grace period"
            );
            t.abort();
        }
    }
}

//! The one writer task: takes rows from the queue, asks the [`Policy`] what
//! to do, and does it (database batch, spool append + fsync, spool replay,
//! probe, wait). Acknowledges audit rows once they are durable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::ledger::callbacks::CallbackBooking;
use crate::ledger::{AuditRow, CdrRow, Ledger, LedgerError};

use super::policy::{Policy, PolicyConfig, Step};
use super::spool::Spool;
use super::{Durable, Item, Row, Shared, Unavailable, lock};

async fn write_db(ledger: &Ledger, rows: &[&Row]) -> Result<(), LedgerError> {
    let mut cdrs: Vec<CdrRow> = Vec::new();
    let mut audits: Vec<AuditRow> = Vec::new();
    let mut callbacks: Vec<CallbackBooking> = Vec::new();
    for r in rows {
        match r {
            Row::Cdr(c) => cdrs.push(c.clone()),
            Row::Audit(a) => audits.push(a.clone()),
            Row::Callback(b) => callbacks.push(b.clone()),
        }
    }
    let started = Instant::now();
    let r = ledger.write_records(&cdrs, &audits, &callbacks).await;
    metrics::histogram!("ivr_records_write_seconds").record(started.elapsed().as_secs_f64());
    r
}

/// Runs a blocking spool operation off the async threads.
async fn blocking<T: Send + 'static>(
    spool: &mut Option<Spool>,
    f: impl FnOnce(&mut Spool) -> T + Send + 'static,
) -> Option<T> {
    let mut s = spool.take()?;
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut s);
        (s, r)
    })
    .await
    {
        Ok((s, r)) => {
            *spool = Some(s);
            Some(r)
        }
        Err(e) => {
            tracing::error!(error = %e, "spool task failed; the spool is closed for this run");
            None
        }
    }
}

struct State {
    ledger: Ledger,
    spool: Option<Spool>,
    policy: Policy,
    shared: Arc<Shared>,
    local: VecDeque<Item>,
    /// Whether the outage was logged (one line per outage, not per try).
    outage_logged: bool,
}

impl State {
    fn spooled(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::pending)
    }

    fn publish(&self) {
        let depth = self.local.len() + lock(&self.shared.queue).len();
        self.shared.depth.store(depth, Ordering::Relaxed);
        let spooled = self.spooled();
        self.shared.spooled.store(spooled, Ordering::Relaxed);
        let up = self.policy.db_up();
        self.shared.db_up.store(up, Ordering::Relaxed);
        metrics::gauge!("ivr_records_queue_depth").set(depth as f64);
        metrics::gauge!("ivr_records_spooled_rows").set(spooled as f64);
        metrics::gauge!("ivr_db_up").set(if up { 1.0 } else { 0.0 });
    }

    fn db_ok(&mut self) {
        self.policy.db_ok(Instant::now());
        if self.outage_logged {
            self.outage_logged = false;
            tracing::info!(
                spooled_rows = self.spooled(),
                "ledger database reachable again: replaying the spool"
            );
        }
    }

    fn db_failed(&mut self, e: &LedgerError) {
        self.policy.db_failed(Instant::now());
        if !self.outage_logged {
            self.outage_logged = true;
            tracing::warn!(error = %e, "ledger database unavailable: records go to the spool until it is back");
        }
    }

    async fn write(&mut self, n: usize) {
        let batch: Vec<Item> = self.local.drain(..n.min(self.local.len())).collect();
        let rows: Vec<&Row> = batch.iter().map(|i| &i.row).collect();
        match write_db(&self.ledger, &rows).await {
            Ok(()) => {
                self.db_ok();
                for it in batch {
                    if let Some(a) = it.ack {
                        let _ = a.send(Ok(Durable::Database));
                    }
                }
            }
            Err(e) => {
                self.db_failed(&e);
                // Back to the front, in order: the next step spools them.
                for it in batch.into_iter().rev() {
                    self.local.push_front(it);
                }
            }
        }
    }

    async fn spool(&mut self, n: usize) {
        let batch: Vec<Item> = self.local.drain(..n.min(self.local.len())).collect();
        let mut payloads = Vec::with_capacity(batch.len());
        for it in &batch {
            // Serialising plain strings and numbers cannot fail.
            payloads.push(serde_json::to_vec(&it.row).unwrap_or_default());
        }
        let r = blocking(&mut self.spool, move |s| s.append(&payloads)).await;
        match r {
            Some(Ok(())) => {
                for it in batch {
                    if let Some(a) = it.ack {
                        let _ = a.send(Ok(Durable::Spool));
                    }
                }
            }
            failed => {
                match failed {
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "spool write failed: rows stay in memory; waiting audits are refused")
                    }
                    _ => {
                        tracing::error!("no spool: rows stay in memory; waiting audits are refused")
                    }
                }
                // An audit someone waits for is refused and withdrawn (what
                // it records will not happen); everything else is kept.
                let mut keep = Vec::with_capacity(batch.len());
                for it in batch {
                    match it.ack {
                        Some(a) if !a.is_closed() => {
                            let _ = a.send(Err(Unavailable));
                        }
                        ack => keep.push(Item { row: it.row, ack }),
                    }
                }
                for it in keep.into_iter().rev() {
                    self.local.push_front(it);
                }
                // Do not spin on a full disk.
                self.policy.db_failed(Instant::now());
                self.idle(self.policy_retry()).await;
            }
        }
    }

    fn policy_retry(&self) -> Option<Instant> {
        match self.policy.next(Instant::now(), 0, 1) {
            Step::Wait(t) => t,
            _ => None,
        }
    }

    async fn replay(&mut self, max: usize) {
        let batch = match blocking(&mut self.spool, move |s| s.peek(max)).await {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::error!(error = %e, "spool read failed");
                self.policy.db_failed(Instant::now());
                return;
            }
            None => return,
        };
        let mut rows = Vec::with_capacity(batch.rows.len());
        for (at, payload) in &batch.rows {
            match serde_json::from_slice::<Row>(payload) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    tracing::error!(record = %at, error = %e, "spool: record is not a row; skipped")
                }
            }
        }
        let refs: Vec<&Row> = rows.iter().collect();
        let r = if refs.is_empty() {
            Ok(())
        } else {
            write_db(&self.ledger, &refs).await
        };
        match r {
            Ok(()) => {
                self.db_ok();
                let _ = blocking(&mut self.spool, move |s| s.consume(&batch)).await;
            }
            Err(e) => self.db_failed(&e),
        }
    }

    async fn probe(&mut self) {
        match self.ledger.ping().await {
            Ok(()) => self.db_ok(),
            Err(e) => self.db_failed(&e),
        }
    }

    async fn idle(&self, until: Option<Instant>) {
        let notified = self.shared.notify.notified();
        match until {
            Some(t) => {
                let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(t), notified).await;
            }
            None => notified.await,
        }
    }
}

pub(super) async fn run(ledger: Ledger, spool: Spool, cfg: PolicyConfig, shared: Arc<Shared>) {
    let mut st = State {
        ledger,
        spool: Some(spool),
        policy: Policy::new(cfg),
        shared,
        local: VecDeque::new(),
        outage_logged: false,
    };
    loop {
        st.local.extend(lock(&st.shared.queue).drain(..));
        st.publish();
        let closed = st.shared.closed.load(Ordering::Relaxed);
        let spooled = st.spooled();
        if closed && st.local.is_empty() && (spooled == 0 || !st.policy.db_up()) {
            break;
        }
        match st.policy.next(Instant::now(), st.local.len(), spooled) {
            Step::WriteDb(n) => st.write(n).await,
            Step::Spool(n) => st.spool(n).await,
            Step::Replay => st.replay(cfg.batch_max.max(1)).await,
            Step::Probe => st.probe().await,
            Step::Wait(until) => {
                if closed && st.local.is_empty() {
                    // Closing with a spool and the database down: leave it
                    // for the next start.
                    break;
                }
                st.idle(until).await
            }
        }
    }
    st.publish();
    if st.spooled() > 0 {
        tracing::warn!(
            spooled_rows = st.spooled(),
            dir = %st.spool.as_ref().map(|s| s.dir().display().to_string()).unwrap_or_default(),
            "records writer stopped with rows in the spool; they are replayed at the next start"
        );
    }
}

//! The writer's decisions, sans-IO: what to do next given how many rows
//! wait in memory, whether the spool holds rows, and what the last database
//! attempt did. Time comes in as `now`; nothing here sleeps or does I/O.
//!
//! Order is kept by one rule: while the spool holds rows, new rows go to
//! the end of the spool, and the database is fed from the front of the
//! spool. So rows reach the database in the order they were enqueued,
//! whether or not an outage came in between.

use std::time::{Duration, Instant};

/// What the writer should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Insert up to this many rows from memory into the database.
    WriteDb(usize),
    /// Append the rows in memory (up to this many) to the spool and fsync.
    Spool(usize),
    /// Insert the next batch from the front of the spool into the database.
    Replay,
    /// Check whether the database answers (nothing to write, or it was down).
    Probe,
    /// Nothing to do until new rows arrive or this instant.
    Wait(Option<Instant>),
}

/// Tunables of the policy.
#[derive(Debug, Clone, Copy)]
pub struct PolicyConfig {
    /// Rows per multi-row insert.
    pub batch_max: usize,
    /// First retry delay after a failed database write.
    pub retry_min: Duration,
    /// Retry delays double up to this.
    pub retry_max: Duration,
    /// How often an idle writer checks the database (for `/healthz`).
    pub probe_every: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            batch_max: 500,
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            probe_every: Duration::from_secs(5),
        }
    }
}

/// The writer's state as the policy sees it.
#[derive(Debug)]
pub struct Policy {
    cfg: PolicyConfig,
    db_up: bool,
    /// Delay before the next retry (grows while the database fails).
    delay: Duration,
    /// No database attempt before this.
    retry_at: Option<Instant>,
    /// Last time the database was tried (write, replay or probe).
    last_contact: Option<Instant>,
}

impl Policy {
    pub fn new(cfg: PolicyConfig) -> Policy {
        Policy {
            cfg,
            db_up: true,
            delay: cfg.retry_min,
            retry_at: None,
            last_contact: None,
        }
    }

    /// Whether the last database attempt succeeded.
    pub fn db_up(&self) -> bool {
        self.db_up
    }

    /// The next step. `queued`: rows in memory; `spooled`: rows in the spool.
    pub fn next(&self, now: Instant, queued: usize, spooled: u64) -> Step {
        let may_try = self.retry_at.is_none_or(|t| now >= t);
        let batch = self.cfg.batch_max.max(1);
        if spooled > 0 {
            // Keep order: new rows join the spool's tail first.
            if queued > 0 {
                return Step::Spool(queued.min(batch));
            }
            return if may_try {
                Step::Replay
            } else {
                Step::Wait(self.retry_at)
            };
        }
        if queued > 0 {
            // Up, or down but due for a retry: try the database with the rows.
            return if may_try {
                Step::WriteDb(queued.min(batch))
            } else {
                Step::Spool(queued.min(batch))
            };
        }
        // Idle: probe now and then (and when a retry is due while down).
        let probe_at = if self.db_up {
            self.last_contact.map(|t| t + self.cfg.probe_every)
        } else {
            self.retry_at
        };
        match probe_at {
            None => Step::Probe,
            Some(t) if now >= t => Step::Probe,
            Some(t) => Step::Wait(Some(t)),
        }
    }

    /// A database attempt (write, replay or probe) succeeded.
    pub fn db_ok(&mut self, now: Instant) {
        self.db_up = true;
        self.delay = self.cfg.retry_min;
        self.retry_at = None;
        self.last_contact = Some(now);
    }

    /// A database attempt failed: back off (doubling, capped).
    pub fn db_failed(&mut self, now: Instant) {
        self.db_up = false;
        self.retry_at = Some(now + self.delay);
        self.delay = (self.delay * 2).min(self.cfg.retry_max);
        self.last_contact = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(PolicyConfig {
            batch_max: 100,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(800),
            probe_every: Duration::from_secs(5),
        })
    }

    #[test]
    fn healthy_database_gets_batches() {
        let t = Instant::now();
        let p = policy();
        assert_eq!(p.next(t, 250, 0), Step::WriteDb(100));
        assert_eq!(p.next(t, 7, 0), Step::WriteDb(7));
    }

    #[test]
    fn after_a_failure_rows_are_spooled_until_the_retry_then_replayed_first() {
        let t = Instant::now();
        let mut p = policy();
        p.db_failed(t);
        assert!(!p.db_up());
        assert_eq!(p.next(t, 3, 0), Step::Spool(3));
        // Spool not empty: new rows go behind it, even after the retry time.
        assert_eq!(p.next(t, 2, 3), Step::Spool(2));
        assert_eq!(
            p.next(t, 0, 5),
            Step::Wait(Some(t + Duration::from_millis(100)))
        );
        let later = t + Duration::from_millis(100);
        assert_eq!(p.next(later, 0, 5), Step::Replay);
        assert_eq!(p.next(later, 4, 5), Step::Spool(4));
    }

    #[test]
    fn backoff_doubles_and_caps_and_resets() {
        let t = Instant::now();
        let mut p = policy();
        let mut now = t;
        let mut delays = Vec::new();
        for _ in 0..6 {
            p.db_failed(now);
            let Step::Wait(Some(at)) = p.next(now, 0, 1) else {
                panic!("expected a wait")
            };
            delays.push((at - now).as_millis());
            now = at;
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 800, 800]);
        p.db_ok(now);
        assert_eq!(p.next(now, 0, 1), Step::Replay);
        p.db_failed(now);
        assert_eq!(
            p.next(now, 0, 1),
            Step::Wait(Some(now + Duration::from_millis(100)))
        );
    }

    #[test]
    fn idle_writer_probes_periodically_and_when_down() {
        let t = Instant::now();
        let mut p = policy();
        assert_eq!(p.next(t, 0, 0), Step::Probe);
        p.db_ok(t);
        assert_eq!(
            p.next(t, 0, 0),
            Step::Wait(Some(t + Duration::from_secs(5)))
        );
        assert_eq!(p.next(t + Duration::from_secs(5), 0, 0), Step::Probe);
        p.db_failed(t);
        assert_eq!(
            p.next(t, 0, 0),
            Step::Wait(Some(t + Duration::from_millis(100)))
        );
        assert_eq!(p.next(t + Duration::from_millis(100), 0, 0), Step::Probe);
    }
}

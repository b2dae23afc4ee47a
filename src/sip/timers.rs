//! RFC 3261 §17 timer values and a tiny deadline table (quinn-style: a timer
//! is an enum index, a deadline is `Option<Instant>`; the owner asks for the
//! earliest and is called back with `now`).

use std::time::{Duration, Instant};

/// T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE
/// requests and INVITE responses) and T4 (maximum time a message stays in the
/// network), RFC 3261 §17.1.1.1 and Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and the UAS 2xx give-up time.
    pub fn t64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next retransmit interval: doubled, capped at T2.
    pub fn backoff(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

/// Deadlines for up to `N` timers, indexed by a `Copy` enum cast to usize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerTable<const N: usize> {
    at: [Option<Instant>; N],
}

impl<const N: usize> Default for TimerTable<N> {
    fn default() -> Self {
        TimerTable { at: [None; N] }
    }
}

impl<const N: usize> TimerTable<N> {
    pub fn set(&mut self, timer: usize, at: Instant) {
        if let Some(slot) = self.at.get_mut(timer) {
            *slot = Some(at);
        }
    }

    pub fn stop(&mut self, timer: usize) {
        if let Some(slot) = self.at.get_mut(timer) {
            *slot = None;
        }
    }

    pub fn stop_all(&mut self) {
        self.at = [None; N];
    }

    pub fn get(&self, timer: usize) -> Option<Instant> {
        self.at.get(timer).copied().flatten()
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, if any; callers
    /// loop on it so that several expiries are handled in deadline order.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        let (idx, _) = self
            .at
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .filter(|(_, t)| *t <= now)
            .min_by_key(|(_, t)| *t)?;
        self.stop(idx);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps_at_t2() {
        let c = TimerConfig::default();
        let mut d = c.t1;
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(d.as_millis());
            d = c.backoff(d);
        }
        assert_eq!(seen, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(c.t64(), Duration::from_secs(32));
    }

    #[test]
    fn table_pops_in_order() {
        let t0 = Instant::now();
        let mut t: TimerTable<3> = TimerTable::default();
        t.set(2, t0 + Duration::from_secs(1));
        t.set(0, t0 + Duration::from_secs(2));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(5)), Some(2));
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(t.next(), None);
    }
}

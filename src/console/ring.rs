//! The wallboard's memory: small time-series rings and trackers, sans-IO
//! (every input carries its own time; no clock, no tokio).
//!
//! A [`Ring`] holds named counters in fixed slots (one minute each for the
//! last hour, one hour each for the last day). It lives in one process, so
//! its figures are those this node saw since it started (see
//! `docs/console.md`, "Per node").

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Named counters per time slot, keeping the last `slots` slots.
#[derive(Debug, Clone)]
pub struct Ring {
    slot_secs: u64,
    slots: usize,
    /// (slot number = unix secs / slot_secs, counters), oldest first.
    data: VecDeque<(u64, BTreeMap<String, u64>)>,
}

/// One slot as the page receives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bucket {
    /// Unix seconds of the slot's start.
    pub at: u64,
    pub counts: BTreeMap<String, u64>,
}

impl Ring {
    /// `slot_secs` > 0, `slots` > 0.
    pub fn new(slot_secs: u64, slots: usize) -> Ring {
        Ring {
            slot_secs: slot_secs.max(1),
            slots: slots.max(1),
            data: VecDeque::new(),
        }
    }

    /// Sixty one-minute slots.
    pub fn last_hour() -> Ring {
        Ring::new(60, 60)
    }

    /// Twenty-four one-hour slots.
    pub fn last_day() -> Ring {
        Ring::new(3600, 24)
    }

    fn oldest_kept(&self, now_secs: u64) -> u64 {
        (now_secs / self.slot_secs).saturating_sub(self.slots as u64 - 1)
    }

    /// Adds `n` to `key` in the slot of `at_secs`. Events older than the
    /// window or later than `now_secs` are dropped.
    pub fn add(&mut self, now_secs: u64, at_secs: u64, key: &str, n: u64) {
        if n == 0 || at_secs > now_secs {
            return;
        }
        let slot = at_secs / self.slot_secs;
        if slot < self.oldest_kept(now_secs) {
            return;
        }
        self.prune(now_secs);
        let pos = self.data.partition_point(|(s, _)| *s < slot);
        if self.data.get(pos).is_none_or(|(s, _)| *s != slot) {
            self.data.insert(pos, (slot, BTreeMap::new()));
        }
        *self.data[pos].1.entry(key.to_owned()).or_insert(0) += n;
    }

    fn prune(&mut self, now_secs: u64) {
        let oldest = self.oldest_kept(now_secs);
        while self.data.front().is_some_and(|(s, _)| *s < oldest) {
            self.data.pop_front();
        }
    }

    /// Every slot of the window, oldest first, empty ones included.
    pub fn buckets(&self, now_secs: u64) -> Vec<Bucket> {
        let oldest = self.oldest_kept(now_secs);
        let newest = now_secs / self.slot_secs;
        (oldest..=newest)
            .map(|slot| Bucket {
                at: slot * self.slot_secs,
                counts: self
                    .data
                    .iter()
                    .find(|(s, _)| *s == slot)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Sums over the window.
    pub fn totals(&self, now_secs: u64) -> BTreeMap<String, u64> {
        let oldest = self.oldest_kept(now_secs);
        let mut out = BTreeMap::new();
        for (_, c) in self.data.iter().filter(|(s, _)| *s >= oldest) {
            for (k, v) in c {
                *out.entry(k.clone()).or_insert(0) += v;
            }
        }
        out
    }
}

/// Turns absolute counter readings (e.g. from `/metrics`) into increments.
/// Readings before [`CounterDiff::prime`] are the baseline (no increment);
/// a series first seen after it counts from zero (a labelled counter
/// appears with its first event); a reading below the last one (a restart)
/// counts from zero.
#[derive(Debug, Default, Clone)]
pub struct CounterDiff {
    last: HashMap<String, u64>,
    primed: bool,
}

impl CounterDiff {
    pub fn delta(&mut self, series: &str, value: u64) -> u64 {
        match self.last.insert(series.to_owned(), value) {
            None if self.primed => value,
            None => 0,
            Some(prev) if value >= prev => value - prev,
            Some(_) => value,
        }
    }

    /// Ends the baseline reading.
    pub fn prime(&mut self) {
        self.primed = true;
    }
}

/// How long each agent has been in its current state, as observed by
/// successive snapshots.
#[derive(Debug, Default, Clone)]
pub struct StateClock {
    since: HashMap<String, (String, u64)>,
}

impl StateClock {
    /// Records `agent` in `state` at `now_secs`; returns the seconds it has
    /// been in that state (0 on a change or the first sighting).
    pub fn observe(&mut self, agent: &str, state: &str, now_secs: u64) -> u64 {
        match self.since.get(agent) {
            Some((s, t)) if s == state => now_secs.saturating_sub(*t),
            _ => {
                self.since
                    .insert(agent.to_owned(), (state.to_owned(), now_secs));
                0
            }
        }
    }
}

/// What happened to a caller who stopped waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// Taken by an agent after waiting this long.
    Answered { queue: String, waited_secs: u64 },
    /// Left the queue another way (hung up, gave up, sent back to the menu).
    Left { queue: String, waited_secs: u64 },
}

/// Follows waiting callers from snapshot to snapshot to tell how long each
/// answered caller waited (the queue core counts answers but not their
/// waits). Accurate to the sampling interval.
#[derive(Debug, Default, Clone)]
pub struct WaitTracker {
    /// caller → (queue, last seen wait)
    waiting: HashMap<u64, (String, u64)>,
}

impl WaitTracker {
    /// `waiting`: (caller, queue, waited secs) now; `talking`: callers now
    /// connected to (or rung by) an agent.
    pub fn observe(&mut self, waiting: &[(u64, String, u64)], talking: &[u64]) -> Vec<WaitEnd> {
        let mut ends = Vec::new();
        let still: std::collections::HashSet<u64> = waiting.iter().map(|w| w.0).collect();
        let gone: Vec<u64> = self
            .waiting
            .keys()
            .filter(|c| !still.contains(c))
            .copied()
            .collect();
        for c in gone {
            if let Some((queue, waited_secs)) = self.waiting.remove(&c) {
                ends.push(if talking.contains(&c) {
                    WaitEnd::Answered { queue, waited_secs }
                } else {
                    WaitEnd::Left { queue, waited_secs }
                });
            }
        }
        for (c, q, w) in waiting {
            self.waiting.insert(*c, (q.clone(), *w));
        }
        ends
    }
}

/// Where a finished call got to, from its record: the funnel steps it
/// reached, in order (answered → menu → ID entered → verified → then one of
/// balance heard / asked for an agent / gave up).
pub fn funnel_steps(answered: bool, states: &[String], end_reason: &str) -> Vec<&'static str> {
    let has = |s: &str| states.iter().any(|x| x == s);
    let mut out = Vec::new();
    if !answered {
        return out;
    }
    out.push("answered");
    if has("main_menu") {
        out.push("menu");
    }
    if has("pin_entry") {
        out.push("id_entered");
    }
    if has("insurance_menu") {
        out.push("verified");
    }
    let balance = [
        "pension",
        "medical",
        "unemployment",
        "work_injury",
        "maternity",
    ]
    .iter()
    .any(|s| has(s));
    let agent = has("transfer") || has("transfer_agent") || end_reason == "transfer";
    if agent {
        out.push("asked_agent");
    }
    if balance {
        out.push("balance_heard");
    }
    if !agent && !balance {
        out.push("gave_up");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_hour_in_minutes() {
        let mut r = Ring::last_hour();
        let t0: u64 = 1_799_999_940; // a whole minute
        r.add(t0, t0, "offered", 2);
        r.add(t0 + 30, t0 + 30, "offered", 1);
        r.add(t0 + 61, t0 + 61, "offered", 5);
        assert_eq!(r.totals(t0 + 61)["offered"], 8);
        let b = r.buckets(t0 + 61);
        assert_eq!(b.len(), 60);
        assert_eq!(b[58].at, t0);
        assert_eq!(b[58].counts["offered"], 3);
        assert_eq!(b[59].counts["offered"], 5);
        // An hour later the first minute has gone, the second remains.
        let later = t0 + 60 * 60;
        assert_eq!(r.totals(later).get("offered"), Some(&5));
        r.add(later, later, "offered", 1);
        assert_eq!(r.totals(later)["offered"], 6);
        assert_eq!(r.totals(later + 3600).get("offered"), None);
        // Too old and future events are dropped.
        r.add(later, t0 - 60, "offered", 9);
        r.add(later, later + 1, "offered", 9);
        assert_eq!(r.totals(later)["offered"], 6);
    }

    #[test]
    fn ring_inserts_late_events_in_order() {
        let mut r = Ring::new(60, 5);
        r.add(600, 590, "a", 1);
        r.add(600, 470, "a", 1);
        r.add(600, 530, "b", 1);
        let b = r.buckets(600);
        let at: Vec<u64> = b.iter().map(|b| b.at).collect();
        assert_eq!(at, vec![360, 420, 480, 540, 600]);
        assert_eq!(b[1].counts["a"], 1);
        assert_eq!(b[2].counts["b"], 1);
        assert_eq!(b[3].counts["a"], 1);
    }

    #[test]
    fn counter_diff_baselines_and_survives_restarts() {
        let mut d = CounterDiff::default();
        assert_eq!(d.delta("x", 10), 0);
        d.prime();
        assert_eq!(d.delta("y", 4), 4);
        assert_eq!(d.delta("x", 13), 3);
        assert_eq!(d.delta("x", 13), 0);
        assert_eq!(d.delta("x", 2), 2);
    }

    #[test]
    fn state_clock_counts_from_the_change() {
        let mut c = StateClock::default();
        assert_eq!(c.observe("a", "available", 100), 0);
        assert_eq!(c.observe("a", "available", 130), 30);
        assert_eq!(c.observe("a", "paused", 131), 0);
        assert_eq!(c.observe("a", "paused", 140), 9);
    }

    #[test]
    fn wait_tracker_tells_answered_from_left() {
        let mut w = WaitTracker::default();
        let q = "agents".to_string();
        assert!(
            w.observe(&[(1, q.clone(), 3), (2, q.clone(), 1)], &[])
                .is_empty()
        );
        let ends = w.observe(&[(2, q.clone(), 25)], &[1]);
        assert_eq!(
            ends,
            vec![WaitEnd::Answered {
                queue: q.clone(),
                waited_secs: 3
            }]
        );
        let ends = w.observe(&[], &[]);
        assert_eq!(
            ends,
            vec![WaitEnd::Left {
                queue: q,
                waited_secs: 25
            }]
        );
    }

    #[test]
    fn funnel_follows_the_states() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            funnel_steps(
                true,
                &s(&[
                    "welcome",
                    "main_menu",
                    "id_entry",
                    "pin_entry",
                    "auth",
                    "insurance_menu",
                    "pension",
                    "after_menu",
                    "goodbye"
                ]),
                "goodbye"
            ),
            vec![
                "answered",
                "menu",
                "id_entered",
                "verified",
                "balance_heard"
            ]
        );
        assert_eq!(
            funnel_steps(
                true,
                &s(&[
                    "welcome",
                    "main_menu",
                    "agent",
                    "transfer_agent",
                    "transfer"
                ]),
                "transfer"
            ),
            vec!["answered", "menu", "asked_agent"]
        );
        assert_eq!(
            funnel_steps(
                true,
                &s(&["welcome", "main_menu", "id_entry"]),
                "caller_hangup"
            ),
            vec!["answered", "menu", "gave_up"]
        );
        assert!(funnel_steps(false, &[], "error").is_empty());
    }
}

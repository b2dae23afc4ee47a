//! The registrar's binding table (RFC 3261 §10.3 steps 7–8): which agent
//! is registered and when its binding lapses without a refresh. Sans-IO:
//! the caller passes `now`; expired bindings are handed back to be logged
//! out of the queue.
//!
//! Expiry is capped at [`MAX_EXPIRES`] seconds (the registrar may shorten
//! what a client asks for, §10.3 step 7; our 200 says what was granted).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The longest binding granted, in seconds.
pub const MAX_EXPIRES: u32 = 3600;

/// Registered names and when each binding lapses.
#[derive(Debug, Clone)]
pub struct Bindings<K> {
    until: HashMap<K, Instant>,
}

impl<K> Default for Bindings<K> {
    fn default() -> Self {
        Bindings {
            until: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Bindings<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds (or refreshes) `key` for `expires` seconds, capped at
    /// [`MAX_EXPIRES`]; returns the granted expiry.
    pub fn bind(&mut self, now: Instant, key: K, expires: u32) -> u32 {
        let granted = expires.min(MAX_EXPIRES);
        self.until
            .insert(key, now + Duration::from_secs(u64::from(granted)));
        granted
    }

    /// Removes `key`'s binding (`expires=0`, `Contact: *`).
    pub fn unbind(&mut self, key: &K) -> bool {
        self.until.remove(key).is_some()
    }

    pub fn is_bound(&self, key: &K) -> bool {
        self.until.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// The earliest lapse, for a timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.until.values().min().copied()
    }

    /// Removes and returns the bindings that lapsed at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let lapsed: Vec<K> = self
            .until
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &lapsed {
            self.until.remove(k);
        }
        lapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_lapse_refresh_and_cap() {
        let t0 = Instant::now();
        let mut b = Bindings::new();
        assert_eq!(b.bind(t0, "a", 60), 60);
        assert_eq!(b.bind(t0, "b", 100_000), MAX_EXPIRES);
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(b.expire(t0 + Duration::from_secs(59)).is_empty());
        // A refresh moves the lapse.
        b.bind(t0 + Duration::from_secs(59), "a", 60);
        assert!(b.expire(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(b.expire(t0 + Duration::from_secs(119)), vec!["a"]);
        assert!(b.is_bound(&"b"));
        assert!(b.unbind(&"b"));
        assert!(b.is_empty());
    }
}

//! The registrar's binding table (RFC 3261 §10.3 steps 7–8): which agent
//! is registered and when its binding lapses without a refresh. Sans-IO:
//! the caller passes `now`; expired bindings are handed back to be logged
//! out of the queue.
//!
//! Expiry is capped at [`MAX_EXPIRES`] seconds (the registrar may shorten
//! what a client asks for, §10.3 step 7; our 200 says what was granted).
//!
//! Each binding may carry a value: the registrar keeps the REGISTER's Path
//! (RFC 3327) there, the route set for calls to that agent.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The longest binding granted, in seconds.
pub const MAX_EXPIRES: u32 = 3600;

/// Registered names, when each binding lapses, and a value per binding.
#[derive(Debug, Clone)]
pub struct Bindings<K, V = ()> {
    until: HashMap<K, (Instant, V)>,
}

impl<K, V> Default for Bindings<K, V> {
    fn default() -> Self {
        Bindings {
            until: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Default> Bindings<K, V> {
    /// Binds (or refreshes) `key` for `expires` seconds, capped at
    /// [`MAX_EXPIRES`], with a default value; returns the granted expiry.
    pub fn bind(&mut self, now: Instant, key: K, expires: u32) -> u32 {
        self.bind_with(now, key, expires, V::default())
    }
}

impl<K: Eq + Hash + Clone, V> Bindings<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds (or refreshes) `key` for `expires` seconds, capped at
    /// [`MAX_EXPIRES`], replacing its value; returns the granted expiry.
    pub fn bind_with(&mut self, now: Instant, key: K, expires: u32, value: V) -> u32 {
        let granted = expires.min(MAX_EXPIRES);
        self.until
            .insert(key, (now + Duration::from_secs(u64::from(granted)), value));
        granted
    }

    /// The value bound with `key`, while the binding lasts.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.until.get(key).map(|(_, v)| v)
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
        self.until.values().map(|(t, _)| *t).min()
    }

    /// Removes and returns the bindings that lapsed at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let lapsed: Vec<K> = self
            .until
            .iter()
            .filter(|(_, (t, _))| *t <= now)
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
        let mut b: Bindings<&str> = Bindings::new();
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

    #[test]
    fn a_binding_keeps_its_value_until_it_lapses() {
        let t0 = Instant::now();
        let mut b: Bindings<&str, Vec<String>> = Bindings::new();
        b.bind_with(t0, "a", 60, vec!["<sip:10.0.0.2;lr>".to_owned()]);
        assert_eq!(b.get(&"a").map(Vec::len), Some(1));
        // A refresh without a Path clears it.
        b.bind(t0, "a", 60);
        assert_eq!(b.get(&"a"), Some(&Vec::new()));
        b.bind_with(t0, "a", 60, vec!["<sip:10.0.0.3;lr>".to_owned()]);
        assert_eq!(b.expire(t0 + Duration::from_secs(60)), vec!["a"]);
        assert_eq!(b.get(&"a"), None);
    }
}

//! Deadlines of the endpoint in one binary heap (RFC 3261 §17 Timers A–M,
//! the §13.3.1.4 2xx retransmission, the REGISTER answer deadline), so that
//! [`Endpoint::poll_timeout`] is a peek and [`Endpoint::handle_timeout`]
//! touches only what is due, whatever the number of live transactions.
//!
//! The tables holding transactions, calls and held REGISTERs are
//! [`Tracked`] maps: every mutable access records the key. At the end of
//! each entry point the endpoint re-reads the deadline of every recorded
//! key and pushes it (`(deadline, key)`) onto the heap. Entries are never
//! removed from the middle of the heap: when one comes up, its owner's
//! current deadline decides (gone, or not due yet = a stale entry, dropped).
//! A later deadline always has its own entry, pushed when it was set, so
//! nothing is missed; an earlier stale entry only costs one spurious wake-up.
//! When stale entries outnumber live ones the heap is rebuilt (amortised
//! O(1) per push).
//!
//! [`Endpoint::poll_timeout`]: super::Endpoint::poll_timeout
//! [`Endpoint::handle_timeout`]: super::Endpoint::handle_timeout

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::{self, HashMap};
use std::hash::Hash;
use std::time::Instant;

use super::CallHandle;
use crate::sip::registrar::RegisterId;

/// What a heap entry wakes up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum TimerKey {
    /// A server transaction (its key in the table).
    Server(String),
    /// A client transaction.
    Client(String),
    /// A call's 2xx retransmission / ACK give-up.
    Call(CallHandle),
    /// A REGISTER waiting for the application.
    Register(RegisterId),
}

/// A map that remembers which keys were handed out mutably (or inserted)
/// since the last [`Tracked::take_touched`].
pub(super) struct Tracked<K, V> {
    map: HashMap<K, V>,
    touched: Vec<K>,
}

impl<K: Eq + Hash + Clone, V> Tracked<K, V> {
    pub(super) fn new() -> Self {
        Tracked {
            map: HashMap::new(),
            touched: Vec::new(),
        }
    }

    pub(super) fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(k)
    }

    pub(super) fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let v = self.map.get_mut(k)?;
        self.touched.push(k.to_owned());
        Some(v)
    }

    pub(super) fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.touched.push(k.clone());
        self.map.insert(k, v)
    }

    pub(super) fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(k)
    }

    pub(super) fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(k)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn iter(&self) -> hash_map::Iter<'_, K, V> {
        self.map.iter()
    }

    /// Calls `f` on every entry; those for which it returns true count as
    /// touched (O(n): only for rare events such as a closed connection).
    pub(super) fn for_each_mut(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        for (k, v) in self.map.iter_mut() {
            if f(k, v) {
                self.touched.push(k.clone());
            }
        }
    }

    /// The keys touched since the last call (with repeats).
    pub(super) fn touched(&self) -> &[K] {
        &self.touched
    }

    pub(super) fn take_touched(&mut self) -> Vec<K> {
        std::mem::take(&mut self.touched)
    }
}

/// A min-heap of `(deadline, key)` with lazy deletion.
#[derive(Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl TimerQueue {
    pub(super) fn push(&mut self, at: Instant, key: TimerKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry (possibly stale: then an early, harmless wake-up).
    pub(super) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns every key with an entry due at `now`, each once.
    pub(super) fn pop_due(&mut self, now: Instant) -> Vec<TimerKey> {
        let mut due = Vec::new();
        while let Some(Reverse((t, _))) = self.heap.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((_, k))) = self.heap.pop() {
                due.push(k);
            }
        }
        due.sort();
        due.dedup();
        due
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Replaces the heap by exactly these entries (used when stale entries
    /// pile up).
    pub(super) fn rebuild(&mut self, entries: Vec<(Instant, TimerKey)>) {
        self.heap = entries.into_iter().map(Reverse).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_keys_once_in_any_order_of_pushes() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0 + Duration::from_secs(2), TimerKey::Call(CallHandle(2)));
        q.push(t0 + Duration::from_secs(1), TimerKey::Call(CallHandle(1)));
        q.push(t0 + Duration::from_secs(1), TimerKey::Call(CallHandle(1)));
        assert_eq!(q.peek(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop_due(t0).is_empty());
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(1)),
            vec![TimerKey::Call(CallHandle(1))]
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn tracked_records_mutable_access() {
        let mut m: Tracked<u32, u32> = Tracked::new();
        m.insert(1, 10);
        m.insert(2, 20);
        assert_eq!(m.take_touched(), vec![1, 2]);
        assert_eq!(m.get(&1), Some(&10));
        assert!(m.touched().is_empty());
        if let Some(v) = m.get_mut(&2) {
            *v += 1;
        }
        assert!(m.get_mut(&3).is_none());
        assert_eq!(m.take_touched(), vec![2]);
    }
}

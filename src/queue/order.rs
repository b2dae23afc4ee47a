//! FIFO order of the callers in one queue, with O(log n) position lookups.
//!
//! Every join gets the next sequence number and a slot at the end of a
//! vector; leaving (from anywhere) empties the slot. A Fenwick tree (binary
//! indexed tree) over the slots counts the occupied ones, so "what is my
//! position" is a prefix sum and "who is k-th" is a descent, both
//! O(log n). Slots before the first occupied one are dropped (and the tree
//! rebuilt, O(n)) once they make up half the vector, which keeps the total
//! cost amortised O(log n) per operation at 10,000 waiting callers where a
//! plain `VecDeque` would need an O(n) scan for each position.

use super::CallerId;

#[derive(Debug, Default, Clone)]
pub struct WaitOrder {
    /// `slots[i]` holds the caller with sequence number `base + i`.
    slots: Vec<Option<CallerId>>,
    /// Fenwick tree over `slots` (1 = occupied); `tree[i - 1]` is node `i`.
    tree: Vec<u32>,
    base: u64,
    /// Index of the first slot that may be occupied.
    head: usize,
    live: usize,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl WaitOrder {
    pub fn new() -> WaitOrder {
        WaitOrder::default()
    }

    /// Number of callers waiting.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Sum of the first `i` slots.
    fn prefix(&self, mut i: usize) -> u32 {
        let mut s = 0;
        while i > 0 {
            s += self.tree[i - 1];
            i -= lowbit(i);
        }
        s
    }

    fn add(&mut self, idx0: usize, delta: i32) {
        let mut i = idx0 + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] = self.tree[i - 1].wrapping_add_signed(delta);
            i += lowbit(i);
        }
    }

    /// Appends a caller; returns its sequence number.
    pub fn push(&mut self, caller: CallerId) -> u64 {
        let seq = self.base + self.slots.len() as u64;
        self.slots.push(Some(caller));
        // Appending node i to a Fenwick tree: it covers (i - lowbit(i), i].
        let i = self.tree.len() + 1;
        let below = self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(1 + below);
        self.live += 1;
        seq
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Removes the caller with sequence number `seq`; false if not present.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(i) = self.index(seq) else {
            return false;
        };
        if self.slots[i].take().is_none() {
            return false;
        }
        self.add(i, -1);
        self.live -= 1;
        while self.head < self.slots.len() && self.slots[self.head].is_none() {
            self.head += 1;
        }
        self.maybe_compact();
        true
    }

    /// 1-based position of `seq` (1 = first in line).
    pub fn position(&self, seq: u64) -> Option<usize> {
        let i = self.index(seq)?;
        self.slots[i]?;
        Some(self.prefix(i + 1) as usize)
    }

    /// The `k`-th waiting caller (1-based) and its sequence number.
    pub fn nth(&self, k: usize) -> Option<(u64, CallerId)> {
        if k == 0 || k > self.live {
            return None;
        }
        let n = self.tree.len();
        let mut pos = 0usize;
        let mut rem = k as u32;
        let mut step = if n == 0 {
            0
        } else {
            1usize << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next - 1] < rem {
                pos = next;
                rem -= self.tree[next - 1];
            }
            step >>= 1;
        }
        // `pos` slots hold k-1 callers, so slot `pos` is the k-th.
        let c = (*self.slots.get(pos)?)?;
        Some((self.base + pos as u64, c))
    }

    /// Callers in order with their sequence numbers (O(n); for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (u64, CallerId)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .skip(self.head)
            .filter_map(|(i, c)| c.map(|c| (self.base + i as u64, c)))
    }

    fn maybe_compact(&mut self) {
        if self.head < 1024 || self.head * 2 < self.slots.len() {
            return;
        }
        self.slots.drain(..self.head);
        self.base += self.head as u64;
        self.head = 0;
        let n = self.slots.len();
        self.tree.clear();
        self.tree
            .extend(self.slots.iter().map(|s| u32::from(s.is_some())));
        for i in 1..=n {
            let j = i + lowbit(i);
            if j <= n {
                let v = self.tree[i - 1];
                self.tree[j - 1] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_removals_and_compaction() {
        let mut o = WaitOrder::new();
        let seqs: Vec<u64> = (0..5000).map(|i| o.push(CallerId(i))).collect();
        assert_eq!(o.position(seqs[4999]), Some(5000));
        assert!(o.remove(seqs[10]));
        assert!(!o.remove(seqs[10]));
        assert_eq!(o.position(seqs[4999]), Some(4999));
        assert_eq!(o.position(seqs[10]), None);
        assert_eq!(o.nth(11), Some((seqs[11], CallerId(11))));
        // Remove the first 3000 to force a compaction, then keep checking.
        for s in &seqs[..3000] {
            o.remove(*s);
        }
        assert_eq!(o.len(), 2000);
        assert_eq!(o.nth(1), Some((seqs[3000], CallerId(3000))));
        assert_eq!(o.position(seqs[3001]), Some(2));
        let s = o.push(CallerId(9999));
        assert_eq!(o.position(s), Some(2001));
        assert_eq!(o.nth(2001), Some((s, CallerId(9999))));
        assert_eq!(o.nth(2002), None);
        assert_eq!(o.iter().count(), 2001);
    }

    #[test]
    fn matches_a_naive_model() {
        let mut o = WaitOrder::new();
        let mut model: Vec<(u64, CallerId)> = Vec::new();
        let mut x: u64 = 12345;
        for step in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if !(x >> 33).is_multiple_of(3) || model.is_empty() {
                let s = o.push(CallerId(step));
                model.push((s, CallerId(step)));
            } else {
                let k = ((x >> 40) as usize) % model.len();
                // Bias towards the front so compaction happens.
                let k = if (x >> 20).is_multiple_of(2) { 0 } else { k };
                let (s, _) = model.remove(k);
                assert!(o.remove(s));
            }
            if step % 97 == 0 {
                for (i, (s, c)) in model.iter().enumerate() {
                    assert_eq!(o.position(*s), Some(i + 1));
                    assert_eq!(o.nth(i + 1), Some((*s, *c)));
                }
            }
        }
    }
}

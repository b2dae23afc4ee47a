//! What the agent desk's screen pop needs from a live call that nothing
//! else keeps: which SIP call a queue caller number belongs to, and the
//! caller's masked ID. The call task notes it when the caller asks for an
//! agent ([`note_transfer`]); the rest (verified, balances heard, queue)
//! comes from the call's audit rows.
//!
//! Process-wide and bounded: entries older than [`KEEP`] or beyond
//! [`MAX_ENTRIES`] are dropped. Only the masked ID (`310104********1239`)
//! is stored, never the full number.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::IdNumber;

/// How long an entry is kept.
pub const KEEP: Duration = Duration::from_secs(6 * 3600);
/// At most this many calls are remembered.
pub const MAX_ENTRIES: usize = 20_000;

/// One transferred call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopEntry {
    pub call_id: String,
    /// `None` when the caller did not key a valid ID before asking.
    pub id_masked: Option<String>,
    at: Instant,
}

static POPS: Mutex<Option<HashMap<u64, PopEntry>>> = Mutex::new(None);

/// Called by the call task when `caller` (the queue's caller number) asks
/// for an agent.
pub fn note_transfer(caller: u64, call_id: &str, id: Option<&IdNumber>) {
    note_at(caller, call_id, id.map(IdNumber::masked), Instant::now());
}

fn note_at(caller: u64, call_id: &str, id_masked: Option<String>, now: Instant) {
    let mut g = POPS.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    map.retain(|_, e| now.saturating_duration_since(e.at) < KEEP);
    if map.len() >= MAX_ENTRIES
        && let Some(oldest) = map.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| *k)
    {
        map.remove(&oldest);
    }
    map.insert(
        caller,
        PopEntry {
            call_id: call_id.to_owned(),
            id_masked,
            at: now,
        },
    );
}

/// The entry for a queue caller number.
pub fn lookup(caller: u64) -> Option<PopEntry> {
    POPS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&caller).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_the_masked_id() {
        let id = IdNumber::parse("310104198507151239", (2026, 12, 3)).unwrap();
        note_transfer(u64::MAX - 7, "call-a", Some(&id));
        let e = lookup(u64::MAX - 7).unwrap();
        assert_eq!(e.call_id, "call-a");
        assert_eq!(e.id_masked.as_deref(), Some("310104********1239"));
        assert!(!format!("{e:?}").contains("19850715"));
        note_at(u64::MAX - 8, "call-b", None, Instant::now());
        assert_eq!(lookup(u64::MAX - 8).unwrap().id_masked, None);
    }
}

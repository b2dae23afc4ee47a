//! DTMF from RFC 4733 telephone-events, and the merge with SIP INFO digits.
//!
//! # RFC 4733 receiver
//!
//! An event is identified by `(SSRC, RTP timestamp)` (RFC 4733 §2.5.1.2:
//! all packets of one event carry the timestamp of its start), never by the
//! marker bit, which is lost together with the first packet.
//!
//! The digit is reported at the **first packet we see of a new event**: that
//! gives the fastest barge-in (a prompt stops on key-down, not key-up), and
//! since any packet of the event (an update, or only the end packet) counts
//! as "first seen", a lost start packet still reports the digit. Everything
//! after that for the same key only updates the state:
//!
//! * the end packet (E bit), sent three times (§2.5.1.4), is absorbed;
//! * a lost end is closed by a new event or by [`END_TIMEOUT`] without
//!   packets;
//! * a long press (§2.5.2.3) whose 16-bit duration saturates continues as a
//!   new segment whose timestamp is the old one plus the old duration: it is
//!   the same key press and is not reported again;
//! * late or reordered packets of a finished event (its key is remembered in
//!   a small ring) or with a timestamp older than the current event of the
//!   same SSRC never re-trigger;
//! * a new SSRC starts a new stream (its first event is reported);
//! * one narrow exception to "a key is reported once": a *start* packet
//!   (marker bit, duration ≤ one packet, no E bit) for a key whose event is
//!   already over starts a new press **only when that event was itself
//!   opened by a start packet**. SIPp's `play_pcap_audio` replays a capture
//!   unchanged, so a caller entering "11" sends the same SSRC, timestamp and
//!   sequence numbers twice: the first round began with its start packet,
//!   the replay begins with the same start packet again and counts. On a
//!   jittery line the start packet of a press can instead arrive *after*
//!   that press's updates or end packets (100 ms, 300 ms, a second late);
//!   that event was opened by a non-start packet, so the late start is
//!   absorbed and the key counts once. Duplicated or late updates and end
//!   packets have no marker and never re-trigger. What the rule cannot tell
//!   apart: a press whose start packet arrived first *and* is duplicated by
//!   the network and delivered again after the end packets counts twice
//!   (it is byte-for-byte a replay).
//!
//! Events above 15 (flash, modem tones) and payloads shorter than 4 bytes
//! are ignored (see [`super::rtp::parse_event`]).
//!
//! # INFO merge
//!
//! Some gateways send each key both as RFC 4733 and as SIP INFO
//! (`application/dtmf-relay`). [`DigitMerger`] keeps one digit stream: a
//! digit from one source that equals an unmatched digit from the other
//! source seen within [`MERGE_WINDOW`] is the same key press and is dropped.
//! Each key press matches at most one press of the other source, so pressing
//! the same key twice quickly still yields two digits.

use std::time::{Duration, Instant};

use super::rtp::{TelephoneEvent, event_char};

/// An event with no packet for this long is over (its end packets were
/// lost). Senders repeat every 50 ms at most (RFC 4733 §2.5.1.3).
pub const END_TIMEOUT: Duration = Duration::from_millis(1000);

/// RFC 4733 and INFO digits equal and this close are one key press.
pub const MERGE_WINDOW: Duration = Duration::from_millis(500);

/// Packets older than the current event are late packets only this long
/// after its last packet (beyond that they are a restarted sender).
pub const REORDER_WINDOW: Duration = Duration::from_millis(2000);

/// How many finished event keys are remembered against late packets.
const RECENT: usize = 8;

/// Long-press continuation (§2.5.2.3): the new segment's timestamp is the
/// previous one plus the saturated duration (0xFFFF); allow some slack for
/// senders that restart slightly differently.
const SEGMENT_MIN: u32 = 0xF000;
const SEGMENT_MAX: u32 = 0x1_0000 + 1600;

/// Largest duration a start packet may carry for the replay rule (one
/// 20 ms packet; SIPp's captures start at 0).
const RESTART_MAX_DURATION: u16 = 160;

#[derive(Debug, Clone, Copy)]
struct Current {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    ended: bool,
    last_seen: Instant,
    /// The first packet seen of this event was its start packet (see the
    /// replay rule in the module docs).
    opened_by_start: bool,
}

impl Current {
    /// Ended by an E packet, or by silence for [`END_TIMEOUT`].
    fn is_over(&self, now: Instant) -> bool {
        self.ended || now.saturating_duration_since(self.last_seen) >= END_TIMEOUT
    }
}

/// RFC 4733 receiver for one call. See the module docs for the rules.
///
/// `Debug` shows no state: the current event is a caller's key.
#[derive(Clone)]
pub struct Rfc4733Receiver {
    current: Option<Current>,
    /// Finished events: `(ssrc, timestamp, opened_by_start)`.
    recent: [Option<(u32, u32, bool)>; RECENT],
    next_recent: usize,
}

impl std::fmt::Debug for Rfc4733Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc4733Receiver").finish_non_exhaustive()
    }
}

impl Default for Rfc4733Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Rfc4733Receiver {
    pub fn new() -> Self {
        Rfc4733Receiver {
            current: None,
            recent: [None; RECENT],
            next_recent: 0,
        }
    }

    /// Feeds one telephone-event packet (`marker`: the RTP marker bit);
    /// returns the key when it starts a new key press.
    pub fn handle(
        &mut self,
        now: Instant,
        ssrc: u32,
        timestamp: u32,
        marker: bool,
        ev: TelephoneEvent,
    ) -> Option<char> {
        // A start packet (marker, no duration yet) for a key whose event is
        // already over counts again only when that event began with its own
        // start packet: a replayed capture (SIPp's play_pcap_audio resends a
        // pcap's packets unchanged, so pressing "1" twice repeats the same
        // SSRC and timestamp). A start packet that arrives after the updates
        // or end packets of its press (jitter) finds an event opened by
        // another packet and is absorbed.
        let restart = marker && !ev.end && ev.duration <= RESTART_MAX_DURATION;
        if let Some(cur) = self.current.as_mut()
            && cur.ssrc == ssrc
            && cur.timestamp == timestamp
        {
            if !(restart && cur.opened_by_start && cur.is_over(now)) {
                cur.last_seen = now;
                cur.ended |= ev.end;
                return None;
            }
        } else if let Some(opened_by_start) = self.recent_event(ssrc, timestamp) {
            if !(restart && opened_by_start) {
                return None;
            }
        } else if let Some(cur) = self.current
            && cur.ssrc == ssrc
        {
            let delta = timestamp.wrapping_sub(cur.timestamp);
            // Older than the current event (serial-number arithmetic): a
            // late packet of an event that is already over. Long after the
            // current event, an older timestamp is rather a sender that
            // restarted its clock (same SSRC), so it counts as new.
            let recent_activity = now.saturating_duration_since(cur.last_seen) < REORDER_WINDOW;
            if delta >= 0x8000_0000 && recent_activity && !(restart && cur.is_over(now)) {
                return None;
            }
            if !cur.is_over(now)
                && cur.event == ev.event
                && (SEGMENT_MIN..=SEGMENT_MAX).contains(&delta)
            {
                // Next segment of the same long press.
                self.remember(cur);
                self.current = Some(Current {
                    timestamp,
                    ended: ev.end,
                    last_seen: now,
                    ..cur
                });
                return None;
            }
        }
        if let Some(cur) = self.current {
            self.remember(cur);
        }
        self.current = Some(Current {
            ssrc,
            timestamp,
            event: ev.event,
            ended: ev.end,
            last_seen: now,
            opened_by_start: restart,
        });
        event_char(ev.event)
    }

    /// Whether a key is held down right now (an event started and neither
    /// ended nor timed out).
    pub fn key_down(&self, now: Instant) -> bool {
        self.current.is_some_and(|c| !c.is_over(now))
    }

    /// Whether `(ssrc, timestamp)` is a finished event, and if so whether it
    /// was opened by its start packet.
    fn recent_event(&self, ssrc: u32, timestamp: u32) -> Option<bool> {
        self.recent
            .iter()
            .flatten()
            .find(|(s, t, _)| *s == ssrc && *t == timestamp)
            .map(|&(_, _, opened)| opened)
    }

    fn remember(&mut self, cur: Current) {
        if let Some(slot) = self
            .recent
            .iter_mut()
            .flatten()
            .find(|(s, t, _)| *s == cur.ssrc && *t == cur.timestamp)
        {
            slot.2 = cur.opened_by_start;
            return;
        }
        if let Some(slot) = self.recent.get_mut(self.next_recent) {
            *slot = Some((cur.ssrc, cur.timestamp, cur.opened_by_start));
        }
        self.next_recent = (self.next_recent + 1) % RECENT;
    }
}

/// Which side of the merge a digit came from: the media stream (RFC 4733,
/// or in-band tones when no telephone-event was negotiated) or SIP INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Media,
    Info,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    digit: char,
    at: Instant,
    matched: bool,
}

const MERGE_SLOTS: usize = 4;

/// Keeps one digit stream out of RFC 4733 and SIP INFO (module docs).
///
/// `Debug` shows no state: it holds the caller's recent keys.
#[derive(Clone, Default)]
pub struct DigitMerger {
    rfc: [Option<Seen>; MERGE_SLOTS],
    info: [Option<Seen>; MERGE_SLOTS],
    rfc_next: usize,
    info_next: usize,
}

impl std::fmt::Debug for DigitMerger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigitMerger").finish_non_exhaustive()
    }
}

impl DigitMerger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A digit arrived from `source`; returns it when it is a new key press.
    pub fn accept(&mut self, now: Instant, source: Source, digit: char) -> Option<char> {
        let (mine, other, next) = match source {
            Source::Media => (&mut self.rfc, &mut self.info, &mut self.rfc_next),
            Source::Info => (&mut self.info, &mut self.rfc, &mut self.info_next),
        };
        let duplicate = other.iter_mut().flatten().find(|s| {
            !s.matched && s.digit == digit && now.saturating_duration_since(s.at) <= MERGE_WINDOW
        });
        let matched = if let Some(s) = duplicate {
            s.matched = true;
            true
        } else {
            false
        };
        if let Some(slot) = mine.get_mut(*next) {
            *slot = Some(Seen {
                digit,
                at: now,
                matched,
            });
        }
        *next = (*next + 1) % MERGE_SLOTS;
        (!matched).then_some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn one_press_reported_once_at_start() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        assert_eq!(r.handle(t0, 1, 1000, false, ev(5, false, 0)), Some('5'));
        assert!(r.key_down(t0));
        for i in 1..10u16 {
            assert_eq!(
                r.handle(ms(t0, i as u64 * 50), 1, 1000, false, ev(5, false, i * 400)),
                None
            );
        }
        for i in 0..3 {
            assert_eq!(
                r.handle(ms(t0, 500 + i), 1, 1000, false, ev(5, true, 4000)),
                None
            );
        }
        assert!(!r.key_down(ms(t0, 510)));
    }

    #[test]
    fn lost_start_and_only_end() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        assert_eq!(r.handle(t0, 1, 1000, false, ev(11, false, 800)), Some('#'));
        assert_eq!(
            r.handle(ms(t0, 300), 1, 9000, false, ev(10, true, 800)),
            Some('*')
        );
        assert_eq!(
            r.handle(ms(t0, 301), 1, 9000, false, ev(10, true, 800)),
            None
        );
    }

    #[test]
    fn lost_end_closed_by_new_event_or_timeout() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        assert_eq!(r.handle(t0, 1, 1000, false, ev(1, false, 0)), Some('1'));
        // No end; a new event (same key) starts: reported.
        assert_eq!(
            r.handle(ms(t0, 400), 1, 4200, false, ev(1, false, 0)),
            Some('1')
        );
        assert!(r.key_down(ms(t0, 500)));
        assert!(!r.key_down(ms(t0, 400) + END_TIMEOUT));
        // The old event's late packets do not re-trigger.
        assert_eq!(
            r.handle(ms(t0, 450), 1, 1000, false, ev(1, true, 800)),
            None
        );
    }

    #[test]
    fn long_press_across_duration_wrap_is_one_digit() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        let ts = 0xFFFF_F000u32; // also wraps the timestamp
        assert_eq!(r.handle(t0, 7, ts, false, ev(9, false, 0)), Some('9'));
        assert_eq!(
            r.handle(ms(t0, 8000), 7, ts, false, ev(9, false, 0xFFFF)),
            None
        );
        let ts2 = ts.wrapping_add(0xFFFF);
        assert_eq!(
            r.handle(ms(t0, 8050), 7, ts2, false, ev(9, false, 400)),
            None
        );
        assert_eq!(
            r.handle(ms(t0, 8100), 7, ts2, false, ev(9, true, 800)),
            None
        );
        // A late packet of the first segment is ignored too.
        assert_eq!(
            r.handle(ms(t0, 8101), 7, ts, false, ev(9, false, 0xFFFF)),
            None
        );
    }

    #[test]
    fn reordering_and_ssrc_change() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        assert_eq!(r.handle(t0, 1, 1000, false, ev(2, false, 0)), Some('2'));
        assert_eq!(
            r.handle(ms(t0, 200), 1, 3000, false, ev(3, false, 0)),
            Some('3')
        );
        // late packets of '2' (reordered after '3' started)
        assert_eq!(
            r.handle(ms(t0, 210), 1, 1000, false, ev(2, true, 800)),
            None
        );
        // an even older event never seen (key evicted): older timestamp → ignored
        assert_eq!(r.handle(ms(t0, 220), 1, 500, false, ev(4, true, 800)), None);
        // new SSRC (e.g. after a transfer): its first event is reported even
        // with a smaller timestamp
        assert_eq!(
            r.handle(ms(t0, 300), 2, 10, false, ev(4, false, 0)),
            Some('4')
        );
        // and the old SSRC's late end packets do not re-trigger
        assert_eq!(
            r.handle(ms(t0, 310), 1, 3000, false, ev(3, true, 800)),
            None
        );
    }

    #[test]
    fn replayed_capture_counts_again_but_duplicates_do_not() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        // SIPp replays dtmf_2833_1.pcap twice: same SSRC, timestamp, seq.
        for round in 0..2u64 {
            let base = round * 300;
            let first = r.handle(ms(t0, base), 1, 13280, true, ev(1, false, 0));
            assert_eq!(first, Some('1'), "round {round}");
            // a duplicated start packet while the key is down: no digit
            assert_eq!(
                r.handle(ms(t0, base + 5), 1, 13280, true, ev(1, false, 0)),
                None
            );
            for k in 1..7u16 {
                let at = ms(t0, base + 20 * k as u64);
                assert_eq!(r.handle(at, 1, 13280, false, ev(1, false, k * 320)), None);
            }
            for k in 0..3 {
                let at = ms(t0, base + 140 + k);
                assert_eq!(r.handle(at, 1, 13280, false, ev(1, true, 2240)), None);
            }
        }
        // an older capture ("2" was 23200, now "1" at 13280) after "2" ended
        assert_eq!(
            r.handle(ms(t0, 700), 1, 23200, true, ev(2, false, 0)),
            Some('2')
        );
        assert_eq!(
            r.handle(ms(t0, 800), 1, 23200, false, ev(2, true, 800)),
            None
        );
        assert_eq!(
            r.handle(ms(t0, 900), 1, 13280, true, ev(1, false, 0)),
            Some('1')
        );
        // but a late end packet of an old event never counts
        assert_eq!(
            r.handle(ms(t0, 950), 1, 23200, false, ev(2, true, 800)),
            None
        );
    }

    #[test]
    fn late_start_packet_after_its_end_counts_once() {
        for late in [100u64, 300, 1000] {
            let t0 = Instant::now();
            let mut r = Rfc4733Receiver::new();
            // updates and ends of '1' arrive first, its start `late` ms late
            assert_eq!(
                r.handle(ms(t0, 50), 1, 8000, false, ev(1, false, 400)),
                Some('1')
            );
            for k in 0..3 {
                assert_eq!(
                    r.handle(ms(t0, 140 + k), 1, 8000, false, ev(1, true, 1120)),
                    None
                );
            }
            assert_eq!(
                r.handle(ms(t0, late), 1, 8000, true, ev(1, false, 0)),
                None,
                "start {late} ms late"
            );
            // the same after the next key started (the event is in the ring)
            assert_eq!(
                r.handle(ms(t0, 1200), 1, 16000, false, ev(2, true, 800)),
                Some('2')
            );
            assert_eq!(
                r.handle(ms(t0, 1200 + late), 1, 16000, true, ev(2, false, 0)),
                None,
                "start {late} ms late, ring"
            );
        }
    }

    #[test]
    fn debug_output_holds_no_keys() {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        let mut m = DigitMerger::new();
        let d = r.handle(t0, 1, 1, true, ev(7, false, 0)).unwrap();
        m.accept(t0, Source::Media, d);
        assert_eq!(format!("{r:?}"), "Rfc4733Receiver { .. }");
        assert_eq!(format!("{m:?}"), "DigitMerger { .. }");
    }

    #[test]
    fn merge_drops_same_press_from_other_source() {
        let t0 = Instant::now();
        let mut m = DigitMerger::new();
        assert_eq!(m.accept(t0, Source::Media, '1'), Some('1'));
        assert_eq!(m.accept(ms(t0, 100), Source::Info, '1'), None);
        // second press of the same key: both sources again, one digit
        assert_eq!(m.accept(ms(t0, 300), Source::Info, '1'), Some('1'));
        assert_eq!(m.accept(ms(t0, 350), Source::Media, '1'), None);
        // different digit within the window is not a duplicate
        assert_eq!(m.accept(ms(t0, 400), Source::Info, '2'), Some('2'));
        // same digit outside the window is a new press
        assert_eq!(m.accept(ms(t0, 1000), Source::Media, '2'), Some('2'));
        // INFO only: every digit passes
        let mut m = DigitMerger::new();
        assert_eq!(m.accept(t0, Source::Info, '5'), Some('5'));
        assert_eq!(m.accept(ms(t0, 10), Source::Info, '5'), Some('5'));
    }
}

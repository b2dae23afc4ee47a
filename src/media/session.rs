//! One call's RTP media, sans-IO: a paced G.711 sender fed by the prompt
//! [`Player`], and a receiver that turns RFC 4733 events, in-band tones and
//! SIP INFO digits into one digit stream.
//!
//! The driver (the async runtime layer) owns the socket and the timer:
//!
//! ```text
//! on datagram:  session.handle_rtp(now, src, bytes)
//! on timer:     while let Some((n, dst)) = session.poll_transmit(now, &mut buf) { send }
//! then:         while let Some(ev) = session.poll_event() { ... }
//!               arm timer at session.poll_timeout()
//! ```
//!
//! Re-read `poll_timeout()` after every `handle_*`, `play`, `stop_playback`
//! and `update` call: any of them can move the next deadline (a first packet
//! latches an address, a resume restarts sending).
//!
//! Rules implemented here:
//!
//! * **Pacing** (RFC 3550 §5.1, RFC 3551 §4.5): packet `n` is due at
//!   `start + n·20 ms` and carries timestamp `initial + n·160`; deadlines are
//!   computed from the start, never by adding to the previous send time, so
//!   there is no drift. A late driver gets only the current slot's packet:
//!   older slots are skipped, never sent as a burst of stale frames (the
//!   timestamp stays on the grid and jumps with the clock, the sequence
//!   number stays continuous, no prompt audio is lost — the prompt simply
//!   finishes later). `stats().skipped_slots` counts them.
//! * **Continuity**: silence frames are sent whenever nothing plays, so the
//!   sequence and timestamp run on across prompts and silences. The marker
//!   bit is set on the first packet, on the first packet of a prompt after
//!   silence (RFC 3551 §4.1), and after a send pause (hold).
//! * **Symmetric RTP** (RFC 4961): send to the SDP address until the first
//!   valid RTP packet (negotiated payload type) arrives, then to its source.
//!   A re-INVITE with a new address resets the latch. Once latched, packets
//!   from other sources are dropped (`stats().foreign`) so nobody can inject
//!   digits into the call, unless the latched source has been quiet for
//!   [`RELATCH_AFTER`] (the peer moved, e.g. a NAT rebinding): then the new
//!   source is latched.
//! * **Hold**: while our direction does not send (`recvonly`/`inactive`)
//!   nothing is sent and prompts are paused.
//! * **Inactivity**: `MediaEvent::Inactive` once, when no valid RTP arrived
//!   for `inactivity_timeout` while our direction is `sendrecv`. On hold
//!   (peer `sendonly`/`inactive`, or `c=0.0.0.0`) the peer may legitimately
//!   be silent, so the timer is suspended and restarts from the resume.
//!   The check runs in `poll_transmit`, so the driver must call it when
//!   `poll_timeout` fires.
//! * Packets that are not RTP, or whose payload type was not negotiated
//!   (SIPp's PT 96/97 fillers, comfort noise we did not offer) are ignored
//!   and do not count as activity.
//! * **DTMF**: see [`super::dtmf`] (RFC 4733 and INFO merge) and
//!   [`super::inband`] (runs only when no telephone-event was negotiated).
//!
//! No allocation per packet: frames are borrowed from shared clips and
//! written into the caller's buffer; decoding for in-band detection uses a
//! stack buffer; the event queue is pre-sized.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::clip::FRAME_SAMPLES;
use super::dtmf::{DigitMerger, Rfc4733Receiver, Source};
use super::g711::Codec;
use super::inband::InbandDetector;
pub use super::player::PlayItem;
use super::player::Player;
use super::rtp::{self, RtpOut};
use super::sdp::{Direction, Negotiated};

/// Packet interval.
pub const PTIME: Duration = Duration::from_millis(20);
/// Timestamp units per packet.
const SAMPLES_PER_PACKET: u32 = FRAME_SAMPLES as u32;
/// Default RTP inactivity timeout.
pub const DEFAULT_INACTIVITY: Duration = Duration::from_secs(30);
/// A packet from a source other than the latched one is accepted (and
/// re-latches) only after the latched source was quiet this long.
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);
/// Digits queued beyond this (a driver that never polls events, a peer
/// flooding key presses) are dropped, so the queue stays bounded.
pub const MAX_QUEUED_DIGITS: usize = 64;
/// Smallest buffer `poll_transmit` needs.
pub const MIN_BUFFER: usize = rtp::HEADER_LEN + FRAME_SAMPLES;

/// Everything a media session needs at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    pub remote: Option<SocketAddr>,
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_timestamp: u32,
    /// Default 30 s ([`DEFAULT_INACTIVITY`]).
    pub inactivity_timeout: Duration,
}

impl MediaConfig {
    /// A config from an offer/answer result; the random values (RFC 3550
    /// §5.1 wants SSRC, sequence and timestamp to start random) come from
    /// the caller so this module stays deterministic.
    pub fn from_negotiated(
        n: &Negotiated,
        ssrc: u32,
        initial_seq: u16,
        initial_timestamp: u32,
    ) -> Self {
        MediaConfig {
            codec: n.codec,
            telephone_event_pt: n.telephone_event_pt,
            remote: n.remote,
            ssrc,
            initial_seq,
            initial_timestamp,
            inactivity_timeout: DEFAULT_INACTIVITY,
        }
    }
}

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    Rfc4733,
    Info,
    Inband,
}

/// What the session reports to the call logic.
///
/// `Debug` for `Digit` hides the key: digits are PINs and ID numbers.
#[derive(Clone, PartialEq, Eq)]
pub enum MediaEvent {
    Digit { digit: char, source: DigitSource },
    PlaybackDone { token: u64, interrupted: bool },
    Inactive,
}

impl std::fmt::Debug for MediaEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaEvent::Digit { source, .. } => f
                .debug_struct("Digit")
                .field("digit", &"<redacted>")
                .field("source", source)
                .finish(),
            MediaEvent::PlaybackDone { token, interrupted } => f
                .debug_struct("PlaybackDone")
                .field("token", token)
                .field("interrupted", interrupted)
                .finish(),
            MediaEvent::Inactive => f.write_str("Inactive"),
        }
    }
}

/// Counters (no digits, no payload contents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub packets_sent: u64,
    /// Whole RTP packets (header + payload).
    pub bytes_sent: u64,
    /// Valid packets with a negotiated payload type.
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Gaps in the received sequence numbers.
    pub lost: u64,
    /// Received packets not newer than the highest sequence so far
    /// (reordered or duplicated; RFC 4733 end packets are often repeated
    /// with one sequence number).
    pub late: u64,
    /// Valid RTP with a payload type that was not negotiated.
    pub ignored: u64,
    /// Datagrams that are not valid RTP.
    pub malformed: u64,
    /// Valid RTP from a source other than the latched one (dropped).
    pub foreign: u64,
    /// Send slots skipped because the driver was late.
    pub skipped_slots: u64,
}

/// One call's media state. See the module docs.
#[derive(Debug)]
pub struct MediaSession {
    codec: Codec,
    telephone_event_pt: Option<u8>,
    sdp_remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    direction: Direction,
    ssrc: u32,
    seq: u16,
    initial_timestamp: u32,
    start: Instant,
    /// A talkspurt was queued while idle: send its first frame at once.
    talkspurt_now: bool,
    next_slot: u64,
    /// The previous `poll_transmit` could send (false while held).
    was_sending: bool,
    marker_pending: bool,
    inactivity_timeout: Duration,
    last_rx: Instant,
    /// The latest `now` seen, for events that come without one (`update`).
    last_now: Instant,
    inactive_reported: bool,
    rx_seq: Option<(u32, u16)>,
    player: Player,
    rfc4733: Rfc4733Receiver,
    merger: DigitMerger,
    inband: InbandDetector,
    events: VecDeque<MediaEvent>,
    stats: MediaStats,
}

impl MediaSession {
    pub fn new(cfg: MediaConfig, now: Instant) -> Self {
        MediaSession {
            codec: cfg.codec,
            telephone_event_pt: cfg.telephone_event_pt,
            sdp_remote: cfg.remote,
            latched: None,
            direction: Direction::SendRecv,
            ssrc: cfg.ssrc,
            seq: cfg.initial_seq,
            initial_timestamp: cfg.initial_timestamp,
            start: now,
            talkspurt_now: false,
            next_slot: 0,
            was_sending: true,
            marker_pending: true,
            inactivity_timeout: cfg.inactivity_timeout,
            last_rx: now,
            last_now: now,
            inactive_reported: false,
            rx_seq: None,
            player: Player::new(),
            rfc4733: Rfc4733Receiver::new(),
            merger: DigitMerger::new(),
            inband: InbandDetector::new(),
            events: VecDeque::with_capacity(16),
            stats: MediaStats::default(),
        }
    }

    /// A session straight from an offer/answer result, including its
    /// direction (`new` starts `sendrecv`; an initial offer on hold needs
    /// the direction too).
    pub fn from_negotiated(
        n: &Negotiated,
        ssrc: u32,
        initial_seq: u16,
        initial_timestamp: u32,
        now: Instant,
    ) -> Self {
        let mut s = MediaSession::new(
            MediaConfig::from_negotiated(n, ssrc, initial_seq, initial_timestamp),
            now,
        );
        s.update(n);
        s
    }

    /// Applies a new offer/answer result (re-INVITE): hold/resume, codec,
    /// telephone-event or address change.
    pub fn update(&mut self, n: &Negotiated) {
        self.codec = n.codec;
        if self.telephone_event_pt != n.telephone_event_pt {
            self.telephone_event_pt = n.telephone_event_pt;
            self.inband = InbandDetector::new();
        }
        if n.remote != self.sdp_remote {
            if n.remote.is_some() {
                // The peer moved its media: learn the new source again.
                self.latched = None;
            }
            self.sdp_remote = n.remote;
        }
        let was_monitored = self.monitors_inactivity();
        self.direction = n.direction;
        if !was_monitored && self.monitors_inactivity() {
            // Resumed from hold: the peer had no reason to send until now.
            self.last_rx = self.last_rx.max(self.last_now);
        }
    }

    /// Feeds one received datagram from `src`.
    pub fn handle_rtp(&mut self, now: Instant, src: SocketAddr, packet: &[u8]) {
        self.last_now = self.last_now.max(now);
        let Some(p) = rtp::parse(packet) else {
            self.stats.malformed += 1;
            return;
        };
        let is_audio = p.payload_type == self.codec.payload_type();
        let is_event = Some(p.payload_type) == self.telephone_event_pt;
        if !is_audio && !is_event {
            self.stats.ignored += 1;
            return;
        }
        match self.latched {
            Some(l) if l == src => {}
            // A peer that moved without a re-INVITE (NAT rebinding): follow
            // it once the latched source has been quiet for a while.
            Some(_) if now.saturating_duration_since(self.last_rx) < RELATCH_AFTER => {
                // Another source while the latched one is active: injected
                // or stray packets must not reach the digit stream.
                self.stats.foreign += 1;
                return;
            }
            _ => self.latched = Some(src),
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += packet.len() as u64;
        self.last_rx = self.last_rx.max(now);
        self.track_sequence(p.ssrc, p.sequence);

        if is_event {
            if let Some(ev) = rtp::parse_event(p.payload)
                && let Some(d) = self.rfc4733.handle(now, p.ssrc, p.timestamp, p.marker, ev)
                && let Some(d) = self.merger.accept(now, Source::Media, d)
            {
                push_digit(&mut self.events, d, DigitSource::Rfc4733);
            }
        } else if self.telephone_event_pt.is_none() {
            let mut pcm = [0i16; FRAME_SAMPLES];
            for chunk in p.payload.chunks(FRAME_SAMPLES) {
                let out = &mut pcm[..chunk.len()];
                self.codec.decode_into(chunk, out);
                let merger = &mut self.merger;
                let events = &mut self.events;
                self.inband.feed(out, &mut |d| {
                    if let Some(d) = merger.accept(now, Source::Media, d) {
                        push_digit(events, d, DigitSource::Inband);
                    }
                });
            }
        }
    }

    /// A digit from a SIP INFO (`application/dtmf-relay` or `dtmf`); dropped
    /// when it duplicates a media digit of the same key press. Characters
    /// that are not DTMF keys are ignored.
    pub fn handle_info_digit(&mut self, now: Instant, digit: char) {
        self.last_now = self.last_now.max(now);
        let Some(d) = rtp::char_event(digit).and_then(rtp::event_char) else {
            return;
        };
        if let Some(d) = self.merger.accept(now, Source::Info, d) {
            push_digit(&mut self.events, d, DigitSource::Info);
        }
    }

    /// Queues items; `PlaybackDone { token, interrupted: false }` follows
    /// when the last of them has been sent (at once for an empty list).
    pub fn play(&mut self, items: &[PlayItem], token: u64) {
        // A prompt that starts a talkspurt goes out at once instead of at the
        // next 20 ms slot: the caller hears the answer up to 20 ms sooner.
        // The marker bit tells the receiver the timing restarts there.
        let was_idle = !self.player.is_playing();
        if was_idle && !items.is_empty() {
            self.talkspurt_now = true;
        }
        if !self.player.play(items, token) {
            self.events.push_back(MediaEvent::PlaybackDone {
                token,
                interrupted: false,
            });
        }
    }

    /// Barge-in: clears the queue; `PlaybackDone { interrupted: true }` for
    /// each command cut short.
    pub fn stop_playback(&mut self) {
        let events = &mut self.events;
        self.player.stop(|token| {
            events.push_back(MediaEvent::PlaybackDone {
                token,
                interrupted: true,
            })
        });
    }

    pub fn is_playing(&self) -> bool {
        self.player.is_playing()
    }

    /// Writes the next due packet into `buf` (at least [`MIN_BUFFER`]
    /// bytes) and returns its length and destination; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        self.last_now = self.last_now.max(now);
        self.check_inactivity(now);
        let Some(dest) = self.destination().filter(|_| self.direction.sends()) else {
            self.was_sending = false;
            return None;
        };
        let mut due = self.slot_at(now)?;
        if std::mem::take(&mut self.talkspurt_now)
            && self.was_sending
            && self.next_slot > due
            && let Some(slot_start) = self.slot_time(self.next_slot)
        {
            // Move the grid so the next slot starts now.
            let early = slot_start.saturating_duration_since(now);
            self.start = self.start.checked_sub(early).unwrap_or(self.start);
            due = self.slot_at(now)?.max(self.next_slot);
        }
        if !self.was_sending {
            // Resuming after a pause: restart on the current slot.
            self.was_sending = true;
            self.marker_pending = true;
            self.next_slot = self.next_slot.max(due);
        }
        if self.next_slot > due {
            return None;
        }
        // Late: catch up with the current slot only (its timestamp is on
        // the grid); the older slots are stale and skipped.
        self.stats.skipped_slots += due - self.next_slot;
        self.next_slot = due;
        let slot = self.next_slot;
        self.next_slot += 1;
        let timestamp = self
            .initial_timestamp
            .wrapping_add((slot as u32).wrapping_mul(SAMPLES_PER_PACKET));
        let produced = self.player.next_frame(self.codec);
        let header = RtpOut {
            payload_type: self.codec.payload_type(),
            marker: self.marker_pending || produced.talkspurt_start,
            sequence: self.seq,
            timestamp,
            ssrc: self.ssrc,
        };
        let written = rtp::write(header, produced.frame, buf);
        if let Some(token) = produced.finished {
            self.events.push_back(MediaEvent::PlaybackDone {
                token,
                interrupted: false,
            });
        }
        // A too-small buffer is a driver bug; the slot is spent either way
        // so a misconfigured driver cannot spin on a past deadline.
        let n = written?;
        self.marker_pending = false;
        self.seq = self.seq.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += n as u64;
        Some((n, dest))
    }

    /// When to call `poll_transmit` next: the next send slot, or the
    /// inactivity deadline, whichever is first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let send = (self.direction.sends() && self.destination().is_some())
            .then(|| {
                let slot = self.slot_time(self.next_slot);
                if self.talkspurt_now {
                    slot.map(|t| t.min(self.last_now))
                } else {
                    slot
                }
            })
            .flatten();
        let inactive = (self.monitors_inactivity() && !self.inactive_reported)
            .then(|| self.last_rx.checked_add(self.inactivity_timeout))
            .flatten();
        match (send, inactive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// The source the session latched to (the first that sent valid RTP),
    /// if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// The address the peer's SDP names.
    pub fn sdp_remote(&self) -> Option<SocketAddr> {
        self.sdp_remote
    }

    /// Where packets go now (latched source, else the SDP address).
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp_remote)
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    fn monitors_inactivity(&self) -> bool {
        self.direction == Direction::SendRecv
    }

    fn check_inactivity(&mut self, now: Instant) {
        if self.inactive_reported || !self.monitors_inactivity() {
            return;
        }
        if now.saturating_duration_since(self.last_rx) >= self.inactivity_timeout {
            self.inactive_reported = true;
            self.events.push_back(MediaEvent::Inactive);
        }
    }

    /// Index of the slot whose deadline is the latest one `<= now`.
    fn slot_at(&self, now: Instant) -> Option<u64> {
        let elapsed = now.checked_duration_since(self.start)?;
        u64::try_from(elapsed.as_nanos() / PTIME.as_nanos()).ok()
    }

    fn slot_time(&self, slot: u64) -> Option<Instant> {
        let nanos = u128::from(slot).checked_mul(PTIME.as_nanos())?;
        let d = Duration::from_nanos(u64::try_from(nanos).ok()?);
        self.start.checked_add(d)
    }

    fn track_sequence(&mut self, ssrc: u32, seq: u16) {
        match &mut self.rx_seq {
            Some((s, max)) if *s == ssrc => {
                let delta = seq.wrapping_sub(*max) as i16;
                if delta > 0 {
                    self.stats.lost += u64::from(delta.unsigned_abs() - 1);
                    *max = seq;
                } else {
                    self.stats.late += 1;
                }
            }
            _ => self.rx_seq = Some((ssrc, seq)),
        }
    }
}

fn push_digit(events: &mut VecDeque<MediaEvent>, digit: char, source: DigitSource) {
    let queued = events
        .iter()
        .filter(|e| matches!(e, MediaEvent::Digit { .. }))
        .count();
    if queued < MAX_QUEUED_DIGITS {
        // Counts by source only, never the digit (the console's DTMF chart).
        // Literal labels make static metric keys: no allocation per digit.
        match source {
            DigitSource::Rfc4733 => {
                metrics::counter!("ivr_dtmf_digits_total", "source" => "rfc4733").increment(1)
            }
            DigitSource::Info => {
                metrics::counter!("ivr_dtmf_digits_total", "source" => "info").increment(1)
            }
            DigitSource::Inband => {
                metrics::counter!("ivr_dtmf_digits_total", "source" => "inband").increment(1)
            }
        }
        events.push_back(MediaEvent::Digit { digit, source });
    }
}

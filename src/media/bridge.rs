//! The B2BUA media relay between a caller and an agent: sans-IO (no socket,
//! no clock of its own), one instance per bridged call.
//!
//! The IVR terminates both calls, so each outgoing leg is a stream the IVR
//! itself sources (RFC 3550 §8/§7.2 for translators that change the stream):
//! - **SSRC, sequence number and timestamp are rewritten per outgoing leg**
//!   (RFC 3550 §5.1). The first packet fixes an offset between the incoming
//!   and our outgoing numbering; gaps (losses) are kept so the receiver's
//!   loss and jitter estimates stay true. When the incoming SSRC changes
//!   (the far phone restarted its stream) the offsets are re-based so our
//!   outgoing stream continues without a jump.
//! - **PCMU↔PCMA transcoding** (ITU-T G.711 §A/§μ) when the legs negotiated
//!   different codecs: one byte in, one byte out, through a 256-entry table
//!   built once per bridge (decode then encode), so there is no allocation
//!   and no arithmetic per sample.
//! - **RFC 4733 telephone-events**: the agent's keys are never replayed to
//!   the caller (the caller would hear or act on them); the caller's keys go
//!   to the agent only when the agent leg negotiated telephone-event, with
//!   the agent leg's payload type. Anything else (comfort noise, payload
//!   types nobody negotiated) is dropped.
//! - **Latching**: packets are accepted from the SDP address or, once, from
//!   the first source that sends (symmetric RTP behind NAT), like the media
//!   session does.
//!
//! Each `relay_*` call writes at most one packet into a caller-provided
//! buffer: no allocation per packet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::media::g711::Codec;
use crate::media::rtp::{self, RtpOut};
use crate::media::sdp::Negotiated;

/// What one side of the bridge negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// Where to send (SDP address); latching may replace it.
    pub remote: Option<SocketAddr>,
}

impl From<&Negotiated> for LegMedia {
    fn from(n: &Negotiated) -> LegMedia {
        LegMedia {
            codec: n.codec,
            telephone_event_pt: n.telephone_event_pt,
            remote: n.remote,
        }
    }
}

/// Counters of one direction (for logs and tests; no payload data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub forwarded: u64,
    pub transcoded: u64,
    pub events_forwarded: u64,
    pub events_dropped: u64,
    pub dropped: u64,
}

/// The outgoing numbering of one direction.
#[derive(Debug, Clone)]
struct Direction {
    out_ssrc: u32,
    /// The incoming SSRC the offsets were computed for.
    in_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// Last values sent, to re-base on an SSRC change.
    last_seq: u16,
    last_ts: u32,
    base_seq: u16,
    base_ts: u32,
    started: bool,
    stats: RelayStats,
}

impl Direction {
    fn new(ssrc: u32, seq: u16, ts: u32) -> Direction {
        Direction {
            out_ssrc: ssrc,
            in_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: 0,
            last_ts: 0,
            base_seq: seq,
            base_ts: ts,
            started: false,
            stats: RelayStats::default(),
        }
    }

    /// Maps an incoming (ssrc, seq, ts) to our outgoing (seq, ts).
    fn map(&mut self, ssrc: u32, seq: u16, ts: u32) -> (u16, u32, bool) {
        let mut marker = false;
        if self.in_ssrc != Some(ssrc) {
            // First packet, or the sender restarted: continue our stream
            // right after what we last sent (one frame later).
            let (next_seq, next_ts) = if self.started {
                (
                    self.last_seq.wrapping_add(1),
                    self.last_ts.wrapping_add(160),
                )
            } else {
                (self.base_seq, self.base_ts)
            };
            self.seq_offset = next_seq.wrapping_sub(seq);
            self.ts_offset = next_ts.wrapping_sub(ts);
            self.in_ssrc = Some(ssrc);
            marker = true;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        // Only move "last" forward (a reordered older packet must not pull
        // the re-base point back).
        if !self.started || (out_seq.wrapping_sub(self.last_seq) as i16) > 0 {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        self.started = true;
        (out_seq, out_ts, marker)
    }
}

/// A 256-entry G.711 transcoding table (`to[from_code]`).
fn table(from: Codec, to: Codec) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (code, slot) in t.iter_mut().enumerate() {
        *slot = to.encode(from.decode(code as u8));
    }
    t
}

/// Which leg a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Caller,
    Agent,
}

/// Remote address handling of one leg.
#[derive(Debug, Clone, Copy)]
struct Peer {
    media: LegMedia,
    latched: Option<SocketAddr>,
    last_rx: Instant,
}

impl Peer {
    fn accept(&mut self, now: Instant, src: SocketAddr) -> bool {
        match self.latched {
            Some(l) if l == src => {}
            // Symmetric RTP: the first source wins; after 2 s of silence from
            // it another source may take over (NAT rebinding).
            Some(_) if now.saturating_duration_since(self.last_rx) < Duration::from_secs(2) => {
                return false;
            }
            _ => self.latched = Some(src),
        }
        self.last_rx = self.last_rx.max(now);
        true
    }

    fn dest(&self) -> Option<SocketAddr> {
        self.latched.or(self.media.remote)
    }
}

/// The relay of one bridged call. See the module docs.
pub struct Bridge {
    caller: Peer,
    agent: Peer,
    /// caller → agent numbering (what the agent receives).
    to_agent: Direction,
    /// agent → caller numbering (what the caller receives).
    to_caller: Direction,
    caller_to_agent: Option<[u8; 256]>,
    agent_to_caller: Option<[u8; 256]>,
    inactivity: Duration,
}

/// Largest payload relayed (G.711 at up to 60 ms ptime is 480 bytes; a
/// little more is allowed, bigger packets are dropped).
const MAX_PAYLOAD: usize = 1024;

impl Bridge {
    /// `seeds`: SSRC, first sequence number and first timestamp for each
    /// outgoing leg (random in production). `inactivity`: when neither side
    /// has sent anything for this long, [`Bridge::poll_timeout`] fires and
    /// [`Bridge::is_inactive`] says so.
    pub fn new(
        caller: LegMedia,
        agent: LegMedia,
        seeds: [u32; 6],
        now: Instant,
        inactivity: Duration,
    ) -> Bridge {
        let transcode = caller.codec != agent.codec;
        Bridge {
            caller: Peer {
                media: caller,
                latched: None,
                last_rx: now,
            },
            agent: Peer {
                media: agent,
                latched: None,
                last_rx: now,
            },
            to_agent: Direction::new(seeds[0], seeds[1] as u16, seeds[2]),
            to_caller: Direction::new(seeds[3], seeds[4] as u16, seeds[5]),
            caller_to_agent: transcode.then(|| table(caller.codec, agent.codec)),
            agent_to_caller: transcode.then(|| table(agent.codec, caller.codec)),
            inactivity,
        }
    }

    /// Keeps an already latched caller address (the media session knew it).
    pub fn set_caller_latched(&mut self, addr: Option<SocketAddr>) {
        if addr.is_some() {
            self.caller.latched = addr;
        }
    }

    /// The caller re-negotiated (re-INVITE: new address, hold, codec):
    /// follow it. The latched address is forgotten so the new one is used.
    pub fn update_caller(&mut self, media: LegMedia) {
        self.caller.media = media;
        self.caller.latched = None;
        let transcode = media.codec != self.agent.media.codec;
        self.caller_to_agent = transcode.then(|| table(media.codec, self.agent.media.codec));
        self.agent_to_caller = transcode.then(|| table(self.agent.media.codec, media.codec));
    }

    /// Relays one datagram received on `side`'s socket. Writes the packet
    /// for the other leg into `buf` and returns its length and destination,
    /// or `None` when it is dropped (malformed, foreign source, an agent
    /// key, a payload type nobody negotiated, no destination yet).
    pub fn relay(
        &mut self,
        now: Instant,
        side: Side,
        src: SocketAddr,
        packet: &[u8],
        buf: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        let (from, to, dir, table) = match side {
            Side::Caller => (
                &mut self.caller,
                &self.agent,
                &mut self.to_agent,
                self.caller_to_agent.as_ref(),
            ),
            Side::Agent => (
                &mut self.agent,
                &self.caller,
                &mut self.to_caller,
                self.agent_to_caller.as_ref(),
            ),
        };
        let Some(p) = rtp::parse(packet) else {
            dir.stats.dropped += 1;
            return None;
        };
        if !from.accept(now, src) {
            dir.stats.dropped += 1;
            return None;
        }
        let dest = to.dest()?;
        let is_audio = p.payload_type == from.media.codec.payload_type();
        let is_event = from.media.telephone_event_pt == Some(p.payload_type);
        if is_event {
            // The agent's keys never reach the caller; the caller's reach the
            // agent only where the agent leg negotiated telephone-event.
            let out_pt = match (side, to.media.telephone_event_pt) {
                (Side::Caller, Some(pt)) => pt,
                _ => {
                    dir.stats.events_dropped += 1;
                    return None;
                }
            };
            let (seq, ts, restart) = dir.map(p.ssrc, p.sequence, p.timestamp);
            let h = RtpOut {
                payload_type: out_pt,
                marker: p.marker || restart,
                sequence: seq,
                timestamp: ts,
                ssrc: dir.out_ssrc,
            };
            let n = rtp::write(h, p.payload, buf)?;
            dir.stats.events_forwarded += 1;
            return Some((n, dest));
        }
        if !is_audio || p.payload.len() > MAX_PAYLOAD {
            dir.stats.dropped += 1;
            return None;
        }
        let (seq, ts, restart) = dir.map(p.ssrc, p.sequence, p.timestamp);
        let h = RtpOut {
            payload_type: to.media.codec.payload_type(),
            marker: p.marker || restart,
            sequence: seq,
            timestamp: ts,
            ssrc: dir.out_ssrc,
        };
        let n = match table {
            None => rtp::write(h, p.payload, buf)?,
            Some(t) => {
                // Write the header with the payload as is, then map the
                // payload bytes in place: no temporary buffer.
                let n = rtp::write(h, p.payload, buf)?;
                let start = n.checked_sub(p.payload.len())?;
                for b in buf.get_mut(start..n)? {
                    *b = t[usize::from(*b)];
                }
                dir.stats.transcoded += 1;
                n
            }
        };
        dir.stats.forwarded += 1;
        Some((n, dest))
    }

    /// When neither leg has sent media for the inactivity period.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.inactivity.is_zero() {
            return None;
        }
        self.caller
            .last_rx
            .max(self.agent.last_rx)
            .checked_add(self.inactivity)
    }

    /// Whether both legs have been silent for the inactivity period at `now`.
    pub fn is_inactive(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|t| now >= t)
    }

    /// Counters of what went to the agent and to the caller.
    pub fn stats(&self) -> (RelayStats, RelayStats) {
        (self.to_agent.stats, self.to_caller.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{TelephoneEvent, encode_event};

    const CALLER: &str = "127.0.0.1:4000";
    const AGENT: &str = "127.0.0.1:5000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn bridge(caller: Codec, agent: Codec, agent_te: Option<u8>) -> (Bridge, Instant) {
        let now = Instant::now();
        let b = Bridge::new(
            LegMedia {
                codec: caller,
                telephone_event_pt: Some(101),
                remote: Some(addr(CALLER)),
            },
            LegMedia {
                codec: agent,
                telephone_event_pt: agent_te,
                remote: Some(addr(AGENT)),
            },
            [0xAAAA, 1000, 50_000, 0xBBBB, 2000, 90_000],
            now,
            Duration::from_secs(30),
        );
        (b, now)
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let n = rtp::write(
            RtpOut {
                payload_type: pt,
                marker: false,
                sequence: seq,
                timestamp: ts,
                ssrc,
            },
            payload,
            &mut buf,
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn pcmu_is_transcoded_to_pcma_byte_for_byte() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcma, None);
        let payload: Vec<u8> = (0..=255u8).collect();
        let pkt = packet(0, 7, 1234, 42, &payload);
        let mut out = [0u8; 1500];
        let (n, dest) = b
            .relay(now, Side::Caller, addr(CALLER), &pkt, &mut out)
            .unwrap();
        assert_eq!(dest, addr(AGENT));
        let p = rtp::parse(&out[..n]).unwrap();
        assert_eq!(p.payload_type, 8);
        for (i, &code) in p.payload.iter().enumerate() {
            let want = crate::media::g711::alaw_encode(crate::media::g711::ulaw_decode(i as u8));
            assert_eq!(code, want, "code {i}");
        }
        // And back: the caller hears PCMU.
        let back = packet(8, 1, 1, 9, &[0xD5, 0x55, 0x2A]);
        let (n, dest) = b
            .relay(now, Side::Agent, addr(AGENT), &back, &mut out)
            .unwrap();
        assert_eq!(dest, addr(CALLER));
        let p = rtp::parse(&out[..n]).unwrap();
        assert_eq!(p.payload_type, 0);
        let want: Vec<u8> = [0xD5u8, 0x55, 0x2A]
            .iter()
            .map(|&c| crate::media::g711::ulaw_encode(crate::media::g711::alaw_decode(c)))
            .collect();
        assert_eq!(p.payload, &want[..]);
        assert_eq!(b.stats().0.transcoded, 1);
    }

    #[test]
    fn same_codec_is_copied_and_headers_rewritten() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcmu, Some(96));
        let mut out = [0u8; 1500];
        let payload = [0x11u8; 160];
        let mut seqs = Vec::new();
        // 65535 → 0 wrap, and a lost packet (seq 3 missing) must stay a gap.
        for (seq, ts) in [
            (65534u16, 10u32),
            (65535, 170),
            (0, 330),
            (1, 490),
            (3, 810),
        ] {
            let pkt = packet(0, seq, ts, 77, &payload);
            let (n, _) = b
                .relay(now, Side::Caller, addr(CALLER), &pkt, &mut out)
                .unwrap();
            let p = rtp::parse(&out[..n]).unwrap();
            assert_eq!(p.ssrc, 0xAAAA);
            assert_eq!(p.payload, &payload[..]);
            seqs.push((p.sequence, p.timestamp));
        }
        assert_eq!(
            seqs,
            vec![
                (1000, 50_000),
                (1001, 50_160),
                (1002, 50_320),
                (1003, 50_480),
                (1005, 50_800)
            ]
        );
        // The sender restarts with a new SSRC: our stream continues.
        let pkt = packet(0, 9000, 777_777, 78, &payload);
        let (n, _) = b
            .relay(now, Side::Caller, addr(CALLER), &pkt, &mut out)
            .unwrap();
        let p = rtp::parse(&out[..n]).unwrap();
        assert_eq!((p.ssrc, p.sequence, p.timestamp), (0xAAAA, 1006, 50_960));
        assert!(p.marker);
    }

    #[test]
    fn agent_keys_never_reach_the_caller() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcmu, Some(101));
        let ev = encode_event(TelephoneEvent {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        });
        let mut out = [0u8; 1500];
        let pkt = packet(101, 1, 1, 5, &ev);
        assert!(
            b.relay(now, Side::Agent, addr(AGENT), &pkt, &mut out)
                .is_none()
        );
        assert_eq!(b.stats().1.events_dropped, 1);
        // The caller's keys go to the agent, who negotiated telephone-event.
        let (n, _) = b
            .relay(now, Side::Caller, addr(CALLER), &pkt, &mut out)
            .unwrap();
        assert_eq!(rtp::parse(&out[..n]).unwrap().payload_type, 101);
    }

    #[test]
    fn caller_keys_stay_out_of_a_leg_without_telephone_event() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcma, None);
        let ev = encode_event(TelephoneEvent {
            event: 1,
            end: true,
            volume: 10,
            duration: 800,
        });
        let mut out = [0u8; 1500];
        let pkt = packet(101, 1, 1, 5, &ev);
        assert!(
            b.relay(now, Side::Caller, addr(CALLER), &pkt, &mut out)
                .is_none()
        );
        // Unknown payload types (comfort noise, PT 96 filler) are dropped.
        let cn = packet(13, 2, 2, 5, &[0x40]);
        assert!(
            b.relay(now, Side::Caller, addr(CALLER), &cn, &mut out)
                .is_none()
        );
        assert_eq!(b.stats().0.events_dropped, 1);
        assert_eq!(b.stats().0.dropped, 1);
    }

    #[test]
    fn hostile_packets_are_dropped_without_panic() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcma, None);
        let mut out = [0u8; 64];
        for junk in [
            &b""[..],
            &[0x80][..],
            &[0xFF; 12][..],
            &[0x8F, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0][..],
        ] {
            assert!(
                b.relay(now, Side::Caller, addr(CALLER), junk, &mut out)
                    .is_none()
            );
        }
        // Too big for the output buffer: dropped, not a panic.
        let big = packet(0, 1, 1, 1, &[0u8; 300]);
        assert!(
            b.relay(now, Side::Caller, addr(CALLER), &big, &mut out)
                .is_none()
        );
        // A second source while the first is active is ignored.
        let ok = packet(0, 2, 2, 1, &[0u8; 20]);
        assert!(
            b.relay(now, Side::Caller, addr(CALLER), &ok, &mut out)
                .is_some()
        );
        assert!(
            b.relay(now, Side::Caller, addr("127.0.0.1:4444"), &ok, &mut out)
                .is_none()
        );
    }

    #[test]
    fn caller_renegotiation_switches_codec_and_address() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcmu, None);
        let moved: SocketAddr = "127.0.0.1:4100".parse().unwrap();
        b.update_caller(LegMedia {
            codec: Codec::Pcma,
            telephone_event_pt: None,
            remote: Some(moved),
        });
        let mut out = [0u8; 1500];
        let pkt = packet(0, 1, 1, 9, &[0xFF; 10]);
        let (n, dest) = b
            .relay(now, Side::Agent, addr(AGENT), &pkt, &mut out)
            .unwrap();
        assert_eq!(dest, moved);
        let p = rtp::parse(&out[..n]).unwrap();
        assert_eq!(p.payload_type, 8);
        assert!(p.payload.iter().all(|&c| c == 0xD5));
    }

    #[test]
    fn inactivity_deadline_follows_the_last_packet() {
        let (mut b, now) = bridge(Codec::Pcmu, Codec::Pcmu, None);
        assert_eq!(b.poll_timeout(), Some(now + Duration::from_secs(30)));
        let later = now + Duration::from_secs(10);
        let mut out = [0u8; 1500];
        let pkt = packet(0, 1, 1, 1, &[0u8; 160]);
        b.relay(later, Side::Agent, addr(AGENT), &pkt, &mut out);
        assert_eq!(b.poll_timeout(), Some(later + Duration::from_secs(30)));
        assert!(!b.is_inactive(later + Duration::from_secs(29)));
        assert!(b.is_inactive(later + Duration::from_secs(30)));
    }
}

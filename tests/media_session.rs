//! `MediaSession` stepped on virtual time: pacing, continuity, markers,
//! bursts, latching, inactivity, hold, payload filtering, barge-in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::media::clip::{Clip, SharedClip};
use ivr12333::media::g711::Codec;
use ivr12333::media::rtp::{self, RtpOut};
use ivr12333::media::sdp::{Direction, Negotiated};
use ivr12333::media::session::{MediaConfig, MediaEvent, MediaSession, PlayItem};

const SDP_PEER: &str = "127.0.0.1:6000";
const INITIAL_SEQ: u16 = 65_500; // wraps during the longer tests
const INITIAL_TS: u32 = u32::MAX - 8_000; // wraps after 50 packets
const SSRC: u32 = 0x1234_5678;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(codec: Codec, remote: Option<SocketAddr>) -> MediaConfig {
    MediaConfig {
        codec,
        telephone_event_pt: Some(101),
        remote,
        ssrc: SSRC,
        initial_seq: INITIAL_SEQ,
        initial_timestamp: INITIAL_TS,
        inactivity_timeout: Duration::from_secs(5),
    }
}

fn new_session(t0: Instant) -> MediaSession {
    MediaSession::new(config(Codec::Pcmu, Some(addr(SDP_PEER))), t0)
}

fn ms(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

#[derive(Debug, Clone)]
struct Sent {
    marker: bool,
    seq: u16,
    ts: u32,
    pt: u8,
    ssrc: u32,
    payload: Vec<u8>,
    to: SocketAddr,
}

/// Everything due at `now` (bounded: at most 1000 packets).
fn drain(s: &mut MediaSession, now: Instant) -> Vec<Sent> {
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    for _ in 0..1000 {
        let Some((n, to)) = s.poll_transmit(now, &mut buf) else {
            break;
        };
        let p = rtp::parse(&buf[..n]).unwrap();
        out.push(Sent {
            marker: p.marker,
            seq: p.sequence,
            ts: p.timestamp,
            pt: p.payload_type,
            ssrc: p.ssrc,
            payload: p.payload.to_vec(),
            to,
        });
    }
    out
}

/// Drives the session by its own `poll_timeout` until `end`.
fn run_until(s: &mut MediaSession, end: Instant) -> Vec<Sent> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let Some(t) = s.poll_timeout() else { break };
        if t > end {
            break;
        }
        out.extend(drain(s, t));
    }
    out
}

fn events(s: &mut MediaSession) -> Vec<MediaEvent> {
    std::iter::from_fn(|| s.poll_event()).take(1000).collect()
}

/// A clip whose frames are recognisable: frame k is a constant level.
fn clip(frames: usize, level: i16) -> SharedClip {
    let mut pcm = Vec::new();
    for k in 0..frames {
        pcm.extend(std::iter::repeat_n(level + k as i16 * 100, 160));
    }
    Arc::new(Clip::from_pcm(&pcm))
}

fn assert_continuous(p: &[Sent]) {
    for w in p.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence gap");
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160), "timestamp step");
    }
}

fn rx_packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 400];
    let h = RtpOut {
        payload_type: pt,
        marker: false,
        sequence: seq,
        timestamp: ts,
        ssrc: 99,
    };
    let n = rtp::write(h, payload, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn exact_packets_over_ten_seconds() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let mut all = Vec::new();
    for k in 0..500u64 {
        let sent = drain(&mut s, ms(t0, k * 20));
        assert_eq!(sent.len(), 1, "slot {k}");
        assert_eq!(s.poll_timeout(), Some(ms(t0, (k + 1) * 20)));
        all.extend(sent);
        // keep the peer "active"
        s.handle_rtp(
            ms(t0, k * 20 + 1),
            addr(SDP_PEER),
            &rx_packet(0, k as u16, 0, &[0xFF; 160]),
        );
    }
    assert_eq!(all.len(), 500);
    assert_eq!(all[0].seq, INITIAL_SEQ);
    assert_eq!(all[0].ts, INITIAL_TS);
    assert_eq!(all[499].seq, INITIAL_SEQ.wrapping_add(499));
    assert_eq!(all[499].ts, INITIAL_TS.wrapping_add(499 * 160));
    assert_continuous(&all);
    assert!(
        all.iter()
            .all(|p| p.ssrc == SSRC && p.pt == 0 && p.payload == [0xFF; 160])
    );
    // only the first packet opens a talkspurt
    assert!(all[0].marker);
    assert!(all[1..].iter().all(|p| !p.marker));
    assert_eq!(s.stats().packets_sent, 500);
    assert_eq!(s.stats().bytes_sent, 500 * 172);
    assert_eq!(s.stats().packets_received, 500);
}

#[test]
fn jittery_driver_does_not_drift() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let mut all = Vec::new();
    // poll every 7 ms for 60 s (8571 polls): one packet per 20 ms slot.
    for k in 0..=8571u64 {
        all.extend(drain(&mut s, ms(t0, k * 7)));
    }
    assert_eq!(all.len(), 60_000 / 20); // slots 0..=2999
    assert_continuous(&all);
    assert_eq!(all.last().unwrap().ts, INITIAL_TS.wrapping_add(2999 * 160));
}

#[test]
fn driving_by_poll_timeout_gives_fifty_per_second() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    s.update(&Negotiated {
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        remote: Some(addr(SDP_PEER)),
        direction: Direction::SendRecv,
        ptime_ms: 20,
    });
    let sent = run_until(&mut s, ms(t0, 3_000) - Duration::from_nanos(1));
    assert_eq!(sent.len(), 150);
    assert_continuous(&sent);
}

#[test]
fn late_driver_sends_only_the_current_slot() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let first = drain(&mut s, t0);
    assert_eq!(first.len(), 1);
    // The driver sleeps 1 s: slots 1..=50 are due; only slot 50 goes out.
    let late = drain(&mut s, ms(t0, 1000));
    assert_eq!(late.len(), 1);
    // sequence stays continuous, the timestamp stays on the grid
    assert_eq!(late[0].seq, first[0].seq.wrapping_add(1));
    assert_eq!(late[0].ts, INITIAL_TS.wrapping_add(50 * 160));
    assert_eq!(s.stats().skipped_slots, 49);
    // and then back on the grid: nothing until 1020 ms, one packet there
    assert_eq!(s.poll_timeout(), Some(ms(t0, 1020)));
    assert!(drain(&mut s, ms(t0, 1019)).is_empty());
    let next = drain(&mut s, ms(t0, 1020));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].ts, INITIAL_TS.wrapping_add(51 * 160));
    // a driver late by part of a slot sends that slot, skips nothing
    let on_time = drain(&mut s, ms(t0, 1055));
    assert_eq!(on_time.len(), 1);
    assert_eq!(on_time[0].ts, INITIAL_TS.wrapping_add(52 * 160));
    assert_eq!(s.stats().skipped_slots, 49);
    // late by two slots: only the current one (53 skipped, 54 sent)
    let two = drain(&mut s, ms(t0, 1080));
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].ts, INITIAL_TS.wrapping_add(54 * 160));
    assert_eq!(two[0].seq, on_time[0].seq.wrapping_add(1));
    assert_eq!(s.stats().skipped_slots, 50);
}

#[test]
fn falling_behind_repeatedly_never_bursts_nor_drifts() {
    // A driver that wakes at irregular, often late moments: every wake-up
    // sends at most one packet, every timestamp is on the 20 ms grid of the
    // slot that is current at that moment, and sequence numbers run on.
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let mut last: Option<Sent> = None;
    let mut t = 0u64;
    for step in [3u64, 20, 45, 7, 61, 19, 20, 100, 1, 39, 20, 20, 80] {
        t += step;
        let now = ms(t0, t);
        let out = drain(&mut s, now);
        assert!(out.len() <= 1, "burst of {} at {t} ms", out.len());
        if let Some(p) = out.first() {
            let slot = t / 20;
            assert_eq!(p.ts, INITIAL_TS.wrapping_add((slot * 160) as u32));
            if let Some(l) = &last {
                assert_eq!(p.seq, l.seq.wrapping_add(1));
            }
            last = Some(p.clone());
        }
        // the next deadline is the next slot after now, on the grid
        assert_eq!(s.poll_timeout(), Some(ms(t0, (t / 20 + 1) * 20)));
    }
}

#[test]
fn prompt_silence_prompt_is_continuous_with_markers() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let a = clip(3, 1000);
    let b = clip(2, 3000);
    let mut all = Vec::new();
    all.extend(drain(&mut s, t0)); // slot 0: idle silence, marker (first)
    s.play(
        &[
            PlayItem::Clip(a.clone()),
            PlayItem::Clip(b.clone()),
            PlayItem::Silence { ms: 50 }, // 3 frames
            PlayItem::Clip(a.clone()),
        ],
        7,
    );
    assert!(s.is_playing());
    for k in 1..=12u64 {
        all.extend(drain(&mut s, ms(t0, k * 20)));
    }
    assert_eq!(all.len(), 13);
    assert_continuous(&all);
    let u = |c: &SharedClip, i: usize| c.frames(Codec::Pcmu)[i].to_vec();
    let expect: Vec<(Vec<u8>, bool)> = vec![
        (vec![0xFF; 160], true),
        (u(&a, 0), true), // talkspurt after idle silence
        (u(&a, 1), false),
        (u(&a, 2), false),
        (u(&b, 0), false), // clip right after clip: same talkspurt
        (u(&b, 1), false),
        (vec![0xFF; 160], false),
        (vec![0xFF; 160], false),
        (vec![0xFF; 160], false),
        (u(&a, 0), true), // after a Silence item: new talkspurt
        (u(&a, 1), false),
        (u(&a, 2), false),
        (vec![0xFF; 160], false), // idle again
    ];
    for (i, (p, (payload, marker))) in all.iter().zip(expect).enumerate() {
        assert_eq!(&p.payload, &payload, "packet {i}");
        assert_eq!(p.marker, marker, "marker of packet {i}");
    }
    assert!(!s.is_playing());
    // PlaybackDone came exactly once, after the last frame of the command
    assert_eq!(
        events(&mut s),
        vec![MediaEvent::PlaybackDone {
            token: 7,
            interrupted: false
        }]
    );
}

#[test]
fn playback_done_arrives_with_the_last_frame() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    s.play(&[PlayItem::Clip(clip(2, 500))], 1);
    s.play(&[PlayItem::Clip(clip(1, 500))], 2);
    drain(&mut s, t0);
    assert_eq!(events(&mut s), vec![]);
    drain(&mut s, ms(t0, 20));
    assert_eq!(
        events(&mut s),
        vec![MediaEvent::PlaybackDone {
            token: 1,
            interrupted: false
        }]
    );
    drain(&mut s, ms(t0, 40));
    assert_eq!(
        events(&mut s),
        vec![MediaEvent::PlaybackDone {
            token: 2,
            interrupted: false
        }]
    );
    // an empty command completes at once
    s.play(&[], 3);
    s.play(&[PlayItem::Silence { ms: 0 }], 4);
    assert_eq!(
        events(&mut s),
        vec![
            MediaEvent::PlaybackDone {
                token: 3,
                interrupted: false
            },
            MediaEvent::PlaybackDone {
                token: 4,
                interrupted: false
            }
        ]
    );
}

#[test]
fn barge_in_interrupts_every_queued_command() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let long = clip(50, 800);
    s.play(
        &[PlayItem::Clip(long.clone()), PlayItem::Silence { ms: 400 }],
        10,
    );
    s.play(&[PlayItem::Clip(long.clone())], 11);
    let before = [drain(&mut s, t0), drain(&mut s, ms(t0, 20))].concat();
    assert_eq!(before[1].payload, long.frames(Codec::Pcmu)[1].to_vec());
    s.stop_playback();
    assert!(!s.is_playing());
    assert_eq!(
        events(&mut s),
        vec![
            MediaEvent::PlaybackDone {
                token: 10,
                interrupted: true
            },
            MediaEvent::PlaybackDone {
                token: 11,
                interrupted: true
            }
        ]
    );
    let after = drain(&mut s, ms(t0, 40));
    assert_eq!(after[0].payload, vec![0xFF; 160]);
    assert_eq!(after[0].seq, before[1].seq.wrapping_add(1));
    // a new prompt after barge-in opens a talkspurt
    s.play(&[PlayItem::Clip(long.clone())], 12);
    let next = drain(&mut s, ms(t0, 60));
    assert!(next[0].marker);
    assert_eq!(next[0].payload, long.frames(Codec::Pcmu)[0].to_vec());
    // stopping an idle player reports nothing
    s.stop_playback();
    s.stop_playback();
    assert_eq!(
        events(&mut s),
        vec![MediaEvent::PlaybackDone {
            token: 12,
            interrupted: true
        }]
    );
}

#[test]
fn symmetric_rtp_latches_on_first_valid_packet() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    assert_eq!(drain(&mut s, t0)[0].to, addr(SDP_PEER));
    // garbage and unnegotiated payload types from elsewhere do not latch
    s.handle_rtp(ms(t0, 5), addr("10.9.9.9:1"), b"hello");
    s.handle_rtp(
        ms(t0, 6),
        addr("10.9.9.9:1"),
        &rx_packet(96, 1, 0, &[1, 2, 3, 4]),
    );
    s.handle_rtp(
        ms(t0, 7),
        addr("10.9.9.9:1"),
        &rx_packet(8, 1, 0, &[0xD5; 160]),
    );
    assert_eq!(drain(&mut s, ms(t0, 20))[0].to, addr(SDP_PEER));
    // NAT: the real source differs from the SDP
    let nat = addr("192.0.2.7:40001");
    s.handle_rtp(ms(t0, 25), nat, &rx_packet(0, 1, 0, &[0xFF; 160]));
    assert_eq!(drain(&mut s, ms(t0, 40))[0].to, nat);
    // a later stray source does not steal the stream, nor count
    s.handle_rtp(
        ms(t0, 45),
        addr("203.0.113.1:5"),
        &rx_packet(0, 2, 160, &[0xFF; 160]),
    );
    assert_eq!(drain(&mut s, ms(t0, 60))[0].to, nat);
    assert_eq!(s.stats().foreign, 1);
    // re-INVITE to a new address: SDP address until the peer sends again
    let moved = addr("127.0.0.1:6100");
    s.update(&Negotiated {
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        remote: Some(moved),
        direction: Direction::SendRecv,
        ptime_ms: 20,
    });
    assert_eq!(drain(&mut s, ms(t0, 80))[0].to, moved);
    let st = s.stats();
    assert_eq!((st.malformed, st.ignored, st.packets_received), (1, 2, 1));
}

#[test]
fn foreign_source_cannot_inject_digits_but_a_moved_peer_is_followed() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let peer = addr("192.0.2.7:40001");
    let attacker = addr("198.51.100.66:1234");
    let digit = |seq: u16, ts: u32| {
        let ev = rtp::encode_event(rtp::TelephoneEvent {
            event: 3,
            end: false,
            volume: 10,
            duration: 0,
        });
        let mut buf = [0u8; 64];
        let h = RtpOut {
            payload_type: 101,
            marker: true,
            sequence: seq,
            timestamp: ts,
            ssrc: 4242,
        };
        let n = rtp::write(h, &ev, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    s.handle_rtp(ms(t0, 0), peer, &rx_packet(0, 1, 0, &[0xFF; 160]));
    s.handle_rtp(ms(t0, 10), attacker, &digit(1, 100));
    assert_eq!(events(&mut s), vec![]);
    assert_eq!(s.stats().foreign, 1);
    // the peer goes quiet for 2 s and comes back from a new port
    let moved = addr("192.0.2.7:40999");
    s.handle_rtp(ms(t0, 2_000), moved, &rx_packet(0, 2, 160, &[0xFF; 160]));
    assert_eq!(s.destination(), Some(moved));
    assert_eq!(drain(&mut s, ms(t0, 2_000))[0].to, moved);
}

#[test]
fn fillers_with_unnegotiated_payload_types_are_ignored() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    // SIPp's play_dtmf: PT 96 events and PT 97 fillers; we negotiated 101.
    for k in 0..20u16 {
        let pt = if k % 2 == 0 { 96 } else { 97 };
        let ev = rtp::encode_event(rtp::TelephoneEvent {
            event: 5,
            end: k > 15,
            volume: 10,
            duration: k * 160,
        });
        s.handle_rtp(
            ms(t0, k as u64 * 20),
            addr(SDP_PEER),
            &rx_packet(pt, k, 100, &ev),
        );
    }
    assert_eq!(events(&mut s), vec![]);
    assert_eq!(s.stats().ignored, 20);
    // and they do not keep the call alive
    drain(&mut s, ms(t0, 5_000));
    assert_eq!(events(&mut s), vec![MediaEvent::Inactive]);
}

#[test]
fn inactivity_fires_once_after_the_timeout() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    // Traffic for 2 s, then nothing.
    for k in 0..100u64 {
        s.handle_rtp(
            ms(t0, k * 20),
            addr(SDP_PEER),
            &rx_packet(0, k as u16, 0, &[0xFF; 160]),
        );
    }
    let last_rx = ms(t0, 99 * 20);
    let mut inactive_at = None;
    for k in 0..500u64 {
        let now = ms(t0, k * 20);
        drain(&mut s, now);
        for e in events(&mut s) {
            assert_eq!(e, MediaEvent::Inactive);
            assert!(inactive_at.is_none(), "reported twice");
            inactive_at = Some(now);
        }
    }
    assert_eq!(inactive_at, Some(last_rx + Duration::from_secs(5)));
}

#[test]
fn poll_timeout_includes_the_inactivity_deadline() {
    let t0 = Instant::now();
    // No remote yet (late offer): nothing to send, only the deadline.
    let mut s = MediaSession::new(config(Codec::Pcmu, None), t0);
    assert_eq!(s.poll_timeout(), Some(ms(t0, 5_000)));
    assert!(drain(&mut s, ms(t0, 4_999)).is_empty());
    assert_eq!(events(&mut s), vec![]);
    assert!(drain(&mut s, ms(t0, 5_000)).is_empty());
    assert_eq!(events(&mut s), vec![MediaEvent::Inactive]);
    assert_eq!(s.poll_timeout(), None);
}

fn negotiated(direction: Direction, remote: Option<SocketAddr>) -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        remote,
        direction,
        ptime_ms: 20,
    }
}

#[test]
fn hold_sends_nothing_pauses_prompts_and_suspends_inactivity() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let prompt = clip(10, 700);
    s.play(&[PlayItem::Clip(prompt.clone())], 1);
    let before = [drain(&mut s, t0), drain(&mut s, ms(t0, 20))].concat();
    assert_eq!(before.len(), 2);
    // Peer puts us on hold (a=sendonly → we are recvonly) and goes silent.
    s.update(&negotiated(Direction::RecvOnly, Some(addr(SDP_PEER))));
    for k in 2..3_000u64 {
        assert!(drain(&mut s, ms(t0, k * 20)).is_empty());
    }
    assert_eq!(events(&mut s), vec![]); // no Inactive during 60 s of hold
    // RFC 2543 hold, then inactive: still nothing
    s.update(&negotiated(Direction::RecvOnly, None));
    s.update(&negotiated(Direction::Inactive, None));
    assert!(drain(&mut s, ms(t0, 61_000)).is_empty());
    assert_eq!(s.poll_timeout(), None);
    // Resume at 62 s: exactly one packet, marker set, prompt continues
    s.update(&negotiated(Direction::SendRecv, Some(addr(SDP_PEER))));
    let resumed = drain(&mut s, ms(t0, 62_000));
    assert_eq!(resumed.len(), 1);
    assert!(resumed[0].marker);
    assert_eq!(resumed[0].seq, before[1].seq.wrapping_add(1));
    assert_eq!(resumed[0].ts, INITIAL_TS.wrapping_add(3_100 * 160));
    assert_eq!(resumed[0].payload, prompt.frames(Codec::Pcmu)[2].to_vec());
    // inactivity restarts from the resume: `update` has no clock, so it
    // uses the last `now` the session saw (61 s, the last hold-time poll)
    let mut inactive_at = None;
    for k in 3_101..3_500u64 {
        let now = ms(t0, k * 20);
        drain(&mut s, now);
        if events(&mut s).contains(&MediaEvent::Inactive) {
            inactive_at = Some(now);
            break;
        }
    }
    assert_eq!(inactive_at, Some(ms(t0, 66_000)));
}

#[test]
fn codec_change_on_reinvite_keeps_the_stream() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let c = clip(4, 1200);
    s.play(&[PlayItem::Clip(c.clone())], 1);
    let a = drain(&mut s, t0);
    s.update(&Negotiated {
        codec: Codec::Pcma,
        ..negotiated(Direction::SendRecv, Some(addr(SDP_PEER)))
    });
    let b = drain(&mut s, ms(t0, 20));
    assert_eq!(a[0].pt, 0);
    assert_eq!(b[0].pt, 8);
    assert_eq!(b[0].payload, c.frames(Codec::Pcma)[1].to_vec());
    assert_eq!(b[0].seq, a[0].seq.wrapping_add(1));
    // PCMU audio is now an unnegotiated payload type
    s.handle_rtp(
        ms(t0, 30),
        addr(SDP_PEER),
        &rx_packet(0, 1, 0, &[0xFF; 160]),
    );
    assert_eq!(s.stats().ignored, 1);
}

#[test]
fn small_buffer_is_not_a_panic_or_a_spin() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let mut tiny = [0u8; 20];
    assert_eq!(s.poll_transmit(t0, &mut tiny), None);
    // the slot was spent: the next deadline is in the future
    assert_eq!(s.poll_timeout(), Some(ms(t0, 20)));
}

#[test]
fn lost_and_late_counters() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    for seq in [10u16, 11, 14, 12, 15, 15] {
        s.handle_rtp(t0, addr(SDP_PEER), &rx_packet(0, seq, 0, &[0xFF; 160]));
    }
    let st = s.stats();
    assert_eq!(st.packets_received, 6);
    assert_eq!(st.lost, 2); // 12 and 13 missing at the time 14 arrived
    assert_eq!(st.late, 2); // 12 (reordered) and the duplicate 15
}

#[test]
fn rfc4733_digit_barges_in_on_a_prompt() {
    use ivr12333::media::session::DigitSource;
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let prompt = clip(100, 900);
    s.play(&[PlayItem::Clip(prompt.clone())], 5);
    for k in 0..10u64 {
        drain(&mut s, ms(t0, k * 20));
    }
    // the caller presses '0' (agent) while the prompt plays
    let ev = |end: bool, duration: u16| {
        rtp::encode_event(rtp::TelephoneEvent {
            event: 0,
            end,
            volume: 10,
            duration,
        })
    };
    let start = {
        let mut buf = [0u8; 64];
        let h = RtpOut {
            payload_type: 101,
            marker: true,
            sequence: 1,
            timestamp: 8000,
            ssrc: 99,
        };
        let n = rtp::write(h, &ev(false, 0), &mut buf).unwrap();
        buf[..n].to_vec()
    };
    s.handle_rtp(ms(t0, 205), addr(SDP_PEER), &start);
    let got = events(&mut s);
    assert_eq!(
        got,
        vec![MediaEvent::Digit {
            digit: '0',
            source: DigitSource::Rfc4733
        }]
    );
    // the call logic reacts: barge-in
    s.stop_playback();
    assert_eq!(
        events(&mut s),
        vec![MediaEvent::PlaybackDone {
            token: 5,
            interrupted: true
        }]
    );
    // slots 10 (200 ms) and 11 (220 ms) are due: only the current one
    // goes out (slot 10 is stale), silence already
    let next = drain(&mut s, ms(t0, 220));
    assert_eq!(next.len(), 1);
    assert!(next.iter().all(|p| p.payload == vec![0xFF; 160]));
    // the rest of the key press (updates, 3 end packets) adds nothing
    for (i, (end, d)) in [
        (false, 400),
        (false, 800),
        (true, 1200),
        (true, 1200),
        (true, 1200),
    ]
    .into_iter()
    .enumerate()
    {
        let mut buf = [0u8; 64];
        let h = RtpOut {
            payload_type: 101,
            marker: false,
            sequence: 2 + i as u16,
            timestamp: 8000,
            ssrc: 99,
        };
        let n = rtp::write(h, &ev(end, d), &mut buf).unwrap();
        s.handle_rtp(ms(t0, 230 + i as u64 * 20), addr(SDP_PEER), &buf[..n]);
    }
    assert_eq!(events(&mut s), vec![]);
}

#[test]
fn session_from_an_initial_offer_on_hold_sends_nothing() {
    let t0 = Instant::now();
    let n = negotiated(Direction::RecvOnly, Some(addr(SDP_PEER)));
    let mut s = MediaSession::from_negotiated(&n, 1, 2, 3, t0);
    assert_eq!(s.direction(), Direction::RecvOnly);
    assert!(drain(&mut s, ms(t0, 100)).is_empty());
    let n = negotiated(Direction::SendRecv, Some(addr(SDP_PEER)));
    let mut s = MediaSession::from_negotiated(&n, 1, 2, 3, t0);
    let p = drain(&mut s, t0);
    assert_eq!((p[0].ssrc, p[0].seq, p[0].ts), (1, 2, 3));
}

#[test]
fn offer_answer_then_media_end_to_end() {
    use ivr12333::media::sdp::{LocalMedia, SdpSession};
    use ivr12333::media::session::DigitSource;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8 0 100\r\na=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-15\r\n";
    let mut sdp = SdpSession::new(
        LocalMedia {
            addr: "127.0.0.1".parse().unwrap(),
            port: 30000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
        },
        77,
    );
    let (n, _answer) = sdp.answer(offer.as_bytes()).unwrap();
    let t0 = Instant::now();
    let mut s = MediaSession::from_negotiated(&n, 5, 100, 1000, t0);
    let p = drain(&mut s, t0);
    assert_eq!(p[0].pt, 8);
    assert_eq!(p[0].to, addr("127.0.0.1:6000"));
    // a key press with the caller's telephone-event PT 100
    let ev = rtp::encode_event(rtp::TelephoneEvent {
        event: 11,
        end: false,
        volume: 10,
        duration: 0,
    });
    let mut buf = [0u8; 64];
    let h = RtpOut {
        payload_type: 100,
        marker: true,
        sequence: 9,
        timestamp: 1600,
        ssrc: 3,
    };
    let len = rtp::write(h, &ev, &mut buf).unwrap();
    s.handle_rtp(ms(t0, 10), addr("127.0.0.1:6000"), &buf[..len]);
    assert_eq!(
        events(&mut s),
        vec![MediaEvent::Digit {
            digit: '#',
            source: DigitSource::Rfc4733
        }]
    );
    // hold via re-INVITE, then resume
    let hold = offer.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    let (n, _) = sdp.answer(hold.as_bytes()).unwrap();
    s.update(&n);
    assert!(drain(&mut s, ms(t0, 1000)).is_empty());
    let (n, _) = sdp.answer(offer.as_bytes()).unwrap();
    s.update(&n);
    assert_eq!(drain(&mut s, ms(t0, 2000)).len(), 1);
}

#[test]
fn digit_queue_is_bounded() {
    use ivr12333::media::session::MAX_QUEUED_DIGITS;
    let t0 = Instant::now();
    let mut s = new_session(t0);
    for k in 0..1000u64 {
        // INFO digits 1 s apart never merge
        s.handle_info_digit(ms(t0, k * 1000), '1');
    }
    s.play(&[], 9);
    let ev = events(&mut s);
    assert_eq!(ev.len(), MAX_QUEUED_DIGITS + 1);
    assert_eq!(
        ev.last(),
        Some(&MediaEvent::PlaybackDone {
            token: 9,
            interrupted: false
        })
    );
}

/// A prompt queued between two slots starts at once (marker set) instead of
/// waiting for the next 20 ms slot, and pacing continues 20 ms from there.
#[test]
fn talkspurt_starts_at_once_between_slots() {
    let t0 = Instant::now();
    let mut s = new_session(t0);
    let first = drain(&mut s, t0);
    assert_eq!(first.len(), 1, "slot 0 (silence) at t0");
    assert!(s.poll_timeout().unwrap() >= ms(t0, 20));
    // 7 ms into the slot, the flow asks for a prompt.
    let t = ms(t0, 7);
    let _ = drain(&mut s, t); // the driver runs; nothing is due yet
    s.play(&[PlayItem::Clip(clip(3, 8000))], 1);
    assert!(s.poll_timeout().unwrap() <= t, "the prompt is due now");
    let now = drain(&mut s, t);
    assert_eq!(now.len(), 1);
    assert!(now[0].marker, "talkspurt start carries the marker bit");
    assert_eq!(
        now[0].seq,
        first[0].seq.wrapping_add(1),
        "sequence stays continuous"
    );
    assert_eq!(now[0].ts, first[0].ts.wrapping_add(160));
    // The next frame follows 20 ms later, not at the old grid's 40 ms.
    assert_eq!(s.poll_timeout().unwrap(), ms(t0, 27));
    assert!(drain(&mut s, ms(t0, 26)).is_empty());
    let next = drain(&mut s, ms(t0, 27));
    assert_eq!(next.len(), 1);
    assert!(!next[0].marker);
}

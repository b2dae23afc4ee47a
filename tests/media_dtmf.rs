//! DTMF end to end through `MediaSession::handle_rtp`: real RFC 2833/4733
//! captures from Debian's sip-tester (copied into tests/data/pcap), hand-built
//! hostile and lossy sequences, the INFO merge, and property tests of the
//! RFC 4733 receiver.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ivr12333::media::dtmf::Rfc4733Receiver;
use ivr12333::media::g711::Codec;
use ivr12333::media::rtp::{self, RtpOut, TelephoneEvent};
use ivr12333::media::session::{DigitSource, MediaConfig, MediaEvent, MediaSession};
use proptest::prelude::*;

/// One UDP datagram from a capture, with its capture time.
struct Captured {
    at: Duration,
    payload: Vec<u8>,
}

/// Minimal pcap reader: classic little- or big-endian pcap, link type
/// Ethernet (1), IPv4, UDP. Anything else is an error.
fn read_pcap(path: &Path) -> Result<Vec<Captured>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header = data.get(..24).ok_or("short global header")?;
    let magic = u32::from_le_bytes(header[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 => true,
        0xd4c3_b2a1 => false,
        _ => return Err(format!("bad magic {magic:#x}")),
    };
    let u32_at = |b: &[u8], o: usize| -> u32 {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(header, 20);
    if linktype != 1 {
        return Err(format!("link type {linktype} is not Ethernet"));
    }
    let mut out = Vec::new();
    let mut off = 24usize;
    let mut first: Option<Duration> = None;
    while off < data.len() {
        let rec = data.get(off..off + 16).ok_or("short record header")?;
        let secs = u32_at(rec, 0);
        let usecs = u32_at(rec, 4);
        let incl = u32_at(rec, 8) as usize;
        off += 16;
        let frame = data.get(off..off + incl).ok_or("short record")?;
        off += incl;
        let t = Duration::from_secs(secs.into()) + Duration::from_micros(usecs.into());
        let t0 = *first.get_or_insert(t);
        // Ethernet: 14 bytes, ethertype IPv4.
        if frame.get(12..14) != Some(&[0x08, 0x00]) {
            return Err("not IPv4 over Ethernet".into());
        }
        let ip = frame.get(14..).ok_or("short IP")?;
        let ihl = usize::from(ip.first().ok_or("short IP")? & 0x0F) * 4;
        if ip.get(9) != Some(&17) {
            return Err("not UDP".into());
        }
        let udp = ip.get(ihl..).ok_or("short UDP")?;
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        let payload = udp.get(8..udp_len).ok_or("short UDP payload")?;
        out.push(Captured {
            at: t - t0,
            payload: payload.to_vec(),
        });
    }
    Ok(out)
}

fn pcap(name: &str) -> Vec<Captured> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pcap")
        .join(name);
    read_pcap(&path).unwrap()
}

fn peer() -> SocketAddr {
    "127.0.0.1:7078".parse().unwrap()
}

fn session(t0: Instant, te: Option<u8>) -> MediaSession {
    MediaSession::new(
        MediaConfig {
            codec: Codec::Pcmu,
            telephone_event_pt: te,
            remote: Some(peer()),
            ssrc: 1,
            initial_seq: 0,
            initial_timestamp: 0,
            inactivity_timeout: Duration::from_secs(30),
        },
        t0,
    )
}

fn digits(s: &mut MediaSession) -> Vec<(char, DigitSource)> {
    let mut v = Vec::new();
    while let Some(e) = s.poll_event() {
        if let MediaEvent::Digit { digit, source } = e {
            v.push((digit, source));
        }
    }
    v
}

fn digit_string(s: &mut MediaSession) -> String {
    digits(s).into_iter().map(|(d, _)| d).collect()
}

const FILES: [(&str, char); 12] = [
    ("dtmf_2833_0.pcap", '0'),
    ("dtmf_2833_1.pcap", '1'),
    ("dtmf_2833_2.pcap", '2'),
    ("dtmf_2833_3.pcap", '3'),
    ("dtmf_2833_4.pcap", '4'),
    ("dtmf_2833_5.pcap", '5'),
    ("dtmf_2833_6.pcap", '6'),
    ("dtmf_2833_7.pcap", '7'),
    ("dtmf_2833_8.pcap", '8'),
    ("dtmf_2833_9.pcap", '9'),
    ("dtmf_2833_star.pcap", '*'),
    ("dtmf_2833_pound.pcap", '#'),
];

#[test]
fn pcap_reader_sees_the_capture_layout() {
    let pkts = pcap("dtmf_2833_1.pcap");
    assert_eq!(pkts.len(), 10);
    let first = rtp::parse(&pkts[0].payload).unwrap();
    assert_eq!(first.payload_type, 101);
    assert!(first.marker);
    let ev = rtp::parse_event(first.payload).unwrap();
    assert_eq!((ev.event, ev.duration, ev.end), (1, 0, false));
    // the end packet is repeated with one sequence number
    let ends: Vec<u16> = pkts[7..]
        .iter()
        .map(|p| rtp::parse(&p.payload).unwrap().sequence)
        .collect();
    assert_eq!(ends, vec![7991, 7991, 7991]);
    assert!(
        rtp::parse_event(rtp::parse(&pkts[9].payload).unwrap().payload)
            .unwrap()
            .end
    );
}

#[test]
fn every_capture_yields_its_digit_once() {
    for (file, want) in FILES {
        let t0 = Instant::now();
        let mut s = session(t0, Some(101));
        for p in pcap(file) {
            s.handle_rtp(t0 + p.at, peer(), &p.payload);
        }
        assert_eq!(digits(&mut s), vec![(want, DigitSource::Rfc4733)], "{file}");
        assert_eq!(s.stats().packets_received, 10);
        // the repeated end packets are counted as late/duplicate, not lost
        assert_eq!(s.stats().lost, 0);
        assert_eq!(s.stats().late, 2);
    }
}

/// Plays captures one after another like a SIPp scenario entering an ID
/// number: the same capture replayed (same SSRC/timestamp/sequence) and
/// older captures after newer ones must each count.
#[test]
fn replayed_captures_spell_an_id_number() {
    let want = "110105194912310021#";
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    let mut offset = Duration::ZERO;
    for key in want.chars() {
        let file = FILES.iter().find(|(_, d)| *d == key).unwrap().0;
        for p in pcap(file) {
            s.handle_rtp(t0 + offset + p.at, peer(), &p.payload);
        }
        offset += Duration::from_millis(250);
    }
    assert_eq!(digit_string(&mut s), want);
}

#[test]
fn pcap_with_loss_of_start_and_end_packets() {
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    let pkts = pcap("dtmf_2833_5.pcap");
    // lose the first three packets and all end packets
    for p in &pkts[3..7] {
        s.handle_rtp(t0 + p.at, peer(), &p.payload);
    }
    // then the next key (7): the lost end of '5' is closed by the new event
    for p in pcap("dtmf_2833_7.pcap") {
        s.handle_rtp(t0 + Duration::from_millis(300) + p.at, peer(), &p.payload);
    }
    assert_eq!(digit_string(&mut s), "57");
}

#[test]
fn events_with_unnegotiated_payload_type_are_ignored() {
    let t0 = Instant::now();
    // We negotiated telephone-event at 96: the PT 101 captures are not ours.
    let mut s = session(t0, Some(96));
    for p in pcap("dtmf_2833_3.pcap") {
        s.handle_rtp(t0 + p.at, peer(), &p.payload);
    }
    assert_eq!(digits(&mut s), vec![]);
    assert_eq!(s.stats().ignored, 10);
    assert_eq!(s.stats().packets_received, 0);
}

fn event_packet(pt: u8, seq: u16, ts: u32, marker: bool, ev: TelephoneEvent) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = rtp::write(
        RtpOut {
            payload_type: pt,
            marker,
            sequence: seq,
            timestamp: ts,
            ssrc: 0xABCD,
        },
        &rtp::encode_event(ev),
        &mut buf,
    )
    .unwrap();
    buf[..n].to_vec()
}

fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
    TelephoneEvent {
        event,
        end,
        volume: 10,
        duration,
    }
}

#[test]
fn hostile_event_packets_never_panic_and_never_digit() {
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    let mut hostile: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80, 101, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1], // no payload
        vec![0x80, 101, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 5, 0x80], // 2-byte payload
        vec![0x8F, 101, 0, 3, 0, 0, 0, 3, 0, 0, 0, 1, 5, 0, 0, 0], // CC=15, too short
        vec![0xA0, 101, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1, 5, 0, 0, 0xFF], // padding > len
        vec![0x90, 101, 0, 5, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 9], // ext truncated
        event_packet(101, 6, 6, true, ev(16, false, 0)), // flash: not DTMF
        event_packet(101, 7, 7, true, ev(200, true, 800)),
    ];
    // padding that hides the event: 4 real bytes + 4 padding = still valid
    let mut padded = event_packet(101, 8, 8, true, ev(4, false, 0));
    padded[0] |= 0x20;
    padded.extend_from_slice(&[0, 0, 0, 4]);
    hostile.push(padded);
    // an extension header before the event payload
    let mut ext = vec![
        0x90, 101, 0, 9, 0, 0, 0, 9, 0, 0, 0xAB, 0xCD, 0xBE, 0xDE, 0, 1,
    ];
    ext.extend_from_slice(&[1, 2, 3, 4]);
    ext.extend_from_slice(&rtp::encode_event(ev(12, false, 0)));
    hostile.push(ext);
    for (i, p) in hostile.iter().enumerate() {
        s.handle_rtp(t0 + Duration::from_millis(i as u64 * 100), peer(), p);
    }
    // only the two well-formed ones (padding, extension) count
    assert_eq!(digit_string(&mut s), "4A");
    assert_eq!(s.stats().malformed, 5);
}

#[test]
fn info_and_rfc4733_for_one_press_is_one_digit() {
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    let ms = |n: u64| t0 + Duration::from_millis(n);
    // RFC 4733 first, INFO 80 ms later
    s.handle_rtp(
        ms(0),
        peer(),
        &event_packet(101, 1, 160, true, ev(9, false, 0)),
    );
    s.handle_info_digit(ms(80), '9');
    s.handle_rtp(
        ms(100),
        peer(),
        &event_packet(101, 2, 160, false, ev(9, true, 800)),
    );
    // INFO first, RFC 4733 later
    s.handle_info_digit(ms(400), '#');
    s.handle_rtp(
        ms(450),
        peer(),
        &event_packet(101, 3, 3360, true, ev(11, false, 0)),
    );
    // INFO only, much later
    s.handle_info_digit(ms(3000), '9');
    // garbage INFO ignored
    s.handle_info_digit(ms(3100), 'x');
    assert_eq!(
        digits(&mut s),
        vec![
            ('9', DigitSource::Rfc4733),
            ('#', DigitSource::Info),
            ('9', DigitSource::Info)
        ]
    );
}

#[test]
fn digit_events_do_not_leak_keys_through_debug() {
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    s.handle_info_digit(t0, '7');
    let e = s.poll_event().unwrap();
    let shown = format!("{e:?}");
    assert!(!shown.contains('7'), "{shown}");
    assert!(shown.contains("redacted"));
}

/// Talk-off: real (synthetic-voice) speech through the in-band detector,
/// PCMU as captured, transcoded to PCMA, and 12 dB quieter.
#[test]
fn speech_capture_has_no_talk_off() {
    let pkts = pcap("speech_espeak_pcmu.pcap");
    assert_eq!(pkts.len(), 1293);
    for (codec, gain) in [
        (Codec::Pcmu, 1.0f32),
        (Codec::Pcma, 1.0),
        (Codec::Pcmu, 0.25),
    ] {
        let t0 = Instant::now();
        let mut s = MediaSession::new(
            MediaConfig {
                codec,
                telephone_event_pt: None,
                remote: Some(peer()),
                ssrc: 1,
                initial_seq: 0,
                initial_timestamp: 0,
                inactivity_timeout: Duration::from_secs(30),
            },
            t0,
        );
        let mut peak = 0i32;
        for (k, p) in pkts.iter().enumerate() {
            let r = rtp::parse(&p.payload).unwrap();
            assert_eq!(r.payload_type, 0);
            let mut pcm = [0i16; 160];
            Codec::Pcmu.decode_into(r.payload, &mut pcm);
            let mut payload = [0u8; 160];
            for (o, &x) in payload.iter_mut().zip(&pcm) {
                let y = (f32::from(x) * gain) as i16;
                peak = peak.max(i32::from(y).abs());
                *o = codec.encode(y);
            }
            let mut buf = [0u8; 200];
            let h = RtpOut {
                payload_type: codec.payload_type(),
                marker: k == 0,
                sequence: r.sequence,
                timestamp: r.timestamp,
                ssrc: r.ssrc,
            };
            let n = rtp::write(h, &payload, &mut buf).unwrap();
            s.handle_rtp(t0 + p.at, peer(), &buf[..n]);
        }
        assert!(peak > 5000, "the capture is audible ({peak})");
        assert_eq!(s.stats().packets_received, 1293);
        assert_eq!(digits(&mut s), vec![], "{codec:?} gain {gain}");
    }
}

// ---- property tests of the receiver ------------------------------------

/// A key press as the sender emits it: start, updates, 3 end packets.
fn press_packets(event: u8, ts: u32, updates: u16) -> Vec<(u32, bool, TelephoneEvent)> {
    let mut v = vec![(ts, true, ev(event, false, 0))];
    for k in 1..=updates {
        v.push((ts, false, ev(event, false, k * 400)));
    }
    for _ in 0..3 {
        v.push((ts, false, ev(event, true, (updates + 1) * 400)));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_packets_never_panic(
        packets in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..60)
    ) {
        let t0 = Instant::now();
        let mut s = session(t0, Some(101));
        let mut r = Rfc4733Receiver::new();
        for (i, (rtpish, p)) in packets.iter().enumerate() {
            let mut p = p.clone();
            // half of them get a valid version and our event payload type,
            // so the hostile bytes reach the CSRC/extension/padding checks
            // and the event parser
            if *rtpish && p.len() >= 2 {
                p[0] = 0x80 | (p[0] & 0x3F);
                p[1] = (p[1] & 0x80) | 101;
            }
            let p = &p;
            let now = t0 + Duration::from_millis(i as u64 * 7);
            s.handle_rtp(now, peer(), p);
            if let Some(e) = rtp::parse_event(p) {
                let ts = p.len() as u32;
                let _ = r.handle(now, 1, ts, i % 2 == 0, e);
            }
        }
        let mut n = 0;
        while s.poll_event().is_some() {
            n += 1;
            prop_assert!(n < 10_000);
        }
    }

    /// A random press sequence with duplication, local reordering, loss of
    /// non-first packets and late delivery into the next press yields each
    /// press exactly once, in order.
    #[test]
    fn each_press_exactly_once(
        presses in proptest::collection::vec((0u8..16, 800u32..8000, 0u16..8), 1..12),
        faults in proptest::collection::vec((0u8..10, 0u8..10, 0u8..10), 200),
    ) {
        let t0 = Instant::now();
        let mut r = Rfc4733Receiver::new();
        let mut ts = 1_000u32;
        let mut f = faults.iter().cycle();
        let mut delayed: Vec<(u32, bool, TelephoneEvent)> = Vec::new();
        let mut got = String::new();
        let mut want = String::new();
        let mut clock = 0u64;
        for (event, gap, updates) in presses {
            ts = ts.wrapping_add(gap);
            let late_from_previous = std::mem::take(&mut delayed);
            want.push(rtp::event_char(event).unwrap());
            let pkts = press_packets(event, ts, updates);
            let mut stream = vec![pkts[0]];
            let mut rest: Vec<_> = Vec::new();
            for p in &pkts[1..] {
                let (loss, dup, late) = *f.next().unwrap();
                if loss < 3 { continue; }
                rest.push(*p);
                if dup < 3 { rest.push(*p); }
                if late < 2 { delayed.push(*p); }
            }
            // local reordering of the non-first packets
            let (a, _, _) = *f.next().unwrap();
            let len = rest.len();
            if len > 1 { rest.swap(usize::from(a) % len, len - 1); }
            stream.extend(rest);
            // the first packet of this press goes out, then the previous
            // press's late packets, then this press's others
            let mut feed = vec![stream[0]];
            feed.extend(late_from_previous);
            feed.extend_from_slice(&stream[1..]);
            for (pts, marker, e) in feed {
                clock += 20;
                if let Some(d) = r.handle(t0 + Duration::from_millis(clock), 42, pts, marker, e) {
                    got.push(d);
                }
            }
            clock += 100;
        }
        prop_assert_eq!(got, want);
    }
}

// ---- jitter: the start packet after the end packets (issue 12) ----------

/// One press of `event` at RTP timestamp `ts` as a sender emits it from
/// `at` ms: start, updates every 50 ms, three end packets. Returns
/// `(arrival ms, packet)` with the start packet delayed by `start_late` ms
/// and the end packets dropped when `lose_end`.
fn jittery_press(
    event: u8,
    seq0: u16,
    ts: u32,
    at: u64,
    start_late: u64,
    lose_end: bool,
) -> Vec<(u64, Vec<u8>)> {
    let mut v = vec![(
        at + start_late,
        event_packet(101, seq0, ts, true, ev(event, false, 0)),
    )];
    for k in 1..=3u16 {
        v.push((
            at + 50 * u64::from(k),
            event_packet(101, seq0 + k, ts, false, ev(event, false, k * 400)),
        ));
    }
    if !lose_end {
        for r in 0..3 {
            v.push((
                at + 200 + r,
                event_packet(101, seq0 + 4, ts, false, ev(event, true, 1600)),
            ));
        }
    }
    v
}

/// Feeds the packets in arrival order (and INFO digits at their times).
fn feed(s: &mut MediaSession, t0: Instant, mut pkts: Vec<(u64, Vec<u8>)>, info: &[(u64, char)]) {
    pkts.sort_by_key(|(at, _)| *at);
    let mut info = info.to_vec();
    info.sort_by_key(|(at, _)| *at);
    let mut i = info.iter().peekable();
    for (at, p) in pkts {
        while let Some((ia, d)) = i.next_if(|(ia, _)| *ia <= at) {
            s.handle_info_digit(t0 + Duration::from_millis(*ia), *d);
        }
        s.handle_rtp(t0 + Duration::from_millis(at), peer(), &p);
    }
    for (ia, d) in i {
        s.handle_info_digit(t0 + Duration::from_millis(*ia), *d);
    }
}

/// "110" keyed 600 ms apart, each press's start packet `late` ms late (after
/// its own end packets from 300 ms on), with and without end packets, with
/// and without an INFO copy of every key: always three digits.
#[test]
fn late_start_packets_count_each_key_once() {
    for late in [100u64, 300, 1000] {
        for lose_end in [false, true] {
            for with_info in [false, true] {
                let t0 = Instant::now();
                let mut s = session(t0, Some(101));
                let mut pkts = Vec::new();
                let mut info = Vec::new();
                for (k, (key, ts)) in [(1u8, 8000u32), (1, 12800), (0, 17600)].iter().enumerate() {
                    let at = 600 * k as u64;
                    pkts.extend(jittery_press(*key, 10 * k as u16, *ts, at, late, lose_end));
                    if with_info {
                        // the INFO copy leaves the gateway with the key-down
                        info.push((at + 10, char::from(b'0' + key)));
                    }
                }
                feed(&mut s, t0, pkts, &info);
                assert_eq!(
                    digit_string(&mut s),
                    "110",
                    "start {late} ms late, end lost: {lose_end}, INFO: {with_info}"
                );
            }
        }
    }
}

/// An ID number keyed at 250 ms per key with every start packet 300 ms
/// late: the jittery line, where each key used to count twice.
#[test]
fn id_number_on_a_jittery_line_is_read_once() {
    let want = "110105194912310021";
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    let mut pkts = Vec::new();
    for (k, key) in want.chars().enumerate() {
        let at = 250 * k as u64;
        let ts = 8000 + 2000 * k as u32;
        let event = key.to_digit(10).unwrap() as u8;
        pkts.extend(jittery_press(event, 10 * k as u16, ts, at, 300, false));
    }
    feed(&mut s, t0, pkts, &[]);
    assert_eq!(digit_string(&mut s), want);
}

/// In-band tones (no telephone-event negotiated) with an INFO copy of the
/// key arriving at the same time, before and after the tone is detected:
/// one digit each.
#[test]
fn inband_and_info_for_one_press_is_one_digit() {
    use ivr12333::media::inband::key_frequencies;
    for info_at in [0u64, 40, 200] {
        let t0 = Instant::now();
        let mut s = session(t0, None);
        // 100 ms of '5' at −10 dBFS, then silence
        let (f1, f2) = key_frequencies('5').unwrap();
        let pcm: Vec<i16> = (0..8 * 400)
            .map(|n| {
                if n < 800 {
                    let t = n as f32 / 8000.0;
                    let v = 0.3 * (2.0 * std::f32::consts::PI * f1 * t).sin()
                        + 0.3 * (2.0 * std::f32::consts::PI * f2 * t).sin();
                    (v * 32767.0) as i16
                } else {
                    0
                }
            })
            .collect();
        let mut info_sent = false;
        for (k, chunk) in pcm.chunks(160).enumerate() {
            let at = 20 * k as u64;
            if !info_sent && at >= info_at {
                s.handle_info_digit(t0 + Duration::from_millis(at), '5');
                info_sent = true;
            }
            let mut payload = [0u8; 160];
            Codec::Pcmu.encode_into(chunk, &mut payload);
            let mut buf = [0u8; 200];
            let h = RtpOut {
                payload_type: 0,
                marker: k == 0,
                sequence: k as u16,
                timestamp: (k * 160) as u32,
                ssrc: 9,
            };
            let n = rtp::write(h, &payload, &mut buf).unwrap();
            s.handle_rtp(t0 + Duration::from_millis(at), peer(), &buf[..n]);
        }
        let got = digits(&mut s);
        assert_eq!(got.len(), 1, "INFO at {info_at} ms: {got:?}");
        assert_eq!(got[0].0, '5');
    }
}

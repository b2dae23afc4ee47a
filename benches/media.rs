//! Media hot paths: RTP send cost per call-second, RFC 4733 receive cost per
//! packet, in-band DTMF detection per 20 ms frame.
//!
//! Run: `cargo bench --bench media`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ivr12333::media::clip::Clip;
use ivr12333::media::g711::Codec;
use ivr12333::media::inband::{InbandDetector, key_frequencies};
use ivr12333::media::rtp::{self, RtpOut, TelephoneEvent};
use ivr12333::media::session::{MediaConfig, MediaSession, PlayItem};

fn peer() -> SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}

fn session(t0: Instant, te: Option<u8>) -> MediaSession {
    MediaSession::new(
        MediaConfig {
            codec: Codec::Pcmu,
            telephone_event_pt: te,
            remote: Some(peer()),
            ssrc: 7,
            initial_seq: 0,
            initial_timestamp: 0,
            inactivity_timeout: Duration::from_secs(3600),
        },
        t0,
    )
}

fn tone(key: char, samples: usize) -> Vec<i16> {
    let (r, c) = key_frequencies(key).unwrap();
    (0..samples)
        .map(|n| {
            let t = n as f32 / 8000.0;
            let v = 0.3
                * ((2.0 * std::f32::consts::PI * r * t).sin()
                    + (2.0 * std::f32::consts::PI * c * t).sin());
            (v * 32767.0) as i16
        })
        .collect()
}

fn send_call_second(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    // a 10 s prompt, re-queued when it ends (one play command per 10 s)
    let prompt = Arc::new(Clip::from_pcm(&tone('5', 80_000)));
    let items = [PlayItem::Clip(prompt)];
    let mut buf = [0u8; 1500];
    let mut slot = 0u64;
    c.bench_function("rtp_send_call_second_50_packets", |b| {
        b.iter(|| {
            if !s.is_playing() {
                s.play(&items, 1);
                while s.poll_event().is_some() {}
            }
            let mut bytes = 0;
            for _ in 0..50 {
                let now = t0 + Duration::from_millis(slot * 20);
                slot += 1;
                if let Some((n, _)) = s.poll_transmit(now, &mut buf) {
                    bytes += n;
                }
            }
            black_box(bytes)
        })
    });
}

fn dtmf_receive(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut s = session(t0, Some(101));
    // 1000 key presses of 10 packets each (start, 6 updates, 3 ends)
    let mut packets = Vec::new();
    for press in 0..1000u32 {
        let ts = press * 4000;
        for k in 0..10u16 {
            let ev = TelephoneEvent {
                event: (press % 16) as u8,
                end: k >= 7,
                volume: 10,
                duration: k.min(7) * 320,
            };
            let mut buf = [0u8; 32];
            let n = rtp::write(
                RtpOut {
                    payload_type: 101,
                    marker: k == 0,
                    sequence: (press * 8 + u32::from(k.min(7))) as u16,
                    timestamp: ts,
                    ssrc: 9,
                },
                &rtp::encode_event(ev),
                &mut buf,
            )
            .unwrap();
            packets.push(buf[..n].to_vec());
        }
    }
    let mut i = 0usize;
    let mut ms = 0u64;
    c.bench_function("dtmf_rfc4733_receive_per_packet", |b| {
        b.iter(|| {
            let p = &packets[i % packets.len()];
            i += 1;
            ms += 20;
            s.handle_rtp(t0 + Duration::from_millis(ms), peer(), black_box(p));
            // drain digits so the event queue stays small
            while let Some(e) = s.poll_event() {
                black_box(e);
            }
        })
    });
}

fn inband(c: &mut Criterion) {
    let frames: Vec<i16> = tone('#', 8000);
    let mut d = InbandDetector::new();
    let mut i = 0usize;
    c.bench_function("inband_detector_per_20ms_frame_dtmf_tone", |b| {
        b.iter(|| {
            let off = (i % 50) * 160;
            i += 1;
            let mut n = 0u32;
            d.feed(black_box(&frames[off..off + 160]), &mut |_| n += 1);
            black_box(n)
        })
    });

    // noise (the common case: no candidate window, no probing)
    let mut x = 1u32;
    let noise: Vec<i16> = (0..8000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 20) as i16 - 2048
        })
        .collect();
    let mut d = InbandDetector::new();
    let mut i = 0usize;
    c.bench_function("inband_detector_per_20ms_frame_noise", |b| {
        b.iter(|| {
            let off = (i % 50) * 160;
            i += 1;
            let mut n = 0u32;
            d.feed(black_box(&noise[off..off + 160]), &mut |_| n += 1);
            black_box(n)
        })
    });

    // the whole receive path of an audio packet without telephone-event:
    // RTP parse, G.711 decode, detection
    let t0 = Instant::now();
    let mut s = session(t0, None);
    let mut packets = Vec::new();
    for k in 0..50usize {
        let mut payload = [0u8; 160];
        Codec::Pcmu.encode_into(&frames[k * 160..(k + 1) * 160], &mut payload);
        let mut buf = [0u8; 200];
        let n = rtp::write(
            RtpOut {
                payload_type: 0,
                marker: false,
                sequence: k as u16,
                timestamp: (k * 160) as u32,
                ssrc: 3,
            },
            &payload,
            &mut buf,
        )
        .unwrap();
        packets.push(buf[..n].to_vec());
    }
    let mut j = 0usize;
    c.bench_function("inband_handle_rtp_pcmu_frame", |b| {
        b.iter(|| {
            let p = &packets[j % packets.len()];
            j += 1;
            s.handle_rtp(t0, peer(), black_box(p));
            while let Some(e) = s.poll_event() {
                black_box(e);
            }
        })
    });
}

criterion_group!(benches, send_call_second, dtmf_receive, inband);
criterion_main!(benches);

//! B2BUA relay cost: one bridged call-second (50 packets each way through
//! `media::bridge::Bridge`, same codec and PCMU↔PCMA) against one
//! call-second of a caller listening to a prompt (50 packets sent by the
//! `MediaSession` plus 50 of the caller's packets received). The
//! difference is the extra CPU a bridged call costs, sockets excluded
//! (a bridged call also makes 100 instead of 50 `sendto` calls).
//!
//! Run: `cargo bench --bench bridge`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ivr12333::media::bridge::{Bridge, LegMedia, Side};
use ivr12333::media::clip::Clip;
use ivr12333::media::g711::Codec;
use ivr12333::media::rtp::{self, RtpOut};
use ivr12333::media::session::{MediaConfig, MediaSession, PlayItem};

fn caller() -> SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}
fn agent() -> SocketAddr {
    "127.0.0.1:7002".parse().unwrap()
}

/// 50 packets of 20 ms, PT `pt`.
fn packets(pt: u8, ssrc: u32) -> Vec<Vec<u8>> {
    (0..50u16)
        .map(|i| {
            let mut buf = [0u8; 200];
            let payload: Vec<u8> = (0..160).map(|k| (k as u8).wrapping_mul(7)).collect();
            let n = rtp::write(
                RtpOut {
                    payload_type: pt,
                    marker: false,
                    sequence: i,
                    timestamp: u32::from(i) * 160,
                    ssrc,
                },
                &payload,
                &mut buf,
            )
            .unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

fn bridged(c: &mut Criterion, name: &str, agent_codec: Codec) {
    let t0 = Instant::now();
    let mut b = Bridge::new(
        LegMedia {
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            remote: Some(caller()),
        },
        LegMedia {
            codec: agent_codec,
            telephone_event_pt: Some(101),
            remote: Some(agent()),
        },
        [1, 2, 3, 4, 5, 6],
        t0,
        Duration::from_secs(3600),
    );
    let from_caller = packets(0, 10);
    let from_agent = packets(agent_codec.payload_type(), 20);
    let mut out = [0u8; 1500];
    let mut now = t0;
    c.bench_function(name, |bench| {
        bench.iter(|| {
            let mut bytes = 0;
            for (a, z) in from_caller.iter().zip(&from_agent) {
                now += Duration::from_millis(20);
                if let Some((n, _)) = b.relay(now, Side::Caller, caller(), a, &mut out) {
                    bytes += n;
                }
                if let Some((n, _)) = b.relay(now, Side::Agent, agent(), z, &mut out) {
                    bytes += n;
                }
            }
            black_box(bytes)
        })
    });
}

fn bridged_same_codec(c: &mut Criterion) {
    bridged(c, "bridged_call_second_pcmu_pcmu", Codec::Pcmu);
}

fn bridged_transcoding(c: &mut Criterion) {
    bridged(c, "bridged_call_second_pcmu_pcma", Codec::Pcma);
}

fn prompt_call_second(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        MediaConfig {
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            remote: Some(caller()),
            ssrc: 7,
            initial_seq: 0,
            initial_timestamp: 0,
            inactivity_timeout: Duration::from_secs(3600),
        },
        t0,
    );
    let pcm: Vec<i16> = (0..80_000)
        .map(|n| ((n as f32 * 0.05).sin() * 8000.0) as i16)
        .collect();
    let items = [PlayItem::Clip(Arc::new(Clip::from_pcm(&pcm)))];
    let from_caller = packets(0, 10);
    let mut buf = [0u8; 1500];
    let mut slot = 0u64;
    c.bench_function("prompt_call_second_50_out_50_in", |b| {
        b.iter(|| {
            if !s.is_playing() {
                s.play(&items, 1);
            }
            while s.poll_event().is_some() {}
            let mut bytes = 0;
            for p in &from_caller {
                let now = t0 + Duration::from_millis(slot * 20);
                slot += 1;
                s.handle_rtp(now, caller(), p);
                if let Some((n, _)) = s.poll_transmit(now, &mut buf) {
                    bytes += n;
                }
            }
            black_box(bytes)
        })
    });
}

criterion_group!(
    benches,
    prompt_call_second,
    bridged_same_codec,
    bridged_transcoding
);
criterion_main!(benches);

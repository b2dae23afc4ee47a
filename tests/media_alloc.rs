//! Proves "no allocation per RTP packet": a counting global allocator (per
//! thread, so the test harness's own threads do not interfere) around the
//! steady-state send and receive paths of a `MediaSession`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::media::clip::Clip;
use ivr12333::media::g711::Codec;
use ivr12333::media::rtp::{self, RtpOut, TelephoneEvent};
use ivr12333::media::session::{MediaConfig, MediaSession, PlayItem};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

fn packet(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 200];
    let h = RtpOut {
        payload_type: pt,
        marker,
        sequence: seq,
        timestamp: ts,
        ssrc: 5,
    };
    let n = rtp::write(h, payload, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn run(te: Option<u8>) {
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        MediaConfig {
            codec: Codec::Pcma,
            telephone_event_pt: te,
            remote: Some(peer),
            ssrc: 1,
            initial_seq: 0,
            initial_timestamp: 0,
            inactivity_timeout: Duration::from_secs(30),
        },
        t0,
    );
    let prompt = Arc::new(Clip::from_pcm(&vec![1000i16; 160 * 400]));
    // Inputs prepared before counting.
    let mut inputs = Vec::new();
    for k in 0..300u16 {
        let audio = packet(8, k, u32::from(k) * 160, false, &[0x55; 160]);
        let ev = rtp::encode_event(TelephoneEvent {
            event: (k / 10 % 16) as u8,
            end: k % 10 >= 7,
            volume: 10,
            duration: (k % 10).min(7) * 320,
        });
        let event = packet(101, k, u32::from(k / 10) * 4000, k % 10 == 0, &ev);
        inputs.push((audio, event));
    }
    let mut buf = [0u8; 1500];
    let mut events = 0u64;
    // Warm-up: first play command (allowed to allocate), first packets.
    s.play(&[PlayItem::Clip(prompt.clone())], 1);
    for k in 0..5u64 {
        let now = t0 + Duration::from_millis(k * 20);
        while s.poll_transmit(now, &mut buf).is_some() {}
    }
    let before = allocs();
    for (k, (audio, event)) in inputs.iter().enumerate() {
        let now = t0 + Duration::from_millis(100 + k as u64 * 20);
        s.handle_rtp(now, peer, audio);
        s.handle_rtp(now, peer, event);
        let mut sent = 0;
        while s.poll_transmit(now, &mut buf).is_some() {
            sent += 1;
        }
        assert!(sent <= 3);
        while s.poll_event().is_some() {
            events += 1;
        }
    }
    let after = allocs();
    assert_eq!(after - before, 0, "allocations in the packet path");
    assert_eq!(s.stats().packets_sent, 305);
    if te.is_some() {
        assert_eq!(events, 30, "one digit per simulated press");
    }
}

#[test]
fn steady_state_packet_paths_do_not_allocate() {
    // the counter does count on this thread
    let probe = allocs();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert!(allocs() > probe && v.len() == 64);
    run(Some(101)); // RFC 4733 path
    run(None); // in-band detection path
}

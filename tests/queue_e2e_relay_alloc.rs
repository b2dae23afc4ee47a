//! "No allocation per RTP packet" for the B2BUA relay: a counting global
//! allocator (per thread) around the steady-state relay path, with and
//! without PCMU↔PCMA transcoding, including dropped agent keys.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ivr12333::media::bridge::{Bridge, LegMedia, Side};
use ivr12333::media::g711::Codec;
use ivr12333::media::rtp::{self, RtpOut, TelephoneEvent, encode_event};

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

fn run(agent_codec: Codec) {
    let caller: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let agent: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let t0 = Instant::now();
    let mut b = Bridge::new(
        LegMedia {
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            remote: Some(caller),
        },
        LegMedia {
            codec: agent_codec,
            telephone_event_pt: Some(101),
            remote: Some(agent),
        },
        [1, 2, 3, 4, 5, 6],
        t0,
        Duration::from_secs(30),
    );
    let mut pkt_c = [0u8; 200];
    let mut pkt_a = [0u8; 200];
    let mut ev = [0u8; 64];
    let mut out = [0u8; 1500];
    let payload = [0x55u8; 160];
    let key = encode_event(TelephoneEvent {
        event: 3,
        end: false,
        volume: 10,
        duration: 160,
    });
    let before = allocs();
    let mut relayed = 0u32;
    for i in 0..1000u16 {
        let now = t0 + Duration::from_millis(u64::from(i) * 20);
        let h = |pt, ssrc| RtpOut {
            payload_type: pt,
            marker: false,
            sequence: i,
            timestamp: u32::from(i) * 160,
            ssrc,
        };
        let nc = rtp::write(h(0, 10), &payload, &mut pkt_c).unwrap();
        let na = rtp::write(h(agent_codec.payload_type(), 20), &payload, &mut pkt_a).unwrap();
        let ne = rtp::write(h(101, 20), &key, &mut ev).unwrap();
        relayed += u32::from(
            b.relay(now, Side::Caller, caller, &pkt_c[..nc], &mut out)
                .is_some(),
        );
        relayed += u32::from(
            b.relay(now, Side::Agent, agent, &pkt_a[..na], &mut out)
                .is_some(),
        );
        // The agent's key is dropped (never replayed to the caller).
        assert!(
            b.relay(now, Side::Agent, agent, &ev[..ne], &mut out)
                .is_none()
        );
    }
    assert_eq!(allocs() - before, 0, "the relay allocated");
    assert_eq!(relayed, 2000);
}

#[test]
fn relay_does_not_allocate_per_packet_same_codec() {
    run(Codec::Pcmu);
}

#[test]
fn relay_does_not_allocate_per_packet_transcoding() {
    run(Codec::Pcma);
}

//! The media clock with real sockets: three dozen media sessions, each on
//! its own RTP socket (registered with tokio for reading only), paced by
//! two clock threads (which drive no reactor: the sends are plain system
//! calls). The receiver counts what
//! arrives; nothing here waits on a wall-clock limit (the test blocks until
//! every packet it expects has arrived).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ivr12333::media::g711::Codec;
use ivr12333::media::rtp;
use ivr12333::media::session::{MediaConfig, MediaSession};
use ivr12333::runtime::clock::{Armed, MediaClock, Paced};
use ivr12333::runtime::rtp_socket::RtpSocket;

const CALLS: u32 = 36;
const PACKETS: u64 = 25;
const INITIAL_TS: u32 = 1_000;

struct Stream {
    state: Mutex<(MediaSession, Armed, u64)>,
    socket: RtpSocket,
}

impl Paced for Stream {
    fn tick(&self, armed: Instant, now: Instant, buf: &mut [u8]) -> Option<Instant> {
        let mut st = self.state.lock().unwrap();
        let (session, a, sent) = &mut *st;
        if !a.is_current(armed) {
            return None;
        }
        while *sent < PACKETS
            && let Some((n, dest)) = session.poll_transmit(now, buf)
        {
            self.socket.send_to(&buf[..n], dest).unwrap();
            *sent += 1;
        }
        let next = if *sent < PACKETS {
            session.poll_timeout()
        } else {
            None
        };
        a.rearm(next)
    }
}

#[test]
fn three_dozen_calls_are_paced_on_their_grid() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dest: SocketAddr = rx.local_addr().unwrap();
    let media_clock = MediaClock::start(2, Duration::from_millis(2));
    let t0 = Instant::now();
    let streams: Vec<Arc<Stream>> = (0..CALLS)
        .map(|i| {
            let socket = {
                let _reactor = rt.enter();
                RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()
            };
            let cfg = MediaConfig {
                codec: Codec::Pcmu,
                telephone_event_pt: Some(101),
                remote: Some(dest),
                ssrc: 100 + i,
                initial_seq: 65_530, // wraps
                initial_timestamp: INITIAL_TS,
                inactivity_timeout: Duration::from_secs(3600),
            };
            Arc::new(Stream {
                state: Mutex::new((MediaSession::new(cfg, t0), Armed::default(), 0)),
                socket,
            })
        })
        .collect();
    for s in &streams {
        let first = s.state.lock().unwrap().0.poll_timeout();
        let d = s.state.lock().unwrap().1.request(first).unwrap();
        let w: Weak<dyn Paced> = Arc::downgrade(s) as Weak<dyn Paced>;
        media_clock.arm(media_clock.assign(), d, w);
    }

    // ssrc -> (seq, timestamp) in arrival order; the arrival index of each.
    let mut got: HashMap<u32, Vec<(u16, u32, usize)>> = HashMap::new();
    let mut buf = [0u8; 2048];
    let total = (CALLS as u64 * PACKETS) as usize;
    for i in 0..total {
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        let p = rtp::parse(&buf[..n]).expect("RTP");
        got.entry(p.ssrc)
            .or_default()
            .push((p.sequence, p.timestamp, i));
    }
    assert_eq!(got.len(), CALLS as usize);
    let mut first_arrivals = Vec::new();
    let mut last_arrivals = Vec::new();
    for (ssrc, pkts) in &got {
        let s = &streams[(ssrc - 100) as usize];
        let skipped = s.state.lock().unwrap().0.stats().skipped_slots;
        assert_eq!(pkts.len() as u64, PACKETS, "ssrc {ssrc}");
        let mut jumps = 0u64;
        for w in pkts.windows(2) {
            // continuous sequence, timestamps forward on the 160-sample grid
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "ssrc {ssrc}");
            let step = w[1].1.wrapping_sub(w[0].1);
            assert!(step >= 160 && step % 160 == 0, "ssrc {ssrc}: step {step}");
            jumps += u64::from(step / 160 - 1);
        }
        assert_eq!(pkts[0].1, INITIAL_TS, "the first frame is slot 0");
        // every slot the grid jumped over is one the session counted as
        // skipped (late), never sent as a burst
        assert_eq!(jumps, skipped, "ssrc {ssrc}");
        first_arrivals.push(pkts[0].2);
        last_arrivals.push(pkts.last().unwrap().2);
    }
    // Interleaved, not one call after another: every call's first packet
    // arrived before any call's last one.
    assert!(first_arrivals.iter().max() < last_arrivals.iter().min());
    drop(rt);
}

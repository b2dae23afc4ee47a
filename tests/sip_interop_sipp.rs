//! Interop with a real SIP stack: SIPp (Debian `sip-tester`) runs its
//! built-in `uac` scenario (INVITE, 200, ACK, pause, BYE, 200) against the
//! endpoint driven by a minimal std-socket loop on 127.0.0.1, over UDP and
//! over TCP (through a `StreamFramer`). SIPp exits 0 only if every call
//! succeeded.
//!
//! Ignored by default because it needs the `sipp` binary:
//! `cargo test --test sip_interop_sipp -- --ignored`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ivr12333::sip::{
    ConnId, Endpoint, EndpointConfig, SipEvent, StreamFramer, Transport, WireLimits,
};

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Stats {
    incoming: usize,
    ended: usize,
}

/// Runs the endpoint until SIPp exits (bounded); returns SIPp's success and
/// what the endpoint saw.
fn run(tcp: bool, calls: u32) -> (bool, Stats, Endpoint) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let local = if tcp {
        listener.local_addr().unwrap()
    } else {
        udp.local_addr().unwrap()
    };
    let cfg = EndpointConfig {
        local_addr: local,
        // SIPp's rate is an average: don't let the admission cap count here.
        max_calls_per_second: 0,
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::new(cfg);
    let sipp_port = free_udp_port();
    let mut child = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            &local.to_string(),
            "-s",
            "12333",
            "-i",
            "127.0.0.1",
            "-p",
            &sipp_port.to_string(),
            "-t",
            if tcp { "t1" } else { "u1" },
            "-m",
            &calls.to_string(),
            "-l",
            "50",
            "-r",
            "100",
            "-d",
            "200",
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) must be installed");

    let mut stats = Stats {
        incoming: 0,
        ended: 0,
    };
    let mut conn: Option<(TcpStream, SocketAddr, StreamFramer)> = None;
    let mut buf = vec![0u8; 65_536];
    let mut status = None;
    // Bounded: at most ~90 s of 1 ms polls.
    for _ in 0..90_000 {
        let now = Instant::now();
        if conn.is_none()
            && let Ok((s, peer)) = listener.accept()
        {
            s.set_nonblocking(true).unwrap();
            conn = Some((s, peer, StreamFramer::new(WireLimits::default())));
        }
        let mut got = false;
        if let Ok((n, src)) = udp.recv_from(&mut buf) {
            ep.handle_input(now, Transport::Udp, src, &buf[..n]);
            got = true;
        }
        if let Some((s, peer, framer)) = conn.as_mut() {
            match s.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    framer.push(&buf[..n]);
                    while let Ok(Some(m)) = framer.next_message() {
                        ep.handle_input(now, Transport::Tcp(ConnId(1)), *peer, &m);
                    }
                    got = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(e) = ep.poll_event() {
            match e {
                SipEvent::IncomingCall { call, .. } => {
                    stats.incoming += 1;
                    ep.ringing(now, call);
                    ep.answer(now, call, SDP.to_vec());
                }
                SipEvent::CallEnded { .. } => stats.ended += 1,
                _ => {}
            }
        }
        while let Some(t) = ep.poll_transmit() {
            match t.transport {
                Transport::Udp => {
                    udp.send_to(&t.bytes, t.dest).unwrap();
                }
                Transport::Tcp(_) => {
                    if let Some((s, _, _)) = conn.as_mut() {
                        s.set_nonblocking(false).unwrap();
                        s.write_all(&t.bytes).unwrap();
                        s.set_nonblocking(true).unwrap();
                    }
                }
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        if !got {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let ok = match status {
        Some(s) => s.success(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    };
    (ok, stats, ep)
}

#[test]
#[ignore = "needs the sipp binary (Debian sip-tester)"]
fn sipp_uac_calls_over_udp() {
    // SIPP_CALLS=1000 for a longer run.
    let n: u32 = std::env::var("SIPP_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (ok, stats, ep) = run(false, n);
    assert!(ok, "sipp reported failed calls");
    assert_eq!(stats.incoming, n as usize);
    assert_eq!(stats.ended, n as usize);
    assert_eq!(ep.active_calls(), 0);
}

#[test]
#[ignore = "needs the sipp binary (Debian sip-tester)"]
fn sipp_uac_calls_over_tcp() {
    let (ok, stats, ep) = run(true, 20);
    assert!(ok, "sipp reported failed calls");
    assert_eq!(stats.incoming, 20);
    assert_eq!(stats.ended, 20);
    assert_eq!(ep.active_calls(), 0);
}

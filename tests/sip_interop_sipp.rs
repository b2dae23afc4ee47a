//! Interop with a real SIP stack: SIPp (Debian `sip-tester`) runs its
//! built-in `uac` scenario (INVITE, 200, ACK, pause, BYE, 200) against the
//! endpoint driven by a minimal std-socket loop on 127.0.0.1, over UDP and
//! over TCP (through a `StreamFramer`). SIPp exits 0 only if every call
//! succeeded.
//!
//! Runs in CI (`.ci/setup` installs `sip-tester`); without the `sipp` binary
//! every test fails with a message saying so. Bounded: 20 calls per test, a
//! 90 s wall-clock cap on each loop (plus SIPp's own `-timeout 60s`), one
//! SIPp at a time (a lock: they would share SIPp's default media port), and
//! the child is killed and reaped on every exit path (a guard's `Drop`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ivr12333::sip::{
    ConnId, Endpoint, EndpointConfig, SipEvent, StreamFramer, Transport, WireLimits,
};

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// One SIPp at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Kills and reaps the child however the test ends (panic included).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails with a clear message when `bin` is not installed.
fn require(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(
        found,
        "`{bin}` not found in PATH: these interop tests need it; run .ci/setup as root (Debian package {package})"
    );
}

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
    dtmf: usize,
    reinvites: usize,
}

/// Runs the endpoint until SIPp exits (bounded); returns SIPp's success and
/// what the endpoint saw.
fn run(tcp: bool, calls: u32) -> (bool, Stats, Endpoint) {
    run_scenario(tcp, calls, None)
}

/// `scenario`: path of a SIPp XML scenario (default: built-in `uac`).
fn run_scenario(tcp: bool, calls: u32, scenario: Option<&str>) -> (bool, Stats, Endpoint) {
    require("sipp", "sip-tester");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    let scenario_args: Vec<&str> = match scenario {
        Some(f) => vec!["-sf", f],
        None => vec!["-sn", "uac"],
    };
    let child = Command::new("sipp")
        .args(scenario_args)
        .args([
            local.to_string().as_str(),
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
    let mut child = Reaped(child);

    let mut stats = Stats {
        incoming: 0,
        ended: 0,
        dtmf: 0,
        reinvites: 0,
    };
    let mut conn: Option<(TcpStream, SocketAddr, StreamFramer)> = None;
    let mut buf = vec![0u8; 65_536];
    let mut status = None;
    // Bounded in count and in wall-clock time (a loaded machine makes each
    // pass slower, never the loop endless).
    let cap = Instant::now() + Duration::from_secs(90);
    for _ in 0..1_000_000 {
        let now = Instant::now();
        if now > cap {
            break;
        }
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
                SipEvent::Dtmf { digit: '5', .. } => stats.dtmf += 1,
                SipEvent::ReInvite { call, .. } => {
                    stats.reinvites += 1;
                    ep.answer_reinvite(now, call, Ok(SDP.to_vec()));
                }
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
        if let Some(st) = child.0.try_wait().unwrap() {
            status = Some(st);
            break;
        }
        if !got {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Not exited in time: the guard kills it; that counts as a failure.
    let ok = status.is_some_and(|s| s.success());
    drop(child);
    (ok, stats, ep)
}

#[test]
fn sipp_uac_calls_over_udp() {
    // SIPP_CALLS=1000 for a longer run.
    let n: u32 = std::env::var("SIPP_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (ok, stats, ep) = run(false, n);
    assert!(ok, "sipp reported failed calls (or did not finish in 90 s)");
    assert_eq!(stats.incoming, n as usize);
    assert_eq!(stats.ended, n as usize);
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn sipp_uac_calls_over_tcp() {
    let (ok, stats, ep) = run(true, 20);
    assert!(ok, "sipp reported failed calls (or did not finish in 90 s)");
    assert_eq!(stats.incoming, 20);
    assert_eq!(stats.ended, 20);
    assert_eq!(ep.active_calls(), 0);
}

/// INVITE, ACK, INFO (dtmf-relay), re-INVITE (hold), ACK, BYE: every answer
/// checked by SIPp, every event checked here.
const FEATURES: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ivr12333 features">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal=5
Duration=160
]]></send>
  <recv response="200"/>
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687638 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=sendonly
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 4 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

fn features(tcp: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.xml");
    std::fs::write(&path, FEATURES).unwrap();
    let (ok, stats, ep) = run_scenario(tcp, 20, Some(path.to_str().unwrap()));
    assert!(ok, "sipp reported failed calls (or did not finish in 90 s)");
    assert_eq!(stats.incoming, 20);
    assert_eq!(stats.dtmf, 20);
    assert_eq!(stats.reinvites, 20);
    assert_eq!(stats.ended, 20);
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn sipp_info_dtmf_and_hold_over_udp() {
    features(false);
}

#[test]
fn sipp_info_dtmf_and_hold_over_tcp() {
    features(true);
}

//! An INVITE flood from one source beside a real workload from another,
//! against the real binary over UDP on loopback (127.0.0.2 and 127.0.0.3
//! are distinct sources): the flood sends 500 INVITE/s for 10 s and never
//! ACKs; the real workload places 100 calls (INVITE, ACK, 1 s of call, BYE)
//! ten at a time. With the default per-source limits at least 99 of the
//! 100 real calls complete, the flood is refused with 503 (per source, so
//! the real caller is not), the metrics count the refusals by reason, and
//! the log holds summary lines, not one per refused packet.
//!
//! The RTP pool is 80 ports: without per-source limits the flood alone
//! would hold every one of them for 32 s (its INVITEs are never ACKed).
//!
//! Prints the figures recorded in BENCHMARKS.md.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, free_port_range, options_request};

const FLOOD_RATE: u64 = 500;
const FLOOD_SECS: u64 = 10;
const REAL_CALLS: usize = 100;
const REAL_CONCURRENCY: usize = 10;

struct Server {
    child: Child,
    sip: SocketAddr,
    admin: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_port = free_port();
        let (lo, _) = free_port_range(160);
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let log = dir.path().join("service.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
            .arg("serve")
            .args(["--sip-listen", &sip.to_string()])
            .args(["--rtp-ports", &format!("{lo}-{}", lo + 159)])
            .args([
                "--db",
                &format!("sqlite://{}", dir.path().join("ledger.db").display()),
            ])
            .args(["--admin-listen", &admin.to_string()])
            .env("IVR12333_LOG__LEVEL", "info")
            .env("IVR12333_SHUTDOWN_GRACE_SECS", "2")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawn ivr12333");
        let mut s = Server {
            child,
            sip,
            admin,
            log,
            _dir: dir,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        for i in 0..300 {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("ivr12333 exited early ({st}):\n{}", self.log_text());
            }
            let msg = options_request(sock.local_addr().unwrap(), self.sip, i);
            let _ = sock.send_to(msg.as_bytes(), self.sip);
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("ivr12333 did not answer OPTIONS:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.admin).expect("admin listener");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn invite(me: SocketAddr, to: SocketAddr, call_id: &str, branch: &str, media: u16) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {media} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        ip = me.ip()
    );
    format!(
        "INVITE sip:12333@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag={call_id}\r\nTo: <sip:12333@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim())
}

/// One real call from `sock`: INVITE (resent every 500 ms), 200, ACK, one
/// second of call, BYE, 200. True when it completed.
fn real_call(sock: &UdpSocket, to: SocketAddr, n: usize) -> bool {
    let me = sock.local_addr().unwrap();
    let call_id = format!("real-{n}-{}", rand::random::<u32>());
    let inv = invite(me, to, &call_id, &format!("z9hG4bKr{n}i"), 40_000);
    let mut buf = [0u8; 8192];
    let mut ok = None;
    'invite: for _ in 0..20 {
        sock.send_to(inv.as_bytes(), to).unwrap();
        for _ in 0..5 {
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let r = String::from_utf8_lossy(&buf[..len]).into_owned();
            if header(&r, "Call-ID") != Some(call_id.as_str()) {
                continue;
            }
            if r.starts_with("SIP/2.0 200") {
                ok = Some(r);
                break 'invite;
            }
            if !r.starts_with("SIP/2.0 1") {
                return false;
            }
        }
    }
    let Some(ok) = ok else { return false };
    let to_hdr = header(&ok, "To").unwrap_or_default().to_owned();
    let ack = format!(
        "ACK sip:12333@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKr{n}a\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag={call_id}\r\nTo: {to_hdr}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), to).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let bye = format!(
        "BYE sip:12333@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKr{n}b\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag={call_id}\r\nTo: {to_hdr}\r\nCall-ID: {call_id}\r\n\
         CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    for _ in 0..20 {
        sock.send_to(bye.as_bytes(), to).unwrap();
        for _ in 0..5 {
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let r = String::from_utf8_lossy(&buf[..len]);
            if header(&r, "Call-ID") == Some(call_id.as_str())
                && header(&r, "CSeq").is_some_and(|c| c.ends_with("BYE"))
                && r.starts_with("SIP/2.0 200")
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn invite_flood_from_one_source_leaves_real_calls_alone() {
    let svc = Server::start();
    let to = svc.sip;

    // The flood: 127.0.0.2, FLOOD_RATE INVITE/s for FLOOD_SECS s, never ACKed.
    let flood = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    flood
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let refused = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let flood_done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let sock = flood.try_clone().unwrap();
        let (refused, answered, done) = (refused.clone(), answered.clone(), flood_done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut seen_503 = std::collections::HashSet::new();
            let mut seen_200 = std::collections::HashSet::new();
            let mut idle = 0;
            // Until the flood is over and the replies have stopped (bounded).
            for _ in 0..2_000_000 {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        idle = 0;
                        let r = String::from_utf8_lossy(&buf[..n]);
                        let id = header(&r, "Call-ID").unwrap_or_default().to_owned();
                        if r.starts_with("SIP/2.0 503") && seen_503.insert(id.clone()) {
                            refused.fetch_add(1, Ordering::Relaxed);
                        } else if r.starts_with("SIP/2.0 200") && seen_200.insert(id) {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        idle += 1;
                        if done.load(Ordering::Relaxed) && idle > 20 {
                            return;
                        }
                    }
                }
            }
        })
    };
    let flooder = {
        let sock = flood.try_clone().unwrap();
        let done = flood_done.clone();
        std::thread::spawn(move || {
            let me = sock.local_addr().unwrap();
            let start = Instant::now();
            let total = FLOOD_RATE * FLOOD_SECS;
            for i in 0..total {
                // Paced: packet i leaves at i / FLOOD_RATE seconds.
                let due = Duration::from_micros(i * 1_000_000 / FLOOD_RATE);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                let m = invite(
                    me,
                    to,
                    &format!("flood-{i}"),
                    &format!("z9hG4bKf{i}"),
                    41_000,
                );
                let _ = sock.send_to(m.as_bytes(), to);
            }
            done.store(true, Ordering::Relaxed);
            start.elapsed()
        })
    };

    // The real workload: 127.0.0.3, REAL_CALLS calls, REAL_CONCURRENCY at a time,
    // starting once the flood has had a second to fill whatever it can.
    std::thread::sleep(Duration::from_secs(1));
    let completed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..REAL_CONCURRENCY)
        .map(|w| {
            let completed = completed.clone();
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.3:0").expect("bind 127.0.0.3");
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                for k in 0..REAL_CALLS / REAL_CONCURRENCY {
                    if real_call(&sock, to, w * 1000 + k) {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let flood_time = flooder.join().unwrap();
    receiver.join().unwrap();

    let completed = completed.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    let answered = answered.load(Ordering::Relaxed);
    let metrics = svc.metrics();
    let metric = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("ivr_admission_refused_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let log = svc.log_text();
    let log_lines = log.lines().count();
    let summary_lines = log
        .lines()
        .filter(|l| l.contains("INVITEs refused by admission control"))
        .count();
    let warn_lines = log.lines().filter(|l| l.contains("WARN")).count();
    println!(
        "flood: {} INVITEs from 127.0.0.2 in {:.1} s ({FLOOD_RATE}/s), {refused} refused with 503, {answered} answered\n\
         real: {completed}/{REAL_CALLS} calls from 127.0.0.3 completed\n\
         metrics: source_unacked={} source_rate={} source_calls={} at_capacity={}\n\
         log: {log_lines} lines, {summary_lines} refusal summary lines, {warn_lines} WARN lines",
        FLOOD_RATE * FLOOD_SECS,
        flood_time.as_secs_f64(),
        metric("source_unacked"),
        metric("source_rate"),
        metric("source_calls"),
        metric("at_capacity"),
    );

    assert!(
        completed * 100 >= 99 * REAL_CALLS as u64,
        "only {completed}/{REAL_CALLS} real calls completed\n{}",
        log.lines().rev().take(60).collect::<Vec<_>>().join("\n")
    );
    // The flood got a few calls in (the per-source unanswered cap), the
    // rest was refused.
    let flood_total = FLOOD_RATE * FLOOD_SECS;
    assert!(
        refused * 10 >= flood_total * 9,
        "{refused} of {flood_total} refused"
    );
    assert!(answered <= 100, "{answered} flood INVITEs answered");
    assert!(metric("source_unacked") + metric("source_rate") >= refused * 9 / 10);
    assert_eq!(metric("at_capacity"), 0);
    // Refusals are summarised: a line per source and 10 s interval.
    assert!(summary_lines >= 1, "no refusal summary:\n{log}");
    assert!(summary_lines <= 10, "{summary_lines} summary lines");
    assert!(
        log.lines()
            .filter(|l| l.contains("INVITEs refused") && l.contains("127.0.0.3"))
            .count()
            == 0,
        "the real caller was refused:\n{log}"
    );
    assert!(
        log_lines < 2_000,
        "{log_lines} log lines for {flood_total} flood packets"
    );
}

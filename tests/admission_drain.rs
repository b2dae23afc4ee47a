//! Draining, against the real binary on loopback: after SIGTERM with a call
//! in progress, `/healthz` answers 503 `draining` (and `/metrics` still
//! answers; the media clock has reported ticks there) for as long as the
//! process runs; new INVITEs get 503; once the call ends the process exits
//! 0 and the admin listener goes with it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, free_port_range, options_request};

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

/// Sends `msg` (resent every 500 ms) until a final response for `call_id`
/// with a CSeq ending in `method` arrives.
fn transact(sock: &UdpSocket, to: SocketAddr, msg: &str, call_id: &str, method: &str) -> String {
    let mut buf = [0u8; 8192];
    for _ in 0..20 {
        sock.send_to(msg.as_bytes(), to).unwrap();
        for _ in 0..5 {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let r = String::from_utf8_lossy(&buf[..n]).into_owned();
                if header(&r, "Call-ID") == Some(call_id)
                    && header(&r, "CSeq").is_some_and(|c| c.ends_with(method))
                    && !r.starts_with("SIP/2.0 1")
                {
                    return r;
                }
            }
        }
    }
    panic!("no final response to {method}");
}

fn invite(me: SocketAddr, to: SocketAddr, call_id: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n",
        ip = me.ip()
    );
    format!(
        "INVITE sip:12333@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}i\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag=t{call_id}\r\nTo: <sip:12333@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

#[test]
fn healthz_says_draining_until_the_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (lo, hi) = free_port_range(20);
    let log = dir.path().join("service.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .arg("serve")
        .args(["--sip-listen", &sip.to_string()])
        .args(["--rtp-ports", &format!("{lo}-{hi}")])
        .args([
            "--db",
            &format!("sqlite://{}", dir.path().join("ledger.db").display()),
        ])
        .args(["--admin-listen", &admin.to_string()])
        .env("IVR12333_LOG__LEVEL", "info")
        .env("IVR12333_SHUTDOWN_GRACE_SECS", "30")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("spawn ivr12333");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready, and healthy.
    let sock = UdpSocket::bind("127.0.0.3:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let mut ready = false;
    for i in 0..300 {
        let _ = sock.send_to(options_request(me, sip, i).as_bytes(), sip);
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && buf[..n].starts_with(b"SIP/2.0 200")
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "not ready:\n{}", log_text());
    // The RTP range (10 ports) is smaller than max_calls: said at start-up.
    assert!(log_text().contains("holds 10 RTP ports"), "{}", log_text());
    let health = http_get(admin, "/healthz").expect("admin up");
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );

    // One call in progress.
    let ok = transact(&sock, sip, &invite(me, sip, "drain1"), "drain1", "INVITE");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to_hdr = header(&ok, "To").unwrap().to_owned();
    let ack = format!(
        "ACK sip:12333@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdrain1a\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag=tdrain1\r\nTo: {to_hdr}\r\nCall-ID: drain1\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), sip).unwrap();

    // The media clock paces the call and reports its ticks (and how late
    // they were) to /metrics once a second.
    let mut ticks = 0.0;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(admin, "/metrics").unwrap_or_default();
        ticks = metrics
            .lines()
            .find_map(|l| l.strip_prefix("ivr_media_clock_ticks_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if ticks > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ticks > 0.0, "no media clock ticks in /metrics:\n{metrics}");
    // With them, what makes a tick late: the thread's wake-ups, its rounds
    // (and those the OS preempted), a call's lock held by its task.
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    for name in [
        "ivr_media_clock_rounds_total",
        "ivr_media_clock_wakeups_total",
    ] {
        assert!(value(name).is_some_and(|v| v > 0.0), "{name}:\n{metrics}");
    }
    for name in [
        "ivr_media_clock_preempted_rounds_total",
        "ivr_media_clock_lock_waits_total",
        "ivr_media_clock_late_max_seconds",
        "ivr_media_clock_wakeup_late_max_seconds",
        "ivr_media_clock_round_max_seconds",
        "ivr_media_clock_lock_wait_max_seconds",
    ] {
        assert!(value(name).is_some(), "{name}:\n{metrics}");
    }

    // SIGTERM: draining. /healthz says so (several times, while the call
    // goes on), /metrics still answers, a new INVITE gets 503.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut draining = 0;
    for _ in 0..50 {
        if let Some(h) = http_get(admin, "/healthz")
            && h.contains(" 503 ")
        {
            assert!(h.ends_with("draining\n"), "{h}");
            draining += 1;
            if draining == 3 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(draining, 3, "{}", log_text());
    let metrics = http_get(admin, "/metrics").expect("metrics while draining");
    assert!(metrics.contains("ivr_calls_active"), "{metrics}");
    let refused = transact(&sock, sip, &invite(me, sip, "drain2"), "drain2", "INVITE");
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited while a call was up"
    );

    // The caller hangs up: the process exits 0, the admin listener with it.
    let bye = format!(
        "BYE sip:12333@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdrain1b\r\nMax-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag=tdrain1\r\nTo: {to_hdr}\r\nCall-ID: drain1\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let r = transact(&sock, sip, &bye, "drain1", "BYE");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let mut status = None;
    for _ in 0..150 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("did not exit after the last call:\n{}", log_text());
    };
    assert!(status.success(), "{status}\n{}", log_text());
    assert!(
        http_get(admin, "/healthz").is_none(),
        "admin still up after exit"
    );
}

//! The real service over real loopback sockets, driven by a minimal scripted
//! SIP caller: answers, RTP, BYE from either side, CANCEL, TCP framing,
//! methods we do not serve, and a clean shutdown.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::Service;

/// A scripted UAC on one UDP socket (SIP) plus one for RTP.
struct Uac {
    sip: UdpSocket,
    rtp: UdpSocket,
    target: SocketAddr,
    call_id: String,
    tag: String,
    branch_n: u32,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

impl Uac {
    fn new(target: SocketAddr) -> Uac {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Uac {
            sip,
            rtp,
            target,
            call_id: format!("uac-{}@test", rand::random::<u64>()),
            tag: format!("t{}", rand::random::<u32>()),
            branch_n: 0,
        }
    }

    fn local(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    fn branch(&mut self) -> String {
        self.branch_n += 1;
        format!("z9hG4bK-uac-{}-{}", self.branch_n, rand::random::<u32>())
    }

    fn sdp(&self) -> String {
        let p = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {p} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        )
    }

    fn invite(&mut self, branch: &str, cseq: u32) -> String {
        let body = self.sdp();
        format!(
            "INVITE sip:12333@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:13800138000@{l}>;tag={tag}\r\nTo: <sip:12333@{t}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:caller@{l}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            t = self.target,
            l = self.local(),
            tag = self.tag,
            cid = self.call_id,
            len = body.len()
        )
    }

    fn in_dialog(&self, method: &str, cseq: u32, to_tag: &str, branch: &str) -> String {
        format!(
            "{method} sip:12333@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:13800138000@{l}>;tag={tag}\r\nTo: <sip:12333@{t}>;tag={to_tag}\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            t = self.target,
            l = self.local(),
            tag = self.tag,
            cid = self.call_id,
        )
    }

    fn send(&self, msg: &str) {
        self.sip.send_to(msg.as_bytes(), self.target).unwrap();
    }

    /// Next message within `tenths` × 100 ms.
    fn recv(&self, tenths: u32) -> Option<String> {
        let mut buf = [0u8; 65536];
        for _ in 0..tenths {
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }

    /// Waits for a response with this status (skipping others).
    fn expect_status(&self, want: u16, tenths: u32) -> String {
        for _ in 0..tenths {
            if let Some(m) = self.recv(1)
                && status(&m) == Some(want)
            {
                return m;
            }
        }
        panic!("no {want} response");
    }

    fn to_tag(msg: &str) -> String {
        let to = header(msg, "To")
            .or_else(|| header(msg, "t"))
            .expect("To header");
        to.split(";tag=")
            .nth(1)
            .expect("to tag")
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// Counts RTP packets received within `tenths` × 100 ms, and returns
    /// the service's RTP source address.
    fn count_rtp(&self, tenths: u32) -> (usize, Option<SocketAddr>) {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        let mut from = None;
        for _ in 0..tenths * 10 {
            self.rtp
                .set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            if let Ok((len, src)) = self.rtp.recv_from(&mut buf)
                && len >= 12
                && buf[0] >> 6 == 2
            {
                n += 1;
                from = Some(src);
            }
        }
        (n, from)
    }
}

#[test]
fn options_register_and_unknown_methods() {
    let svc = Service::start();
    let uac = Uac::new(svc.sip);
    uac.send(&common::options_request(uac.local(), svc.sip, 1));
    let ok = uac.expect_status(200, 30);
    assert!(
        header(&ok, "Allow").is_some_and(|a| a.contains("INVITE")),
        "{ok}"
    );

    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKreg1\r\nMax-Forwards: 70\r\n\
         From: <sip:x@127.0.0.1>;tag=r1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: reg1@test\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:x@{l}>\r\nContent-Length: 0\r\n\r\n",
        l = uac.local()
    );
    uac.send(&reg);
    let r = uac.expect_status(405, 30);
    assert!(header(&r, "Allow").is_some(), "{r}");

    let garbage = "HELLO THERE\r\n\r\n";
    uac.send(garbage);
    // Nothing sensible to answer (no Via): the service must simply survive.
    uac.send(&common::options_request(uac.local(), svc.sip, 2));
    uac.expect_status(200, 30);
}

#[test]
fn call_answers_plays_and_ends_on_bye() {
    let svc = Service::start();
    let mut uac = Uac::new(svc.sip);
    let b = uac.branch();
    let inv = uac.invite(&b, 1);
    uac.send(&inv);
    let ok = uac.expect_status(200, 50);
    assert!(ok.contains("m=audio "), "200 carries SDP: {ok}");
    assert!(ok.contains("PCMU"), "{ok}");
    let tag = Uac::to_tag(&ok);
    let b2 = uac.branch();
    let ack = uac.in_dialog("ACK", 1, &tag, &b2);
    uac.send(&ack);
    let (packets, from) = uac.count_rtp(10);
    assert!(
        packets >= 30,
        "about 50 RTP packets in a second, got {packets}"
    );
    assert!(from.is_some());
    let b3 = uac.branch();
    let bye = uac.in_dialog("BYE", 2, &tag, &b3);
    uac.send(&bye);
    uac.expect_status(200, 30);
    // Media stops after the call ends.
    std::thread::sleep(Duration::from_millis(300));
    let (after, _) = uac.count_rtp(5);
    assert!(after <= 2, "RTP kept flowing after BYE: {after}");
}

#[test]
fn cancel_before_answer_gets_487_or_call_is_answered() {
    let svc = Service::start();
    let mut uac = Uac::new(svc.sip);
    let b = uac.branch();
    let inv = uac.invite(&b, 1);
    uac.send(&inv);
    let cancel = inv
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.starts_with("Content-Type") && !l.starts_with("Contact"))
        .map(|l| {
            if l.starts_with("INVITE") {
                l.replacen("INVITE", "CANCEL", 1)
            } else if l.starts_with("CSeq") {
                "CSeq: 1 CANCEL".to_owned()
            } else if l.starts_with("Content-Length") {
                "Content-Length: 0".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n\r\n";
    uac.send(&cancel);
    // The service answers at once, so the CANCEL may arrive after the 200:
    // then the CANCEL gets 200 and the call goes on (RFC 3261 §9.2), and we
    // end it with BYE; otherwise 487 for the INVITE.
    let mut got = Vec::new();
    for _ in 0..40 {
        if let Some(m) = uac.recv(1)
            && let Some(s) = status(&m)
        {
            got.push((s, header(&m, "CSeq").unwrap_or("").to_owned(), m));
        }
        if got
            .iter()
            .any(|(s, c, _)| (*s == 487 || *s == 200) && c.contains("INVITE"))
        {
            break;
        }
    }
    let inv_final = got
        .iter()
        .find(|(s, c, _)| c.contains("INVITE") && *s >= 200)
        .expect("final response to INVITE");
    let tag = Uac::to_tag(&inv_final.2);
    let b2 = uac.branch();
    uac.send(&uac.in_dialog("ACK", 1, &tag, &b2));
    if inv_final.0 == 200 {
        let b3 = uac.branch();
        let bye = uac.in_dialog("BYE", 2, &tag, &b3);
        uac.send(&bye);
        uac.expect_status(200, 30);
    } else {
        assert_eq!(inv_final.0, 487);
    }
}

#[test]
fn bye_for_unknown_dialog_is_481() {
    let svc = Service::start();
    let mut uac = Uac::new(svc.sip);
    let b = uac.branch();
    let bye = uac.in_dialog("BYE", 5, "nosuchtag", &b);
    uac.send(&bye);
    uac.expect_status(481, 30);
}

#[test]
fn tcp_messages_split_and_joined() {
    let svc = Service::start();
    let mut s = TcpStream::connect(svc.sip).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let local = s.local_addr().unwrap();
    let opt = |n: u32| {
        format!(
            "OPTIONS sip:12333@{t} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:t@{local}>;tag=a{n}\r\nTo: <sip:12333@{t}>\r\nCall-ID: tcp{n}@test\r\nCSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            t = svc.sip
        )
    };
    // Keep-alive, one message in two writes, then two messages in one write.
    s.write_all(b"\r\n\r\n").unwrap();
    let m1 = opt(1);
    let (a, b) = m1.split_at(40);
    s.write_all(a.as_bytes()).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b.as_bytes()).unwrap();
    s.write_all(format!("{}{}", opt(2), opt(3)).as_bytes())
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        if let Ok(n) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if got.matches("SIP/2.0 200").count() >= 3 {
            break;
        }
    }
    assert_eq!(got.matches("SIP/2.0 200").count(), 3, "{got}");
    for n in 1..=3 {
        assert!(got.contains(&format!("CSeq: {n} OPTIONS")), "{got}");
    }
}

#[test]
fn sigterm_refuses_new_calls_and_exits_zero() {
    let mut svc = Service::start();
    let mut uac = Uac::new(svc.sip);
    let b = uac.branch();
    let inv = uac.invite(&b, 1);
    uac.send(&inv);
    let ok = uac.expect_status(200, 50);
    let tag = Uac::to_tag(&ok);
    let b2 = uac.branch();
    uac.send(&uac.in_dialog("ACK", 1, &tag, &b2));
    let pid_log = svc.log.clone();
    // SIGTERM while the call is up; a new call must get 503.
    let handle = {
        let sip = svc.sip;
        let log = svc.log.clone();
        std::thread::spawn(move || {
            // Once the SIP driver has started refusing (a fixed delay was
            // not always enough on a loaded machine), bounded.
            for _ in 0..200 {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("shutting down: refusing new calls") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut late = Uac::new(sip);
            let b = late.branch();
            let inv = late.invite(&b, 1);
            late.send(&inv);
            let r = late.expect_status(503, 50);
            assert!(header(&r, "Retry-After").is_some(), "{r}");
        })
    };
    // Hang up the first call after the late caller was refused, so the
    // service can exit inside its grace period.
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let b3 = uac.branch();
        let bye = uac.in_dialog("BYE", 2, &tag, &b3);
        uac.send(&bye);
    });
    let code = svc.stop();
    handle.join().unwrap();
    stopper.join().unwrap();
    assert_eq!(
        code,
        Some(0),
        "{}",
        std::fs::read_to_string(pid_log).unwrap_or_default()
    );
}

#[test]
fn sighup_reloads_a_good_dialplan_and_keeps_the_old_one_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("12333.toml");
    let original = std::fs::read_to_string("dialplans/12333.toml").unwrap();
    std::fs::write(&plan, &original).unwrap();
    let svc = Service::start_with(&["--dialplan", plan.to_str().unwrap()], &[]);

    // A broken file is rejected with its file:line, and calls still work.
    std::fs::write(
        &plan,
        original.replacen(
            "[state.",
            "[state.broken]\ntype = \"nonsense\"\n\n[state.",
            1,
        ),
    )
    .unwrap();
    svc.signal(libc::SIGHUP);
    assert!(
        svc.wait_log("dialplan reload rejected", 50),
        "{}",
        svc.log_text()
    );
    assert!(
        svc.log_text().contains("12333.toml:"),
        "the error names the file and line"
    );
    let mut uac = Uac::new(svc.sip);
    let b = uac.branch();
    let inv = uac.invite(&b, 1);
    uac.send(&inv);
    let ok = uac.expect_status(200, 50);
    let tag = Uac::to_tag(&ok);
    let b2 = uac.branch();
    uac.send(&uac.in_dialog("ACK", 1, &tag, &b2));
    let b3 = uac.branch();
    uac.send(&uac.in_dialog("BYE", 2, &tag, &b3));
    uac.expect_status(200, 30);

    // A good file is taken for new calls.
    std::fs::write(&plan, &original).unwrap();
    svc.signal(libc::SIGHUP);
    assert!(
        svc.wait_log("dialplan reloaded for new calls", 50),
        "{}",
        svc.log_text()
    );
}

/// No RTP amplification: an INVITE that is never ACKed, whose SDP names a
/// third address (127.0.0.9), makes the service send nothing there; the
/// call ends with `no_ack` after the short window (8 s by default).
#[test]
fn unacked_invite_naming_a_third_address_gets_no_rtp() {
    let svc = Service::start();
    let third = UdpSocket::bind("127.0.0.9:0").expect("bind 127.0.0.9");
    third
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut uac = Uac::new(svc.sip);
    let b = uac.branch();
    let own_port = uac.rtp.local_addr().unwrap().port().to_string();
    let victim_port = third.local_addr().unwrap().port().to_string();
    assert_eq!(
        own_port.len(),
        victim_port.len(),
        "same-length ports keep Content-Length"
    );
    let invite = uac
        .invite(&b, 1)
        .replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.9")
        .replace(
            &format!("m=audio {own_port} "),
            &format!("m=audio {victim_port} "),
        );
    uac.send(&invite);
    uac.expect_status(200, 50);
    // Never ACK. Watch the third address for 10 s (bounded): nothing.
    let mut buf = [0u8; 2048];
    let mut received = 0;
    for _ in 0..100 {
        if third.recv_from(&mut buf).is_ok() {
            received += 1;
        }
    }
    assert_eq!(received, 0, "RTP reached the third address");
    // And the call was ended by the short no-ACK window.
    assert!(
        svc.wait_log("end_reason=no_ack", 100),
        "no no_ack end:\n{}",
        svc.log_text()
    );
}

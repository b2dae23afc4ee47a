//! The real service over TCP on loopback: RFC 5626 §4.4.1 CRLF keep-alive
//! pings are answered at once, each one (not when the next bytes arrive),
//! and when a later message in the same segment breaks framing the replies
//! to the earlier ones still go out before the connection closes (RFC 4475
//! `dblreq`, over a stream).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Service;

fn connect(svc: &Service) -> TcpStream {
    let s = TcpStream::connect(svc.sip).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Reads until `want` bytes arrived, EOF, or 50 empty polls (bounded).
fn read_some(s: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (got, true),
        }
        if got.len() >= want {
            break;
        }
    }
    (got, false)
}

fn options_tcp(svc: &Service, s: &TcpStream, n: u32, content_length: &str) -> String {
    let local = s.local_addr().unwrap();
    format!(
        "OPTIONS sip:12333@{t} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKka{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:t@{local}>;tag=k{n}\r\nTo: <sip:12333@{t}>\r\nCall-ID: ka{n}@test\r\nCSeq: {n} OPTIONS\r\n\
         Content-Length: {content_length}\r\n\r\n",
        t = svc.sip
    )
}

#[test]
fn every_ping_gets_its_pong_at_once() {
    let svc = Service::start();
    let mut s = connect(&svc);
    // A ping alone, with nothing after it: the pong must come without more
    // bytes from us.
    s.write_all(b"\r\n\r\n").unwrap();
    let (got, eof) = read_some(&mut s, 2);
    assert_eq!(got, b"\r\n", "eof={eof}");
    // Again on the same connection.
    s.write_all(b"\r\n\r\n").unwrap();
    let (got, _) = read_some(&mut s, 2);
    assert_eq!(got, b"\r\n");
    // Two pings in one write: two pongs.
    s.write_all(b"\r\n\r\n\r\n\r\n").unwrap();
    let (got, _) = read_some(&mut s, 4);
    assert_eq!(got, b"\r\n\r\n");
    // A ping after a message in the same write: the 200 and a pong.
    let m = options_tcp(&svc, &s, 1, "0");
    s.write_all(format!("{m}\r\n\r\n").as_bytes()).unwrap();
    let (got, _) = read_some(&mut s, 1);
    let mut text = String::from_utf8_lossy(&got).into_owned();
    for _ in 0..20 {
        if text.ends_with("\r\n\r\n\r\n") || text.matches("SIP/2.0 200").count() > 1 {
            break;
        }
        let (more, eof) = read_some(&mut s, 1);
        text.push_str(&String::from_utf8_lossy(&more));
        if eof || more.is_empty() {
            break;
        }
    }
    // The pong travels beside the driver's reply, so it may come first.
    assert_eq!(text.matches("SIP/2.0 200").count(), 1, "{text:?}");
    assert!(
        text.starts_with("\r\nSIP/2.0 200") || text.ends_with("Content-Length: 0\r\n\r\n\r\n"),
        "one pong besides the 200: {text:?}"
    );
}

#[test]
fn replies_before_a_framing_error_are_flushed_then_closed() {
    let svc = Service::start();
    let mut s = connect(&svc);
    // Two good messages and a third whose Content-Length is not a number,
    // all in one segment.
    let seg = format!(
        "{}{}{}",
        options_tcp(&svc, &s, 1, "0"),
        options_tcp(&svc, &s, 2, "0"),
        options_tcp(&svc, &s, 3, "zero")
    );
    s.write_all(seg.as_bytes()).unwrap();
    let mut text = String::new();
    let mut closed = false;
    for _ in 0..20 {
        let (got, eof) = read_some(&mut s, usize::MAX);
        text.push_str(&String::from_utf8_lossy(&got));
        if eof {
            closed = true;
            break;
        }
    }
    assert_eq!(text.matches("SIP/2.0 200").count(), 2, "{text}");
    assert!(text.contains("CSeq: 1 OPTIONS"), "{text}");
    assert!(text.contains("CSeq: 2 OPTIONS"), "{text}");
    assert!(!text.contains("CSeq: 3 OPTIONS"), "{text}");
    assert!(closed, "the connection is closed after the framing error");
}

//! REGISTER for agent phones (RFC 3261 §10.3) on virtual time: the request
//! is held in its non-INVITE server transaction until the application
//! answers (200 / 401 / 403), retransmissions are absorbed, and an
//! unanswered one gets 500 after 5 s without leaking.

mod sip_support;

use std::net::SocketAddr;
use std::time::Duration;

use ivr12333::sip::{
    ConnId, EndpointConfig, RegisterId, RegisterReply, SipEvent, Transport, wire::Message,
};
use sip_support::*;

const PHONE: &str = "127.0.0.1:5080";

fn phone() -> SocketAddr {
    PHONE.parse().unwrap()
}

fn registrar() -> Harness {
    Harness::new(EndpointConfig {
        registrar: true,
        ..EndpointConfig::default()
    })
}

fn register(branch: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:agent01@127.0.0.1>;tag=ph1\r\n\
         To: <sip:agent01@127.0.0.1>\r\n\
         Call-ID: reg-agent01\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

const CONTACT: &str = "Contact: <sip:agent01@127.0.0.1:5080>\r\n";

fn send(h: &mut Harness, bytes: &[u8]) {
    h.send(Transport::Udp, phone(), bytes);
}

/// The one Register event expected now.
fn the_register(h: &mut Harness) -> (RegisterId, SipEvent) {
    let ev = h.take_events();
    match &ev[..] {
        [e @ SipEvent::Register { reg, .. }] => (*reg, e.clone()),
        other => panic!("{other:?}"),
    }
}

fn responses(h: &mut Harness) -> Vec<Message> {
    let out = h.take_out();
    for (_, t) in &out {
        assert_eq!(t.dest, phone());
    }
    sent(&out)
}

#[test]
fn challenge_then_register_ok() {
    let mut h = registrar();
    let first = register("r1", 1, CONTACT);
    send(&mut h, &first);
    let (reg, ev) = the_register(&mut h);
    match ev {
        SipEvent::Register {
            user,
            contact,
            expires,
            authorization,
            method_uri,
            src,
            transport,
            ..
        } => {
            assert_eq!(user, "agent01");
            assert_eq!(contact.as_deref(), Some("sip:agent01@127.0.0.1:5080"));
            assert_eq!(expires, 3600);
            assert_eq!(authorization, None);
            assert_eq!(method_uri, "sip:127.0.0.1:5060");
            assert_eq!(src, phone());
            assert_eq!(transport, Transport::Udp);
        }
        _ => unreachable!(),
    }
    // Held silently; a retransmission is absorbed (no response, no event).
    assert!(h.take_out().is_empty());
    send(&mut h, &first);
    assert!(h.take_out().is_empty());
    assert!(h.take_events().is_empty());
    assert_eq!(h.ep.pending_registers(), 1);

    let challenge = r#"Digest realm="12333", nonce="n1", algorithm=MD5, qop="auth""#;
    h.ep.respond_register(
        h.now,
        reg,
        RegisterReply::Challenge {
            www_authenticate: vec![challenge.to_owned()],
            stale: false,
        },
    );
    h.run_until(h.now);
    let r = responses(&mut h);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status(), Some(401));
    assert_eq!(r[0].header("WWW-Authenticate"), Some(challenge));
    assert_eq!(r[0].header("CSeq"), Some("1 REGISTER"));
    // Answered once: the same id again changes nothing, a retransmission
    // gets the 401 again from the transaction.
    h.ep.respond_register(h.now, reg, RegisterReply::Forbidden);
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    send(&mut h, &first);
    assert_eq!(h.take_statuses(), [401]);

    let auth = r#"Digest username="agent01", realm="12333", nonce="n1", uri="sip:127.0.0.1:5060", response="0123456789abcdef0123456789abcdef""#;
    send(
        &mut h,
        &register(
            "r2",
            2,
            &format!("{CONTACT}Expires: 600\r\nAuthorization: {auth}\r\n"),
        ),
    );
    let (reg2, ev) = the_register(&mut h);
    assert_ne!(reg2, reg);
    match &ev {
        SipEvent::Register {
            authorization,
            expires,
            ..
        } => {
            assert_eq!(authorization.as_deref(), Some(auth));
            assert_eq!(*expires, 600);
        }
        _ => unreachable!(),
    }
    // Debug never shows the credentials.
    let dbg = format!("{ev:?}");
    assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    h.ep.respond_register(
        h.now,
        reg2,
        RegisterReply::Ok {
            contact: Some("sip:agent01@127.0.0.1:5080".into()),
            expires: 600,
        },
    );
    h.run_until(h.now);
    let r = responses(&mut h);
    assert_eq!(r[0].status(), Some(200));
    assert_eq!(
        r[0].header("Contact"),
        Some("<sip:agent01@127.0.0.1:5080>;expires=600")
    );
    assert_eq!(r[0].header("Expires"), Some("600"));
    assert!(to_tag(&r[0]).is_some());
    assert_eq!(h.ep.pending_registers(), 0);
    // Timer J keeps the transactions 64·T1, then nothing is left.
    assert_no_leak(&mut h);
}

#[test]
fn stale_challenges_forbidden_and_unregister() {
    let mut h = registrar();
    send(&mut h, &register("s1", 1, CONTACT));
    let (reg, _) = the_register(&mut h);
    h.ep.respond_register(
        h.now,
        reg,
        RegisterReply::Challenge {
            www_authenticate: vec![
                r#"Digest realm="12333", nonce="n2", algorithm=SHA-256"#.into(),
                r#"Digest realm="12333", nonce="n2", algorithm=MD5, stale=true"#.into(),
            ],
            stale: true,
        },
    );
    h.run_until(h.now);
    let r = responses(&mut h);
    let ch: Vec<&str> = r[0].header_all("WWW-Authenticate").collect();
    assert_eq!(
        ch,
        [
            r#"Digest realm="12333", nonce="n2", algorithm=SHA-256, stale=true"#,
            r#"Digest realm="12333", nonce="n2", algorithm=MD5, stale=true"#,
        ]
    );

    send(&mut h, &register("s2", 2, CONTACT));
    let (reg, _) = the_register(&mut h);
    h.ep.respond_register(h.now, reg, RegisterReply::Forbidden);
    h.run_until(h.now);
    assert_eq!(h.take_statuses(), [403]);

    // Unregister (Expires: 0), remove-all (`*`), and a query (no Contact).
    let cases = [
        (
            format!("{CONTACT}Expires: 0\r\n"),
            Some("sip:agent01@127.0.0.1:5080"),
            0,
        ),
        ("Contact: *\r\nExpires: 0\r\n".to_owned(), Some("*"), 0),
        (String::new(), None, 3600),
    ];
    for (i, (extra, want_contact, want_expires)) in cases.iter().enumerate() {
        let n = u32::try_from(i).unwrap() + 3;
        send(&mut h, &register(&format!("s{n}"), n, extra));
        let (reg, ev) = the_register(&mut h);
        match ev {
            SipEvent::Register {
                contact, expires, ..
            } => {
                assert_eq!(contact.as_deref(), *want_contact);
                assert_eq!(expires, *want_expires);
            }
            _ => unreachable!(),
        }
        h.ep.respond_register(
            h.now,
            reg,
            RegisterReply::Ok {
                contact: None,
                expires: 0,
            },
        );
        h.run_until(h.now);
        let r = responses(&mut h);
        assert_eq!(r[0].status(), Some(200));
        assert_eq!(r[0].header("Contact"), None);
        assert_eq!(r[0].header("Expires"), Some("0"));
    }
    assert_no_leak(&mut h);
}

#[test]
fn unanswered_register_gets_500_after_5s() {
    let mut h = registrar();
    let req = register("t1", 1, CONTACT);
    send(&mut h, &req);
    let (reg, _) = the_register(&mut h);
    h.advance(Duration::from_millis(4_900));
    send(&mut h, &req);
    assert!(h.take_out().is_empty(), "still held");
    h.advance(Duration::from_millis(100));
    assert_eq!(h.take_statuses(), [500]);
    assert_eq!(h.ep.pending_registers(), 0);
    // Too late: ignored.
    h.ep.respond_register(h.now, reg, RegisterReply::Forbidden);
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    assert_no_leak(&mut h);
}

#[test]
fn malformed_registers_and_injection_attempts() {
    let mut h = registrar();
    for (i, extra) in [
        format!("{CONTACT}Expires: soon\r\n"),
        "Contact: *\r\n".to_owned(),
        "Contact: <sip:a@h>;expires=x\r\n".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        // Distinct CSeqs: same Call-ID/From tag/CSeq on another branch
        // would be a merged request (482), not what is tested here.
        let cseq = 10 + u32::try_from(i).unwrap();
        send(&mut h, &register(&format!("m{i}"), cseq, extra));
        assert_eq!(h.take_statuses(), [400], "{extra}");
        assert!(h.take_events().is_empty());
    }
    // A reply with CR/LF in it is never written: 500 instead.
    send(&mut h, &register("inj1", 20, CONTACT));
    let (reg, _) = the_register(&mut h);
    h.ep.respond_register(
        h.now,
        reg,
        RegisterReply::Ok {
            contact: Some("sip:a@h>\r\nX-Evil: 1".into()),
            expires: 60,
        },
    );
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(sent(&out)[0].status(), Some(500));
    assert!(!String::from_utf8_lossy(&out[0].1.bytes).contains("X-Evil"));
    send(&mut h, &register("inj2", 21, CONTACT));
    let (reg, _) = the_register(&mut h);
    h.ep.respond_register(
        h.now,
        reg,
        RegisterReply::Challenge {
            www_authenticate: vec!["Digest nonce=\"a\"\r\nX-Evil: 1".into()],
            stale: false,
        },
    );
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(sent(&out)[0].status(), Some(500));
    assert!(!String::from_utf8_lossy(&out[0].1.bytes).contains("X-Evil"));
    assert_no_leak(&mut h);
}

#[test]
fn register_is_405_unless_configured() {
    let mut h = Harness::standard();
    send(&mut h, &register("n1", 1, CONTACT));
    let r = responses(&mut h);
    assert_eq!(r[0].status(), Some(405));
    assert!(!r[0].header("Allow").unwrap().contains("REGISTER"));
    assert!(h.take_events().is_empty());
    // A registrar lists REGISTER in the Allow of its 405s.
    let mut h = registrar();
    send(
        &mut h,
        &String::from_utf8(register("n2", 1, ""))
            .unwrap()
            .replace("REGISTER", "PUBLISH")
            .into_bytes(),
    );
    let r = responses(&mut h);
    assert_eq!(r[0].status(), Some(405));
    assert!(r[0].header("Allow").unwrap().contains("REGISTER"));
    assert_no_leak(&mut h);
}

#[test]
fn tcp_register_and_closed_connection() {
    let mut h = registrar();
    let tcp = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .unwrap()
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .into_bytes()
    };
    h.send(
        Transport::Tcp(ConnId(7)),
        phone(),
        &tcp(&register("c1", 1, CONTACT)),
    );
    let (reg, ev) = the_register(&mut h);
    assert!(matches!(
        ev,
        SipEvent::Register {
            transport: Transport::Tcp(ConnId(7)),
            ..
        }
    ));
    h.ep.respond_register(h.now, reg, RegisterReply::Forbidden);
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out[0].1.transport, Transport::Tcp(ConnId(7)));
    // Timer J is zero over TCP.
    h.advance(Duration::from_millis(1));
    assert_eq!(h.ep.transaction_count(), 0);

    // The connection drops while the app decides: nothing is held.
    h.send(
        Transport::Tcp(ConnId(8)),
        phone(),
        &tcp(&register("c2", 2, CONTACT)),
    );
    let (reg, _) = the_register(&mut h);
    h.ep.connection_closed(ConnId(8));
    assert_eq!(h.ep.pending_registers(), 0);
    h.ep.respond_register(h.now, reg, RegisterReply::Forbidden);
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    assert_no_leak(&mut h);
}

#[test]
fn waiting_registers_are_capped() {
    let mut h = registrar();
    // 1024 held at once (distinct Call-IDs: no merged-request 482).
    for i in 0..1024u32 {
        let r = String::from_utf8(register(&format!("cap{i}"), 1, CONTACT))
            .unwrap()
            .replace("reg-agent01", &format!("reg-{i}"));
        send(&mut h, r.as_bytes());
    }
    assert_eq!(h.ep.pending_registers(), 1024);
    assert!(h.take_out().is_empty());
    assert_eq!(h.take_events().len(), 1024);
    let r = String::from_utf8(register("cap-extra", 1, CONTACT))
        .unwrap()
        .replace("reg-agent01", "reg-extra");
    send(&mut h, r.as_bytes());
    let r = responses(&mut h);
    assert_eq!(r[0].status(), Some(503));
    assert_eq!(r[0].header("Retry-After"), Some("5"));
    assert!(h.take_events().is_empty());
    // All of them time out with 500 and nothing is left.
    h.advance(Duration::from_secs(5));
    assert_eq!(
        h.take_statuses().iter().filter(|&&c| c == 500).count(),
        1024
    );
    assert_eq!(h.ep.pending_registers(), 0);
    assert_no_leak(&mut h);
}

/// RFC 3327: a REGISTER that came through a proxy carries Path; the values
/// reach the application in order and are echoed in the 200 only when the
/// UA listed `path` in Supported (§5.3).
#[test]
fn path_is_handed_over_and_echoed_when_supported() {
    const PATH: &str = "<sip:127.0.0.1:5070;lr;received=sip:127.0.0.1:5080>";
    for (supported, echoed) in [("Supported: path\r\n", true), ("", false)] {
        let mut h = registrar();
        let extra = format!("{CONTACT}Path: {PATH}, <sip:10.0.0.9;lr>\r\n{supported}");
        send(&mut h, &register("p1", 1, &extra));
        let (reg, ev) = the_register(&mut h);
        let SipEvent::Register { path, .. } = &ev else {
            unreachable!()
        };
        assert_eq!(path, &[PATH.to_owned(), "<sip:10.0.0.9;lr>".to_owned()]);
        assert!(format!("{ev:?}").contains("received=sip:127.0.0.1:5080"));
        h.ep.respond_register(
            h.now,
            reg,
            RegisterReply::Ok {
                contact: Some("sip:agent01@127.0.0.1:5080".into()),
                expires: 600,
            },
        );
        h.run_until(h.now);
        let r = responses(&mut h);
        assert_eq!(r[0].status(), Some(200));
        let paths: Vec<&str> = r[0].header_all("Path").collect();
        if echoed {
            assert_eq!(paths, [PATH, "<sip:10.0.0.9;lr>"]);
        } else {
            assert!(paths.is_empty(), "{paths:?}");
        }
        assert_no_leak(&mut h);
    }
}

/// An unregister (no binding made) does not echo the Path; a malformed
/// Path is a 400 without reaching the application.
#[test]
fn path_not_echoed_on_removal_and_bad_path_is_400() {
    let mut h = registrar();
    let extra =
        format!("{CONTACT}Expires: 0\r\nPath: <sip:127.0.0.1:5070;lr>\r\nSupported: path\r\n");
    send(&mut h, &register("p2", 1, &extra));
    let (reg, _) = the_register(&mut h);
    h.ep.respond_register(
        h.now,
        reg,
        RegisterReply::Ok {
            contact: None,
            expires: 0,
        },
    );
    h.run_until(h.now);
    let r = responses(&mut h);
    assert_eq!(r[0].status(), Some(200));
    assert_eq!(r[0].header("Path"), None);

    send(
        &mut h,
        &register("p3", 2, &format!("{CONTACT}Path: sip:10.0.0.9;lr\r\n")),
    );
    assert!(h.take_events().is_empty());
    assert_eq!(h.take_statuses(), [400]);
    assert_no_leak(&mut h);
}

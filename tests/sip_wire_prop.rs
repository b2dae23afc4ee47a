//! Property tests for the SIP wire front end and the endpoint's robustness:
//! arbitrary or mutated bytes never panic, stream framing is independent of
//! how the bytes are cut, and compact/long/oddly-cased/folded/bare-LF forms
//! of a message normalise to the same thing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ivr12333::sip::wire::{Parsed, WireLimits, parse};
use ivr12333::sip::{ConnId, Endpoint, EndpointConfig, StreamFramer, Transport};
use proptest::prelude::*;

const INVITE: &str = "INVITE sip:12333@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKprop;rport\r\nMax-Forwards: 70\r\nFrom: \"A\" <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:12333@127.0.0.1>\r\nCall-ID: prop-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\nContent-Length: 25\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\n";

fn src() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

/// Drives an endpoint with `inputs`, then all timers out; asserts no leak.
fn drive(inputs: &[Vec<u8>]) {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let mut now = Instant::now();
    for (i, m) in inputs.iter().enumerate() {
        let t = if i % 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp(ConnId(7))
        };
        ep.handle_input(now, t, src(), m);
        while ep.poll_transmit().is_some() {}
        while let Some(e) = ep.poll_event() {
            if let ivr12333::sip::SipEvent::IncomingCall { call, .. } = e {
                ep.answer(now, call, b"v=0\r\n".to_vec());
                ep.hangup(now, call);
            }
        }
        now += Duration::from_millis(10);
    }
    for _ in 0..10_000 {
        let Some(t) = ep.poll_timeout() else { break };
        now = now.max(t);
        ep.handle_timeout(now);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
    assert_eq!(ep.transaction_count(), 0);
    assert_eq!(ep.active_calls(), 0);
}

/// Every header spelled in one of several equivalent ways.
fn variant(choices: &[u8], lf_only: bool) -> String {
    let pick = |i: usize| choices.get(i).copied().unwrap_or(0);
    let name = |i: usize, long: &str, short: Option<&str>| -> String {
        match (pick(i) % 4, short) {
            (0, Some(s)) => s.to_owned(),
            (1, Some(s)) => s.to_ascii_uppercase(),
            (2, _) => long.to_ascii_lowercase(),
            (3, _) => long.to_ascii_uppercase(),
            _ => long.to_owned(),
        }
    };
    let fold = |i: usize| if pick(i) % 3 == 0 { "\r\n  " } else { " " };
    let mut s = String::from("INVITE sip:12333@127.0.0.1 SIP/2.0\r\n");
    s += &format!(
        "{}:{}SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKprop;rport\r\n",
        name(0, "Via", Some("v")),
        fold(10)
    );
    s += &format!("{}: 70\r\n", name(1, "Max-Forwards", None));
    s += &format!(
        "{}:{}\"A\" <sip:a@127.0.0.1>;tag=f1\r\n",
        name(2, "From", Some("f")),
        fold(11)
    );
    s += &format!("{}: <sip:12333@127.0.0.1>\r\n", name(3, "To", Some("t")));
    s += &format!("{}: prop-1\r\n", name(4, "Call-ID", Some("i")));
    s += &format!("{}: 1 INVITE\r\n", name(5, "CSeq", None));
    s += &format!(
        "{}: <sip:a@127.0.0.1:5070>\r\n",
        name(6, "Contact", Some("m"))
    );
    s += &format!(
        "{}: application/sdp\r\n",
        name(7, "Content-Type", Some("c"))
    );
    s += &format!(
        "{}: 25\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\n",
        name(8, "Content-Length", Some("l"))
    );
    if lf_only {
        // Bare LF in the head only (the body is opaque bytes, counted by CL).
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        let body_fixed = body.to_owned();
        format!("{}\n\n{}", head.replace("\r\n", "\n"), body_fixed)
    } else {
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes, &WireLimits::default());
        let mut f = StreamFramer::new(WireLimits::default());
        f.push(&bytes);
        for _ in 0..64 {
            match f.next_message() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        drive(&[bytes]);
    }

    #[test]
    fn mutated_invites_never_panic_nor_leak(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..12)
    ) {
        let mut m = INVITE.as_bytes().to_vec();
        for (pos, byte, op) in edits {
            let len = m.len().max(1);
            let p = pos % len;
            match op {
                0 if p < m.len() => m[p] = byte,
                1 => m.insert(p.min(m.len()), byte),
                _ if p < m.len() => { m.remove(p); }
                _ => {}
            }
        }
        drive(&[m.clone(), m]);
    }

    #[test]
    fn split_anywhere_frames_the_same(cut1 in 0usize..400, cut2 in 0usize..400, ka in 0usize..3) {
        let one = INVITE.as_bytes();
        let mut stream = Vec::new();
        for _ in 0..ka { stream.extend_from_slice(b"\r\n\r\n"); }
        stream.extend_from_slice(one);
        stream.extend_from_slice(one);
        let mut cuts = [cut1 % (stream.len() + 1), cut2 % (stream.len() + 1)];
        cuts.sort();
        let mut f = StreamFramer::new(WireLimits::default());
        let mut got = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            f.push(&stream[start..c]);
            start = c;
            while let Some(m) = f.next_message().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, vec![one.to_vec(), one.to_vec()]);
        let mut pongs = 0;
        while f.take_pong() { pongs += 1; }
        prop_assert_eq!(pongs, ka);
    }

    #[test]
    fn compact_and_long_names_normalise_the_same(
        choices in proptest::collection::vec(any::<u8>(), 12),
        lf_only in any::<bool>()
    ) {
        let canonical = match parse(INVITE.as_bytes(), &WireLimits::default()) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{other:?}"),
        };
        let text = variant(&choices, lf_only);
        let m = match parse(text.as_bytes(), &WireLimits::default()) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(&m, &canonical);
        prop_assert_eq!(m.to_bytes(), canonical.to_bytes());
        // and the stream framer cuts the variant out whole as well
        let mut f = StreamFramer::new(WireLimits::default());
        f.push(text.as_bytes());
        prop_assert_eq!(f.next_message().unwrap(), Some(text.into_bytes()));
    }
}

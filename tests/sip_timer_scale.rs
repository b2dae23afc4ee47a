//! The timer heap on virtual time: a few scenarios of `sip_harness` run
//! once on an idle endpoint and once with thousands of idle transactions
//! alive (unanswered INVITEs, OPTIONS in Timer J), and must send exactly the
//! same messages at exactly the same times to the scenario's caller. Also
//! checks that the heap does not grow without bound (stale entries are
//! rebuilt away) and that every transaction still runs out.

mod sip_support;

use std::net::SocketAddr;
use std::time::Duration;

use ivr12333::sip::{EndpointConfig, SipEvent, Transport};
use sip_support::*;

const FILLER: usize = 3000;

fn filler_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, (i % 250) as u8 + 1], 6000 + (i / 250) as u16))
}

fn filler_request(method: &str, i: usize) -> Vec<u8> {
    let src = filler_addr(i);
    let (ct, body) = if method == "INVITE" {
        ("Content-Type: application/sdp\r\n", SDP)
    } else {
        ("", "")
    };
    format!(
        "{method} sip:12333@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-fill-{method}-{i};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:filler{i}@{src}>;tag=f{i}\r\n\
         To: <sip:12333@127.0.0.1:5060>\r\n\
         Call-ID: filler-{method}-{i}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:filler{i}@{src}>\r\n\
         {ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn harness(filler: usize) -> Harness {
    let mut h = Harness::new(EndpointConfig {
        max_calls: 1_000_000,
        max_calls_per_second: 0,
        ..EndpointConfig::default()
    });
    for i in 0..filler {
        // An unanswered INVITE: a live call and transaction with no timer.
        h.send(Transport::Udp, filler_addr(i), &filler_request("INVITE", i));
        // OPTIONS: a completed transaction waiting 32 s in Timer J.
        h.send(
            Transport::Udp,
            filler_addr(i),
            &filler_request("OPTIONS", i),
        );
    }
    assert_eq!(h.ep.transaction_count(), 2 * filler);
    h.take_out();
    h.take_events();
    h
}

/// What the scenario's caller received: (ms since the scenario began, start line).
fn to_caller(h: &mut Harness, since: Duration) -> Vec<(u128, String)> {
    h.take_out()
        .into_iter()
        .filter(|(_, t)| t.dest == caller_addr())
        .map(|(d, t)| {
            let line = String::from_utf8_lossy(&t.bytes)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            ((d - since).as_millis(), line)
        })
        .collect()
}

fn incoming(h: &mut Harness, call_id: &str) -> ivr12333::sip::CallHandle {
    h.take_events()
        .into_iter()
        .find_map(|e| match e {
            SipEvent::IncomingCall {
                call, call_id: c, ..
            } if c == call_id => Some(call),
            _ => None,
        })
        .expect("IncomingCall")
}

/// INVITE, 180/200, ACK, BYE from the caller.
fn basic_call(h: &mut Harness) -> Vec<(u128, String)> {
    let since = h.elapsed();
    let mut leg = Leg::new("scale-basic");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    let call = incoming(h, "scale-basic");
    h.ep.ringing(h.now, call);
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.advance(Duration::from_millis(1200));
    let ok = h
        .out
        .iter()
        .map(|(_, t)| msg(&t.bytes))
        .find(|m| m.status() == Some(200))
        .expect("200");
    leg.to_tag = to_tag(&ok);
    h.udp(&leg.ack_2xx(1, None));
    h.advance(Duration::from_secs(3));
    let (_, bye) = leg.next("BYE", "", None);
    h.udp(&bye);
    h.advance(Duration::from_secs(1));
    to_caller(h, since)
}

/// The ACK never comes: 2xx retransmitted T1 doubling to T2, BYE at 64·T1.
fn ack_lost(h: &mut Harness) -> Vec<(u128, String)> {
    let since = h.elapsed();
    let mut leg = Leg::new("scale-acklost");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    let call = incoming(h, "scale-acklost");
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.advance(Duration::from_secs(40));
    to_caller(h, since)
}

/// 486: Timer G resends until Timer H.
fn rejected(h: &mut Harness) -> Vec<(u128, String)> {
    let since = h.elapsed();
    let mut leg = Leg::new("scale-reject");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    let call = incoming(h, "scale-reject");
    h.ep.reject(h.now, call, 486);
    h.advance(Duration::from_secs(40));
    to_caller(h, since)
}

#[test]
fn scenarios_unchanged_with_thousands_of_idle_transactions() {
    type Scenario = fn(&mut Harness) -> Vec<(u128, String)>;
    let scenarios: [(&str, Scenario); 3] = [
        ("basic_call", basic_call),
        ("ack_lost", ack_lost),
        ("rejected", rejected),
    ];
    for (name, scenario) in scenarios {
        let mut idle = harness(0);
        let expected = scenario(&mut idle);
        assert!(expected.len() >= 3, "{name}: {expected:?}");
        let mut busy = harness(FILLER);
        let got = scenario(&mut busy);
        assert_eq!(got, expected, "{name}");
        // The OPTIONS ran out in Timer J (32 s) meanwhile; the heap holds
        // no more entries than a small multiple of what is alive.
        let live = busy.ep.transaction_count() + busy.ep.active_calls();
        assert!(
            busy.ep.timer_entries() <= 4 * live + 1024,
            "{name}: {} heap entries for {live} live",
            busy.ep.timer_entries()
        );
    }
    // The schedules themselves (from sip_harness): 2xx at 0, 0.5, 1.5, 3.5,
    // 7.5, 11.5 ... s; BYE at 32 s.
    let mut h = harness(FILLER);
    let got = ack_lost(&mut h);
    let oks: Vec<u128> = got
        .iter()
        .filter(|(_, l)| l.starts_with("SIP/2.0 200"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(&oks[..6], &[0, 500, 1500, 3500, 7500, 11500]);
    assert!(
        got.iter()
            .any(|(t, l)| *t == 32_000 && l.starts_with("BYE"))
    );
}

#[test]
fn idle_transactions_all_run_out() {
    let mut h = harness(FILLER);
    // The unanswered INVITEs: the application rejects them all.
    let calls = h.calls.clone();
    for c in calls {
        h.ep.reject(h.now, c, 486);
    }
    h.settle();
    h.settle();
    assert_eq!(h.ep.transaction_count(), 0);
    assert_eq!(h.ep.active_calls(), 0);
    assert_eq!(h.ep.poll_timeout(), None);
    assert_eq!(h.ep.timer_entries(), 0);
}

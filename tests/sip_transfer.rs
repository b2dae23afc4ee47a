//! Agent transfer on virtual time: REFER client side and the NOTIFYs of its
//! implicit subscription (RFC 3515), outbound INVITE headers and
//! Max-Forwards (RFC 3261 §8.1.1.6), and 483 for a caller out of hops.

mod sip_support;

use std::net::SocketAddr;
use std::time::Duration;

use ivr12333::sip::{
    CallHandle, EndReason, OutboundCall, SipError, SipEvent, Transport, wire::Message,
};
use sip_support::*;

const AGENT_URI: &str = "sip:agent01@127.0.0.1:5091";

/// Sends REFER on `call` and returns the REFER as sent (outputs cleared).
fn refer(h: &mut Harness, call: CallHandle) -> Message {
    h.ep.refer(h.now, call, AGENT_URI).expect("refer");
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1, "one REFER");
    assert_eq!(out[0].1.dest, caller_addr());
    let r = msg(&out[0].1.bytes);
    assert_eq!(r.method(), Some("REFER"));
    r
}

/// The caller answers our request `req`.
fn caller_answers(h: &mut Harness, req: &Message, code: u16) {
    h.udp(&agent_response(req, code, None, "", ""));
}

/// The caller sends an in-dialog NOTIFY; returns the status we answered.
fn notify(h: &mut Harness, leg: &mut Leg, headers: &str, body: Option<(&str, &str)>) -> u16 {
    let (_, n) = leg.next("NOTIFY", headers, body);
    h.udp(&n);
    let out = h.take_out();
    assert_eq!(out.len(), 1, "exactly one response to NOTIFY");
    let r = msg(&out[0].1.bytes);
    assert_eq!(
        r.header("CSeq"),
        Some(format!("{} NOTIFY", leg.cseq).as_str())
    );
    r.status().unwrap()
}

const ACTIVE: &str = "Event: refer\r\nSubscription-State: active;expires=60\r\n";
const TERMINATED: &str =
    "Event: refer;id=1\r\nSubscription-State: terminated;reason=noresource\r\n";

/// A NOTIFY body: (Content-Type, text).
type Body<'a> = Option<(&'a str, &'a str)>;

fn frag(line: &str) -> Option<(&'static str, &str)> {
    Some(("message/sipfrag", line))
}

#[test]
fn refer_202_notify_trying_then_200_terminated() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("xfer1");
    let call = confirmed_call(&mut h, &mut leg);
    let r = refer(&mut h, call);
    assert_eq!(r.request_uri(), Some("sip:13800138000@127.0.0.1:5070"));
    assert_eq!(r.header("Refer-To"), Some("<sip:agent01@127.0.0.1:5091>"));
    assert_eq!(r.header("Referred-By"), Some("<sip:12333@127.0.0.1:5060>"));
    assert_eq!(r.header("CSeq"), Some("1 REFER"));
    assert!(r.header("To").unwrap().contains("tag=ft-xfer1"));
    assert_eq!(
        r.header("From").unwrap(),
        format!(
            "<sip:12333@127.0.0.1:5060>;tag={}",
            leg.to_tag.as_deref().unwrap()
        )
    );
    assert!(r.header("Contact").is_some());
    assert!(h.take_events().is_empty());

    caller_answers(&mut h, &r, 202);
    assert_eq!(h.take_events(), [SipEvent::ReferAccepted { call }]);
    // A retransmitted 202 is absorbed by the transaction.
    caller_answers(&mut h, &r, 202);
    assert!(h.take_events().is_empty());

    assert_eq!(
        notify(&mut h, &mut leg, ACTIVE, frag("SIP/2.0 100 Trying\r\n")),
        200
    );
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferNotify {
            call,
            status: 100,
            terminated: false
        }]
    );
    assert_eq!(
        notify(&mut h, &mut leg, TERMINATED, frag("SIP/2.0 200 OK\r\n")),
        200
    );
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferNotify {
            call,
            status: 200,
            terminated: true
        }]
    );
    // The subscription is over: a further NOTIFY matches nothing.
    assert_eq!(
        notify(&mut h, &mut leg, TERMINATED, frag("SIP/2.0 200 OK\r\n")),
        481
    );
    assert!(h.take_events().is_empty());

    // The application hangs up after the transfer.
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let bye = msg(&h.take_out()[0].1.bytes);
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(bye.header("CSeq"), Some("2 BYE"));
    caller_answers(&mut h, &bye, 200);
    assert_eq!(h.ended(), [EndReason::LocalBye]);
    assert_no_leak(&mut h);
}

#[test]
fn refer_rejected_403_then_405() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("xfer2");
    let call = confirmed_call(&mut h, &mut leg);
    let r = refer(&mut h, call);
    caller_answers(&mut h, &r, 403);
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferFailed { call, status: 403 }]
    );
    // No subscription after a failed REFER.
    assert_eq!(
        notify(&mut h, &mut leg, ACTIVE, frag("SIP/2.0 100 Trying")),
        481
    );
    // A second attempt is allowed once the first is over.
    let r = refer(&mut h, call);
    assert_eq!(r.header("CSeq"), Some("2 REFER"));
    caller_answers(&mut h, &r, 405);
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferFailed { call, status: 405 }]
    );
    // The call itself is untouched.
    assert_eq!(h.ep.active_calls(), 1);
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let bye = msg(&h.take_out()[0].1.bytes);
    caller_answers(&mut h, &bye, 200);
    assert_no_leak(&mut h);
}

#[test]
fn refer_timeout_is_408_after_timer_f() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("xfer3");
    let call = confirmed_call(&mut h, &mut leg);
    let start = h.elapsed();
    refer(&mut h, call);
    h.advance(Duration::from_millis(31_900));
    assert!(h.take_events().is_empty());
    let retx = sent(&h.take_out());
    // Timer E over UDP: 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s.
    assert!(retx.len() >= 8, "{} retransmissions", retx.len());
    assert!(retx.iter().all(|m| m.method() == Some("REFER")));
    h.advance(Duration::from_millis(200));
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferFailed { call, status: 408 }]
    );
    assert_eq!(
        h.elapsed() - start,
        Duration::from_secs(32) + Duration::from_millis(100)
    );
    assert_eq!(h.ep.active_calls(), 1);
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let bye = msg(&h.take_out()[0].1.bytes);
    caller_answers(&mut h, &bye, 200);
    assert_no_leak(&mut h);
}

#[test]
fn bad_notifies_are_refused_and_the_subscription_survives() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("xfer4");
    let call = confirmed_call(&mut h, &mut leg);
    let r = refer(&mut h, call);
    caller_answers(&mut h, &r, 202);
    h.take_events();
    let cases: [(&str, Body, u16); 6] = [
        (ACTIVE, frag("SIP/2.0 2OO OK\r\n"), 400),
        (ACTIVE, frag("HTTP/1.1 200 OK\r\n"), 400),
        (ACTIVE, None, 400),
        ("Event: refer\r\n", frag("SIP/2.0 200 OK\r\n"), 400),
        (
            "Event: presence\r\nSubscription-State: active\r\n",
            frag("SIP/2.0 200 OK"),
            489,
        ),
        (ACTIVE, Some(("text/plain", "SIP/2.0 200 OK")), 415),
    ];
    for (headers, body, code) in cases {
        assert_eq!(
            notify(&mut h, &mut leg, headers, body),
            code,
            "{headers} {body:?}"
        );
        assert!(h.take_events().is_empty());
    }
    assert_eq!(
        notify(
            &mut h,
            &mut leg,
            TERMINATED,
            frag("SIP/2.0 486 Busy Here\r\n")
        ),
        200
    );
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferNotify {
            call,
            status: 486,
            terminated: true
        }]
    );
    // A failed transfer: the caller is still ours.
    assert_eq!(h.ep.active_calls(), 1);
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let bye = msg(&h.take_out()[0].1.bytes);
    caller_answers(&mut h, &bye, 200);
    assert_no_leak(&mut h);
}

#[test]
fn notify_before_202_and_reinvite_during_refer() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("xfer5");
    let call = confirmed_call(&mut h, &mut leg);
    let r = refer(&mut h, call);
    // RFC 3515 §2.4.4: the NOTIFY may overtake the 202.
    assert_eq!(
        notify(&mut h, &mut leg, ACTIVE, frag("SIP/2.0 100 Trying")),
        200
    );
    // A re-INVITE from the caller meanwhile is not glare (another method):
    // served as usual.
    leg.cseq += 1;
    let (_, reinv) = leg.invite(Some(SDP));
    h.udp(&reinv);
    assert_eq!(h.take_statuses(), [100]);
    let ev = h.take_events();
    assert!(matches!(
        ev[..],
        [
            SipEvent::ReferNotify {
                status: 100,
                terminated: false,
                ..
            },
            SipEvent::ReInvite { .. }
        ]
    ));
    // A second REFER while the first is unanswered is refused locally.
    assert_eq!(
        h.ep.refer(h.now, call, AGENT_URI),
        Err(SipError::ReferPending)
    );
    caller_answers(&mut h, &r, 202);
    assert_eq!(h.take_events(), [SipEvent::ReferAccepted { call }]);
    h.ep.answer_reinvite(h.now, call, Ok(b"v=0\r\n".to_vec()));
    h.run_until(h.now);
    assert_eq!(h.take_statuses(), [200]);
    let ack = leg.ack_2xx(leg.cseq, None);
    h.udp(&ack);
    assert!(matches!(
        h.take_events()[..],
        [SipEvent::ReInviteAck { .. }]
    ));
    // The caller hangs up mid-transfer: the call ends once, nothing leaks.
    let (_, bye) = leg.next("BYE", "", None);
    h.udp(&bye);
    assert_eq!(h.take_statuses(), [200]);
    assert_eq!(h.ended(), [EndReason::RemoteBye]);
    assert_no_leak(&mut h);
}

#[test]
fn refer_api_errors() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("xfer6");
    let (call, _) = start_call(&mut h, &mut leg);
    assert_eq!(
        h.ep.refer(h.now, call, AGENT_URI),
        Err(SipError::NotConfirmed)
    );
    assert_eq!(
        h.ep.refer(h.now, CallHandle(9999), AGENT_URI),
        Err(SipError::UnknownCall)
    );
    h.ep.reject(h.now, call, 486);
    h.run_until(h.now);
    let mut leg = Leg::new("xfer6b");
    let call = confirmed_call(&mut h, &mut leg);
    for bad in [
        "",
        "agent01",
        "sip:a@h>\r\nVia: x",
        "sip:agent 01@h",
        "<sip:a@h>",
    ] {
        assert_eq!(
            h.ep.refer(h.now, call, bad),
            Err(SipError::InvalidUri),
            "{bad:?}"
        );
    }
    h.run_until(h.now);
    assert!(h.take_out().is_empty(), "nothing sent for refused REFERs");
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let out = h.take_out();
    let bye = msg(&out.last().unwrap().1.bytes);
    caller_answers(&mut h, &bye, 200);
    assert_no_leak(&mut h);
}

#[test]
fn notify_outside_a_dialog_is_481() {
    let mut h = Harness::standard();
    let leg = Leg::new("xfer7");
    let n = leg.build(
        "NOTIFY",
        1,
        "NOTIFY",
        "z9hG4bK-n1",
        false,
        ACTIVE,
        frag("SIP/2.0 200 OK"),
    );
    h.udp(&n);
    assert_eq!(h.take_statuses(), [481]);
    // In a dialog that does not exist (a To tag nobody gave out): 481 too.
    let mut ghost = Leg::new("xfer7b");
    ghost.to_tag = Some("nobody".into());
    let (_, n) = ghost.next("NOTIFY", ACTIVE, frag("SIP/2.0 200 OK"));
    h.udp(&n);
    assert_eq!(h.take_statuses(), [481]);
    assert!(h.take_events().is_empty());
    assert_no_leak(&mut h);
}

// ----- outbound INVITE headers and Max-Forwards ---------------------------

fn agent() -> SocketAddr {
    AGENT.parse().unwrap()
}

#[test]
fn outbound_invite_carries_headers_and_max_forwards() {
    let mut h = Harness::standard();
    let call =
        h.ep.try_invite(
            h.now,
            OutboundCall {
                request_uri: format!("sip:agent01@{AGENT}"),
                dest: agent(),
                sdp: Some(b"v=0\r\noffer".to_vec()),
                headers: vec![
                    ("X-Ivr-Caller".into(), "13800138000".into()),
                    (
                        "P-Asserted-Identity".into(),
                        "<sip:13800138000@127.0.0.1>".into(),
                    ),
                ],
                max_forwards: 69,
                ..Default::default()
            },
        )
        .unwrap();
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.dest, agent());
    let inv = msg(&out[0].1.bytes);
    assert_eq!(inv.header("Max-Forwards"), Some("69"));
    assert_eq!(inv.header("X-Ivr-Caller"), Some("13800138000"));
    assert_eq!(
        inv.header("P-Asserted-Identity"),
        Some("<sip:13800138000@127.0.0.1>")
    );
    assert_eq!(
        inv.header("From").map(|f| f.contains("sip:12333@")),
        Some(true)
    );
    assert_eq!(inv.body, b"v=0\r\noffer");
    h.udp_agent(&agent_response(&inv, 486, Some("ag"), "", ""));
    assert_eq!(h.ended(), [EndReason::Rejected(486)]);
    let _ = call;
    assert_no_leak(&mut h);
}

trait AgentSide {
    fn udp_agent(&mut self, bytes: &[u8]);
}

impl AgentSide for Harness {
    fn udp_agent(&mut self, bytes: &[u8]) {
        self.send(Transport::Udp, agent(), bytes);
    }
}

#[test]
fn outbound_header_injection_is_refused() {
    let mut h = Harness::standard();
    let base = || OutboundCall {
        request_uri: format!("sip:agent01@{AGENT}"),
        dest: agent(),
        sdp: Some(b"v=0\r\n".to_vec()),
        ..Default::default()
    };
    let cases: Vec<(Vec<(String, String)>, SipError)> = vec![
        (
            vec![("X-A".into(), "1\r\nVia: SIP/2.0/UDP evil".into())],
            SipError::InvalidHeaderValue("X-A".into()),
        ),
        (
            vec![("X-A".into(), "1\nBYE".into())],
            SipError::InvalidHeaderValue("X-A".into()),
        ),
        (
            vec![("X A".into(), "1".into())],
            SipError::InvalidHeaderName,
        ),
        (
            vec![("X-A:B".into(), "1".into())],
            SipError::InvalidHeaderName,
        ),
        (
            vec![("Content-Length".into(), "0".into())],
            SipError::ReservedHeader("Content-Length".into()),
        ),
        (
            vec![("call-id".into(), "x".into())],
            SipError::ReservedHeader("call-id".into()),
        ),
    ];
    for (headers, want) in cases {
        let got = h.ep.try_invite(
            h.now,
            OutboundCall {
                headers: headers.clone(),
                ..base()
            },
        );
        assert_eq!(got, Err(want), "{headers:?}");
        // The error text never echoes the value.
        if let Err(e) = got {
            assert!(!e.to_string().contains("evil"));
        }
    }
    let bad_uri = OutboundCall {
        request_uri: "sip:agent01@127.0.0.1\r\nX: y".into(),
        ..base()
    };
    assert_eq!(h.ep.try_invite(h.now, bad_uri), Err(SipError::InvalidUri));
    // The infallible `invite` reports the refusal as an ended call.
    let call = h.ep.invite(
        h.now,
        OutboundCall {
            headers: vec![("X-A".into(), "a\r\nb".into())],
            ..base()
        },
    );
    h.run_until(h.now);
    assert!(h.take_out().is_empty(), "nothing sent");
    assert_eq!(
        h.take_events(),
        [SipEvent::CallEnded {
            call,
            reason: EndReason::Rejected(400)
        }]
    );
    assert_no_leak(&mut h);
}

#[test]
fn incoming_max_forwards_and_483() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("mf1");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    let ev = h.take_events();
    let call = match ev[..] {
        [
            SipEvent::IncomingCall {
                call,
                max_forwards: 70,
                ..
            },
        ] => call,
        ref other => panic!("{other:?}"),
    };
    h.ep.reject(h.now, call, 480);
    h.run_until(h.now);
    h.take_out();
    assert_eq!(
        h.take_events(),
        [SipEvent::CallEnded {
            call,
            reason: EndReason::Rejected(480)
        }]
    );

    let mut leg = Leg::new("mf2");
    let (branch, inv) = leg.invite(Some(SDP));
    let inv = String::from_utf8(inv)
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 1");
    h.udp(inv.as_bytes());
    let ev = h.take_events();
    let call = match ev[..] {
        [
            SipEvent::IncomingCall {
                call,
                max_forwards: 1,
                ..
            },
        ] => call,
        ref other => panic!("{other:?}"),
    };
    // The app would send 0 to the agent: 483 instead.
    h.ep.reject(h.now, call, 483);
    h.run_until(h.now);
    let out = h.take_out();
    assert!(
        out.iter()
            .any(|(_, t)| t.bytes.starts_with(b"SIP/2.0 483 Too Many Hops\r\n")),
        "483 sent"
    );
    h.udp(&leg.ack_non2xx(&branch, 1));
    assert_eq!(h.ended(), [EndReason::Rejected(483)]);
    assert_no_leak(&mut h);
}

#[test]
fn refer_over_tcp_and_connection_loss() {
    let mut h = Harness::standard();
    let mut leg = Leg::tcp("xfer8");
    let call = confirmed_call(&mut h, &mut leg);
    h.ep.refer(h.now, call, AGENT_URI).unwrap();
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1, "no retransmission over TCP");
    assert_eq!(out[0].1.transport, Transport::Tcp(ivr12333::sip::ConnId(1)));
    let r = msg(&out[0].1.bytes);
    assert!(r.header("Via").unwrap().starts_with("SIP/2.0/TCP "));
    assert!(r.header("Contact").unwrap().contains("transport=tcp"));
    // The connection drops before the answer: 503 (§8.1.3.1).
    h.ep.connection_closed(ivr12333::sip::ConnId(1));
    h.run_until(h.now);
    assert_eq!(
        h.take_events(),
        [SipEvent::ReferFailed { call, status: 503 }]
    );
    // The call ends when it next needs to send.
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    assert_eq!(h.ended(), [EndReason::TransportError]);
    assert_no_leak(&mut h);
}

const PROXY: &str = "127.0.0.1:5070";
const PROXY_ROUTE: &str = "<sip:127.0.0.1:5070;lr;received=sip:127.0.0.1:5090>";

fn via_proxy() -> OutboundCall {
    OutboundCall {
        request_uri: format!("sip:agent01@{AGENT}"),
        dest: PROXY.parse().unwrap(),
        sdp: Some(b"v=0\r\noffer".to_vec()),
        route_set: vec![PROXY_ROUTE.to_owned()],
        ..Default::default()
    }
}

/// RFC 3327 §5.3 / RFC 3261 §8.1.2: a pre-loaded Route set (an agent's
/// Path) is written on the INVITE, on its CANCEL (§9.1) and on the ACK of
/// the non-2xx (§17.1.1.3); everything goes to the proxy.
#[test]
fn outbound_invite_with_route_set_cancelled() {
    let mut h = Harness::standard();
    let proxy: SocketAddr = PROXY.parse().unwrap();
    h.ep.try_invite(h.now, via_proxy()).unwrap();
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.dest, proxy);
    let inv = msg(&out[0].1.bytes);
    assert_eq!(
        inv.request_uri(),
        Some(format!("sip:agent01@{AGENT}").as_str())
    );
    assert_eq!(inv.header_all("Route").collect::<Vec<_>>(), [PROXY_ROUTE]);
    h.send(
        Transport::Udp,
        proxy,
        &agent_response(&inv, 180, Some("ag"), "", ""),
    );
    let call = match &h.take_events()[..] {
        [SipEvent::Progress { call, .. }] => *call,
        other => panic!("{other:?}"),
    };
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.dest, proxy);
    let cancel = msg(&out[0].1.bytes);
    assert_eq!(cancel.method(), Some("CANCEL"));
    assert_eq!(cancel.header("Route"), Some(PROXY_ROUTE));
    h.send(
        Transport::Udp,
        proxy,
        &agent_response(&cancel, 200, Some("ag"), "", ""),
    );
    h.send(
        Transport::Udp,
        proxy,
        &agent_response(&inv, 487, Some("ag"), "", ""),
    );
    h.run_until(h.now);
    let out = h.take_out();
    let ack = out
        .iter()
        .map(|(_, t)| (t.dest, msg(&t.bytes)))
        .find(|(_, m)| m.method() == Some("ACK"))
        .expect("ACK for the 487");
    assert_eq!(ack.0, proxy);
    assert_eq!(ack.1.header("Route"), Some(PROXY_ROUTE));
    assert_eq!(h.ended(), [EndReason::Cancelled]);
    assert_no_leak(&mut h);
}

/// After the 2xx the dialog's route set is its Record-Route (§12.1.2): the
/// ACK and our BYE go through the proxy that record-routed.
#[test]
fn outbound_invite_with_route_set_answered() {
    let mut h = Harness::standard();
    let proxy: SocketAddr = PROXY.parse().unwrap();
    let call = h.ep.try_invite(h.now, via_proxy()).unwrap();
    h.run_until(h.now);
    let inv = msg(&h.take_out()[0].1.bytes);
    let rr = "Record-Route: <sip:127.0.0.1:5070;lr>\r\n";
    let contact = format!("Contact: <sip:agent01@{AGENT}>\r\n");
    h.send(
        Transport::Udp,
        proxy,
        &agent_response(&inv, 200, Some("ag"), &format!("{rr}{contact}"), "v=0\r\n"),
    );
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.dest, proxy);
    let ack = msg(&out[0].1.bytes);
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(
        ack.request_uri(),
        Some(format!("sip:agent01@{AGENT}").as_str())
    );
    assert_eq!(ack.header("Route"), Some("<sip:127.0.0.1:5070;lr>"));
    h.take_events();
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out[0].1.dest, proxy);
    let bye = msg(&out[0].1.bytes);
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(bye.header("Route"), Some("<sip:127.0.0.1:5070;lr>"));
    h.send(
        Transport::Udp,
        proxy,
        &agent_response(&bye, 200, None, "", ""),
    );
    assert_eq!(h.ended(), [EndReason::LocalBye]);
    assert_no_leak(&mut h);
}

#[test]
fn outbound_route_set_is_checked() {
    let mut h = Harness::standard();
    for bad in [
        "sip:127.0.0.1:5070;lr",
        "<tel:+8612333>",
        "<sip:127.0.0.1;lr>\r\nVia: evil",
        "<sip:127.0.0.1;lr>, <sip:10.0.0.1;lr>",
    ] {
        let got = h.ep.try_invite(
            h.now,
            OutboundCall {
                route_set: vec![bad.to_owned()],
                ..via_proxy()
            },
        );
        assert_eq!(
            got,
            Err(SipError::InvalidHeaderValue("Route".into())),
            "{bad:?}"
        );
    }
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    assert_no_leak(&mut h);
}

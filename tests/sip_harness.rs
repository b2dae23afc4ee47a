//! In-memory harness and scenarios: a scripted caller against the sans-IO
//! [`Endpoint`] on
//! virtual time, with knobs to drop, delay, duplicate and corrupt what the
//! caller sends, and a deterministic test for every timer and race of the
//! UAS core (RFC 3261 §8.2, §9, §12–§17; RFC 3581; RFC 6026).

mod sip_support;

use std::net::SocketAddr;
use std::time::Duration;

use ivr12333::sip::wire::{Message, WireLimits};
use ivr12333::sip::{ConnId, EndpointConfig, SipEvent, Transmit, Transport};
use sip_support::*;

// ===========================================================================
// Scenarios
// ===========================================================================

use ivr12333::sip::{EndReason, StreamFramer};

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn statuses_at(out: &[(Duration, Transmit)], code: u16) -> Vec<u128> {
    out.iter()
        .filter(|(_, t)| msg(&t.bytes).status() == Some(code))
        .map(|(d, _)| ms(*d))
        .collect()
}

fn requests_at(out: &[(Duration, Transmit)], method: &str) -> Vec<u128> {
    out.iter()
        .filter(|(_, t)| msg(&t.bytes).method() == Some(method))
        .map(|(d, _)| ms(*d))
        .collect()
}

fn assert_no_leak(h: &mut Harness) {
    h.settle();
    assert_eq!(h.ep.transaction_count(), 0, "leaked transactions");
    assert_eq!(h.ep.active_calls(), 0, "leaked calls");
    assert_eq!(h.ep.poll_timeout(), None);
}

/// Ends every call still up (BYE or 480 as fits), runs all timers out and
/// checks that nothing leaked: every scenario ends with this or
/// `assert_no_leak`.
fn finish(h: &mut Harness) {
    let calls = h.calls.clone();
    for c in calls {
        h.ep.hangup(h.now, c);
    }
    h.settle();
    // a call hung up before its ACK sends BYE only after the give-up
    h.settle();
    assert_eq!(h.ep.transaction_count(), 0, "leaked transactions");
    assert_eq!(h.ep.active_calls(), 0, "leaked calls");
}

#[test]
fn basic_call_remote_bye() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("basic");
    let (branch, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    let out = h.take_out();
    assert_eq!(out.len(), 1);
    let trying = msg(&out[0].1.bytes);
    assert_eq!(trying.status(), Some(100));
    assert!(trying.header("Via").unwrap().contains(&branch));
    // rport honoured: back to the source port, received + rport filled in
    assert_eq!(out[0].1.dest, caller_addr());
    assert!(trying.header("Via").unwrap().contains("rport=5070"));
    let ev = h.take_events();
    let call = match &ev[..] {
        [
            SipEvent::IncomingCall {
                call,
                from_user,
                to_user,
                offer,
                transport,
                ..
            },
        ] => {
            assert_eq!(from_user, "13800138000");
            assert_eq!(to_user, "12333");
            assert_eq!(offer.as_deref(), Some(SDP.as_bytes()));
            assert_eq!(*transport, Transport::Udp);
            *call
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(h.ep.active_calls(), 1);
    h.ep.ringing(h.now, call);
    h.ep.answer(h.now, call, b"v=0\r\nanswer".to_vec());
    h.run_until(h.now);
    let out = h.take_out();
    let codes: Vec<u16> = out
        .iter()
        .filter_map(|(_, t)| msg(&t.bytes).status())
        .collect();
    assert_eq!(codes, [180, 200]);
    let ok = msg(&out[1].1.bytes);
    assert_eq!(ok.body, b"v=0\r\nanswer");
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(ok.header("Contact").is_some());
    leg.to_tag = to_tag(&ok);
    assert!(leg.to_tag.is_some());
    assert_eq!(
        to_tag(&msg(&out[0].1.bytes)),
        leg.to_tag,
        "same tag on 180 and 200"
    );
    let ack = leg.ack_2xx(1, None);
    h.udp(&ack);
    assert!(h.take_out().is_empty(), "ACK is never answered");
    assert!(matches!(
        h.take_events()[..],
        [SipEvent::CallConfirmed { sdp: None, .. }]
    ));
    // No 2xx retransmission after the ACK.
    h.advance(Duration::from_secs(10));
    assert!(h.take_out().is_empty());
    let (_, bye) = leg.next("BYE", "", None);
    h.udp(&bye);
    assert_eq!(h.take_statuses(), [200]);
    assert_eq!(h.ended(), [EndReason::RemoteBye]);
    assert_no_leak(&mut h);
}

#[test]
fn invite_retransmits_are_absorbed() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("retx");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    h.udp(&inv);
    assert_eq!(h.take_statuses(), [100, 100], "last provisional resent");
    let ev = h.take_events();
    assert_eq!(ev.len(), 1, "one IncomingCall only");
    let SipEvent::IncomingCall { call, .. } = ev[0] else {
        panic!()
    };
    h.ep.ringing(h.now, call);
    h.run_until(h.now);
    h.take_out();
    h.udp(&inv);
    assert_eq!(h.take_statuses(), [180]);
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    h.take_out();
    // RFC 6026 Accepted: INVITE retransmissions are absorbed by the
    // transaction (the 2xx is the core's to resend on its own schedule).
    h.udp(&inv);
    assert!(h.take_out().is_empty());
    assert!(h.take_events().is_empty());
    h.ep.hangup(h.now, call);
    assert_eq!(h.ep.active_calls(), 1, "BYE waits for the ACK");
    finish(&mut h);
}

#[test]
fn ok_retransmit_schedule_and_ack_timeout_bye() {
    for tcp in [false, true] {
        let mut h = Harness::standard();
        let mut leg = if tcp {
            Leg::tcp("acklost")
        } else {
            Leg::new("acklost")
        };
        let (call, _) = start_call(&mut h, &mut leg);
        h.take_out();
        h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
        h.advance(Duration::from_secs(40));
        let out = h.take_out();
        // 2xx at 0, then 500 ms, 1 s, 2 s, 4 s, 4 s ... apart (over UDP and TCP).
        let oks = statuses_at(&out, 200);
        assert_eq!(
            oks,
            [
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ],
            "tcp={tcp}"
        );
        // 64·T1 without ACK: BYE, call over.
        let byes = requests_at(&out, "BYE");
        assert_eq!(byes.first(), Some(&32_000), "tcp={tcp}");
        assert_eq!(h.ended(), [EndReason::AckTimeout]);
        assert_eq!(h.ep.active_calls(), 0);
        assert_no_leak(&mut h);
    }
}

#[test]
fn lost_200_is_recovered_by_retransmission() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("lost200");
    let (call, _) = start_call(&mut h, &mut leg);
    h.take_out();
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    // The first 200 is "lost" (the caller ignores it); the retransmission at
    // 500 ms is the one it ACKs.
    h.take_out();
    h.advance(Duration::from_millis(500));
    let out = h.take_out();
    let ok = msg(&out[0].1.bytes);
    assert_eq!(ok.status(), Some(200));
    leg.to_tag = to_tag(&ok);
    // The ACK is lost once too; the next retransmission gets ACKed.
    h.knobs.drop_next = 1;
    h.udp(&leg.ack_2xx(1, None));
    h.advance(Duration::from_millis(1000));
    assert_eq!(h.take_statuses(), [200]);
    h.udp(&leg.ack_2xx(1, Some("v=0\r\nlate")));
    assert!(matches!(
        h.take_events()[..],
        [SipEvent::CallConfirmed { .. }]
    ));
    h.advance(Duration::from_secs(40));
    assert!(h.take_out().is_empty());
    assert_eq!(h.ep.active_calls(), 1);
    finish(&mut h);
}

#[test]
fn late_offer_answer_in_ack() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("late");
    let (_, inv) = leg.invite(None);
    h.udp(&inv);
    let ev = h.take_events();
    let call = match &ev[..] {
        [
            SipEvent::IncomingCall {
                call, offer: None, ..
            },
        ] => *call,
        other => panic!("{other:?}"),
    };
    h.ep.answer(h.now, call, b"v=0\r\noffer".to_vec());
    h.run_until(h.now);
    let ok = msg(&h.take_out()[1].1.bytes);
    leg.to_tag = to_tag(&ok);
    h.udp(&leg.ack_2xx(1, Some("v=0\r\nanswer")));
    match &h.take_events()[..] {
        [SipEvent::CallConfirmed { sdp: Some(s), .. }] => assert_eq!(s, b"v=0\r\nanswer"),
        other => panic!("{other:?}"),
    }
    finish(&mut h);
}

#[test]
fn timer_g_and_h_for_non_2xx() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("reject");
    let (call, _) = start_call(&mut h, &mut leg);
    h.take_out();
    h.ep.reject(h.now, call, 486);
    h.advance(Duration::from_secs(40));
    let out = h.take_out();
    assert_eq!(
        statuses_at(&out, 486),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(h.ended(), [EndReason::Rejected(486)]);
    assert_eq!(h.ep.transaction_count(), 0, "Timer H ended it at 32 s");
    finish(&mut h);
}

#[test]
fn ack_stops_timer_g_and_timer_i_absorbs() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("rejack");
    let (call, branch) = start_call(&mut h, &mut leg);
    h.take_out();
    h.ep.reject(h.now, call, 480);
    h.advance(Duration::from_millis(600));
    assert_eq!(h.take_statuses(), [480, 480]);
    let ack = leg.ack_non2xx(&branch, 1);
    h.udp(&ack);
    h.udp(&ack);
    h.advance(Duration::from_secs(4));
    assert!(h.take_out().is_empty());
    assert_eq!(h.ep.transaction_count(), 1, "Timer I (T4) still absorbing");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.ep.transaction_count(), 0);
    finish(&mut h);
}

#[test]
fn timer_j_non_invite_server() {
    let mut h = Harness::standard();
    let leg = Leg::new("opts");
    let opt = leg.build("OPTIONS", 1, "OPTIONS", "z9hG4bK-opt1", false, "", None);
    h.udp(&opt);
    let out = h.take_out();
    let ok = msg(&out[0].1.bytes);
    assert_eq!(ok.status(), Some(200));
    assert!(ok.header("Allow").unwrap().contains("INVITE"));
    assert_eq!(ok.header("Accept"), Some("application/sdp"));
    assert!(ok.header("Supported").is_some());
    // A retransmission gets the very same response.
    h.advance(Duration::from_secs(1));
    h.udp(&opt);
    let again = h.take_out();
    assert_eq!(again[0].1.bytes, out[0].1.bytes);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.ep.transaction_count(), 1, "Timer J is 64*T1 = 32 s");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.ep.transaction_count(), 0);
    finish(&mut h);
}

#[test]
fn our_bye_retransmits_then_timer_f() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("byef");
    let call = confirmed_call(&mut h, &mut leg);
    h.ep.hangup(h.now, call);
    h.advance(Duration::from_secs(40));
    let out = h.take_out();
    assert_eq!(
        requests_at(&out, "BYE"),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    let bye = msg(&out[0].1.bytes);
    assert_eq!(bye.request_uri(), Some("sip:13800138000@127.0.0.1:5070"));
    assert_eq!(out[0].1.dest, caller_addr());
    assert!(bye.header("CSeq").unwrap().ends_with(" BYE"));
    assert_eq!(h.ended(), [EndReason::LocalBye], "after Timer F");
    assert_no_leak(&mut h);
}

#[test]
fn our_bye_answered() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("byeok");
    let call = confirmed_call(&mut h, &mut leg);
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let out = h.take_out();
    let bye = msg(&out[0].1.bytes);
    assert!(h.ended().is_empty(), "waits for the BYE's response");
    // The caller answers 200 to the BYE.
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        bye.header("Via").unwrap(),
        bye.header("From").unwrap(),
        bye.header("To").unwrap(),
        bye.header("Call-ID").unwrap(),
        bye.header("CSeq").unwrap()
    );
    h.udp(resp.as_bytes());
    assert_eq!(h.ended(), [EndReason::LocalBye]);
    // Methods on an ended handle are harmless.
    h.ep.hangup(h.now, call);
    h.ep.answer(h.now, call, vec![]);
    h.ep.reject(h.now, call, 486);
    h.ep.ringing(h.now, call);
    h.ep.answer_reinvite(h.now, call, Err(488));
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    assert_eq!(h.ended().len(), 1);
    assert_no_leak(&mut h);
}

#[test]
fn cancel_gives_200_and_487() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("cancel");
    let (_, branch) = start_call(&mut h, &mut leg);
    h.take_out();
    h.udp(&leg.cancel(&branch, 1));
    let out = h.take_out();
    let ms: Vec<Message> = out.iter().map(|(_, t)| msg(&t.bytes)).collect();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].status(), Some(200));
    assert_eq!(ms[0].header("CSeq"), Some("1 CANCEL"));
    assert_eq!(ms[1].status(), Some(487));
    assert_eq!(ms[1].header("CSeq"), Some("1 INVITE"));
    assert_eq!(h.ended(), [EndReason::Cancelled]);
    h.udp(&leg.ack_non2xx(&branch, 1));
    assert!(h.take_out().is_empty());
    // CANCEL after the final response: 200 to the CANCEL only.
    h.udp(&leg.cancel(&branch, 1));
    assert_eq!(
        h.take_statuses(),
        [200],
        "retransmitted CANCEL gets its 200 again"
    );
    assert_no_leak(&mut h);
}

#[test]
fn cancel_after_answer_gets_only_200() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("cancel2");
    let (call, branch) = start_call(&mut h, &mut leg);
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    h.take_out();
    h.udp(&leg.cancel(&branch, 1));
    assert_eq!(h.take_statuses(), [200]);
    assert!(h.ended().is_empty());
    finish(&mut h);
}

#[test]
fn cancel_matching_nothing_is_481() {
    let mut h = Harness::standard();
    let leg = Leg::new("cancel481");
    h.udp(&leg.cancel("z9hG4bK-nothing", 1));
    assert_eq!(h.take_statuses(), [481]);
    assert_no_leak(&mut h);
}

#[test]
fn bye_before_ack() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("byeack");
    let (call, _) = start_call(&mut h, &mut leg);
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    let ok = msg(&h.take_out()[1].1.bytes);
    leg.to_tag = to_tag(&ok);
    h.advance(Duration::from_millis(200));
    let (_, bye) = leg.next("BYE", "", None);
    h.udp(&bye);
    assert_eq!(h.take_statuses(), [200]);
    assert_eq!(h.ended(), [EndReason::RemoteBye]);
    h.advance(Duration::from_secs(40));
    assert!(
        h.take_out().is_empty(),
        "2xx retransmission stopped, no BYE"
    );
    assert_eq!(h.ended().len(), 1);
    assert_no_leak(&mut h);
}

#[test]
fn reinvite_hold_and_unhold() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("hold");
    let call = confirmed_call(&mut h, &mut leg);
    for dir in ["sendonly", "sendrecv"] {
        let sdp = SDP.replace("sendrecv", dir);
        leg.cseq += 1;
        let (_, reinv) = leg.invite(Some(&sdp));
        h.udp(&reinv);
        assert_eq!(h.take_statuses(), [100]);
        match &h.take_events()[..] {
            [
                SipEvent::ReInvite {
                    call: c,
                    offer: Some(o),
                },
            ] => {
                assert_eq!(*c, call);
                assert_eq!(o, sdp.as_bytes());
            }
            other => panic!("{other:?}"),
        }
        h.ep.answer_reinvite(h.now, call, Ok(format!("v=0\r\na={dir}").into_bytes()));
        h.run_until(h.now);
        let out = h.take_out();
        let ok = msg(&out[0].1.bytes);
        assert_eq!(ok.status(), Some(200));
        assert_eq!(
            ok.header("CSeq"),
            Some(format!("{} INVITE", leg.cseq).as_str())
        );
        assert_eq!(to_tag(&ok), leg.to_tag);
        h.udp(&leg.ack_2xx(leg.cseq, None));
        assert!(matches!(
            h.take_events()[..],
            [SipEvent::ReInviteAck { sdp: None, .. }]
        ));
        h.advance(Duration::from_secs(5));
        assert!(h.take_out().is_empty(), "ACKed: no retransmission");
    }
    assert_eq!(h.ep.active_calls(), 1);
    assert!(h.ended().is_empty());
    finish(&mut h);
}

#[test]
fn reinvite_rejected_by_app() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("re488");
    let call = confirmed_call(&mut h, &mut leg);
    leg.cseq += 1;
    let (branch, reinv) = leg.invite(Some(SDP));
    h.udp(&reinv);
    h.take_out();
    h.ep.answer_reinvite(h.now, call, Err(488));
    h.run_until(h.now);
    assert_eq!(h.take_statuses(), [488]);
    h.udp(&leg.ack_non2xx(&branch, leg.cseq));
    h.settle();
    assert_eq!(h.ep.transaction_count(), 0);
    assert_eq!(h.ep.active_calls(), 1);
    finish(&mut h);
}

#[test]
fn glare_second_reinvite_gets_491() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("glare");
    let call = confirmed_call(&mut h, &mut leg);
    leg.cseq += 1;
    let (_, first) = leg.invite(Some(SDP));
    h.udp(&first);
    assert_eq!(h.take_statuses(), [100]);
    leg.cseq += 1;
    let (_, second) = leg.invite(Some(SDP));
    h.udp(&second);
    assert_eq!(h.take_statuses(), [491]);
    assert_eq!(
        h.take_events().len(),
        1,
        "only the first re-INVITE surfaces"
    );
    // The caller hangs up while the re-INVITE is unanswered: 487 to it, 200 to BYE.
    let (_, bye) = leg.next("BYE", "", None);
    h.udp(&bye);
    let mut st = h.take_statuses();
    st.sort();
    assert_eq!(st, [200, 487]);
    assert_eq!(h.ended(), [EndReason::RemoteBye]);
    let _ = call;
    finish(&mut h);
}

#[test]
fn lower_cseq_gets_500() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("cseq");
    confirmed_call(&mut h, &mut leg);
    let (_, info) = leg.next("INFO", "", None);
    h.udp(&info);
    assert_eq!(h.take_statuses(), [200]);
    let b = leg.new_branch();
    let stale = leg.build("INFO", leg.cseq - 1, "INFO", &b, true, "", None);
    h.udp(&stale);
    assert_eq!(h.take_statuses(), [500]);
    let b = leg.new_branch();
    let same = leg.build("OPTIONS", leg.cseq, "OPTIONS", &b, true, "", None);
    h.udp(&same);
    assert_eq!(h.take_statuses(), [500]);
    finish(&mut h);
}

#[test]
fn info_dtmf_both_body_types() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("dtmf");
    let call = confirmed_call(&mut h, &mut leg);
    let (_, a) = leg.next(
        "INFO",
        "",
        Some(("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")),
    );
    h.udp(&a);
    let (_, b) = leg.next("INFO", "", Some(("application/dtmf", "#")));
    h.udp(&b);
    assert_eq!(h.take_statuses(), [200, 200]);
    let ev = h.take_events();
    assert_eq!(
        ev,
        [
            SipEvent::Dtmf {
                call,
                digit: '5',
                duration_ms: Some(160)
            },
            SipEvent::Dtmf {
                call,
                digit: '#',
                duration_ms: None
            }
        ]
    );
    // Debug output never shows the digit.
    assert!(!format!("{:?}", ev[0]).contains('5'));
    let (_, c) = leg.next("INFO", "", Some(("application/x-foo", "bar")));
    h.udp(&c);
    let out = h.take_out();
    let m = msg(&out[0].1.bytes);
    assert_eq!(m.status(), Some(415));
    assert!(
        m.header("Accept")
            .unwrap()
            .contains("application/dtmf-relay")
    );
    let (_, d) = leg.next("INFO", "", Some(("application/dtmf", "Q")));
    h.udp(&d);
    assert_eq!(h.take_statuses(), [400]);
    assert!(h.take_events().is_empty());
    finish(&mut h);
}

#[test]
fn in_dialog_options_and_unknown_dialog_481() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("opt-dlg");
    confirmed_call(&mut h, &mut leg);
    let (_, o) = leg.next("OPTIONS", "", None);
    h.udp(&o);
    assert_eq!(h.take_statuses(), [200]);
    // A BYE and an INFO for a dialog that does not exist.
    let mut ghost = Leg::new("ghost");
    ghost.to_tag = Some("nope".into());
    let (_, bye) = ghost.next("BYE", "", None);
    h.udp(&bye);
    let (_, info) = ghost.next("INFO", "", Some(("application/dtmf", "1")));
    h.udp(&info);
    // BYE outside any dialog (no To tag)
    let stray = Leg::new("stray");
    h.udp(&stray.build("BYE", 5, "BYE", "z9hG4bK-stray", false, "", None));
    assert_eq!(h.take_statuses(), [481, 481, 481]);
    assert!(h.take_events().is_empty());
    finish(&mut h);
}

fn status_and_msg(h: &mut Harness, bytes: &[u8]) -> Message {
    h.udp(bytes);
    let out = h.take_out();
    assert_eq!(out.len(), 1, "exactly one response");
    msg(&out[0].1.bytes)
}

#[test]
fn method_and_content_rejections() {
    let mut h = Harness::standard();
    let leg = Leg::new("rej");
    for m in ["REGISTER", "MESSAGE", "SUBSCRIBE", "PUBLISH", "REFER"] {
        let r = status_and_msg(
            &mut h,
            &leg.build(m, 101, m, &format!("z9hG4bK-{m}"), false, "", None),
        );
        assert_eq!(r.status(), Some(405), "{m}");
        assert!(r.header("Allow").unwrap().contains("OPTIONS"));
        assert!(to_tag(&r).is_some());
    }
    let r = status_and_msg(
        &mut h,
        &leg.build("FOO", 102, "FOO", "z9hG4bK-foo", false, "", None),
    );
    assert_eq!(r.status(), Some(501));
    let r = status_and_msg(
        &mut h,
        &leg.build(
            "INVITE",
            103,
            "INVITE",
            "z9hG4bK-415",
            false,
            "",
            Some(("text/plain", "hello")),
        ),
    );
    assert_eq!(r.status(), Some(415));
    assert_eq!(r.header("Accept"), Some("application/sdp"));
    let r = status_and_msg(
        &mut h,
        &leg.build(
            "OPTIONS",
            104,
            "OPTIONS",
            "z9hG4bK-420",
            false,
            "Require: 100rel, foo\r\nProxy-Require: bar\r\n",
            None,
        ),
    );
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.header("Unsupported"), Some("100rel, foo"));
    let raw =
        String::from_utf8(leg.build("OPTIONS", 105, "OPTIONS", "z9hG4bK-416", false, "", None))
            .unwrap()
            .replace("OPTIONS sip:12333@127.0.0.1:5060", "OPTIONS mailto:x@y");
    assert_eq!(status_and_msg(&mut h, raw.as_bytes()).status(), Some(416));
    let raw =
        String::from_utf8(leg.build("OPTIONS", 106, "OPTIONS", "z9hG4bK-505", false, "", None))
            .unwrap()
            .replace("SIP/2.0\r\n", "SIP/3.0\r\n");
    assert_eq!(status_and_msg(&mut h, raw.as_bytes()).status(), Some(505));
    // Method/CSeq mismatch and a duplicated single-value header: 400 with
    // every Via echoed and a To tag.
    let r = status_and_msg(
        &mut h,
        &leg.build("OPTIONS", 107, "INVITE", "z9hG4bK-mm", false, "", None),
    );
    assert_eq!(r.status(), Some(400));
    let raw = String::from_utf8(leg.build(
        "OPTIONS",
        108,
        "OPTIONS",
        "z9hG4bK-dup",
        false,
        "Call-ID: other\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bK-2nd\r\n",
        None,
    ))
    .unwrap();
    let r = status_and_msg(&mut h, raw.as_bytes());
    assert_eq!(r.status(), Some(400));
    assert_eq!(r.header_count("Via"), 2);
    assert!(to_tag(&r).is_some());
    // Max-Forwards 0: an endpoint processes it normally.
    let raw =
        String::from_utf8(leg.build("OPTIONS", 109, "OPTIONS", "z9hG4bK-mf0", false, "", None))
            .unwrap()
            .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(status_and_msg(&mut h, raw.as_bytes()).status(), Some(200));
    // Stray responses are dropped silently.
    h.udp(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnone\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    assert!(h.take_out().is_empty());
    assert_no_leak(&mut h);
}

#[test]
fn merged_request_gets_482() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("merged");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    h.take_out();
    h.take_events();
    // Same From tag, Call-ID and CSeq on another branch (forked via a proxy).
    let other = leg.build(
        "INVITE",
        1,
        "INVITE",
        "z9hG4bK-fork2",
        false,
        "",
        Some(("application/sdp", SDP)),
    );
    h.udp(&other);
    assert_eq!(h.take_statuses(), [482]);
    assert!(h.take_events().is_empty());
    finish(&mut h);
}

#[test]
fn no_rport_goes_to_sent_by_port() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("norport");
    leg.rport = false;
    let o = leg.build("OPTIONS", 1, "OPTIONS", "z9hG4bK-nr", false, "", None);
    // Arrives from another source port (NAT): the response goes to the
    // source IP and the Via port, with received= only if the IP differs.
    h.send(Transport::Udp, "127.0.0.1:40000".parse().unwrap(), &o);
    let out = h.take_out();
    assert_eq!(
        out[0].1.dest,
        "127.0.0.1:5070".parse::<SocketAddr>().unwrap()
    );
    h.send(
        Transport::Udp,
        "127.0.0.2:40000".parse().unwrap(),
        &leg.build("OPTIONS", 2, "OPTIONS", "z9hG4bK-nr2", false, "", None),
    );
    let out = h.take_out();
    assert_eq!(
        out[0].1.dest,
        "127.0.0.2:5070".parse::<SocketAddr>().unwrap()
    );
    assert!(
        msg(&out[0].1.bytes)
            .header("Via")
            .unwrap()
            .contains("received=127.0.0.2")
    );
    finish(&mut h);
}

#[test]
fn allowlist_403() {
    let cfg = EndpointConfig {
        allow_from: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    let mut leg = Leg::new("deny");
    let (branch, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    assert_eq!(h.take_statuses(), [403]);
    assert!(h.take_events().is_empty());
    h.udp(&leg.ack_non2xx(&branch, 1));
    let mut leg2 = Leg::new("allow");
    let (_, inv) = leg2.invite(Some(SDP));
    h.send(Transport::Udp, "10.1.2.3:5070".parse().unwrap(), &inv);
    assert_eq!(h.take_statuses(), [100]);
    // OPTIONS is not an INVITE: answered whatever the source.
    h.udp(&leg.build("OPTIONS", 9, "OPTIONS", "z9hG4bK-o9", false, "", None));
    assert_eq!(h.take_statuses(), [200]);
    finish(&mut h);
}

#[test]
fn capacity_and_rate_503_with_retry_after() {
    let cfg = EndpointConfig {
        max_calls: 2,
        max_calls_per_second: 100,
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    for i in 0..2 {
        start_call(&mut h, &mut Leg::new(&format!("cap{i}")));
    }
    h.take_out();
    let (_, inv) = Leg::new("cap2").invite(Some(SDP));
    let r = status_and_msg(&mut h, &inv);
    assert_eq!(r.status(), Some(503));
    assert!(r.header("Retry-After").is_some());

    let cfg = EndpointConfig {
        max_calls: 100,
        max_calls_per_second: 2,
        ..EndpointConfig::default()
    };
    let mut h = Harness::new(cfg);
    for i in 0..2 {
        start_call(&mut h, &mut Leg::new(&format!("rate{i}")));
    }
    h.take_out();
    let (_, inv) = Leg::new("rate2").invite(Some(SDP));
    let r = status_and_msg(&mut h, &inv);
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header("Retry-After"), Some("1"));
    h.advance(Duration::from_secs(1));
    start_call(&mut h, &mut Leg::new("rate3"));
    finish(&mut h);
}

#[test]
fn shutdown_refuses_new_calls_keeps_old() {
    let mut h = Harness::standard();
    let mut leg = Leg::new("old");
    let call = confirmed_call(&mut h, &mut leg);
    h.ep.set_accepting(false);
    let (_, inv) = Leg::new("new").invite(Some(SDP));
    let r = status_and_msg(&mut h, &inv);
    assert_eq!(r.status(), Some(503));
    assert!(r.header("Retry-After").is_some());
    let (_, info) = leg.next("INFO", "", Some(("application/dtmf", "1")));
    h.udp(&info);
    assert_eq!(h.take_statuses(), [200]);
    // Out-of-dialog OPTIONS (a balancer's probe) now says 503 too.
    let probe = Leg::new("probe").build("OPTIONS", 1, "OPTIONS", "z9hG4bK-probe", false, "", None);
    let r = status_and_msg(&mut h, &probe);
    assert_eq!(r.status(), Some(503));
    assert!(r.header("Retry-After").is_some());
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    assert_eq!(requests_at(&h.take_out(), "BYE").len(), 1);
    h.ep.set_accepting(true);
    start_call(&mut h, &mut Leg::new("again"));
    finish(&mut h);
}

#[test]
fn tcp_framing_split_joined_keepalive() {
    let mut h = Harness::standard();
    let mut f = StreamFramer::new(WireLimits::default());
    let mut leg = Leg::tcp("tcp");
    let (_, inv) = leg.invite(Some(SDP));
    let opt = leg.build("OPTIONS", 7, "OPTIONS", "z9hG4bK-tcpopt", false, "", None);
    // keep-alive ping, the INVITE split in three reads, the OPTIONS joined
    // with the INVITE's tail.
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(&inv);
    stream.extend_from_slice(&opt);
    stream.extend_from_slice(b"\r\n");
    let cuts = [3, 40, inv.len() + 10, stream.len()];
    let mut start = 0;
    let mut got = Vec::new();
    for c in cuts {
        f.push(&stream[start..c]);
        start = c;
        while let Some(m) = f.next_message().unwrap() {
            got.push(m);
        }
    }
    assert!(f.take_pong(), "double-CRLF ping answered");
    assert_eq!(got, vec![inv.clone(), opt.clone()]);
    for m in &got {
        h.tcp(1, m);
    }
    let out = h.take_out();
    assert!(
        out.iter()
            .all(|(_, t)| t.transport == Transport::Tcp(ConnId(1)) && t.dest == caller_addr())
    );
    let codes: Vec<u16> = out
        .iter()
        .filter_map(|(_, t)| msg(&t.bytes).status())
        .collect();
    assert_eq!(codes, [100, 200]);
    let ev = h.take_events();
    let call = match &ev[..] {
        [
            SipEvent::IncomingCall {
                call, transport, ..
            },
        ] => {
            assert_eq!(*transport, Transport::Tcp(ConnId(1)));
            *call
        }
        other => panic!("{other:?}"),
    };
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    let ok = msg(&h.take_out()[0].1.bytes);
    assert!(ok.header("Contact").unwrap().contains("transport=tcp"));
    finish(&mut h);
}

#[test]
fn tcp_connection_closed_ends_call_on_next_send() {
    let mut h = Harness::standard();
    let mut leg = Leg::tcp("tcpclose");
    let (call, _) = start_call(&mut h, &mut leg);
    h.take_out();
    h.ep.connection_closed(ConnId(1));
    assert!(h.ended().is_empty());
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    assert_eq!(h.ended(), [EndReason::TransportError]);
    assert_no_leak(&mut h);
}

#[test]
fn duplicated_delayed_and_corrupted_input() {
    let mut h = Harness::standard();
    h.knobs.duplicate = true;
    h.knobs.delay = Duration::from_millis(30);
    let mut leg = Leg::new("chaos");
    let (_, inv) = leg.invite(Some(SDP));
    h.udp(&inv);
    h.advance(Duration::from_millis(50));
    assert_eq!(h.take_statuses(), [100, 100]);
    let ev = h.take_events();
    assert_eq!(ev.len(), 1);
    let SipEvent::IncomingCall { call, .. } = ev[0] else {
        panic!()
    };
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    let ok = msg(&h.take_out()[0].1.bytes);
    leg.to_tag = to_tag(&ok);
    h.udp(&leg.ack_2xx(1, None));
    h.advance(Duration::from_millis(50));
    assert_eq!(
        h.take_events()
            .iter()
            .filter(|e| matches!(e, SipEvent::CallConfirmed { .. }))
            .count(),
        1
    );
    // Corrupted messages: never a panic, never a second call.
    h.knobs = Knobs::default();
    for i in 0..200 {
        h.knobs.corrupt_next = 1;
        let (_, bye) = leg.next("INFO", "", Some(("application/dtmf", "1")));
        h.udp(&bye);
        let _ = i;
    }
    h.take_out();
    h.take_events();
    assert!(h.ep.active_calls() <= 1);
    let (_, bye) = leg.next("BYE", "", None);
    h.udp(&bye);
    h.settle();
    assert_eq!(h.ep.active_calls(), 0);
    assert_eq!(h.ep.transaction_count(), 0);
    finish(&mut h);
}

#[test]
fn call_ended_exactly_once_on_every_path() {
    // Hang up before answering → 480, Rejected(480).
    let mut h = Harness::standard();
    let (call, _) = start_call(&mut h, &mut Leg::new("e1"));
    h.ep.hangup(h.now, call);
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    assert_eq!(h.ended(), [EndReason::Rejected(480)]);
    assert_no_leak(&mut h);
    // Hang up after answering but before the ACK: BYE goes out after the ACK.
    let mut h = Harness::standard();
    let mut leg = Leg::new("e2");
    let (call, _) = start_call(&mut h, &mut leg);
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    leg.to_tag = to_tag(&msg(&h.take_out()[1].1.bytes));
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    assert!(requests_at(&h.take_out(), "BYE").is_empty());
    h.udp(&leg.ack_2xx(1, None));
    assert_eq!(requests_at(&h.take_out(), "BYE"), [0]);
    h.settle();
    assert_eq!(h.ended(), [EndReason::LocalBye]);
    assert_no_leak(&mut h);
}

// ----- outbound calls (UAC: agent transfer) --------------------------------

use ivr12333::sip::OutboundCall;

const AGENT: &str = "127.0.0.1:5090";

/// The agent's response to one of our requests.
fn agent_response(req: &Message, code: u16, tag: Option<&str>, extra: &str, body: &str) -> Vec<u8> {
    let to = req.header("To").unwrap();
    let to = match tag {
        Some(t) if !to.contains("tag=") => format!("{to};tag={t}"),
        _ => to.to_owned(),
    };
    let mut s = format!("SIP/2.0 {code} X\r\n");
    for v in req.header_all("Via") {
        s += &format!("Via: {v}\r\n");
    }
    s += &format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
        req.header("From").unwrap(),
        req.header("Call-ID").unwrap(),
        req.header("CSeq").unwrap()
    );
    if body.is_empty() {
        s += "Content-Length: 0\r\n\r\n";
    } else {
        s += &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    s.into_bytes()
}

fn place(h: &mut Harness) -> (ivr12333::sip::CallHandle, Message) {
    let call = h.ep.invite(
        h.now,
        OutboundCall {
            request_uri: format!("sip:agent01@{AGENT}"),
            dest: AGENT.parse().unwrap(),
            transport: Transport::Udp,
            from_user: "12333".into(),
            sdp: Some(b"v=0\r\noffer".to_vec()),
            ..Default::default()
        },
    );
    h.run_until(h.now);
    let out = h.take_out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.dest, AGENT.parse::<SocketAddr>().unwrap());
    let inv = msg(&out[0].1.bytes);
    assert_eq!(inv.method(), Some("INVITE"));
    assert_eq!(
        inv.request_uri(),
        Some(format!("sip:agent01@{AGENT}").as_str())
    );
    assert_eq!(inv.body, b"v=0\r\noffer");
    (call, inv)
}

fn agent_says(h: &mut Harness, bytes: &[u8]) {
    h.send(Transport::Udp, AGENT.parse().unwrap(), bytes);
}

#[test]
fn outbound_call_answered_then_our_bye() {
    let mut h = Harness::standard();
    let (call, inv) = place(&mut h);
    agent_says(&mut h, &agent_response(&inv, 100, None, "", ""));
    agent_says(&mut h, &agent_response(&inv, 180, Some("ag1"), "", ""));
    assert!(matches!(
        h.take_events()[..],
        [SipEvent::Progress { status: 180, .. }]
    ));
    let ok = agent_response(
        &inv,
        200,
        Some("ag1"),
        "Contact: <sip:agent01@127.0.0.1:5091>\r\nRecord-Route: <sip:127.0.0.1:5099;lr>\r\n",
        "v=0\r\nanswer",
    );
    agent_says(&mut h, &ok);
    match &h.take_events()[..] {
        [
            SipEvent::Answered {
                call: c,
                sdp: Some(s),
            },
        ] => {
            assert_eq!(*c, call);
            assert_eq!(s, b"v=0\r\nanswer");
        }
        other => panic!("{other:?}"),
    }
    let out = h.take_out();
    let ack = msg(&out[0].1.bytes);
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(ack.header("CSeq"), Some("1 ACK"));
    assert_eq!(ack.request_uri(), Some("sip:agent01@127.0.0.1:5091"));
    assert_eq!(ack.header("Route"), Some("<sip:127.0.0.1:5099;lr>"));
    assert_eq!(
        out[0].1.dest,
        "127.0.0.1:5099".parse::<SocketAddr>().unwrap()
    );
    // A retransmitted 200 is ACKed again, no second event.
    agent_says(&mut h, &ok);
    assert_eq!(requests_at(&h.take_out(), "ACK").len(), 1);
    assert!(h.take_events().is_empty());
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    let out = h.take_out();
    let bye = msg(&out[0].1.bytes);
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(bye.header("CSeq"), Some("2 BYE"));
    assert!(bye.header("To").unwrap().contains("tag=ag1"));
    agent_says(&mut h, &agent_response(&bye, 200, None, "", ""));
    assert_eq!(h.ended(), [EndReason::LocalBye]);
    assert_no_leak(&mut h);
}

#[test]
fn outbound_call_agent_hangs_up() {
    let mut h = Harness::standard();
    let (call, inv) = place(&mut h);
    agent_says(
        &mut h,
        &agent_response(
            &inv,
            200,
            Some("ag2"),
            "Contact: <sip:agent01@127.0.0.1:5090>\r\n",
            "v=0\r\n",
        ),
    );
    h.take_out();
    h.take_events();
    let from = inv.header("From").unwrap();
    let to = format!("{};tag=ag2", inv.header("To").unwrap());
    let bye = format!(
        "BYE sip:12333@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT};branch=z9hG4bK-agbye\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        inv.header("Call-ID").unwrap()
    );
    agent_says(&mut h, bye.as_bytes());
    assert_eq!(h.take_statuses(), [200]);
    assert_eq!(
        h.events.last(),
        Some(&SipEvent::CallEnded {
            call,
            reason: EndReason::RemoteBye
        })
    );
    assert_no_leak(&mut h);
}

#[test]
fn outbound_call_rejected_is_acked() {
    let mut h = Harness::standard();
    let (_, inv) = place(&mut h);
    let busy = agent_response(&inv, 486, Some("ag3"), "", "");
    agent_says(&mut h, &busy);
    let out = h.take_out();
    let ack = msg(&out[0].1.bytes);
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(
        ack.header("Via"),
        inv.header("Via"),
        "same branch as the INVITE"
    );
    assert_eq!(h.ended(), [EndReason::Rejected(486)]);
    agent_says(&mut h, &busy);
    assert_eq!(
        requests_at(&h.take_out(), "ACK").len(),
        1,
        "re-ACKed in Completed"
    );
    assert_no_leak(&mut h);
}

#[test]
fn outbound_call_unanswered_times_out() {
    let mut h = Harness::standard();
    place(&mut h);
    h.advance(Duration::from_secs(40));
    assert_eq!(
        requests_at(&h.take_out(), "INVITE"),
        [500, 1500, 3500, 7500, 15500, 31500],
        "Timer A doubling"
    );
    assert_eq!(h.ended(), [EndReason::Rejected(408)], "Timer B");
    assert_no_leak(&mut h);
}

#[test]
fn outbound_call_cancelled_while_ringing() {
    let mut h = Harness::standard();
    let (call, inv) = place(&mut h);
    // Hang up before any provisional: CANCEL must wait for one (§9.1).
    h.ep.hangup(h.now, call);
    h.run_until(h.now);
    assert!(h.take_out().is_empty());
    agent_says(&mut h, &agent_response(&inv, 180, Some("ag4"), "", ""));
    let out = h.take_out();
    let cancel = msg(&out[0].1.bytes);
    assert_eq!(cancel.method(), Some("CANCEL"));
    assert_eq!(cancel.header("Via"), inv.header("Via"));
    assert_eq!(cancel.header("CSeq"), Some("1 CANCEL"));
    agent_says(&mut h, &agent_response(&cancel, 200, Some("ag4"), "", ""));
    agent_says(&mut h, &agent_response(&inv, 487, Some("ag4"), "", ""));
    assert_eq!(requests_at(&h.take_out(), "ACK").len(), 1);
    assert_eq!(h.ended(), [EndReason::Cancelled]);
    assert_no_leak(&mut h);
}

// ----- privacy ----------------------------------------------------------------

#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

#[test]
fn dtmf_digits_never_reach_logs_or_debug_output() {
    let buf = LogBuf::default();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buf.clone())
        .with_ansi(false)
        .finish();
    let mut debug_dump = String::new();
    tracing::subscriber::with_default(sub, || {
        let mut h = Harness::standard();
        let mut leg = Leg::new("privacy");
        confirmed_call(&mut h, &mut leg);
        for (ct, body) in [
            ("application/dtmf-relay", "Signal=9\r\nDuration=160\r\n"),
            ("application/dtmf", "9"),
            ("application/dtmf", "bogus-9"),
        ] {
            let (_, info) = leg.next("INFO", "", Some((ct, body)));
            h.udp(&info);
            // and a corrupted copy, which is logged as dropped or rejected
            h.knobs.corrupt_next = 1;
            h.udp(&info);
        }
        h.settle();
        for e in &h.events {
            debug_dump.push_str(&format!("{e:?}\n"));
        }
        for (_, t) in &h.out {
            debug_dump.push_str(&format!("{t:?}\n"));
        }
        assert!(
            h.events
                .iter()
                .any(|e| matches!(e, SipEvent::Dtmf { digit: '9', .. }))
        );
    });
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    for text in [&logs, &debug_dump] {
        assert!(!text.contains("Signal"), "{text}");
        assert!(!text.contains("'9'"), "{text}");
        assert!(!text.contains("bogus"), "{text}");
    }
}

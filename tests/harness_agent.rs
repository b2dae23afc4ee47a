//! Whole calls through the two-way in-memory harness: the real SIP
//! endpoint, call core and queue core against a scripted caller and agent
//! phones, on virtual time, clean and over a lossy, duplicating, delaying
//! network (seeded).

mod harness_support;

use std::time::Duration;

use harness_support::{AGENT_SDP, CALLER_SDP, Faults, Phone, ReferReply, World};
use ivr12333::call::Socket;

const SECOND: Duration = Duration::from_secs(1);

/// Dial, wait for the menu, press 0: the caller waits in the queue (or is
/// referred) and the first agent's phone rings.
fn to_agent(w: &mut World) {
    w.dial();
    assert!(
        w.run_until(5 * SECOND, |w| w.caller_statuses("INVITE").contains(&200)),
        "200 OK to the caller"
    );
    assert!(w.run_until(5 * SECOND, |w| {
        w.call.as_ref().is_some_and(|c| !c.is_done())
    }));
    w.run_for(SECOND);
    w.key('0');
    w.run_for(SECOND);
}

fn bridged(w: &World) -> bool {
    w.call.as_ref().is_some_and(|c| c.is_bridged())
}

fn caller_to_agent_bridge_then_agent_bye(faults: Faults) {
    let mut w = World::new(&[Phone::Answer], None, faults);
    to_agent(&mut w);
    assert!(
        w.run_until(30 * SECOND, bridged),
        "caller bridged to the agent"
    );
    assert!(w.agent_got(0, "INVITE") >= 1);
    // The agent's INVITE carried our offer and the caller's verification state.
    let inv = &w.agents[0].received[0];
    assert_eq!(inv.method(), Some("INVITE"));
    assert_eq!(inv.header("X-IVR-Account-Status"), Some("unverified"));
    assert!(String::from_utf8_lossy(&inv.body).contains("m=audio 31002 RTP/AVP"));
    // The agent acknowledged our ACK path: its 200 was answered with ACK.
    assert!(w.call().agent_side().connected().is_some());
    // The agent hangs up: BYE to the caller, CDR says agent_hangup.
    w.agent_request(0, "BYE", None);
    assert!(
        w.run_until(10 * SECOND, |w| !w.records.is_empty()),
        "call ended"
    );
    assert!(w.run_until(10 * SECOND, |w| {
        w.caller_got.iter().any(|m| m.method() == Some("BYE"))
    }));
    assert_eq!(w.record().end_reason, "agent_hangup");
    assert!(w.record().prompts.iter().any(|p| p == "agent_connected"));
    assert_eq!(w.audits, ["queued"]);
    assert!(
        w.agents[0]
            .responses
            .iter()
            .any(|(s, c)| *s == 200 && c.ends_with("BYE"))
    );
}

#[test]
fn caller_presses_0_agent_answers_bridged_agent_hangs_up() {
    caller_to_agent_bridge_then_agent_bye(Faults::none());
}

#[test]
fn the_same_over_a_lossy_duplicating_network() {
    for seed in [3, 17, 99] {
        caller_to_agent_bridge_then_agent_bye(Faults::lossy(seed));
    }
}

#[test]
fn agent_refuses_with_486_and_the_next_agent_rings() {
    let mut w = World::new(&[Phone::Refuse(486), Phone::Answer], None, Faults::none());
    to_agent(&mut w);
    assert!(
        w.run_until(30 * SECOND, bridged),
        "bridged to the second agent"
    );
    assert_eq!(w.agent_got(0, "INVITE"), 1);
    assert_eq!(w.agent_got(1, "INVITE"), 1);
    // The refusal was ACKed by the endpoint (a non-2xx ACK reaches the phone).
    assert!(
        w.agents[0]
            .received
            .iter()
            .any(|m| m.method() == Some("ACK"))
    );
    let connected = w.call().agent_side().connected();
    assert!(connected.is_some());
    // Relayed caller RTP leaves on the agent leg's socket.
    assert!(w.call().agent_side().legs() == 1);
    w.caller_bye();
    assert!(w.run_until(10 * SECOND, |w| !w.records.is_empty()));
    assert_eq!(w.record().end_reason, "caller_hangup");
    // The agent's leg was hung up with BYE.
    assert!(w.run_until(10 * SECOND, |w| w.agent_got(1, "BYE") >= 1));
}

fn refer_world(reply: ReferReply) -> World {
    let mut w = World::new(
        &[Phone::Answer],
        Some("sip:queue@127.0.0.1:5099"),
        Faults::none(),
    );
    w.refer_reply = reply;
    to_agent(&mut w);
    w
}

#[test]
fn refer_accepted_and_succeeded_ends_our_leg_with_transfer() {
    let mut w = refer_world(ReferReply::AcceptAndSucceed);
    assert!(
        w.run_until(10 * SECOND, |w| !w.records.is_empty()),
        "call ended"
    );
    let refer = w
        .caller_got
        .iter()
        .find(|m| m.method() == Some("REFER"))
        .expect("REFER");
    assert_eq!(refer.header("Refer-To"), Some("<sip:queue@127.0.0.1:5099>"));
    assert_eq!(w.record().end_reason, "transfer");
    assert_eq!(w.audits, ["refer"]);
    assert_eq!(
        w.agent_got(0, "INVITE"),
        0,
        "no agent leg for a REFER queue"
    );
    assert!(w.run_until(10 * SECOND, |w| {
        w.caller_got.iter().any(|m| m.method() == Some("BYE"))
    }));
}

#[test]
fn refer_refused_falls_back_to_the_internal_queue() {
    let mut w = refer_world(ReferReply::Refuse(403));
    assert!(
        w.run_until(30 * SECOND, bridged),
        "fallback: bridged to the free agent"
    );
    assert!(w.caller_got.iter().any(|m| m.method() == Some("REFER")));
    assert_eq!(w.agent_got(0, "INVITE"), 1);
    assert!(w.records.is_empty());
}

#[test]
fn refer_without_outcome_times_out_then_falls_back() {
    let mut w = refer_world(ReferReply::AcceptSilently);
    // Nothing happens for the REFER timeout (32 s)...
    w.run_for(25 * SECOND);
    assert!(!bridged(&w));
    assert_eq!(w.agent_got(0, "INVITE"), 0);
    // ...then the caller is queued and the agent rings.
    assert!(
        w.run_until(30 * SECOND, bridged),
        "fallback after the REFER timeout"
    );
    assert_eq!(w.agent_got(0, "INVITE"), 1);
}

#[test]
fn refer_refused_with_no_agent_free_apologises() {
    let mut w = World::new(
        &[Phone::Answer],
        Some("sip:queue@127.0.0.1:5099"),
        Faults::none(),
    );
    w.queue.agent_pause(w.now, &World::agent_id(0), true);
    w.refer_reply = ReferReply::Refuse(603);
    to_agent(&mut w);
    assert!(
        w.run_until(60 * SECOND, |w| !w.records.is_empty()),
        "apology then goodbye"
    );
    let states = &w.record().states;
    assert!(states.iter().any(|s| s == "agents_busy"), "{states:?}");
    assert_eq!(w.record().end_reason, "ivr_hangup");
}

#[test]
fn reinvite_from_the_caller_during_the_bridge_is_answered() {
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    to_agent(&mut w);
    assert!(w.run_until(30 * SECOND, bridged));
    let moved = CALLER_SDP.replace("40000", "40010");
    w.caller_reinvite(&moved);
    w.run_for(SECOND);
    let oks = w.caller_statuses("INVITE");
    assert_eq!(oks.iter().filter(|s| **s == 200).count(), 2, "{oks:?}");
    // The bridge follows the caller's new address.
    assert!(bridged(&w));
    assert!(!w.call().is_done());
}

#[test]
fn reinvite_from_the_agent_during_the_bridge_is_refused_with_488() {
    // Today the relay keeps the codecs both legs negotiated at connect
    // time, so the call core refuses the agent's re-INVITE with 488; the
    // bridge goes on with the old session.
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    to_agent(&mut w);
    assert!(w.run_until(30 * SECOND, bridged));
    w.agent_request(0, "INVITE", Some(&AGENT_SDP.replace("42000", "42010")));
    w.run_for(SECOND);
    assert!(
        w.agents[0]
            .responses
            .iter()
            .any(|(s, c)| *s == 488 && c.ends_with("INVITE")),
        "{:?}",
        w.agents[0].responses
    );
    assert!(bridged(&w));
}

#[test]
fn nothing_is_relayed_to_a_ringing_agent_and_rtp_goes_only_to_the_caller_before_connect() {
    let mut w = World::new(&[Phone::Ring], None, Faults::none());
    to_agent(&mut w);
    w.run_for(5 * SECOND);
    assert_eq!(w.agent_got(0, "INVITE"), 1);
    assert!(w.rtp.iter().all(|(s, _)| *s == Socket::Caller));
    assert!(!bridged(&w));
}

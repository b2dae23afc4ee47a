//! The CDR's `end_reason` is what ended the call (one test per reason), and
//! the caller leg's media guard: no RTP before the ACK unless the caller
//! already sent RTP from its SDP address, a cap on what an unconfirmed call
//! sends, RTP only to the signalling source or a trusted network, and the
//! short no-ACK window. Virtual time, through the in-memory harness.

mod harness_support;

use std::net::SocketAddr;
use std::time::Duration;

use harness_support::{CALLER_SDP, Faults, Phone, ReferReply, World};
use ivr12333::call::UNCONFIRMED_PACKETS;
use ivr12333::sip::admission::Cidr;

const SECOND: Duration = Duration::from_secs(1);

fn sdp_addr() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn ended(w: &mut World, within: Duration) -> String {
    assert!(
        w.run_until(within, |w| !w.records.is_empty()),
        "the call did not end"
    );
    w.record().end_reason.clone()
}

fn answered() -> World {
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.dial();
    w.run_for(SECOND);
    w
}

#[test]
fn caller_hangup() {
    let mut w = answered();
    w.caller_bye();
    assert_eq!(ended(&mut w, 5 * SECOND), "caller_hangup");
}

#[test]
fn ivr_hangup_when_the_dialplan_says_goodbye() {
    // The caller's queue wait runs out: "agents busy", goodbye, the IVR
    // hangs up.
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.queue.agent_pause(w.now, &World::agent_id(0), true);
    w.dial();
    w.run_for(2 * SECOND);
    w.key('0');
    assert_eq!(ended(&mut w, 400 * SECOND), "ivr_hangup");
    assert!(w.record().states.iter().any(|s| s == "agents_busy"));
    assert!(w.run_until(5 * SECOND, |w| {
        w.caller_got.iter().any(|m| m.method() == Some("BYE"))
    }));
}

#[test]
fn rtp_timeout_when_the_caller_goes_quiet() {
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.inactivity = 5 * SECOND;
    w.dial();
    assert_eq!(ended(&mut w, 30 * SECOND), "rtp_timeout");
}

#[test]
fn shutdown_when_the_grace_period_is_over() {
    let mut w = answered();
    w.shutdown();
    assert_eq!(ended(&mut w, SECOND), "shutdown");
}

#[test]
fn transfer_when_the_refer_succeeded() {
    let mut w = World::new(
        &[Phone::Answer],
        Some("sip:q@127.0.0.1:5099"),
        Faults::none(),
    );
    w.refer_reply = ReferReply::AcceptAndSucceed;
    w.dial();
    w.run_for(2 * SECOND);
    w.key('0');
    assert_eq!(ended(&mut w, 20 * SECOND), "transfer");
}

#[test]
fn agent_hangup_when_the_bridged_agent_hangs_up() {
    let mut w = answered();
    w.key('0');
    assert!(w.run_until(30 * SECOND, |w| w.call().is_bridged()));
    w.agent_request(0, "BYE", None);
    assert_eq!(ended(&mut w, 5 * SECOND), "agent_hangup");
}

#[test]
fn caller_hangup_while_queued_is_not_transfer() {
    // The flow notes "transfer" when it asks for one; the caller who then
    // hangs up in the queue still hung up.
    let mut w = World::new(&[Phone::Ring], None, Faults::none());
    w.dial();
    w.run_for(2 * SECOND);
    w.key('0');
    assert!(w.run_until(20 * SECOND, |w| w.agent_got(0, "INVITE") >= 1));
    assert!(w.call().is_queued());
    w.caller_bye();
    assert_eq!(ended(&mut w, 5 * SECOND), "caller_hangup");
    // The ringing agent's INVITE was cancelled.
    assert!(w.run_until(5 * SECOND, |w| w.agent_got(0, "CANCEL") >= 1));
}

#[test]
fn no_ack_and_no_media_ends_after_the_short_window_with_nothing_sent() {
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.caller_acks = false;
    w.dial();
    w.run_for(7 * SECOND);
    assert!(w.records.is_empty(), "still within the 8 s window");
    assert_eq!(ended(&mut w, 2 * SECOND), "no_ack");
    assert!(
        w.rtp.is_empty(),
        "RTP sent before the ACK: {:?}",
        w.rtp.len()
    );
}

#[test]
fn no_ack_after_64_t1_for_a_caller_that_sends_media() {
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.caller_acks = false;
    w.dial();
    // The caller talks from its SDP address but never ACKs: the short window
    // does not apply, the SIP layer's 64·T1 (32 s) does.
    for _ in 0..20 {
        w.caller_rtp(sdp_addr());
        w.run_for(Duration::from_millis(500));
    }
    assert!(w.records.is_empty());
    for _ in 0..60 {
        if !w.records.is_empty() {
            break;
        }
        w.caller_rtp(sdp_addr());
        w.run_for(SECOND);
    }
    assert_eq!(w.record().end_reason, "no_ack");
}

#[test]
fn cancelled_reaches_the_record() {
    let mut w = answered();
    // The SIP layer reports a CANCEL as "cancelled" (runtime/sip.rs maps
    // EndReason::Cancelled); the call keeps that reason.
    w.ended_signal("cancelled");
    assert_eq!(ended(&mut w, SECOND), "cancelled");
}

#[test]
fn before_the_ack_rtp_only_after_latching_on_the_sdp_address_and_capped() {
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.caller_acks = false;
    w.dial();
    w.run_for(2 * SECOND);
    assert!(w.rtp.is_empty());
    // RTP from another address does not unlock sending.
    w.caller_rtp("127.0.0.1:41000".parse().unwrap());
    w.run_for(2 * SECOND);
    assert!(w.rtp.is_empty(), "sent after RTP from a foreign address");
    // From the SDP address (after the foreign source went quiet): sending
    // starts, and stops at the cap.
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.caller_acks = false;
    w.dial();
    for _ in 0..6 {
        w.caller_rtp(sdp_addr());
        w.run_for(SECOND);
    }
    assert!(!w.rtp.is_empty());
    assert!(
        w.rtp.len() as u32 <= UNCONFIRMED_PACKETS,
        "{} packets before the ACK",
        w.rtp.len()
    );
}

#[test]
fn rtp_goes_only_to_the_signalling_ip_unless_trusted() {
    let third = CALLER_SDP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.9");
    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.caller_sdp = third.clone();
    w.dial();
    w.run_for(3 * SECOND);
    assert!(w.caller_statuses("INVITE").contains(&200));
    assert!(!w.call().is_done());
    assert!(w.rtp.is_empty(), "RTP towards 127.0.0.9: {}", w.rtp.len());

    let mut w = World::new(&[Phone::Answer], None, Faults::none());
    w.caller_sdp = third;
    w.trusted = vec![Cidr::parse("127.0.0.8/30").unwrap()];
    w.dial();
    w.run_for(3 * SECOND);
    assert!(
        w.rtp.len() > 50,
        "trusted network gets the prompts: {}",
        w.rtp.len()
    );
    assert!(w.rtp.iter().all(|(_, d)| d.ip().to_string() == "127.0.0.9"));
}

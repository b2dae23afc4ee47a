//! A whole call waiting for an agent, on virtual time, through the real
//! `Call` (SDP, media session, flow with `dialplans/12333.toml`, the real
//! prompt library): 0 at the menu → transfer → hold audio → position
//! announcement → `*` back to the menu; maximum wait (hang-up and
//! return-to-menu variants); an agent connected through the relay.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::call::{Call, CallEvent, CallParams, CallSignal};
use ivr12333::domain::CallRecord;
use ivr12333::flow::calendar::Calendar;
use ivr12333::flow::interpreter::FlowConfig;
use ivr12333::media::bridge::Side;
use ivr12333::media::g711::Codec;
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::media::rtp::{self, RtpOut};
use ivr12333::media::sdp::{LocalMedia, SdpSession};

const PEER: &str = "127.0.0.1:40000";
const AGENT: &str = "127.0.0.1:42000";

struct Harness {
    call: Call,
    now: Instant,
    outputs: Vec<CallEvent>,
    prompts: Arc<PromptLibrary>,
    /// Payloads of the packets sent to the caller.
    sent: Vec<Vec<u8>>,
}

fn ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl Harness {
    fn new() -> Harness {
        let prompts = Arc::new(PromptLibrary::load(std::path::Path::new("prompts")).unwrap());
        let known: std::collections::HashSet<&str> = prompts.ids().collect();
        let plan = ivr12333::flow::dialplan::load_file(
            std::path::Path::new("dialplans/12333.toml"),
            &known,
        )
        .unwrap();
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let flow = FlowConfig {
            agent_hours: Calendar::from_config(&days, "00:00", "23:59", &[], &[]).unwrap(),
            ..FlowConfig::default()
        };
        let mut peer = SdpSession::new(
            LocalMedia {
                addr: ip(),
                port: 40000,
                codecs: vec![Codec::Pcmu],
            },
            7,
        );
        let now = Instant::now();
        let (call, _answer) = Call::new(CallParams {
            call_id: "q-test".into(),
            caller: "13800138000".into(),
            local_ip: ip(),
            rtp_port: 30000,
            offer: Some(peer.offer()),
            plan: Arc::new(plan),
            flow: Arc::new(flow),
            prompts: prompts.clone(),
            inactivity_timeout: Duration::from_secs(600),
            seeds: [1, 2, 3, 4],
            now,
            wall_ms: 1_795_737_600_000,
            net: Default::default(),
            agents: Default::default(),
        })
        .unwrap();
        let mut h = Harness {
            call,
            now,
            outputs: Vec::new(),
            prompts,
            sent: Vec::new(),
        };
        h.call.handle_signal(now, CallSignal::Confirmed(None));
        h.drain();
        h
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 1500];
        while let Some(t) = self.call.poll_transmit(self.now, &mut buf) {
            if let Some(p) = rtp::parse(&buf[..t.len]) {
                self.sent.push(p.payload.to_vec());
            }
        }
        while let Some(o) = self.call.poll_event() {
            self.outputs.push(o);
        }
    }

    /// Runs virtual time in 20 ms steps (bounded) until `f` holds.
    fn run_until(&mut self, max_ms: u64, mut f: impl FnMut(&Harness) -> bool) -> bool {
        for _ in 0..max_ms / 20 {
            if f(self) {
                return true;
            }
            self.now += Duration::from_millis(20);
            self.call.handle_timeout(self.now);
            self.drain();
        }
        f(self)
    }

    fn key(&mut self, c: char) {
        self.call.handle_signal(self.now, CallSignal::InfoDigit(c));
        self.drain();
    }

    fn has_transfer(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| matches!(o, CallEvent::JoinQueue { .. }))
    }

    /// Welcome, 0, "transferring you", then the Transfer output.
    fn to_queue() -> Harness {
        let mut h = Harness::new();
        h.now += Duration::from_millis(500);
        h.key('0');
        assert!(h.run_until(20_000, Harness::has_transfer), "no transfer");
        // Keep what the queue itself sends: its first frame may go out at
        // once (a talkspurt starts without waiting for the next slot).
        let before = h.sent.len();
        h.call.queue_joined(h.now);
        h.drain();
        assert!(h.call.is_queued());
        h.sent.drain(..before);
        h
    }

    fn record(&mut self) -> CallRecord {
        if !self.call.is_done() {
            self.call
                .handle_signal(self.now, CallSignal::Ended("caller_hangup"));
            self.drain();
        }
        self.outputs
            .iter()
            .find_map(|o| match o {
                CallEvent::WriteCdr(r) => Some((**r).clone()),
                _ => None,
            })
            .expect("a CDR")
    }
}

fn frames_of(h: &Harness, id: &str) -> Vec<Vec<u8>> {
    h.prompts
        .get(id)
        .unwrap()
        .frames(Codec::Pcmu)
        .iter()
        .map(|f| f.to_vec())
        .collect()
}

#[test]
fn hold_audio_loops_then_announcement_then_star_returns_to_menu() {
    let mut h = Harness::to_queue();
    // Hold audio: the caller receives the hold_music clip frame for frame,
    // and again from the start once it has finished (it loops).
    let hold = frames_of(&h, "hold_music");
    let len = hold.len() as u64;
    h.run_until(len * 20 + 400, |_| false);
    let sent = std::mem::take(&mut h.sent);
    assert!(sent.len() as u64 >= len + 10);
    assert_eq!(sent[..hold.len()], hold[..], "hold_music not played");
    assert_eq!(sent[hold.len()..hold.len() + 5], hold[..5], "not looped");

    // Position 3: two people ahead → 您前面还有 两 位 请耐心等候, then hold.
    h.call.queue_announce(h.now, 3);
    h.drain();
    let ahead = frames_of(&h, "queue_ahead");
    h.run_until(ahead.len() as u64 * 20, |_| false);
    assert_eq!(h.sent[..ahead.len()], ahead[..]);

    // `*` leaves the queue and the main menu plays.
    let before_star = h.sent.len();
    h.key('*');
    assert!(h.outputs.iter().any(|o| matches!(o, CallEvent::LeaveQueue)));
    assert!(!h.call.is_queued());
    h.sent.drain(..before_star);
    let menu = frames_of(&h, "main_menu");
    h.run_until(2_000, |_| false);
    assert_eq!(h.sent[..20], menu[..20], "main menu not replayed");

    let rec = h.record();
    let p = &rec.prompts;
    let at = p.iter().position(|x| x == "queue_announce").unwrap();
    assert_eq!(
        p[at + 1..at + 5],
        ["queue_ahead", "n_liang", "c_wei", "queue_wait"]
    );
    let t = rec.states.iter().rposition(|s| s == "transfer").unwrap();
    assert!(rec.states[t + 1..].iter().any(|s| s == "main_menu"));
}

#[test]
fn first_in_line_hears_only_please_wait() {
    let mut h = Harness::to_queue();
    h.call.queue_announce(h.now, 1);
    h.drain();
    let rec = h.record();
    let at = rec
        .prompts
        .iter()
        .position(|x| x == "queue_announce")
        .unwrap();
    assert_eq!(rec.prompts[at + 1], "queue_wait");
}

#[test]
fn max_wait_says_agents_busy_then_goodbye() {
    let mut h = Harness::to_queue();
    h.call.queue_max_wait(h.now, false);
    h.drain();
    assert!(h.run_until(30_000, |h| h.call.is_done()), "no hang-up");
    assert!(h.outputs.iter().any(|o| matches!(o, CallEvent::Hangup)));
    let rec = h.record();
    let t = rec.states.iter().rposition(|s| s == "transfer").unwrap();
    assert_eq!(rec.states[t + 1..], ["agents_busy", "goodbye"]);
}

#[test]
fn max_wait_can_return_to_the_menu() {
    let mut h = Harness::to_queue();
    h.sent.clear();
    h.call.queue_max_wait(h.now, true);
    h.drain();
    let busy = frames_of(&h, "agents_busy");
    h.run_until(busy.len() as u64 * 20 + 1000, |_| false);
    assert_eq!(h.sent[..busy.len()], busy[..]);
    assert!(!h.call.is_done());
    let rec = h.record();
    let t = rec.states.iter().rposition(|s| s == "transfer").unwrap();
    assert_eq!(rec.states[t + 1], "main_menu");
}

#[test]
fn connected_agent_gets_the_callers_audio_transcoded() {
    let mut h = Harness::to_queue();
    let agent = ivr12333::media::sdp::Negotiated {
        codec: Codec::Pcma,
        telephone_event_pt: None,
        remote: Some(AGENT.parse().unwrap()),
        direction: ivr12333::media::sdp::Direction::SendRecv,
        ptime_ms: 20,
    };
    assert!(h.call.connect_agent(h.now, &agent, [9, 9, 9, 8, 8, 8]));
    assert!(h.call.is_bridged() && !h.call.is_queued());
    // The hold audio stops: nothing more is sent by the media session.
    h.sent.clear();
    h.run_until(1000, |_| false);
    assert!(h.sent.is_empty());
    // A caller packet goes to the agent as PCMA.
    let mut pkt = [0u8; 200];
    let n = rtp::write(
        RtpOut {
            payload_type: 0,
            marker: false,
            sequence: 1,
            timestamp: 160,
            ssrc: 77,
        },
        &[0xFFu8; 160],
        &mut pkt,
    )
    .unwrap();
    let mut out = [0u8; 1500];
    let src: SocketAddr = PEER.parse().unwrap();
    let (len, dest) = h
        .call
        .relay(h.now, Side::Caller, src, &pkt[..n], &mut out)
        .unwrap();
    assert_eq!(dest, AGENT.parse().unwrap());
    let p = rtp::parse(&out[..len]).unwrap();
    assert_eq!(p.payload_type, 8);
    assert!(p.payload.iter().all(|&b| b == 0xD5));
    // `*` during the conversation does not leave anything.
    h.key('*');
    assert!(!h.outputs.iter().any(|o| matches!(o, CallEvent::LeaveQueue)));
    // The agent hangs up: the caller is hung up too.
    h.call.agent_hung_up(h.now);
    h.drain();
    assert!(h.call.is_done());
    assert!(h.outputs.iter().any(|o| matches!(o, CallEvent::Hangup)));
}

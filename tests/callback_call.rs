//! A callback booked from the agent queue, on virtual time, through the real
//! `Call` (SDP, media session, flow with `dialplans/12333.toml`, the real
//! prompt library): waiting in the queue, the caller presses the callback
//! key (or the queue's estimated wait is over the threshold), leaves the
//! queue, hears the offer, confirms the calling number read back, and the
//! call emits one `CallEvent::Callback` (nothing is dialled). The CDR holds
//! no digit of the number.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::call::{Call, CallEvent, CallParams, CallSignal};
use ivr12333::domain::CallRecord;
use ivr12333::flow::calendar::Calendar;
use ivr12333::flow::interpreter::FlowConfig;
use ivr12333::media::g711::Codec;
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::media::rtp;
use ivr12333::media::sdp::{LocalMedia, SdpSession};

struct Harness {
    call: Call,
    now: Instant,
    outputs: Vec<CallEvent>,
    prompts: Arc<PromptLibrary>,
    sent: Vec<Vec<u8>>,
}

fn ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl Harness {
    fn new(callback_after: Option<Duration>) -> Harness {
        let prompts = Arc::new(PromptLibrary::load(std::path::Path::new("prompts")).unwrap());
        let known: std::collections::HashSet<&str> = prompts.ids().collect();
        let plan = ivr12333::flow::dialplan::load_file(
            std::path::Path::new("dialplans/12333.toml"),
            &known,
        )
        .unwrap();
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let mut after = BTreeMap::new();
        if let Some(d) = callback_after {
            after.insert("agents".to_owned(), d);
        }
        let flow = FlowConfig {
            agent_hours: Calendar::from_config(&days, "00:00", "23:59", &[], &[]).unwrap(),
            prompt_ms: Some(Arc::new(prompts.durations_ms())),
            callback_key: Some('1'),
            callback_after: after,
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
            call_id: "cb-test".into(),
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

    /// Runs virtual time in 20 ms steps for `ms`.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms / 20 {
            self.now += Duration::from_millis(20);
            self.call.handle_timeout(self.now);
            self.drain();
        }
    }

    fn key(&mut self, c: char) {
        self.call.handle_signal(self.now, CallSignal::InfoDigit(c));
        self.drain();
    }

    fn ms_of(&self, id: &str) -> u64 {
        self.prompts.get(id).unwrap().frame_count() as u64 * 20
    }

    fn to_queue(callback_after: Option<Duration>) -> Harness {
        let mut h = Harness::new(callback_after);
        h.now += Duration::from_millis(500);
        h.key('0');
        let ms = h.ms_of("transfer_agent") + 200;
        h.run(ms);
        assert!(
            h.outputs
                .iter()
                .any(|o| matches!(o, CallEvent::JoinQueue { .. })),
            "no transfer"
        );
        h.call.queue_joined(h.now);
        h.drain();
        assert!(h.call.is_queued());
        h
    }

    fn callbacks(&self) -> Vec<(String, String)> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CallEvent::Callback { queue, number, id } => {
                    assert!(id.is_none(), "nobody was verified in this call");
                    Some((queue.clone(), number.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn left_queue(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| matches!(o, CallEvent::LeaveQueue))
    }

    /// The offer, then 1, the number read back, then 1 again.
    fn accept_offer(&mut self) {
        let ms = self.ms_of("callback_offer") + 200;
        self.run(ms);
        self.key('1');
        // "您的回拨号码是" + 11 digits (≈ 0.3 s each) + the question
        let ms = self.ms_of("callback_number") + 11 * 600 + self.ms_of("callback_confirm");
        self.run(ms);
        self.key('1');
        let ms = self.ms_of("callback_done") + self.ms_of("goodbye") + 400;
        self.run(ms);
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

#[test]
fn callback_key_while_waiting_books_the_calling_number() {
    let mut h = Harness::to_queue(None);
    h.run(2_000);
    let before = h.sent.len();
    h.key('1');
    assert!(h.left_queue());
    assert!(!h.call.is_queued());
    // the offer is what the caller hears now (hold audio stopped)
    h.run(400);
    let offer = h.prompts.get("callback_offer").unwrap().frames(Codec::Pcmu);
    let heard = &h.sent[before..];
    assert!(heard.len() >= 10);
    assert_eq!(
        heard[..10],
        offer[..10].iter().map(|f| f.to_vec()).collect::<Vec<_>>()[..]
    );
    h.accept_offer();
    assert_eq!(
        h.callbacks(),
        vec![("agents".to_owned(), "13800138000".to_owned())]
    );
    assert!(
        h.outputs.iter().any(|o| matches!(o, CallEvent::Hangup)),
        "goodbye and hang up after the booking"
    );
    let rec = h.record();
    assert_eq!(rec.end_reason, "callback");
    assert!(
        rec.prompts.contains(&"callback_done".to_owned()),
        "{:?}",
        rec.prompts
    );
    assert!(rec.prompts.contains(&"<number>".to_owned()));
    let text = format!("{rec:?}");
    assert!(!text.contains("13800138000"), "{text}");
    assert!(!rec.prompts.iter().any(|p| p.starts_with("n_")));
}

#[test]
fn long_estimated_wait_offers_a_callback_and_a_short_one_does_not() {
    let mut h = Harness::to_queue(Some(Duration::from_secs(120)));
    // under the threshold: the caller waits on
    h.call.queue_estimate(h.now, Duration::from_secs(60));
    h.drain();
    assert!(h.call.is_queued());
    assert!(!h.left_queue());
    // over it: out of the queue, the offer, and the booking
    h.call.queue_estimate(h.now, Duration::from_secs(600));
    h.drain();
    assert!(!h.call.is_queued());
    assert!(h.left_queue());
    h.accept_offer();
    assert_eq!(h.callbacks().len(), 1);

    // no threshold configured: an estimate never offers anything
    let mut h = Harness::to_queue(None);
    h.call.queue_estimate(h.now, Duration::from_secs(3600));
    h.drain();
    assert!(h.call.is_queued());
    // and other keys than 1 and * still do nothing while waiting
    h.key('5');
    assert!(h.call.is_queued());
}

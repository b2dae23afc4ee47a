//! A two-way in-memory world: a scripted caller (UAC) and agent phones
//! exchange SIP with the real `Endpoint`, while the real `Call` (SDP, media,
//! flow with `dialplans/12333.toml`, the agent side) and the real `QueueSet`
//! decide, all on virtual time. The glue below does what the runtime does
//! (route SIP events to the call, carry out its commands, route queue
//! actions) and nothing else. The network between the endpoint and the
//! peers is seeded: it loses what the endpoint sends (its retransmissions
//! must recover), and delays and duplicates in both directions. The
//! scripted peers answer retransmissions again, as real phones do.
#![allow(dead_code)]

#[path = "../sip_support/mod.rs"]
mod sip_support;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use sip_support::{CALLER, Leg, agent_response, msg, to_tag};

use ivr12333::call::{AgentSetup, Call, CallEvent, CallNet, CallParams, CallSignal, Socket};
use ivr12333::domain::CallRecord;
use ivr12333::flow::calendar::Calendar;
use ivr12333::flow::interpreter::FlowConfig;
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::queue::{AgentConfig, AgentId, CallerId, QueueConfig, QueueMode, QueueSet};
use ivr12333::sip::wire::Message;
use ivr12333::sip::{CallHandle, EndReason, Endpoint, EndpointConfig, SipEvent, Transport};

pub const CALLER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
pub const AGENT_SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 8\r\na=sendrecv\r\n";

/// What an agent phone does with an INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phone {
    /// 180, then 200 with SDP.
    Answer,
    /// 180, then this final status.
    Refuse(u16),
    /// 180 and nothing more.
    Ring,
}

/// How the caller's UA answers a REFER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferReply {
    /// 202, then a terminated NOTIFY with `SIP/2.0 200 OK`.
    AcceptAndSucceed,
    /// 202 and never a NOTIFY.
    AcceptSilently,
    /// This final status.
    Refuse(u16),
}

/// The network's faults, from a seed.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub seed: u64,
    /// Per mille of what the endpoint sends that is lost.
    pub loss: u64,
    /// Per mille of messages delivered twice.
    pub dup: u64,
    /// Most delay added to a message.
    pub max_delay: Duration,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            seed: 1,
            loss: 0,
            dup: 0,
            max_delay: Duration::ZERO,
        }
    }
    pub fn lossy(seed: u64) -> Faults {
        Faults {
            seed,
            loss: 100,
            dup: 100,
            max_delay: Duration::from_millis(80),
        }
    }
}

pub struct AgentPhone {
    pub addr: SocketAddr,
    pub behaviour: Phone,
    /// Every request the phone received (method, Call-ID).
    pub received: Vec<Message>,
    /// The INVITE it answered, for BYE / re-INVITE from the phone.
    pub dialog: Option<(Message, String)>,
    last_reply: HashMap<String, Vec<Vec<u8>>>,
    cseq: u32,
    /// Statuses of responses to the phone's own requests (CSeq method).
    pub responses: Vec<(u16, String)>,
}

pub struct World {
    pub ep: Endpoint,
    pub queue: QueueSet,
    pub call: Option<Call>,
    pub handle: Option<CallHandle>,
    pub t0: Instant,
    pub now: Instant,
    pub leg: Leg,
    pub refer_reply: ReferReply,
    pub agents: Vec<AgentPhone>,
    /// Every message the caller received.
    pub caller_got: Vec<Message>,
    /// Every message sent by the caller.
    pub caller_sent: Vec<Vec<u8>>,
    pub records: Vec<CallRecord>,
    pub audits: Vec<&'static str>,
    pub events: Vec<String>,
    pub ended: Vec<EndReason>,
    /// RTP frames the call sent: (socket, destination).
    pub rtp: Vec<(Socket, SocketAddr)>,
    legs: HashMap<CallHandle, ()>,
    net: VecDeque<(Instant, Dir, Vec<u8>)>,
    faults: Faults,
    rng: u64,
    prompts: Arc<PromptLibrary>,
    plan: Arc<ivr12333::flow::dialplan::Dialplan>,
    refer_target: Option<String>,
    notified: bool,
    /// Whether the caller ACKs the 200 (false: an INVITE never ACKed).
    pub caller_acks: bool,
    /// The call's RTP inactivity timeout.
    pub inactivity: Duration,
    /// `[rtp] trusted_media_networks`.
    pub trusted: Vec<ivr12333::sip::admission::Cidr>,
    /// The caller's SDP offer.
    pub caller_sdp: String,
    rtp_seq: u16,
}

#[derive(Debug, Clone, Copy)]
enum Dir {
    ToEndpoint(SocketAddr),
    ToPeer(SocketAddr),
}

pub fn agent_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5090 + i as u16))
}

impl World {
    /// `phones`: the agents of queue `agents`, in ring order (round robin).
    /// `refer`: put the queue in REFER mode with this target.
    pub fn new(phones: &[Phone], refer: Option<&str>, faults: Faults) -> World {
        let prompts = Arc::new(PromptLibrary::load(std::path::Path::new("prompts")).unwrap());
        let known: std::collections::HashSet<&str> = prompts.ids().collect();
        let plan = ivr12333::flow::dialplan::load_file(
            std::path::Path::new("dialplans/12333.toml"),
            &known,
        )
        .unwrap();
        let mut agents_cfg = Vec::new();
        let mut ids = Vec::new();
        let mut agents = Vec::new();
        for (i, p) in phones.iter().enumerate() {
            let mut a = AgentConfig::new(format!("agent{}", 1001 + i));
            a.contact = Some(format!("sip:{}@{}", 1001 + i, agent_addr(i)));
            ids.push(a.id.clone());
            agents_cfg.push(a);
            agents.push(AgentPhone {
                addr: agent_addr(i),
                behaviour: *p,
                received: Vec::new(),
                dialog: None,
                last_reply: HashMap::new(),
                cseq: 1,
                responses: Vec::new(),
            });
        }
        let mut q = QueueConfig::new("agents", ids);
        q.strategy = ivr12333::queue::Strategy::RoundRobin;
        q.ring_timeout = Duration::from_secs(10);
        if let Some(t) = refer {
            q.mode = QueueMode::Refer {
                target: t.to_owned(),
            };
        }
        let mut queue = QueueSet::new(vec![q], agents_cfg).unwrap();
        let t0 = Instant::now();
        queue.login_static_agents(t0);
        World {
            ep: Endpoint::new(EndpointConfig::default()),
            queue,
            call: None,
            handle: None,
            t0,
            now: t0,
            leg: Leg::new("harness-call"),
            refer_reply: ReferReply::AcceptAndSucceed,
            agents,
            caller_got: Vec::new(),
            caller_sent: Vec::new(),
            records: Vec::new(),
            audits: Vec::new(),
            events: Vec::new(),
            ended: Vec::new(),
            rtp: Vec::new(),
            legs: HashMap::new(),
            net: VecDeque::new(),
            faults,
            rng: faults.seed | 1,
            prompts,
            plan: Arc::new(plan),
            refer_target: refer.map(str::to_owned),
            notified: false,
            caller_acks: true,
            inactivity: Duration::from_secs(600),
            trusted: Vec::new(),
            caller_sdp: CALLER_SDP.to_owned(),
            rtp_seq: 0,
        }
    }

    fn roll(&mut self, per_mille: u64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 1000 < per_mille
    }

    fn delay(&mut self) -> Duration {
        let max = self.faults.max_delay.as_millis() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        self.roll(0);
        Duration::from_millis(self.rng % (max + 1))
    }

    fn put(&mut self, dir: Dir, bytes: Vec<u8>, lossy: bool) {
        if lossy && self.roll(self.faults.loss) {
            return;
        }
        let copies = if self.roll(self.faults.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.delay();
            self.net.push_back((at, dir, bytes.clone()));
        }
    }

    /// The caller sends `bytes` to the endpoint.
    pub fn caller_send(&mut self, bytes: Vec<u8>) {
        self.caller_sent.push(bytes.clone());
        self.put(Dir::ToEndpoint(CALLER.parse().unwrap()), bytes, false);
    }

    fn agent_send(&mut self, i: usize, bytes: Vec<u8>) {
        let from = self.agents[i].addr;
        self.put(Dir::ToEndpoint(from), bytes, false);
    }

    /// The caller dials 12333 with an SDP offer.
    pub fn dial(&mut self) {
        let sdp = self.caller_sdp.clone();
        let (_, inv) = self.leg.invite(Some(&sdp));
        self.caller_send(inv);
        self.run_for(Duration::from_millis(200));
    }

    /// The caller presses `key` (SIP INFO).
    pub fn key(&mut self, key: char) {
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        let (_, info) = self
            .leg
            .next("INFO", "", Some(("application/dtmf-relay", &body)));
        self.caller_send(info);
    }

    /// The caller hangs up.
    pub fn caller_bye(&mut self) {
        let (_, bye) = self.leg.next("BYE", "", None);
        self.caller_send(bye);
    }

    /// The caller re-INVITEs (hold/resume) with `sdp`.
    pub fn caller_reinvite(&mut self, sdp: &str) {
        self.leg.cseq += 1;
        let (_, inv) = self.leg.invite(Some(sdp));
        self.caller_send(inv);
    }

    /// Agent `i` sends an in-dialog request (`BYE` or a re-INVITE).
    pub fn agent_request(&mut self, i: usize, method: &str, body: Option<&str>) {
        let (inv, tag) = self.agents[i].dialog.clone().expect("agent in a dialog");
        self.agents[i].cseq += 1;
        let cseq = self.agents[i].cseq;
        let contact = inv.header("Contact").unwrap();
        let target = contact
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        let mut s = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-agent-{cseq}\r\nMax-Forwards: 70\r\nFrom: {};tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:agent@{}>\r\n",
            self.agents[i].addr,
            inv.header("To").unwrap(),
            inv.header("From").unwrap(),
            inv.header("Call-ID").unwrap(),
            self.agents[i].addr,
        );
        match body {
            Some(b) => {
                s += &format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                )
            }
            None => s += "Content-Length: 0\r\n\r\n",
        }
        self.agent_send(i, s.into_bytes());
    }

    /// Runs the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..2_000_000 {
            self.glue();
            let next = [
                self.net.iter().map(|n| n.0).min(),
                self.ep.poll_timeout(),
                self.call.as_ref().and_then(|c| c.poll_timeout()),
                self.queue.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                break;
            };
            self.now = self.now.max(next);
            self.deliver();
            self.ep.handle_timeout(self.now);
            if let Some(c) = self.call.as_mut() {
                c.handle_timeout(self.now);
            }
            self.queue.handle_timeout(self.now);
        }
        self.now = self.now.max(end);
        self.glue();
    }

    /// Runs until `f` holds (bounded by `max` of virtual time).
    pub fn run_until(&mut self, max: Duration, mut f: impl FnMut(&World) -> bool) -> bool {
        for _ in 0..(max.as_millis() / 100).max(1) {
            if f(self) {
                return true;
            }
            self.run_for(Duration::from_millis(100));
        }
        f(self)
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due, rest): (VecDeque<_>, VecDeque<_>) = self.net.drain(..).partition(|n| n.0 <= now);
        self.net = rest;
        for (_, dir, bytes) in due {
            match dir {
                Dir::ToEndpoint(src) => self.ep.handle_input(now, Transport::Udp, src, &bytes),
                Dir::ToPeer(dest) => self.peer_receives(dest, bytes),
            }
            self.glue();
        }
    }

    /// Moves everything the cores produced until all are quiet.
    fn glue(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(t) = self.ep.poll_transmit() {
                progressed = true;
                self.put(Dir::ToPeer(t.dest), t.bytes, true);
            }
            while let Some(ev) = self.ep.poll_event() {
                progressed = true;
                self.sip_event(ev);
            }
            while let Some(a) = self.queue.poll_event() {
                progressed = true;
                if let Some(c) = self.call.as_mut() {
                    c.handle_queue(self.now, a);
                }
            }
            let mut buf = [0u8; 1500];
            while let Some(t) = self
                .call
                .as_mut()
                .and_then(|c| c.poll_transmit(self.now, &mut buf))
            {
                self.rtp.push((t.socket, t.dest));
            }
            while let Some(ev) = self.call.as_mut().and_then(|c| c.poll_event()) {
                progressed = true;
                self.call_event(ev);
            }
            if !progressed {
                return;
            }
        }
        panic!("the world did not settle");
    }

    fn signal(&mut self, s: CallSignal) {
        if let Some(c) = self.call.as_mut() {
            c.handle_signal(self.now, s);
        }
    }

    fn sip_event(&mut self, ev: SipEvent) {
        self.events
            .push(format!("{ev:?}").chars().take(60).collect());
        let now = self.now;
        match ev {
            SipEvent::IncomingCall {
                call,
                offer,
                max_forwards,
                remote,
                ..
            } => {
                let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                let flow = FlowConfig {
                    agent_hours: Calendar::from_config(&days, "00:00", "23:59", &[], &[]).unwrap(),
                    ..FlowConfig::default()
                };
                let mut targets = HashMap::new();
                if let Some(t) = &self.refer_target {
                    targets.insert("agents".to_owned(), t.clone());
                }
                let params = CallParams {
                    call_id: "harness-call".into(),
                    caller: "13800138000".into(),
                    local_ip: "127.0.0.1".parse().unwrap(),
                    rtp_port: 30000,
                    offer,
                    plan: self.plan.clone(),
                    flow: Arc::new(flow),
                    prompts: self.prompts.clone(),
                    inactivity_timeout: self.inactivity,
                    seeds: [1, 2, 3, 4],
                    now,
                    wall_ms: 1_795_737_600_000,
                    net: CallNet {
                        signal_ip: Some(remote.ip()),
                        trusted: self.trusted.clone().into(),
                        ..CallNet::default()
                    },
                    agents: AgentSetup {
                        refer_targets: Arc::new(targets),
                        max_forwards,
                        seed: 7,
                    },
                };
                let (c, body) = Call::new(params).expect("offer accepted");
                self.ep.answer(now, call, body);
                self.call = Some(c);
                self.handle = Some(call);
            }
            SipEvent::CallConfirmed { sdp, .. } => self.signal(CallSignal::Confirmed(sdp)),
            SipEvent::ReInvite { call, offer } if self.legs.contains_key(&call) => {
                self.signal(CallSignal::AgentReInvite { leg: call, offer })
            }
            SipEvent::ReInvite { offer, .. } => self.signal(CallSignal::ReInvite(offer)),
            SipEvent::ReInviteAck { sdp, .. } => self.signal(CallSignal::ReInviteAck(sdp)),
            SipEvent::Dtmf { call, digit, .. } if Some(call) == self.handle => {
                self.signal(CallSignal::InfoDigit(digit))
            }
            SipEvent::Dtmf { .. } => {}
            SipEvent::Progress { call, status, .. } => {
                self.signal(CallSignal::AgentProgress { leg: call, status })
            }
            SipEvent::Answered { call, sdp } if self.legs.contains_key(&call) => {
                self.signal(CallSignal::AgentAnswered { leg: call, sdp })
            }
            SipEvent::Answered { call, .. } => self.ep.hangup(now, call),
            SipEvent::CallEnded { call, reason } => {
                self.ended.push(reason);
                let text = match reason {
                    EndReason::RemoteBye => "caller_hangup",
                    EndReason::Cancelled => "cancelled",
                    EndReason::AckTimeout => "no_ack",
                    _ => "local_hangup",
                };
                if self.legs.remove(&call).is_some() {
                    self.signal(CallSignal::AgentEnded {
                        leg: call,
                        reason: text,
                    });
                } else if Some(call) == self.handle {
                    self.signal(CallSignal::Ended(text));
                }
            }
            SipEvent::ReferAccepted { .. } => self.signal(CallSignal::ReferAccepted),
            SipEvent::ReferFailed { status, .. } => self.signal(CallSignal::ReferFailed { status }),
            SipEvent::ReferNotify {
                status, terminated, ..
            } => self.signal(CallSignal::ReferNotify { status, terminated }),
            SipEvent::Register { .. } => panic!("no REGISTER in the harness"),
        }
    }

    fn call_event(&mut self, ev: CallEvent) {
        let now = self.now;
        let h = self.handle.unwrap();
        let caller = CallerId(h.0);
        match ev {
            CallEvent::Hangup => self.ep.hangup(now, h),
            CallEvent::ReinviteAnswer(a) => self.ep.answer_reinvite(now, h, a),
            CallEvent::LegReinviteAnswer { handle, answer } => {
                self.ep.answer_reinvite(now, handle, answer)
            }
            CallEvent::Authenticate { .. } => panic!("no authentication in these scenarios"),
            CallEvent::Audit { outcome, .. } => self.audits.push(outcome),
            CallEvent::AuditQuery { .. } => panic!("no balance readout in these scenarios"),
            CallEvent::Callback { .. } => panic!("no callback in these scenarios"),
            CallEvent::JoinQueue {
                queue,
                only_if_agent_free,
            } => {
                let free = self
                    .queue
                    .queue_views(now)
                    .iter()
                    .any(|v| v.name == queue && v.available_agents > 0);
                let r = if only_if_agent_free && !free {
                    Err("no agent free".to_owned())
                } else {
                    self.queue
                        .join(now, &queue, caller)
                        .map_err(|e| e.to_string())
                };
                self.call.as_mut().unwrap().handle_queue_joined(now, r);
            }
            CallEvent::LeaveQueue => self.queue.leave(now, caller),
            CallEvent::QueueAgentAnswered(a) => self.queue.agent_answered(now, &a, caller),
            CallEvent::QueueAgentFailed(a) => self.queue.agent_failed(now, &a, caller),
            CallEvent::QueueCallEnded(a) => self.queue.call_ended(now, &a),
            CallEvent::ResolveContact { .. } => panic!("contacts are IP literals here"),
            CallEvent::OpenLeg { leg } => {
                let port = 31000 + leg.0 as u16 * 2;
                self.call
                    .as_mut()
                    .unwrap()
                    .handle_leg_media(now, leg, Some(port));
            }
            CallEvent::PlaceLeg { leg, call } => {
                let handle = self.ep.invite(now, call);
                self.legs.insert(handle, ());
                self.signal(CallSignal::LegPlaced { leg, handle });
            }
            CallEvent::DropLeg { handle, .. } => {
                if let Some(handle) = handle {
                    self.legs.remove(&handle);
                    self.ep.hangup(now, handle);
                }
            }
            CallEvent::SendRefer { target } => {
                if self.ep.refer(now, h, &target).is_err() {
                    self.signal(CallSignal::ReferFailed { status: 0 });
                }
            }
            CallEvent::WriteCdr(r) => self.records.push(*r),
        }
    }

    fn peer_receives(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        let m = msg(&bytes);
        if dest == CALLER.parse::<SocketAddr>().unwrap() {
            self.caller_receives(m);
        } else if let Some(i) = self.agents.iter().position(|a| a.addr == dest) {
            self.agent_receives(i, m);
        } else {
            panic!("message to an unknown peer {dest}");
        }
    }

    fn caller_receives(&mut self, m: Message) {
        let cseq = m.header("CSeq").unwrap_or("").to_owned();
        if let Some(status) = m.status() {
            if cseq.ends_with("INVITE") && (200..300).contains(&status) && self.caller_acks {
                self.leg.to_tag = to_tag(&m);
                let n: u32 = cseq.split(' ').next().unwrap().parse().unwrap();
                let ack = self.leg.ack_2xx(n, None);
                self.caller_send(ack);
            }
        } else {
            match m.method() {
                Some("BYE") => self.caller_send(agent_response(&m, 200, None, "", "")),
                Some("REFER") => match self.refer_reply {
                    ReferReply::Refuse(code) => {
                        self.caller_send(agent_response(&m, code, None, "", ""))
                    }
                    ReferReply::AcceptSilently => {
                        self.caller_send(agent_response(&m, 202, None, "", ""))
                    }
                    ReferReply::AcceptAndSucceed => {
                        self.caller_send(agent_response(&m, 202, None, "", ""));
                        if !std::mem::replace(&mut self.notified, true) {
                            let (_, n) = self.leg.next(
                                "NOTIFY",
                                "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n",
                                Some(("message/sipfrag", "SIP/2.0 200 OK\r\n")),
                            );
                            self.caller_send(n);
                        }
                    }
                },
                _ => {}
            }
        }
        self.caller_got.push(m);
    }

    fn agent_receives(&mut self, i: usize, m: Message) {
        if let Some(status) = m.status() {
            let cseq = m.header("CSeq").unwrap_or("").to_owned();
            self.agents[i].responses.push((status, cseq.clone()));
            if cseq.ends_with("INVITE") && (200..300).contains(&status) {
                let (inv, tag) = self.agents[i].dialog.clone().unwrap();
                let n = cseq.split(' ').next().unwrap();
                let ack = format!(
                    "ACK sip:12333@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-agent-ack-{n}\r\nMax-Forwards: 70\r\nFrom: {};tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n",
                    self.agents[i].addr,
                    inv.header("To").unwrap(),
                    m.header("To").unwrap(),
                    inv.header("Call-ID").unwrap()
                );
                self.agent_send(i, ack.into_bytes());
            }
            return;
        }
        let key = format!(
            "{} {}",
            m.header("Via").unwrap_or(""),
            m.header("CSeq").unwrap_or("")
        );
        if let Some(replies) = self.agents[i].last_reply.get(&key).cloned() {
            // A retransmission: the same answers again.
            for r in replies {
                self.agent_send(i, r);
            }
            return;
        }
        let tag = format!("agent{i}");
        let replies = match m.method() {
            Some("INVITE") => {
                self.agents[i].dialog = Some((m.clone(), tag.clone()));
                let ringing = agent_response(&m, 180, Some(&tag), "", "");
                match self.agents[i].behaviour {
                    Phone::Answer => vec![
                        ringing,
                        agent_response(
                            &m,
                            200,
                            Some(&tag),
                            &format!("Contact: <sip:agent@{}>\r\n", self.agents[i].addr),
                            AGENT_SDP,
                        ),
                    ],
                    Phone::Refuse(code) => {
                        vec![ringing, agent_response(&m, code, Some(&tag), "", "")]
                    }
                    Phone::Ring => vec![ringing],
                }
            }
            Some("CANCEL") => {
                let inv = self.agents[i].dialog.clone().map(|d| d.0);
                let mut v = vec![agent_response(&m, 200, Some(&tag), "", "")];
                if let Some(inv) = inv {
                    v.push(agent_response(&inv, 487, Some(&tag), "", ""));
                }
                v
            }
            Some("BYE") => vec![agent_response(&m, 200, None, "", "")],
            _ => Vec::new(),
        };
        self.agents[i].received.push(m);
        self.agents[i].last_reply.insert(key, replies.clone());
        for r in replies {
            self.agent_send(i, r);
        }
    }

    /// One PCMU RTP packet from the caller's `src`, straight into the call
    /// (media does not cross the SIP network).
    pub fn caller_rtp(&mut self, src: SocketAddr) {
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        let mut pkt = [0u8; 200];
        let n = ivr12333::media::rtp::write(
            ivr12333::media::rtp::RtpOut {
                payload_type: 0,
                marker: false,
                sequence: self.rtp_seq,
                timestamp: u32::from(self.rtp_seq) * 160,
                ssrc: 0x1234,
            },
            &[0xFF; 160],
            &mut pkt,
        )
        .unwrap();
        let now = self.now;
        if let Some(c) = self.call.as_mut() {
            c.handle_rtp(now, Socket::Caller, src, &pkt[..n]);
        }
        self.glue();
    }

    /// The SIP driver's shutdown grace period is over.
    pub fn shutdown(&mut self) {
        self.ended_signal("shutdown");
    }

    /// The SIP layer reports the dialog over with `reason`.
    pub fn ended_signal(&mut self, reason: &'static str) {
        self.signal(CallSignal::Ended(reason));
        self.glue();
    }

    /// The call's record (after it ended).
    pub fn record(&self) -> &CallRecord {
        self.records.last().expect("a CDR")
    }

    pub fn call(&self) -> &Call {
        self.call.as_ref().expect("a call")
    }

    /// Requests `agent i` received, by method.
    pub fn agent_got(&self, i: usize, method: &str) -> usize {
        self.agents[i]
            .received
            .iter()
            .filter(|m| m.method() == Some(method))
            .count()
    }

    /// Statuses the caller received for `cseq_method` (e.g. "INVITE").
    pub fn caller_statuses(&self, cseq_method: &str) -> Vec<u16> {
        self.caller_got
            .iter()
            .filter(|m| m.header("CSeq").is_some_and(|c| c.ends_with(cseq_method)))
            .filter_map(|m| m.status())
            .collect()
    }

    pub fn agent_id(i: usize) -> AgentId {
        AgentId::new(format!("agent{}", 1001 + i))
    }
}

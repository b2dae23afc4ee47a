//! Shared in-memory harness for the SIP scenario tests (sip_harness,
//! sip_transfer, sip_register): a scripted peer
//! against the sans-IO Endpoint on virtual time.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ivr12333::sip::message::NameAddr;
use ivr12333::sip::wire::{Message, Parsed, WireLimits, parse};
use ivr12333::sip::{ConnId, Endpoint, EndpointConfig, SipEvent, Transmit, Transport};

pub const CALLER: &str = "127.0.0.1:5070";
pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=sendrecv\r\n";

pub fn caller_addr() -> SocketAddr {
    CALLER.parse().unwrap()
}

/// Knobs applied to what the caller sends towards the endpoint.
#[derive(Debug, Default, Clone)]
pub struct Knobs {
    /// Drop the next N messages.
    pub drop_next: usize,
    /// Deliver every message twice.
    pub duplicate: bool,
    /// Deliver after this delay.
    pub delay: Duration,
    /// Flip bytes in the next N messages (deterministic positions).
    pub corrupt_next: usize,
}

pub struct Harness {
    pub ep: Endpoint,
    pub t0: Instant,
    pub now: Instant,
    /// Everything the endpoint sent: (time since t0, transmit).
    pub out: Vec<(Duration, Transmit)>,
    pub events: Vec<SipEvent>,
    pub knobs: Knobs,
    /// Every call the endpoint reported (kept even when events are taken).
    pub calls: Vec<ivr12333::sip::CallHandle>,
    pending: VecDeque<(Instant, Transport, SocketAddr, Vec<u8>)>,
    corrupt_seed: u64,
}

impl Harness {
    pub fn new(cfg: EndpointConfig) -> Harness {
        let t0 = Instant::now();
        Harness {
            ep: Endpoint::new(cfg),
            t0,
            now: t0,
            out: Vec::new(),
            events: Vec::new(),
            knobs: Knobs::default(),
            calls: Vec::new(),
            pending: VecDeque::new(),
            corrupt_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn standard() -> Harness {
        Harness::new(EndpointConfig::default())
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The caller sends `bytes` (subject to the knobs).
    pub fn send(&mut self, transport: Transport, src: SocketAddr, bytes: &[u8]) {
        if self.knobs.drop_next > 0 {
            self.knobs.drop_next -= 1;
            return;
        }
        let mut bytes = bytes.to_vec();
        if self.knobs.corrupt_next > 0 && !bytes.is_empty() {
            self.knobs.corrupt_next -= 1;
            for _ in 0..8 {
                self.corrupt_seed ^= self.corrupt_seed << 13;
                self.corrupt_seed ^= self.corrupt_seed >> 7;
                self.corrupt_seed ^= self.corrupt_seed << 17;
                let len = bytes.len() as u64;
                let i = (self.corrupt_seed % len) as usize;
                bytes[i] ^= (self.corrupt_seed >> 32) as u8 | 1;
            }
        }
        let at = self.now + self.knobs.delay;
        if self.knobs.duplicate {
            self.pending.push_back((at, transport, src, bytes.clone()));
        }
        self.pending.push_back((at, transport, src, bytes));
        self.run_until(self.now);
    }

    pub fn udp(&mut self, bytes: &[u8]) {
        self.send(Transport::Udp, caller_addr(), bytes);
    }

    pub fn tcp(&mut self, conn: u64, bytes: &[u8]) {
        self.send(Transport::Tcp(ConnId(conn)), caller_addr(), bytes);
    }

    /// Runs deliveries and timers up to `t` in time order (bounded loop).
    pub fn run_until(&mut self, t: Instant) {
        for _ in 0..1_000_000 {
            self.drain();
            let next_in = self.pending.iter().map(|p| p.0).min();
            let next_timer = self.ep.poll_timeout();
            let next = match (next_in, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if next_in.is_some_and(|a| a <= next) {
                let idx = self.pending.iter().position(|p| p.0 <= next).unwrap();
                let (_, tr, src, bytes) = self.pending.remove(idx).unwrap();
                self.ep.handle_input(self.now, tr, src, &bytes);
            } else {
                self.ep.handle_timeout(self.now);
            }
        }
        self.now = self.now.max(t);
        self.drain();
    }

    pub fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until every timer has run out (bounded), e.g. before leak checks.
    pub fn settle(&mut self) {
        self.advance(Duration::from_secs(120));
    }

    fn drain(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            self.out.push((self.now - self.t0, t));
        }
        while let Some(e) = self.ep.poll_event() {
            if let SipEvent::IncomingCall { call, .. } = &e {
                self.calls.push(*call);
            }
            self.events.push(e);
        }
    }

    pub fn take_out(&mut self) -> Vec<(Duration, Transmit)> {
        std::mem::take(&mut self.out)
    }

    pub fn take_events(&mut self) -> Vec<SipEvent> {
        std::mem::take(&mut self.events)
    }

    /// Status codes of the responses sent so far (and clears them).
    pub fn take_statuses(&mut self) -> Vec<u16> {
        self.take_out()
            .into_iter()
            .filter_map(|(_, t)| msg(&t.bytes).status())
            .collect()
    }
}

pub fn msg(bytes: &[u8]) -> Message {
    match parse(bytes, &WireLimits::default()) {
        Ok(Parsed::Message(m)) => m,
        other => panic!("endpoint sent something unparseable: {other:?}"),
    }
}

pub fn to_tag(m: &Message) -> Option<String> {
    NameAddr::parse(m.header("To")?)?.tag().map(str::to_owned)
}

/// One caller-side dialog leg.
#[derive(Debug, Clone)]
pub struct Leg {
    pub proto: &'static str,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
    branch_n: u32,
    pub rport: bool,
}

impl Leg {
    pub fn new(call_id: &str) -> Leg {
        Leg {
            proto: "UDP",
            call_id: call_id.to_owned(),
            from_tag: format!("ft-{call_id}"),
            to_tag: None,
            cseq: 1,
            branch_n: 0,
            rport: true,
        }
    }

    pub fn tcp(call_id: &str) -> Leg {
        Leg {
            proto: "TCP",
            ..Leg::new(call_id)
        }
    }

    pub fn new_branch(&mut self) -> String {
        self.branch_n += 1;
        format!("z9hG4bK-{}-{}", self.call_id, self.branch_n)
    }

    /// Builds a request. `branch` None = a fresh one. `in_dialog` adds the
    /// learned To tag.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        method: &str,
        cseq: u32,
        cseq_method: &str,
        branch: &str,
        in_dialog: bool,
        extra: &str,
        body: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let rport = if self.rport { ";rport" } else { "" };
        let to_tag = match (&self.to_tag, in_dialog) {
            (Some(t), true) => format!(";tag={t}"),
            _ => String::new(),
        };
        let mut s = format!(
            "{method} sip:12333@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/{} {CALLER};branch={branch}{rport}\r\n\
             Max-Forwards: 70\r\n\
             From: \"Caller\" <sip:13800138000@{CALLER}>;tag={}\r\n\
             To: <sip:12333@127.0.0.1:5060>{to_tag}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:13800138000@{CALLER}>\r\n{extra}",
            self.proto, self.from_tag, self.call_id
        );
        match body {
            Some((ct, b)) => s.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => s.push_str("Content-Length: 0\r\n\r\n"),
        }
        s.into_bytes()
    }

    /// A new INVITE (initial or re-INVITE) with a fresh branch and CSeq.
    pub fn invite(&mut self, sdp: Option<&str>) -> (String, Vec<u8>) {
        let b = self.new_branch();
        let in_dialog = self.to_tag.is_some();
        let bytes = self.build(
            "INVITE",
            self.cseq,
            "INVITE",
            &b,
            in_dialog,
            "",
            sdp.map(|s| ("application/sdp", s)),
        );
        (b, bytes)
    }

    /// ACK for a 2xx: new branch, CSeq of the INVITE.
    pub fn ack_2xx(&mut self, invite_cseq: u32, body: Option<&str>) -> Vec<u8> {
        let b = self.new_branch();
        self.build(
            "ACK",
            invite_cseq,
            "ACK",
            &b,
            true,
            "",
            body.map(|s| ("application/sdp", s)),
        )
    }

    /// ACK for a non-2xx: same branch as the INVITE.
    pub fn ack_non2xx(&self, invite_branch: &str, invite_cseq: u32) -> Vec<u8> {
        self.build("ACK", invite_cseq, "ACK", invite_branch, true, "", None)
    }

    /// CANCEL: same branch and CSeq number as the INVITE, no To tag.
    pub fn cancel(&self, invite_branch: &str, invite_cseq: u32) -> Vec<u8> {
        self.build(
            "CANCEL",
            invite_cseq,
            "CANCEL",
            invite_branch,
            false,
            "",
            None,
        )
    }

    /// A new in-dialog request with the next CSeq.
    pub fn next(
        &mut self,
        method: &str,
        extra: &str,
        body: Option<(&str, &str)>,
    ) -> (String, Vec<u8>) {
        self.cseq += 1;
        let b = self.new_branch();
        let bytes = self.build(method, self.cseq, method, &b, true, extra, body);
        (b, bytes)
    }
}

/// INVITE → 100 + IncomingCall; returns the call handle.
pub fn start_call(h: &mut Harness, leg: &mut Leg) -> (ivr12333::sip::CallHandle, String) {
    let (branch, inv) = leg.invite(Some(SDP));
    h.udp_or_tcp(leg, &inv);
    let ev = h.take_events();
    let call = ev
        .iter()
        .find_map(|e| match e {
            SipEvent::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
        .expect("IncomingCall");
    (call, branch)
}

/// start_call + answer + ACK: a confirmed call, outputs cleared.
pub fn confirmed_call(h: &mut Harness, leg: &mut Leg) -> ivr12333::sip::CallHandle {
    let (call, _) = start_call(h, leg);
    h.ep.answer(h.now, call, b"v=0\r\n".to_vec());
    h.run_until(h.now);
    let out = h.take_out();
    let ok = out
        .iter()
        .map(|(_, t)| msg(&t.bytes))
        .find(|m| m.status() == Some(200))
        .expect("200 OK");
    leg.to_tag = to_tag(&ok);
    let ack = leg.ack_2xx(leg.cseq, None);
    h.udp_or_tcp(leg, &ack);
    let ev = h.take_events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, SipEvent::CallConfirmed { .. }))
    );
    h.take_out();
    call
}

impl Harness {
    /// Sends over the leg's transport (TCP legs use connection 1).
    pub fn udp_or_tcp(&mut self, leg: &Leg, bytes: &[u8]) {
        if leg.proto == "TCP" {
            self.tcp(1, bytes);
        } else {
            self.udp(bytes);
        }
    }

    pub fn ended(&self) -> Vec<ivr12333::sip::EndReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SipEvent::CallEnded { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

pub const AGENT: &str = "127.0.0.1:5090";

/// The agent's response to one of our requests.
pub fn agent_response(
    req: &Message,
    code: u16,
    tag: Option<&str>,
    extra: &str,
    body: &str,
) -> Vec<u8> {
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

/// Runs every timer out and checks that no call or transaction is left.
pub fn assert_no_leak(h: &mut Harness) {
    h.settle();
    assert_eq!(h.ep.transaction_count(), 0, "leaked transactions");
    assert_eq!(h.ep.active_calls(), 0, "leaked calls");
    assert_eq!(h.ep.poll_timeout(), None);
}

/// The messages (requests and responses) the endpoint sent, parsed.
pub fn sent(out: &[(Duration, Transmit)]) -> Vec<Message> {
    out.iter().map(|(_, t)| msg(&t.bytes)).collect()
}

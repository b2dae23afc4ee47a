//! INVITE client transaction, RFC 3261 §17.1.1 with RFC 6026 §7.2
//! (Accepted state), for outbound calls (agent transfer).
//!
//! Calling (Timer A retransmits over UDP, T1 doubling; Timer B = 64·T1 gives
//! up) → (1xx) Proceeding → (300–699) Completed: the transaction itself
//! ACKs the final response (same branch, §17.1.1.3) and re-ACKs its
//! retransmissions until Timer D (32 s over UDP, zero over TCP) → (2xx)
//! Accepted: every 2xx (first and retransmitted) goes up to the TU, which
//! sends the ACK itself (§13.2.2.4), until Timer M (64·T1).

use std::time::{Duration, Instant};

use super::TxOutput;
use crate::sip::timers::{TimerConfig, TimerTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

const A: usize = 0;
const B: usize = 1;
const D: usize = 2;
const M: usize = 3;

/// What the transaction needs to build the ACK for a non-2xx final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTemplate {
    pub request_uri: String,
    /// The INVITE's (single) Via value, branch included.
    pub via: String,
    pub from: String,
    pub call_id: String,
    pub cseq: u32,
    pub routes: Vec<String>,
}

impl AckTemplate {
    /// §17.1.1.3: the ACK's To is the response's To (with its tag).
    pub fn build(&self, response_to: &str) -> Vec<u8> {
        let mut s = format!(
            "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n",
            self.request_uri, self.via
        );
        for r in &self.routes {
            s.push_str(&format!("Route: {r}\r\n"));
        }
        s.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            self.from, response_to, self.call_id, self.cseq
        ));
        s.into_bytes()
    }
}

#[derive(Debug, Clone)]
pub struct InviteClient {
    state: InviteClientState,
    reliable: bool,
    cfg: TimerConfig,
    request: Vec<u8>,
    ack: AckTemplate,
    last_ack: Option<Vec<u8>>,
    a_interval: Duration,
    timers: TimerTable<4>,
}

impl InviteClient {
    pub fn start(
        now: Instant,
        reliable: bool,
        cfg: TimerConfig,
        request: Vec<u8>,
        ack: AckTemplate,
        out: &mut Vec<TxOutput>,
    ) -> Self {
        out.push(TxOutput::Send(request.clone()));
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(A, now + cfg.t1);
        }
        timers.set(B, now + cfg.t64());
        InviteClient {
            state: InviteClientState::Calling,
            reliable,
            cfg,
            request,
            ack,
            last_ack: None,
            a_interval: cfg.t1,
            timers,
        }
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// A response matched this transaction; `to` is its To header value.
    pub fn on_response(&mut self, now: Instant, code: u16, to: &str, out: &mut Vec<TxOutput>) {
        match (self.state, code) {
            (InviteClientState::Calling | InviteClientState::Proceeding, 100..=199) => {
                self.state = InviteClientState::Proceeding;
                self.timers.stop(A);
                out.push(TxOutput::Provisional(code));
            }
            (InviteClientState::Calling | InviteClientState::Proceeding, 200..=299) => {
                self.state = InviteClientState::Accepted;
                self.timers.stop(A);
                self.timers.stop(B);
                self.timers.set(M, now + self.cfg.t64());
                out.push(TxOutput::Final(code));
            }
            (InviteClientState::Accepted, 200..=299) => out.push(TxOutput::Final(code)),
            (InviteClientState::Calling | InviteClientState::Proceeding, _)
                if crate::sip::status::is_error(code) =>
            {
                self.state = InviteClientState::Completed;
                self.timers.stop(A);
                self.timers.stop(B);
                let ack = self.ack.build(to);
                out.push(TxOutput::Send(ack.clone()));
                self.last_ack = Some(ack);
                let d = if self.reliable {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32).max(self.cfg.t64())
                };
                self.timers.set(D, now + d);
                out.push(TxOutput::Final(code));
            }
            (InviteClientState::Completed, _) if crate::sip::status::is_error(code) => {
                if let Some(a) = &self.last_ack {
                    out.push(TxOutput::Send(a.clone()));
                }
            }
            _ => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxOutput>) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                A if self.state == InviteClientState::Calling => {
                    out.push(TxOutput::Send(self.request.clone()));
                    self.a_interval = self.a_interval.saturating_mul(2);
                    self.timers.set(A, now + self.a_interval);
                }
                B => {
                    self.terminate();
                    out.push(TxOutput::TimedOut);
                }
                D | M => self.terminate(),
                _ => {}
            }
        }
    }

    pub fn terminate(&mut self) {
        self.state = InviteClientState::Terminated;
        self.timers.stop_all();
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> AckTemplate {
        AckTemplate {
            request_uri: "sip:agent@127.0.0.1:5070".into(),
            via: "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKabc;rport".into(),
            from: "<sip:12333@127.0.0.1>;tag=l1".into(),
            call_id: "c1".into(),
            cseq: 1,
            routes: vec![],
        }
    }

    #[test]
    fn timer_a_doubles_and_b_times_out() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut tx = InviteClient::start(
            t0,
            false,
            TimerConfig::default(),
            b"INVITE".to_vec(),
            template(),
            &mut out,
        );
        let mut at = Vec::new();
        for _ in 0..100 {
            let Some(now) = tx.poll_timeout() else { break };
            let mut o = Vec::new();
            tx.handle_timeout(now, &mut o);
            if o.iter().any(|x| matches!(x, TxOutput::Send(_))) {
                at.push((now - t0).as_millis());
            }
            if o.contains(&TxOutput::TimedOut) {
                assert_eq!((now - t0).as_secs(), 32);
                break;
            }
        }
        assert_eq!(at, [500, 1500, 3500, 7500, 15500, 31500]);
    }

    #[test]
    fn non_2xx_is_acked_and_reacked() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut tx = InviteClient::start(
            t0,
            false,
            TimerConfig::default(),
            b"INVITE".to_vec(),
            template(),
            &mut out,
        );
        out.clear();
        tx.on_response(t0, 180, "<sip:a@b>;tag=r", &mut out);
        tx.on_response(t0, 486, "<sip:a@b>;tag=r", &mut out);
        let ack = out
            .iter()
            .find_map(|o| match o {
                TxOutput::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .unwrap();
        assert!(ack.starts_with("ACK sip:agent@127.0.0.1:5070 SIP/2.0"));
        assert!(ack.contains("branch=z9hG4bKabc"));
        assert!(ack.contains("To: <sip:a@b>;tag=r"));
        assert!(ack.contains("CSeq: 1 ACK"));
        assert!(out.contains(&TxOutput::Final(486)));
        out.clear();
        tx.on_response(t0, 486, "<sip:a@b>;tag=r", &mut out);
        assert_eq!(out.len(), 1);
        tx.handle_timeout(t0 + Duration::from_secs(32), &mut out);
        assert!(tx.is_terminated());
    }

    #[test]
    fn accepted_passes_2xx_retransmits_up() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut tx = InviteClient::start(
            t0,
            true,
            TimerConfig::default(),
            b"INVITE".to_vec(),
            template(),
            &mut out,
        );
        out.clear();
        tx.on_response(t0, 200, "<sip:a@b>;tag=r", &mut out);
        tx.on_response(t0, 200, "<sip:a@b>;tag=r", &mut out);
        assert_eq!(out, vec![TxOutput::Final(200), TxOutput::Final(200)]);
        tx.handle_timeout(t0 + Duration::from_secs(32), &mut out);
        assert!(tx.is_terminated());
    }
}

//! INVITE server transaction: RFC 3261 §17.2.1 with the RFC 6026 §7.1
//! "Accepted" state.
//!
//! Proceeding → (non-2xx) Completed → (ACK) Confirmed → Terminated, or
//! Proceeding → (2xx) Accepted → Terminated. Timer G resends a non-2xx final
//! over unreliable transports (T1 doubling to T2) until the ACK; Timer H
//! (64·T1) gives up waiting for it; Timer I (T4, zero on reliable transports)
//! absorbs ACK retransmissions; Timer L (64·T1) absorbs INVITE
//! retransmissions after a 2xx, whose own retransmission is the UAS core's
//! job (§13.3.1.4), not the transaction's.

use std::time::{Duration, Instant};

use super::TxOutput;
use crate::sip::timers::{TimerConfig, TimerTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Completed,
    Accepted,
    Confirmed,
    Terminated,
}

const G: usize = 0;
const H: usize = 1;
const I: usize = 2;
const L: usize = 3;

#[derive(Debug, Clone)]
pub struct InviteServer {
    state: InviteServerState,
    reliable: bool,
    cfg: TimerConfig,
    /// The last response sent: resent on INVITE retransmissions (Proceeding)
    /// and by Timer G (Completed).
    last: Option<Vec<u8>>,
    final_code: Option<u16>,
    g_interval: Duration,
    timers: TimerTable<4>,
}

impl InviteServer {
    /// A new transaction in Proceeding. `reliable` is true for TCP.
    pub fn new(reliable: bool, cfg: TimerConfig) -> Self {
        InviteServer {
            state: InviteServerState::Proceeding,
            reliable,
            cfg,
            last: None,
            final_code: None,
            g_interval: cfg.t1,
            timers: TimerTable::default(),
        }
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    pub fn final_code(&self) -> Option<u16> {
        self.final_code
    }

    /// The TU sends a response: returns what to put on the wire (nothing
    /// once a final response has been sent).
    pub fn respond(&mut self, now: Instant, code: u16, bytes: Vec<u8>, out: &mut Vec<TxOutput>) {
        if self.state != InviteServerState::Proceeding {
            return;
        }
        out.push(TxOutput::Send(bytes.clone()));
        self.last = Some(bytes);
        if code < 200 {
            return;
        }
        self.final_code = Some(code);
        if (200..300).contains(&code) {
            self.state = InviteServerState::Accepted;
            self.last = None;
            self.timers.set(L, now + self.cfg.t64());
        } else {
            self.state = InviteServerState::Completed;
            if !self.reliable {
                self.g_interval = self.cfg.t1;
                self.timers.set(G, now + self.g_interval);
            }
            self.timers.set(H, now + self.cfg.t64());
        }
    }

    /// A retransmission of the INVITE arrived (§17.2.1: resend the last
    /// provisional in Proceeding, the final in Completed; absorb otherwise).
    pub fn on_invite_retransmit(&mut self, out: &mut Vec<TxOutput>) {
        match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => {
                if let Some(b) = &self.last {
                    out.push(TxOutput::Send(b.clone()));
                }
            }
            _ => {}
        }
    }

    /// An ACK matched this transaction (only meaningful after a non-2xx).
    pub fn on_ack(&mut self, now: Instant) {
        if self.state == InviteServerState::Completed {
            self.state = InviteServerState::Confirmed;
            self.timers.stop(G);
            self.timers.stop(H);
            let wait = if self.reliable {
                Duration::ZERO
            } else {
                self.cfg.t4
            };
            self.timers.set(I, now + wait);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxOutput>) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                G if self.state == InviteServerState::Completed => {
                    if let Some(b) = &self.last {
                        out.push(TxOutput::Send(b.clone()));
                    }
                    self.g_interval = self.cfg.backoff(self.g_interval);
                    self.timers.set(G, now + self.g_interval);
                }
                H if self.state == InviteServerState::Completed => {
                    self.terminate();
                    out.push(TxOutput::TimedOut);
                }
                I | L => self.terminate(),
                _ => {}
            }
        }
    }

    /// Ends the transaction at once (e.g. its connection closed).
    pub fn terminate(&mut self) {
        self.state = InviteServerState::Terminated;
        self.timers.stop_all();
        self.last = None;
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(out: &[TxOutput]) -> usize {
        out.iter()
            .filter(|o| matches!(o, TxOutput::Send(_)))
            .count()
    }

    #[test]
    fn timer_g_schedule_then_h() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = InviteServer::new(false, cfg);
        let mut out = Vec::new();
        tx.respond(t0, 100, b"100".to_vec(), &mut out);
        tx.respond(t0, 486, b"486".to_vec(), &mut out);
        assert_eq!(sends(&out), 2);
        let mut at = Vec::new();
        let mut now = t0;
        for _ in 0..100 {
            let Some(next) = tx.poll_timeout() else { break };
            now = next;
            let mut o = Vec::new();
            tx.handle_timeout(now, &mut o);
            if sends(&o) > 0 {
                at.push((now - t0).as_millis());
            }
            if o.contains(&TxOutput::TimedOut) {
                break;
            }
        }
        assert_eq!(&at[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!((now - t0).as_secs(), 32);
        assert!(tx.is_terminated());
    }

    #[test]
    fn ack_stops_g_and_i_absorbs() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(false, TimerConfig::default());
        let mut out = Vec::new();
        tx.respond(t0, 487, b"487".to_vec(), &mut out);
        tx.on_ack(t0 + Duration::from_millis(100));
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(5100)));
        tx.handle_timeout(t0 + Duration::from_secs(6), &mut out);
        assert!(tx.is_terminated());
    }

    #[test]
    fn accepted_absorbs_invite_until_l() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(true, TimerConfig::default());
        let mut out = Vec::new();
        tx.respond(t0, 200, b"200".to_vec(), &mut out);
        out.clear();
        tx.on_invite_retransmit(&mut out);
        assert!(out.is_empty());
        tx.handle_timeout(t0 + Duration::from_secs(32), &mut out);
        assert!(tx.is_terminated());
    }
}

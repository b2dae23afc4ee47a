//! Non-INVITE server transaction, RFC 3261 §17.2.2.
//!
//! Trying/Proceeding → (final) Completed → (Timer J: 64·T1 over UDP, zero
//! over TCP) Terminated. A retransmitted request is answered with the last
//! response sent; the TU never sees it.

use std::time::{Duration, Instant};

use super::TxOutput;
use crate::sip::timers::{TimerConfig, TimerTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

const J: usize = 0;

#[derive(Debug, Clone)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    reliable: bool,
    cfg: TimerConfig,
    last: Option<Vec<u8>>,
    timers: TimerTable<1>,
}

impl NonInviteServer {
    pub fn new(reliable: bool, cfg: TimerConfig) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            reliable,
            cfg,
            last: None,
            timers: TimerTable::default(),
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn respond(&mut self, now: Instant, code: u16, bytes: Vec<u8>, out: &mut Vec<TxOutput>) {
        match self.state {
            NonInviteServerState::Trying | NonInviteServerState::Proceeding => {}
            _ => return,
        }
        out.push(TxOutput::Send(bytes.clone()));
        self.last = Some(bytes);
        if code < 200 {
            self.state = NonInviteServerState::Proceeding;
            return;
        }
        self.state = NonInviteServerState::Completed;
        let j = if self.reliable {
            Duration::ZERO
        } else {
            self.cfg.t64()
        };
        self.timers.set(J, now + j);
    }

    /// A retransmission of the request: resend the last response, if any.
    pub fn on_retransmit(&mut self, out: &mut Vec<TxOutput>) {
        if let Some(b) = &self.last {
            out.push(TxOutput::Send(b.clone()));
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.pop_expired(now) == Some(J) {
            self.terminate();
        }
    }

    pub fn terminate(&mut self) {
        self.state = NonInviteServerState::Terminated;
        self.timers.stop_all();
        self.last = None;
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_j_and_retransmit() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::new(false, TimerConfig::default());
        let mut out = Vec::new();
        tx.on_retransmit(&mut out);
        assert!(out.is_empty());
        tx.respond(t0, 200, b"200".to_vec(), &mut out);
        tx.on_retransmit(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(31));
        assert!(!tx.is_terminated());
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
        let mut tcp = NonInviteServer::new(true, TimerConfig::default());
        tcp.respond(t0, 200, b"200".to_vec(), &mut out);
        assert_eq!(tcp.poll_timeout(), Some(t0));
    }
}

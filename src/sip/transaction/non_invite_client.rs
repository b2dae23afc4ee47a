//! Non-INVITE client transaction, RFC 3261 §17.1.2 (BYE now; REFER, NOTIFY
//! and INFO later).
//!
//! Trying → (1xx) Proceeding → (final) Completed → (Timer K: T4 over UDP,
//! zero over TCP) Terminated. Timer E retransmits over UDP, T1 doubling to
//! T2 (straight T2 once Proceeding); Timer F (64·T1) gives up.

use std::time::{Duration, Instant};

use super::TxOutput;
use crate::sip::timers::{TimerConfig, TimerTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

const E: usize = 0;
const F: usize = 1;
const K: usize = 2;

#[derive(Debug, Clone)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    reliable: bool,
    cfg: TimerConfig,
    request: Vec<u8>,
    e_interval: Duration,
    timers: TimerTable<3>,
}

impl NonInviteClient {
    /// Starts the transaction: the request is sent at once.
    pub fn start(
        now: Instant,
        reliable: bool,
        cfg: TimerConfig,
        request: Vec<u8>,
        out: &mut Vec<TxOutput>,
    ) -> Self {
        out.push(TxOutput::Send(request.clone()));
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(E, now + cfg.t1);
        }
        timers.set(F, now + cfg.t64());
        NonInviteClient {
            state: NonInviteClientState::Trying,
            reliable,
            cfg,
            request,
            e_interval: cfg.t1,
            timers,
        }
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    pub fn on_response(&mut self, now: Instant, code: u16, out: &mut Vec<TxOutput>) {
        match self.state {
            NonInviteClientState::Trying | NonInviteClientState::Proceeding => {}
            _ => return,
        }
        if code < 200 {
            self.state = NonInviteClientState::Proceeding;
            out.push(TxOutput::Provisional(code));
            return;
        }
        self.state = NonInviteClientState::Completed;
        self.timers.stop(E);
        self.timers.stop(F);
        let k = if self.reliable {
            Duration::ZERO
        } else {
            self.cfg.t4
        };
        self.timers.set(K, now + k);
        out.push(TxOutput::Final(code));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxOutput>) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                E => {
                    out.push(TxOutput::Send(self.request.clone()));
                    self.e_interval = if self.state == NonInviteClientState::Proceeding {
                        self.cfg.t2
                    } else {
                        self.cfg.backoff(self.e_interval)
                    };
                    self.timers.set(E, now + self.e_interval);
                }
                F => {
                    self.terminate();
                    out.push(TxOutput::TimedOut);
                }
                _ => self.terminate(),
            }
        }
    }

    pub fn terminate(&mut self) {
        self.state = NonInviteClientState::Terminated;
        self.timers.stop_all();
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_e_schedule_then_f() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut tx =
            NonInviteClient::start(t0, false, TimerConfig::default(), b"BYE".to_vec(), &mut out);
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
        assert_eq!(&at[..5], &[500, 1500, 3500, 7500, 11500]);
        assert!(tx.is_terminated());
    }

    #[test]
    fn final_then_k() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut tx =
            NonInviteClient::start(t0, false, TimerConfig::default(), b"BYE".to_vec(), &mut out);
        tx.on_response(t0, 200, &mut out);
        assert!(out.contains(&TxOutput::Final(200)));
        out.clear();
        tx.on_response(t0, 200, &mut out);
        assert!(out.is_empty());
        tx.handle_timeout(t0 + Duration::from_secs(5), &mut out);
        assert!(tx.is_terminated());
    }
}

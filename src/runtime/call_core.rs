//! The call task's commands: what a [`Call`]'s [`CallEvent`]s do (SIP
//! commands, agent-leg sockets, queue inputs, jobs) and how its datagrams
//! leave. Used under the call's lock by the task ([`super::call_task`])
//! and by the media [`clock`](super::clock). It decides nothing: every
//! decision is the core's. See `docs/runtime.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::call::{Call, CallEvent, CallSignal, LegId, Socket};
use crate::ledger::AuditContext;
use crate::queue::{CallerId, QueueAction};
use crate::sip::CallHandle;

use super::clock::{self, Armed};
use super::jobs;
use super::ports::PortGuard;
use super::queue_task::QueueRuntime;
use super::rtp_socket::RtpSocket;
use super::types::{CallInput as Input, Services, SipCommand};

/// The part of a call both its task and the media clock use, behind the
/// call's lock: the core, the sockets it sends on and what its commands
/// need.
pub(super) struct CallCore {
    pub(super) call: Call,
    /// The deadline the clock holds for this call.
    pub(super) armed: Armed,
    pub(super) handle: CallHandle,
    pub(super) sip: mpsc::UnboundedSender<SipCommand>,
    pub(super) self_tx: mpsc::UnboundedSender<CallSignal>,
    pub(super) services: Arc<Services>,
    pub(super) socket: Arc<RtpSocket>,
    pub(super) legs: HashMap<LegId, (Arc<RtpSocket>, PortGuard)>,
    pub(super) queue_tx: mpsc::UnboundedSender<QueueAction>,
    pub(super) reply_tx: mpsc::UnboundedSender<Input>,
    pub(super) ctx: AuditContext,
}

impl CallCore {
    /// Feeds one input; `rx`: the caller socket's datagram buffer,
    /// `leg_rx`: the bridged leg's.
    pub(super) fn handle_input(
        &mut self,
        now: Instant,
        input: Option<Input>,
        rx: &[u8],
        leg_rx: Option<&[u8]>,
    ) {
        let Some(input) = input else {
            // The SIP driver is gone (shutdown): end the call.
            return self.call.handle_signal(now, CallSignal::Ended("shutdown"));
        };
        match input {
            Input::Rtp(_, 0, _) => {}
            Input::Rtp(Socket::Caller, n, src) => {
                self.call.handle_rtp(now, Socket::Caller, src, &rx[..n])
            }
            Input::Rtp(leg, n, src) => {
                if let Some(b) = leg_rx {
                    self.call.handle_rtp(now, leg, src, &b[..n])
                }
            }
            Input::Signal(s) => self.call.handle_signal(now, s),
            Input::Queue(a) => {
                // An agent that registered through a proxy is rung through
                // it: its stored Path becomes the INVITE's Route set.
                let route = match (&a, self.services.queues.as_deref()) {
                    (QueueAction::RingAgent { agent, .. }, Some(q)) => q.agent_route(agent),
                    _ => Vec::new(),
                };
                self.call.handle_queue_routed(now, a, route)
            }
            Input::Auth(r) => self.call.handle_auth(now, r),
            Input::Audit(r) => self.call.handle_audit(now, r),
            Input::Contact(leg, addr) => self.call.handle_contact_resolved(now, leg, addr),
        }
    }

    /// The bridged agent leg's socket, to read from (only that leg is read:
    /// no early media to the caller).
    pub(super) fn bridged_leg(&self) -> Option<(LegId, Arc<RtpSocket>)> {
        let l = self.call.agent_side().connected()?;
        self.legs.get(&l).map(|(s, _)| (l, s.clone()))
    }

    /// Sends every datagram due at `now`, one non-blocking send after
    /// another (a full socket buffer drops the frame, as a late one would).
    pub(super) fn send(&mut self, now: Instant, buf: &mut [u8]) {
        while let Some(t) = self.call.poll_transmit(now, buf) {
            let sock = match t.socket {
                Socket::Caller => Some(&self.socket),
                Socket::Leg(l) => self.legs.get(&l).map(|(s, _)| s),
            };
            if let Some(Err(e)) = sock.map(|s| s.send_to(&buf[..t.len], t.dest))
                && e.kind() != std::io::ErrorKind::WouldBlock
            {
                tracing::debug!(call_id = %self.ctx.call_id, error = %e, "RTP send failed");
            }
        }
    }

    /// Sends what is due and carries out the call's commands, again while
    /// a command made more due (hold audio after a queue join).
    pub(super) fn flush(&mut self, now: Instant) {
        let mut buf = [0u8; clock::TX_BUFFER];
        for _ in 0..8 {
            self.send(now, &mut buf);
            if !self.call.has_events() {
                return;
            }
            while let Some(ev) = self.call.poll_event() {
                self.execute(now, ev);
            }
        }
    }

    /// Carries out one command of the call.
    fn execute(&mut self, now: Instant, ev: CallEvent) {
        let (h, sip) = (self.handle, &self.sip);
        let (q, caller) = (self.services.queues.as_deref(), CallerId(h.0));
        match ev {
            CallEvent::Hangup => drop(sip.send(SipCommand::Hangup(h))),
            CallEvent::ReinviteAnswer(a) => drop(sip.send(SipCommand::ReinviteAnswer(h, a))),
            CallEvent::LegReinviteAnswer { handle, answer } => {
                drop(sip.send(SipCommand::ReinviteAnswer(handle, answer)))
            }
            CallEvent::SendRefer { target } => drop(sip.send(SipCommand::Refer(h, target))),
            CallEvent::PlaceLeg { leg, call } => drop(sip.send(SipCommand::Invite {
                call,
                owner: self.self_tx.clone(),
                leg,
            })),
            CallEvent::DropLeg { leg, handle } => {
                if let Some(l) = leg {
                    self.legs.remove(&l);
                }
                if let Some(handle) = handle {
                    let _ = sip.send(SipCommand::DropLeg(handle));
                }
            }
            CallEvent::OpenLeg { leg } => {
                let port = jobs::bind_rtp(&self.services).map(|(s, g)| {
                    let p = g.port();
                    self.legs.insert(leg, (Arc::new(s), g));
                    p
                });
                self.call.handle_leg_media(now, leg, port);
            }
            CallEvent::ResolveContact { leg, hostport } => {
                let tx = self.reply_tx.clone();
                jobs::resolve(hostport, move |addr| {
                    let _ = tx.send(Input::Contact(leg, addr));
                });
            }
            CallEvent::JoinQueue {
                queue,
                only_if_agent_free,
            } => {
                let id = self.call.verified_id();
                crate::console::pop::note_transfer(caller.0, &self.ctx.call_id, id);
                let tx = self.queue_tx.clone();
                let r = QueueRuntime::join_call(q, &queue, caller, tx, only_if_agent_free);
                self.call.handle_queue_joined(now, r);
            }
            CallEvent::LeaveQueue => q.into_iter().for_each(|q| q.leave(caller)),
            CallEvent::QueueAgentAnswered(a) => {
                q.into_iter().for_each(|q| q.agent_answered(&a, caller))
            }
            CallEvent::QueueAgentFailed(a) => {
                q.into_iter().for_each(|q| q.agent_failed(&a, caller))
            }
            CallEvent::QueueCallEnded(a) => q.into_iter().for_each(|q| q.call_ended(&a)),
            // Ledger and record work: handed to jobs, answers come back as input.
            ev @ (CallEvent::Authenticate { .. }
            | CallEvent::AuditQuery { .. }
            | CallEvent::Audit { .. }
            | CallEvent::Callback { .. }
            | CallEvent::WriteCdr(_)) => {
                jobs::hand_off(&self.services, &self.ctx, ev, &self.reply_tx)
            }
        }
    }
}

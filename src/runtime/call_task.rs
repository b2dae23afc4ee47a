//! One tokio task per call: its RTP sockets around its sans-IO [`Call`],
//! run by the shared [`driver`](super::driver). It decides nothing: it
//! moves datagrams, carries out the call's [`CallEvent`]s and feeds back
//! their results. What awaits (ledger, DNS, record writes) runs in a
//! [`jobs`] task, so hold audio never waits. See `docs/runtime.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{Call, CallEvent, CallSignal, LegId, Socket};
use crate::ledger::AuditContext;
use crate::queue::{CallerId, QueueAction};

use super::driver::{Shell, drive};
use super::jobs;
use super::ports::PortGuard;
use super::queue_task::QueueRuntime;
pub use super::types::Services;
use super::types::{CallInput as Input, NewCall, SipCommand};

struct CallShell {
    call: Call,
    n: NewCall,
    services: Arc<Services>,
    socket: UdpSocket,
    legs: HashMap<LegId, (UdpSocket, PortGuard)>,
    queue_tx: mpsc::UnboundedSender<QueueAction>,
    queue_rx: mpsc::UnboundedReceiver<QueueAction>,
    reply_tx: mpsc::UnboundedSender<Input>,
    replies: mpsc::UnboundedReceiver<Input>,
    ctx: AuditContext,
    rx_buf: Box<[u8; 2048]>,
    leg_buf: Box<[u8; 2048]>,
    tx_buf: Box<[u8; 1500]>,
}

/// Runs one call to its end (refused with 503 when no RTP port is free,
/// 488/400 for an offer it cannot answer).
pub async fn run(mut n: NewCall, services: Arc<Services>) {
    let (handle, sip) = (n.info.handle, n.sip.clone());
    let started = jobs::bind_rtp(&services)
        .ok_or(crate::sip::StatusCode::SERVICE_UNAVAILABLE.as_u16())
        .and_then(|(sock, port)| {
            let call = Call::new(services.call_params(&mut n.info, port.port()));
            call.map(|(call, body)| (call, body, sock, port))
        });
    let (call, socket, port) = match started {
        Ok((call, body, socket, port)) => {
            let _ = sip.send(SipCommand::Answer(handle, body));
            (call, socket, port)
        }
        Err(status) => {
            tracing::info!(call_id = %n.info.call_id, status, "call refused");
            let _ = sip.send(SipCommand::Reject(handle, status));
            let _ = sip.send(SipCommand::Gone(handle));
            return;
        }
    };
    tracing::info!(call_id = %n.info.call_id, remote = %n.info.remote, rtp_port = port.port(), "call answered");
    let (call_id, caller) = (n.info.call_id.clone(), n.info.caller.clone());
    let ctx = AuditContext { call_id, caller };
    let (queue_tx, queue_rx) = mpsc::unbounded_channel();
    let (reply_tx, replies) = mpsc::unbounded_channel();
    let mut shell = CallShell {
        call,
        n,
        services,
        socket,
        legs: HashMap::new(),
        queue_tx,
        queue_rx,
        reply_tx,
        replies,
        ctx,
        rx_buf: Box::new([0; 2048]),
        leg_buf: Box::new([0; 2048]),
        tx_buf: Box::new([0; 1500]),
    };
    drive(&mut shell).await;
    if let Some(q) = &shell.services.queues {
        q.forget(CallerId(handle.0));
    }
    let _ = sip.send(SipCommand::Gone(handle));
    drop(port); // the caller leg's RTP port goes back to the pool last
}

impl Shell for CallShell {
    type Input = Input;

    async fn next_input(&mut self) -> Option<Input> {
        // Only the bridged agent leg is read (no early media to the caller).
        let connected = self.call.agent_side().connected();
        let leg = connected.and_then(|l| self.legs.get(&l).map(|(s, _)| (l, s)));
        let (buf, leg_buf) = (&mut self.rx_buf[..], &mut self.leg_buf[..]);
        let leg_read = async move {
            match leg {
                Some((l, s)) => s.recv_from(leg_buf).await.map(|(n, src)| (l, n, src)),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.socket.recv_from(buf) => Some(r.map_or(Input::Rtp(Socket::Caller, 0, jobs::NOWHERE), |(n, src)| Input::Rtp(Socket::Caller, n, src))),
            r = leg_read => Some(r.map_or(Input::Rtp(Socket::Caller, 0, jobs::NOWHERE), |(l, n, src)| Input::Rtp(Socket::Leg(l), n, src))),
            s = self.n.signals.recv() => s.map(Input::Signal),
            Some(a) = self.queue_rx.recv() => Some(Input::Queue(a)),
            Some(r) = self.replies.recv() => Some(r),
        }
    }

    fn handle_input(&mut self, now: Instant, input: Option<Input>) {
        let Some(input) = input else {
            // The SIP driver is gone (shutdown): end the call.
            return self.call.handle_signal(now, CallSignal::Ended("shutdown"));
        };
        match input {
            Input::Rtp(_, 0, _) => {}
            Input::Rtp(Socket::Caller, n, src) => {
                self.call
                    .handle_rtp(now, Socket::Caller, src, &self.rx_buf[..n])
            }
            Input::Rtp(leg, n, src) => self.call.handle_rtp(now, leg, src, &self.leg_buf[..n]),
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

    fn handle_timeout(&mut self, now: Instant) {
        self.call.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.call.poll_timeout()
    }

    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.call.poll_transmit(now, &mut self.tx_buf[..]) {
            let sock = match t.socket {
                Socket::Caller => Some(&self.socket),
                Socket::Leg(l) => self.legs.get(&l).map(|(s, _)| s),
            };
            if let Some(Err(e)) = sock.map(|s| s.try_send_to(&self.tx_buf[..t.len], t.dest))
                && e.kind() != std::io::ErrorKind::WouldBlock
            {
                tracing::debug!(call_id = %self.ctx.call_id, error = %e, "RTP send failed");
            }
        }
        while let Some(ev) = self.call.poll_event() {
            self.execute(now, ev);
        }
    }

    fn is_done(&self) -> bool {
        self.call.is_done()
    }
}

impl CallShell {
    /// Carries out one command of the call.
    fn execute(&mut self, now: Instant, ev: CallEvent) {
        let (h, sip) = (self.n.info.handle, &self.n.sip);
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
                owner: self.n.self_tx.clone(),
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
                    self.legs.insert(leg, (s, g));
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

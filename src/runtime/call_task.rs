//! One tokio task per call around its sans-IO [`Call`], for input only:
//! it awaits its RTP sockets and channels, feeds the call, sends what that
//! made due at once and carries out the call's [`CallEvent`]s. Pacing (the
//! 20 ms frames) and the call's timers belong to the media
//! [`clock`](super::clock), which ticks the same core under its lock; the
//! task never sleeps on a deadline. It decides nothing. What awaits (ledger,
//! DNS, record writes) runs in a [`jobs`] task, so hold audio never waits.
//! See `docs/runtime.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use crate::call::{Call, CallSignal, LegId, Socket};
use crate::ledger::AuditContext;
use crate::queue::{CallerId, QueueAction};

use super::call_core::CallCore;
use super::clock::{self, Armed, Paced};
use super::jobs;
use super::rtp_socket::RtpSocket;
pub use super::types::Services;
use super::types::{CallInput as Input, NewCall, SipCommand};

/// What the clock holds (weakly) and the task holds (strongly).
struct Shared {
    core: Mutex<CallCore>,
    /// The clock found commands to carry out, or the call done.
    wake: Notify,
}

/// The task's own part: what it awaits, and its receive buffers.
struct CallIo {
    socket: Arc<RtpSocket>,
    signals: mpsc::UnboundedReceiver<CallSignal>,
    queue_rx: mpsc::UnboundedReceiver<QueueAction>,
    replies: mpsc::UnboundedReceiver<Input>,
    rx_buf: Box<[u8; 2048]>,
    /// Only once an agent leg is bridged.
    leg_buf: Option<Box<[u8; 2048]>>,
}

/// What woke the task.
enum Step {
    Input(Option<Input>),
    /// The clock left commands (or the end) for the task.
    Clock,
}

fn lock(shared: &Shared) -> MutexGuard<'_, CallCore> {
    shared.core.lock().unwrap_or_else(|p| p.into_inner())
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
    let socket = Arc::new(socket);
    let queues = services.queues.clone();
    let shared = Arc::new(Shared {
        core: Mutex::new(CallCore {
            call,
            armed: Armed::default(),
            handle,
            sip: sip.clone(),
            self_tx: n.self_tx,
            services,
            socket: socket.clone(),
            legs: HashMap::new(),
            queue_tx,
            reply_tx,
            ctx,
        }),
        wake: Notify::new(),
    });
    let mut io = CallIo {
        socket,
        signals: n.signals,
        queue_rx,
        replies,
        rx_buf: Box::new([0; 2048]),
        leg_buf: None,
    };
    let clock = clock::global();
    let worker = clock.assign();
    let paced: Weak<dyn Paced> = Arc::downgrade(&shared) as Weak<dyn Paced>;
    let mut step = Step::Clock;
    loop {
        // Feed the input, send what it made due at once (a talkspurt it
        // started), carry out the commands; the clock sends the rest.
        let now = Instant::now();
        let (done, arm, leg) = {
            let mut c = lock(&shared);
            if let Step::Input(input) = step {
                c.handle_input(
                    now,
                    input,
                    &io.rx_buf[..],
                    io.leg_buf.as_deref().map(|b| &b[..]),
                );
            }
            c.flush(now);
            let done = c.call.is_done();
            let arm = if done {
                None
            } else {
                let wanted = c.call.poll_timeout();
                c.armed.request(wanted)
            };
            (done, arm, c.bridged_leg())
        };
        if done {
            break;
        }
        if let Some(deadline) = arm {
            clock.arm(worker, deadline, paced.clone());
        }
        step = io.next_input(leg, &shared.wake).await;
    }
    if let Some(q) = &queues {
        q.forget(CallerId(handle.0));
    }
    let _ = sip.send(SipCommand::Gone(handle));
    drop(shared); // the agent legs' ports go back to the pool
    drop(io);
    drop(port); // the caller leg's RTP port goes back to the pool last
}

impl CallIo {
    /// Waits for a datagram (the caller's socket, the bridged agent leg's),
    /// a signal, a queue action, a job's reply, or a word from the clock.
    async fn next_input(&mut self, leg: Option<(LegId, Arc<RtpSocket>)>, wake: &Notify) -> Step {
        let buf = &mut self.rx_buf[..];
        let leg_buf = match &leg {
            Some(_) => Some(&mut self.leg_buf.get_or_insert_with(|| Box::new([0; 2048]))[..]),
            None => None,
        };
        let leg_read = async move {
            match (leg, leg_buf) {
                (Some((l, s)), Some(b)) => s.recv_from(b).await.map(|(n, src)| (l, n, src)),
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.socket.recv_from(buf) => Step::Input(Some(r.map_or(Input::Rtp(Socket::Caller, 0, jobs::NOWHERE), |(n, src)| Input::Rtp(Socket::Caller, n, src)))),
            r = leg_read => Step::Input(Some(r.map_or(Input::Rtp(Socket::Caller, 0, jobs::NOWHERE), |(l, n, src)| Input::Rtp(Socket::Leg(l), n, src)))),
            s = self.signals.recv() => Step::Input(s.map(Input::Signal)),
            Some(a) = self.queue_rx.recv() => Step::Input(Some(Input::Queue(a))),
            Some(r) = self.replies.recv() => Step::Input(Some(r)),
            _ = wake.notified() => Step::Clock,
        }
    }
}

impl Paced for Shared {
    fn tick(&self, armed: Instant, now: Instant, buf: &mut [u8]) -> Option<Instant> {
        let mut c = match self.core.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // The call's task holds it: the clock waits, and so do the
                // calls after this one in the round.
                let waited = Instant::now();
                let c = lock(self);
                clock::note_lock_wait(waited.elapsed());
                c
            }
        };
        if !c.armed.is_current(armed) {
            return None;
        }
        c.call.handle_timeout(now);
        c.send(now, buf);
        let done = c.call.is_done();
        let wake = done || c.call.has_events();
        let next = if done { None } else { c.call.poll_timeout() };
        let next = c.armed.rearm(next);
        drop(c);
        if wake {
            // Commands need the task (SIP, jobs, queues); so does the end.
            self.wake.notify_one();
        }
        next
    }
}

//! One tokio task per call: its RTP socket, its [`Call`] state machine, and
//! the ledger requests it makes. The task is a loop that waits for a packet,
//! a SIP signal, a ledger reply or the call's next deadline, feeds it to the
//! call and sends what the call wants sent. No allocation per packet: the
//! receive and send buffers live in the task.
//!
//! A transfer to a human puts the call in the agent queue
//! ([`super::queue_task`]); the queue's actions for this caller arrive on a
//! channel. `RingAgent` makes this task bind a second RTP socket, offer SDP
//! on it and have the SIP driver place the agent's INVITE (B2BUA); the
//! agent leg's SIP events come back as `CallSignal::Agent*`. Once the queue
//! says `Connect` the call relays RTP between the two sockets. Whatever
//! ends first (caller, agent, queue) the task tears both legs down and
//! tells the queue.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::call::{Call, CallOutput, CallParams, CallSignal};
use crate::domain::{AuthOutcome, IdNumber, Pin};
use crate::flow::dialplan::Dialplan;
use crate::flow::interpreter::{FlowConfig, LedgerUnavailable};
use crate::ledger::{AuditAction, AuditContext, Ledger};
use crate::media::g711::Codec;
use crate::media::prompts::PromptLibrary;
use crate::media::sdp::{LocalMedia, Negotiated, SdpSession};
use crate::queue::{AgentId, CallerId, MaxWaitAction, QueueAction, QueueMode};
use crate::runtime::bridge::Side;
use crate::sip::{CallHandle, OutboundCall, Transport};

use super::ports::{PortGuard, PortPool};
use super::queue_task::QueueRuntime;
use super::sip::SipCommand;

/// What every call shares.
pub struct Services {
    pub prompts: Arc<PromptLibrary>,
    pub plan: RwLock<Arc<Dialplan>>,
    pub flow: Arc<FlowConfig>,
    pub ledger: Ledger,
    pub ports: PortPool,
    /// Address RTP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address written into our SDP.
    pub media_ip: IpAddr,
    pub inactivity_timeout: Duration,
    /// The agent queues; `None` when none is configured (transfers fail).
    pub queues: Option<Arc<QueueRuntime>>,
}

/// A new call as the SIP layer saw it.
pub struct CallInfo {
    pub handle: CallHandle,
    pub call_id: String,
    pub caller: String,
    pub remote: SocketAddr,
    pub offer: Option<Vec<u8>>,
    /// Max-Forwards of the caller's INVITE (the agent leg gets one less).
    pub max_forwards: u8,
}

/// One outbound INVITE to an agent, placed for this caller.
struct AgentLeg {
    agent: AgentId,
    handle: CallHandle,
    socket: UdpSocket,
    _port: PortGuard,
    sdp: SdpSession,
    answer: Option<Negotiated>,
}

/// What the agent side of this call is doing.
#[derive(Default)]
struct AgentSide {
    /// The queue the caller waits in (joined and not yet left).
    waiting: bool,
    legs: Vec<AgentLeg>,
    /// Index in `legs` of the agent the caller talks to.
    connected: Option<usize>,
    /// A REFER to this queue's configured target is in progress.
    referring: Option<String>,
    /// When to give up waiting for the REFER's outcome (a UA that accepts
    /// the REFER but never NOTIFYs must not leave the caller in silence).
    refer_deadline: Option<tokio::time::Instant>,
}

/// How long a REFER may take to report success before the fallback.
const REFER_TIMEOUT: Duration = Duration::from_secs(32);

enum Reply {
    Auth(Result<AuthOutcome, LedgerUnavailable>),
}

/// Runs one call to its end.
pub async fn run(
    info: CallInfo,
    services: Arc<Services>,
    sip: mpsc::UnboundedSender<SipCommand>,
    self_tx: mpsc::UnboundedSender<CallSignal>,
    mut signals: mpsc::UnboundedReceiver<CallSignal>,
) {
    let handle = info.handle;
    let Some((socket, port)) = bind_rtp(&services).await else {
        tracing::warn!(call_id = %info.call_id, "no RTP port free: 503");
        let _ = sip.send(SipCommand::Reject(handle, 503));
        let _ = sip.send(SipCommand::Gone(handle));
        return;
    };
    let plan = services
        .plan
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let now = Instant::now();
    let params = CallParams {
        call_id: info.call_id.clone(),
        caller: info.caller.clone(),
        local_ip: services.media_ip,
        rtp_port: port.port(),
        offer: info.offer,
        plan,
        flow: services.flow.clone(),
        prompts: services.prompts.clone(),
        inactivity_timeout: services.inactivity_timeout,
        seeds: rand::random(),
        now,
        wall_ms: wall_ms(),
    };
    let mut call = match Call::new(params) {
        Ok((call, body)) => {
            let _ = sip.send(SipCommand::Answer(handle, body));
            call
        }
        Err(status) => {
            tracing::info!(call_id = %info.call_id, status, "call rejected at offer/answer");
            let _ = sip.send(SipCommand::Reject(handle, status));
            let _ = sip.send(SipCommand::Gone(handle));
            return;
        }
    };
    tracing::info!(call_id = %info.call_id, remote = %info.remote, rtp_port = port.port(), "call answered");
    let ctx = AuditContext {
        call_id: info.call_id.clone(),
        caller: info.caller.clone(),
    };
    let (reply_tx, mut replies) = mpsc::unbounded_channel::<Reply>();
    let mut rx_buf = [0u8; 2048];
    let mut agent_rx_buf = [0u8; 2048];
    let mut tx_buf = [0u8; 1500];
    let mut signals_open = true;
    let caller_id = CallerId(handle.0);
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<QueueAction>();
    let mut agent = AgentSide::default();
    let mut verified_masked: Option<String> = None;
    let leg_ctx = LegContext {
        services: &services,
        sip: &sip,
        owner: self_tx,
        max_forwards: info.max_forwards,
    };

    loop {
        // Send what is due, then act on what the call asked for.
        let now = Instant::now();
        while let Some((n, dest)) = call.poll_transmit(now, &mut tx_buf) {
            if let Err(e) = socket.try_send_to(&tx_buf[..n], dest)
                && e.kind() != std::io::ErrorKind::WouldBlock
            {
                tracing::debug!(call_id = %ctx.call_id, error = %e, "RTP send failed");
            }
        }
        while let Some(out) = call.poll_output() {
            match out {
                CallOutput::Hangup => {
                    let _ = sip.send(SipCommand::Hangup(handle));
                }
                CallOutput::ReinviteAnswer(a) => {
                    let _ = sip.send(SipCommand::ReinviteAnswer(handle, a));
                }
                CallOutput::Authenticate { id, pin } => {
                    spawn_auth(&services.ledger, &ctx, id, pin, reply_tx.clone());
                }
                CallOutput::Audit { id, insurance } => {
                    spawn_audit(
                        &services.ledger,
                        &ctx,
                        Some(id),
                        AuditAction::Query(insurance),
                        "played",
                    );
                }
                CallOutput::Transfer { queue, id } => {
                    if let Some(id) = &id {
                        verified_masked = Some(id.masked());
                    }
                    let refer_target =
                        services
                            .queues
                            .as_ref()
                            .and_then(|q| match q.queue_mode(&queue) {
                                Some(QueueMode::Refer { target }) => Some(target),
                                _ => None,
                            });
                    if let Some(target) = refer_target {
                        // REFER mode: the target comes from configuration only.
                        tracing::info!(call_id = %ctx.call_id, %queue, "transferring the caller with REFER");
                        agent.referring = Some(queue.clone());
                        agent.refer_deadline = Some(tokio::time::Instant::now() + REFER_TIMEOUT);
                        let _ = sip.send(SipCommand::Refer(handle, target));
                        spawn_audit(
                            &services.ledger,
                            &ctx,
                            id,
                            AuditAction::Transfer { queue },
                            "refer",
                        );
                        continue;
                    }
                    let joined = services
                        .queues
                        .as_ref()
                        .map(|q| q.join(&queue, caller_id, queue_tx.clone()));
                    let outcome = match &joined {
                        Some(Ok(position)) => {
                            tracing::info!(call_id = %ctx.call_id, %queue, position, "caller joined the agent queue");
                            agent.waiting = true;
                            call.queue_joined(Instant::now());
                            "queued"
                        }
                        Some(Err(e)) => {
                            tracing::info!(call_id = %ctx.call_id, %queue, error = %e, "transfer failed");
                            call.handle_transfer_failed(Instant::now());
                            "no_agent_queue"
                        }
                        None => {
                            tracing::info!(call_id = %ctx.call_id, %queue, "transfer requested; no agent queue configured");
                            call.handle_transfer_failed(Instant::now());
                            "no_agent_queue"
                        }
                    };
                    spawn_audit(
                        &services.ledger,
                        &ctx,
                        id,
                        AuditAction::Transfer { queue },
                        outcome,
                    );
                }
                CallOutput::LeaveQueue => {
                    if let Some(q) = &services.queues {
                        q.leave(caller_id);
                    }
                    agent.waiting = false;
                    drop_legs(&mut agent, &sip);
                }
                CallOutput::Finished(record) => {
                    tracing::info!(
                        call_id = %record.call_id,
                        end_reason = %record.end_reason,
                        states = record.states.len(),
                        prompts = record.prompts.len(),
                        "call finished"
                    );
                    metrics::counter!("ivr_calls_ended_total", "reason" => record.end_reason.clone()).increment(1);
                    let ledger = services.ledger.clone();
                    tokio::spawn(async move {
                        if let Err(e) = ledger.write_cdr(&record).await {
                            tracing::error!(call_id = %record.call_id, error = %e, "CDR write failed");
                        }
                    });
                }
            }
        }
        if call.is_done() {
            break;
        }
        if !signals_open {
            // The SIP driver is gone (shutdown): end the call.
            call.handle_signal(Instant::now(), CallSignal::Ended("shutdown"));
            continue;
        }

        let deadline = call.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = socket.recv_from(&mut rx_buf) => {
                if let Ok((n, src)) = r {
                    if call.is_bridged() {
                        if let Some((len, dest)) = call.relay(Instant::now(), Side::Caller, src, &rx_buf[..n], &mut tx_buf)
                            && let Some(leg) = agent.connected.and_then(|i| agent.legs.get(i))
                        {
                            let _ = leg.socket.try_send_to(&tx_buf[..len], dest);
                        }
                    } else {
                        call.handle_rtp(Instant::now(), src, &rx_buf[..n]);
                    }
                }
            }
            r = async {
                match agent.connected.and_then(|i| agent.legs.get(i)) {
                    Some(leg) => leg.socket.recv_from(&mut agent_rx_buf).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((n, src)) = r
                    && let Some((len, dest)) = call.relay(Instant::now(), Side::Agent, src, &agent_rx_buf[..n], &mut tx_buf)
                {
                    let _ = socket.try_send_to(&tx_buf[..len], dest);
                }
            }
            s = signals.recv() => match s {
                Some(CallSignal::AgentProgress { .. }) => {}
                Some(CallSignal::AgentAnswered { leg, sdp }) => {
                    agent_answered(&mut agent, &services, caller_id, leg, sdp, &sip);
                }
                Some(CallSignal::AgentEnded { leg, reason }) => {
                    agent_ended(&mut agent, &services, caller_id, leg, reason, &mut call, &ctx.call_id);
                }
                Some(CallSignal::ReferAccepted) => {
                    tracing::info!(call_id = %ctx.call_id, "REFER accepted");
                }
                Some(CallSignal::ReferFailed { status }) => {
                    tracing::info!(call_id = %ctx.call_id, status, "REFER refused");
                    refer_fallback(&mut agent, &services, caller_id, &queue_tx, &mut call, &ctx.call_id);
                }
                Some(CallSignal::ReferNotify { status, terminated }) => {
                    if agent.referring.is_some() {
                        if (200..300).contains(&status) {
                            tracing::info!(call_id = %ctx.call_id, status, "REFER succeeded: caller transferred");
                            agent.referring = None;
                            agent.refer_deadline = None;
                            call.transferred_away(Instant::now());
                        } else if status >= 300 || terminated {
                            tracing::info!(call_id = %ctx.call_id, status, "transfer target failed");
                            refer_fallback(&mut agent, &services, caller_id, &queue_tx, &mut call, &ctx.call_id);
                        }
                    }
                }
                Some(sig) => call.handle_signal(Instant::now(), sig),
                None => signals_open = false,
            },
            _ = async {
                match agent.refer_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                tracing::info!(call_id = %ctx.call_id, "no REFER outcome in time");
                refer_fallback(&mut agent, &services, caller_id, &queue_tx, &mut call, &ctx.call_id);
            }
            Some(action) = queue_rx.recv() => {
                queue_action(action, &mut agent, &leg_ctx, caller_id, &mut call, verified_masked.as_deref(), &ctx.call_id).await;
            }
            Some(reply) = replies.recv() => match reply {
                Reply::Auth(r) => call.handle_auth(Instant::now(), r),
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => call.handle_timeout(Instant::now()),
        }
    }
    // Tear down the agent side: leave the queue, hang up every leg, and
    // give a connected agent back to the queue (wrap-up).
    if let Some(q) = &services.queues {
        if agent.waiting {
            q.leave(caller_id);
        }
        if let Some(leg) = agent.connected.and_then(|i| agent.legs.get(i)) {
            q.call_ended(&leg.agent);
        }
        q.forget(caller_id);
    }
    drop_legs(&mut agent, &sip);
    let _ = sip.send(SipCommand::Gone(handle));
    drop(port);
}

/// The REFER failed: the internal queue if it has a free agent, else the
/// apology ("坐席全忙" and goodbye).
fn refer_fallback(
    agent: &mut AgentSide,
    services: &Services,
    caller: CallerId,
    queue_tx: &mpsc::UnboundedSender<QueueAction>,
    call: &mut Call,
    call_id: &str,
) {
    agent.refer_deadline = None;
    let Some(queue) = agent.referring.take() else {
        return;
    };
    let now = Instant::now();
    if let Some(q) = &services.queues
        && q.has_available_agent(&queue)
        && q.join(&queue, caller, queue_tx.clone()).is_ok()
    {
        tracing::info!(%call_id, %queue, "REFER fallback: caller joined the agent queue");
        agent.waiting = true;
        call.queue_joined(now);
        return;
    }
    tracing::info!(%call_id, %queue, "REFER fallback: no agent free, apologising");
    call.handle_transfer_failed(now);
}

/// What placing an agent leg needs from the task.
struct LegContext<'a> {
    services: &'a Arc<Services>,
    sip: &'a mpsc::UnboundedSender<SipCommand>,
    owner: mpsc::UnboundedSender<CallSignal>,
    max_forwards: u8,
}

fn drop_legs(agent: &mut AgentSide, sip: &mpsc::UnboundedSender<SipCommand>) {
    for leg in agent.legs.drain(..) {
        let _ = sip.send(SipCommand::DropLeg(leg.handle));
    }
    agent.connected = None;
}

/// Acts on what the queue says about this caller.
async fn queue_action(
    action: QueueAction,
    agent: &mut AgentSide,
    cx: &LegContext<'_>,
    caller: CallerId,
    call: &mut Call,
    verified_masked: Option<&str>,
    call_id: &str,
) {
    let Some(queues) = cx.services.queues.as_ref() else {
        return;
    };
    let now = Instant::now();
    match action {
        QueueAction::Announce { position, .. } => {
            // A queue position is not personal data.
            tracing::info!(%call_id, position, "queue position announced");
            call.queue_announce(now, position);
        }
        QueueAction::RingAgent {
            agent: id, contact, ..
        } => {
            if !agent.waiting || call.is_done() {
                queues.agent_failed(&id, caller);
                return;
            }
            match place_agent_leg(cx, &id, &contact, verified_masked).await {
                Ok(leg) => {
                    tracing::info!(%call_id, agent = %id, "ringing agent");
                    agent.legs.push(leg);
                }
                Err(why) => {
                    tracing::warn!(%call_id, agent = %id, why, "cannot ring agent");
                    queues.agent_failed(&id, caller);
                }
            }
        }
        QueueAction::CancelRing { agent: id, .. } => {
            if let Some(i) = (0..agent.legs.len())
                .find(|&i| agent.legs[i].agent == id && agent.connected != Some(i))
            {
                let leg = agent.legs.remove(i);
                if let Some(c) = agent.connected
                    && c > i
                {
                    agent.connected = Some(c - 1);
                }
                let _ = cx.sip.send(SipCommand::DropLeg(leg.handle));
            }
        }
        QueueAction::Connect { agent: id, .. } => {
            agent.waiting = false;
            let Some(i) = agent
                .legs
                .iter()
                .position(|l| l.agent == id && l.answer.is_some())
            else {
                queues.call_ended(&id);
                return;
            };
            let negotiated = agent.legs[i].answer.clone();
            let ok = negotiated.is_some_and(|n| call.connect_agent(now, &n, rand::random()));
            if ok {
                tracing::info!(%call_id, agent = %id, "caller bridged to agent");
                agent.connected = Some(i);
                // Other legs (ring-all) were cancelled by the queue.
            } else {
                queues.call_ended(&id);
                let leg = agent.legs.remove(i);
                let _ = cx.sip.send(SipCommand::DropLeg(leg.handle));
            }
        }
        QueueAction::MaxWait { action, .. } => {
            agent.waiting = false;
            drop_legs(agent, cx.sip);
            call.queue_max_wait(now, action == MaxWaitAction::ReturnToMenu);
        }
        QueueAction::Left { .. } => {}
    }
}

/// Binds a port, makes the SDP offer and has the SIP driver send the INVITE.
async fn place_agent_leg(
    cx: &LegContext<'_>,
    id: &AgentId,
    contact: &str,
    verified_masked: Option<&str>,
) -> Result<AgentLeg, &'static str> {
    let dest = resolve_contact(contact)
        .await
        .ok_or("contact is not a reachable sip: URI")?;
    let (socket, port) = bind_rtp(cx.services).await.ok_or("no RTP port free")?;
    let local = LocalMedia {
        addr: cx.services.media_ip,
        port: port.port(),
        codecs: vec![Codec::Pcmu, Codec::Pcma],
    };
    let mut sdp = SdpSession::new(local, u64::from(rand::random::<u32>()));
    let offer = sdp.offer();
    let headers = agent_headers(verified_masked);
    let call = outbound_call(
        contact,
        dest,
        offer,
        headers,
        cx.max_forwards.saturating_sub(1),
    );
    let (tx, rx) = oneshot::channel();
    cx.sip
        .send(SipCommand::Invite {
            call,
            owner: cx.owner.clone(),
            reply: tx,
        })
        .map_err(|_| "SIP driver gone")?;
    let handle = rx.await.map_err(|_| "SIP driver gone")?;
    Ok(AgentLeg {
        agent: id.clone(),
        handle,
        socket,
        _port: port,
        sdp,
        answer: None,
    })
}

/// The headers the agent's phone shows: the masked verified ID (never the
/// PIN, never the full number) and whether the caller was verified.
pub fn agent_headers(verified_masked: Option<&str>) -> Vec<(String, String)> {
    let mut h = Vec::with_capacity(2);
    if let Some(m) = verified_masked {
        h.push(("X-IVR-Verified".to_owned(), m.to_owned()));
    }
    h.push((
        "X-IVR-Account-Status".to_owned(),
        if verified_masked.is_some() {
            "verified"
        } else {
            "unverified"
        }
        .to_owned(),
    ));
    h
}

fn outbound_call(
    contact: &str,
    dest: SocketAddr,
    offer: Vec<u8>,
    headers: Vec<(String, String)>,
    max_forwards: u8,
) -> OutboundCall {
    OutboundCall {
        request_uri: contact.to_owned(),
        dest,
        transport: Transport::Udp,
        from_user: "12333".to_owned(),
        sdp: Some(offer),
        headers,
        max_forwards,
    }
}

/// `sip:user@host:port;params` → the UDP address to send to (default port
/// 5060). Host names are resolved; `transport=tcp` is not supported for
/// agent legs yet.
async fn resolve_contact(contact: &str) -> Option<SocketAddr> {
    let rest = contact
        .strip_prefix("sip:")
        .or_else(|| contact.strip_prefix("SIP:"))?;
    let rest = rest.trim_start_matches('<');
    let (hostport, params) = match rest.split_once(';') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    if params.to_ascii_lowercase().contains("transport=tcp") {
        return None;
    }
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let hostport = hostport.trim_end_matches('>');
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = hostport.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 5060));
    }
    let with_port = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5060")
    };
    tokio::net::lookup_host(with_port).await.ok()?.next()
}

fn agent_answered(
    agent: &mut AgentSide,
    services: &Services,
    caller: CallerId,
    handle: CallHandle,
    sdp: Option<Vec<u8>>,
    sip: &mpsc::UnboundedSender<SipCommand>,
) {
    let Some(i) = agent.legs.iter().position(|l| l.handle == handle) else {
        let _ = sip.send(SipCommand::DropLeg(handle));
        return;
    };
    let leg = &mut agent.legs[i];
    let negotiated = sdp.as_deref().map(|a| leg.sdp.accept_answer(a));
    match (negotiated, &services.queues) {
        (Some(Ok(n)), Some(q)) => {
            leg.answer = Some(n);
            q.agent_answered(&leg.agent, caller);
        }
        (_, q) => {
            tracing::info!(agent = %leg.agent, "agent answered without a usable SDP answer");
            let leg = agent.legs.remove(i);
            let _ = sip.send(SipCommand::DropLeg(leg.handle));
            if let Some(q) = q {
                q.agent_failed(&leg.agent, caller);
            }
        }
    }
}

fn agent_ended(
    agent: &mut AgentSide,
    services: &Services,
    caller: CallerId,
    handle: CallHandle,
    reason: &'static str,
    call: &mut Call,
    call_id: &str,
) {
    let Some(i) = agent.legs.iter().position(|l| l.handle == handle) else {
        return;
    };
    let leg = agent.legs.remove(i);
    let was_connected = agent.connected == Some(i);
    if let Some(c) = agent.connected {
        agent.connected = if c == i {
            None
        } else if c > i {
            Some(c - 1)
        } else {
            Some(c)
        };
    }
    let Some(q) = &services.queues else { return };
    if was_connected {
        tracing::info!(%call_id, agent = %leg.agent, reason, "agent leg ended: hanging up the caller");
        q.call_ended(&leg.agent);
        call.agent_hung_up(Instant::now());
    } else {
        tracing::info!(%call_id, agent = %leg.agent, reason, "agent did not take the call");
        q.agent_failed(&leg.agent, caller);
    }
}

/// Appends an audit row off the call's task; a failed write is logged (the
/// call goes on).
fn spawn_audit(
    ledger: &Ledger,
    ctx: &AuditContext,
    id: Option<IdNumber>,
    action: AuditAction,
    outcome: &'static str,
) {
    let (ledger, ctx) = (ledger.clone(), ctx.clone());
    tokio::spawn(async move {
        if let Err(e) = ledger.audit(&ctx, id.as_ref(), action, outcome).await {
            tracing::error!(call_id = %ctx.call_id, error = %e, "audit write failed");
        }
    });
}

fn spawn_auth(
    ledger: &Ledger,
    ctx: &AuditContext,
    id: IdNumber,
    pin: Pin,
    tx: mpsc::UnboundedSender<Reply>,
) {
    let (ledger, ctx) = (ledger.clone(), ctx.clone());
    tokio::spawn(async move {
        let started = Instant::now();
        let r = ledger.authenticate(&id, &pin, &ctx).await;
        metrics::histogram!("ivr_auth_seconds").record(started.elapsed().as_secs_f64());
        let r = r.map_err(|e| {
            tracing::error!(call_id = %ctx.call_id, error = %e, "ledger unavailable during authentication");
            LedgerUnavailable
        });
        let _ = tx.send(Reply::Auth(r));
    });
}

async fn bind_rtp(services: &Services) -> Option<(UdpSocket, super::ports::PortGuard)> {
    // A port may be taken by another program: try a few.
    for _ in 0..8 {
        let guard = services.ports.allocate()?;
        match UdpSocket::bind(SocketAddr::new(services.bind_ip, guard.port())).await {
            Ok(s) => return Some((s, guard)),
            Err(e) => tracing::debug!(port = guard.port(), error = %e, "RTP port busy"),
        }
    }
    None
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! The SIP driver: owns the sans-IO [`Endpoint`], the UDP socket and the TCP
//! connections, and hands calls to their tasks.
//!
//! One task runs the endpoint; TCP connections each get a reader and a writer
//! task that talk to it over channels. Calls talk to it over channels too, so
//! the endpoint itself is never shared or locked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::call::CallSignal;
use crate::sip::wire::{StreamFramer, WireLimits};
use crate::sip::{CallHandle, ConnId, EndReason, Endpoint, SipEvent, Transport};

use super::queue_task::QueueRuntime;
pub use super::types::SipCommand;
use super::types::{CallInfo, CallSpawner, NewCall};

/// Most inputs taken in one turn of the driver loop.
const BATCH: usize = 64;

enum NetInput {
    Opened(ConnId, mpsc::Sender<Vec<u8>>),
    Message(ConnId, SocketAddr, Vec<u8>),
    Closed(ConnId),
}

/// The reason string recorded for an end of dialog.
pub fn end_reason_str(r: &EndReason) -> &'static str {
    match r {
        EndReason::RemoteBye => "caller_hangup",
        EndReason::LocalBye => "local_hangup",
        EndReason::Cancelled => "cancelled",
        EndReason::Rejected(_) => "rejected",
        EndReason::AckTimeout => "no_ack",
        EndReason::TransportError => "transport_error",
    }
}

/// Transport settings of the driver.
#[derive(Debug, Clone, Copy)]
pub struct DriverSettings {
    pub limits: WireLimits,
    pub max_tcp_per_ip: usize,
    pub tcp_idle: Duration,
    /// How long calls may go on after shutdown was requested.
    pub grace: Duration,
}

/// Runs SIP until `shutdown` flips and every call has ended (or the grace
/// period is over).
pub async fn run(
    mut endpoint: Endpoint,
    udp: UdpSocket,
    tcp: TcpListener,
    queues: Option<Arc<QueueRuntime>>,
    spawn_call: CallSpawner,
    settings: DriverSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let DriverSettings {
        limits,
        max_tcp_per_ip,
        tcp_idle,
        grace,
    } = settings;
    let udp = Arc::new(udp);
    let (net_tx, mut net_rx) = mpsc::channel::<NetInput>(1024);
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<SipCommand>();
    let mut conns: HashMap<ConnId, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut calls: HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>> = HashMap::new();
    // Outbound agent legs → the caller's task that placed them.
    let mut legs: HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>> = HashMap::new();
    let accept_task = tokio::spawn(accept_loop(
        tcp,
        net_tx.clone(),
        limits,
        max_tcp_per_ip,
        tcp_idle,
    ));
    let mut buf = vec![0u8; 65_536];
    let mut stopping_since: Option<tokio::time::Instant> = None;
    let mut hung_up_all = false;

    loop {
        let deadline = endpoint.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, src)) => endpoint.handle_input(std::time::Instant::now(), Transport::Udp, src, &buf[..n]),
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            },
            Some(input) = net_rx.recv() => apply_net(&mut endpoint, &udp, &mut conns, input),
            Some(cmd) = cmd_rx.recv() => apply_command(&mut endpoint, &mut calls, &mut legs, cmd),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => endpoint.handle_timeout(std::time::Instant::now()),
            r = shutdown.changed(), if stopping_since.is_none() => {
                if r.is_err() || *shutdown.borrow() {
                    tracing::info!(active_calls = calls.len(), "shutting down: refusing new calls, letting calls finish");
                    endpoint.set_accepting(false);
                    stopping_since = Some(tokio::time::Instant::now());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)), if stopping_since.is_some() => {}
        }
        // Under load, take what is already queued before the next deadline
        // computation: `poll_timeout` looks at every transaction, so one
        // look per batch instead of one per message.
        for _ in 0..BATCH {
            let mut progressed = false;
            if let Ok((n, src)) = udp.try_recv_from(&mut buf) {
                endpoint.handle_input(std::time::Instant::now(), Transport::Udp, src, &buf[..n]);
                progressed = true;
            }
            if let Ok(input) = net_rx.try_recv() {
                apply_net(&mut endpoint, &udp, &mut conns, input);
                progressed = true;
            }
            if let Ok(cmd) = cmd_rx.try_recv() {
                apply_command(&mut endpoint, &mut calls, &mut legs, cmd);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }

        flush(&mut endpoint, &udp, &conns);
        while let Some(ev) = endpoint.poll_event() {
            if let Some(ev) = dispatch_leg(ev, &mut legs, &mut endpoint, queues.as_deref()) {
                dispatch(ev, &mut calls, queues.is_some(), &spawn_call, &cmd_tx);
            }
        }
        flush(&mut endpoint, &udp, &conns);

        if let Some(since) = stopping_since {
            if calls.is_empty() && endpoint.active_calls() == 0 {
                break;
            }
            if since.elapsed() >= grace && !hung_up_all {
                tracing::warn!(
                    active_calls = calls.len(),
                    "grace period over: hanging up the remaining calls"
                );
                for tx in calls.values() {
                    let _ = tx.send(CallSignal::Ended("shutdown"));
                }
                hung_up_all = true;
            }
            // BYEs get a few seconds after the grace period, then we go.
            if since.elapsed() >= grace + Duration::from_secs(5) {
                break;
            }
        }
    }
    accept_task.abort();
    metrics::gauge!("ivr_calls_active").set(0.0);
}

/// Applies one command from a call task to the endpoint.
fn apply_command(
    endpoint: &mut Endpoint,
    calls: &mut HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>>,
    legs: &mut HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>>,
    cmd: SipCommand,
) {
    let now = std::time::Instant::now();
    match cmd {
        SipCommand::Answer(c, sdp) => endpoint.answer(now, c, sdp),
        SipCommand::Reject(c, status) => endpoint.reject(now, c, status),
        SipCommand::Hangup(c) => endpoint.hangup(now, c),
        SipCommand::ReinviteAnswer(c, a) => endpoint.answer_reinvite(now, c, a),
        SipCommand::Gone(c) => {
            calls.remove(&c);
            endpoint.hangup(now, c);
        }
        SipCommand::Invite { call, owner, leg } => {
            let h = endpoint.invite(now, call);
            let _ = owner.send(CallSignal::LegPlaced { leg, handle: h });
            legs.insert(h, owner);
        }
        SipCommand::Refer(c, target) => {
            if let Err(e) = endpoint.refer(now, c, &target) {
                tracing::info!(call = ?c, error = %e, "REFER not sent");
                send(calls, c, CallSignal::ReferFailed { status: 0 });
            }
        }
        SipCommand::DropLeg(c) => {
            legs.remove(&c);
            endpoint.hangup(now, c);
        }
    }
}

/// Applies one event from the TCP side.
fn apply_net(
    endpoint: &mut Endpoint,
    udp: &UdpSocket,
    conns: &mut HashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    input: NetInput,
) {
    match input {
        NetInput::Opened(conn, tx) => {
            conns.insert(conn, tx);
        }
        NetInput::Message(conn, src, msg) => {
            endpoint.handle_input(std::time::Instant::now(), Transport::Tcp(conn), src, &msg)
        }
        NetInput::Closed(conn) => {
            // Replies to the connection's last messages go out first.
            flush(endpoint, udp, conns);
            conns.remove(&conn);
            endpoint.connection_closed(conn);
        }
    }
}

fn flush(endpoint: &mut Endpoint, udp: &UdpSocket, conns: &HashMap<ConnId, mpsc::Sender<Vec<u8>>>) {
    while let Some(t) = endpoint.poll_transmit() {
        match t.transport {
            Transport::Udp => {
                if let Err(e) = udp.try_send_to(&t.bytes, t.dest) {
                    tracing::debug!(error = %e, dest = %t.dest, "UDP send failed");
                }
            }
            Transport::Tcp(conn) => match conns.get(&conn) {
                Some(tx) => {
                    if tx.try_send(t.bytes).is_err() {
                        tracing::debug!(?conn, "TCP writer full or gone; message dropped");
                    }
                }
                None => tracing::debug!(?conn, "TCP connection gone; message dropped"),
            },
        }
    }
}

/// Routes the events of outbound agent legs to the task that placed them;
/// returns the other events. An answer for a leg nobody owns any more (a
/// 200 crossing our CANCEL) is hung up.
fn dispatch_leg(
    ev: SipEvent,
    legs: &mut HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>>,
    endpoint: &mut Endpoint,
    queues: Option<&QueueRuntime>,
) -> Option<SipEvent> {
    if let SipEvent::Register {
        reg,
        user,
        contact,
        expires,
        authorization,
        method_uri,
        path,
        src,
        ..
    } = ev
    {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let reply = match queues {
            Some(q) => q.register(
                now_unix,
                &user,
                contact.as_deref(),
                expires,
                authorization.as_deref(),
                &method_uri,
                &path,
                src.ip(),
            ),
            None => crate::sip::registrar::RegisterReply::Forbidden,
        };
        endpoint.respond_register(std::time::Instant::now(), reg, reply);
        return None;
    }
    let call = match &ev {
        SipEvent::Progress { call, .. }
        | SipEvent::Answered { call, .. }
        | SipEvent::CallEnded { call, .. }
        | SipEvent::ReInvite { call, .. }
        | SipEvent::Dtmf { call, .. } => *call,
        _ => return Some(ev),
    };
    let Some(tx) = legs.get(&call).cloned() else {
        if let SipEvent::Answered { call, .. } = ev {
            tracing::debug!(?call, "answer for an abandoned agent leg: hanging up");
            endpoint.hangup(std::time::Instant::now(), call);
            return None;
        }
        return Some(ev);
    };
    let signal = match ev {
        SipEvent::Progress { call, status, .. } => CallSignal::AgentProgress { leg: call, status },
        SipEvent::Answered { call, sdp } => CallSignal::AgentAnswered { leg: call, sdp },
        SipEvent::CallEnded { call, reason } => {
            legs.remove(&call);
            CallSignal::AgentEnded {
                leg: call,
                reason: end_reason_str(&reason),
            }
        }
        // The call decides (today: 488, the relay keeps its codecs).
        SipEvent::ReInvite { call, offer } => CallSignal::AgentReInvite { leg: call, offer },
        _ => return None,
    };
    let _ = tx.send(signal);
    None
}

fn dispatch(
    ev: SipEvent,
    calls: &mut HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>>,
    has_queues: bool,
    spawn_call: &CallSpawner,
    cmd_tx: &mpsc::UnboundedSender<SipCommand>,
) {
    match ev {
        SipEvent::IncomingCall {
            call,
            call_id,
            from_user,
            to_user: _,
            remote,
            transport: _,
            offer,
            max_forwards,
        } => {
            // RFC 3261 §16.6 step 3 for our B2BUA leg: the agent's INVITE
            // carries one less; a call that arrives with nothing left to
            // give (a forwarding loop through the agent leg) gets 483.
            if has_queues && max_forwards <= 1 {
                tracing::info!(%call_id, "Max-Forwards exhausted: 483");
                let _ = cmd_tx.send(SipCommand::Reject(
                    call,
                    crate::sip::StatusCode::TOO_MANY_HOPS.as_u16(),
                ));
                let _ = cmd_tx.send(SipCommand::Gone(call));
                return;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            calls.insert(call, tx.clone());
            metrics::counter!("ivr_calls_total").increment(1);
            metrics::gauge!("ivr_calls_active").set(calls.len() as f64);
            let info = CallInfo {
                handle: call,
                call_id,
                caller: from_user,
                remote,
                offer,
                max_forwards,
            };
            spawn_call(NewCall {
                info,
                sip: cmd_tx.clone(),
                self_tx: tx,
                signals: rx,
            });
        }
        SipEvent::CallConfirmed { call, sdp } => send(calls, call, CallSignal::Confirmed(sdp)),
        SipEvent::ReInvite { call, offer } => send(calls, call, CallSignal::ReInvite(offer)),
        SipEvent::Dtmf { call, digit, .. } => send(calls, call, CallSignal::InfoDigit(digit)),
        SipEvent::ReInviteAck { call, sdp } => send(calls, call, CallSignal::ReInviteAck(sdp)),
        SipEvent::ReferAccepted { call } => send(calls, call, CallSignal::ReferAccepted),
        SipEvent::ReferFailed { call, status } => {
            send(calls, call, CallSignal::ReferFailed { status })
        }
        SipEvent::ReferNotify {
            call,
            status,
            terminated,
        } => send(calls, call, CallSignal::ReferNotify { status, terminated }),
        // Handled before dispatch (dispatch_leg).
        SipEvent::Register { .. } => {}
        SipEvent::Progress { call, .. } | SipEvent::Answered { call, .. } => {
            tracing::debug!(?call, "event for an outbound leg nobody placed; ignored");
        }
        SipEvent::CallEnded { call, reason } => {
            if let Some(tx) = calls.remove(&call) {
                let _ = tx.send(CallSignal::Ended(end_reason_str(&reason)));
            }
            metrics::gauge!("ivr_calls_active").set(calls.len() as f64);
        }
    }
}

fn send(
    calls: &HashMap<CallHandle, mpsc::UnboundedSender<CallSignal>>,
    call: CallHandle,
    s: CallSignal,
) {
    if let Some(tx) = calls.get(&call) {
        let _ = tx.send(s);
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(
    listener: TcpListener,
    net_tx: mpsc::Sender<NetInput>,
    limits: WireLimits,
    max_per_ip: usize,
    idle: Duration,
) {
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    // Refusals are logged as a summary, not one line per connection.
    let mut refused = TcpRefusals::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(peer.ip()).or_insert(0);
            if *n >= max_per_ip {
                refused.note(peer.ip(), max_per_ip);
                continue;
            }
            refused.flush_due();
            *n += 1;
        }
        let conn = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        let pong_tx = tx.clone();
        if net_tx.send(NetInput::Opened(conn, tx)).await.is_err() {
            return;
        }
        let net_tx = net_tx.clone();
        let per_ip = per_ip.clone();
        tokio::spawn(async move {
            connection(stream, peer, conn, (pong_tx, rx), &net_tx, limits, idle).await;
            let _ = net_tx.send(NetInput::Closed(conn)).await;
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&peer.ip());
                }
            }
        });
    }
}

/// TCP connections refused per source, written as one line per source and
/// interval (the first refusal of an interval is written at once).
#[derive(Default)]
struct TcpRefusals {
    since: Option<tokio::time::Instant>,
    counts: HashMap<IpAddr, u64>,
}

impl TcpRefusals {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn note(&mut self, ip: IpAddr, max_per_ip: usize) {
        self.flush_due();
        self.since.get_or_insert_with(tokio::time::Instant::now);
        if self.counts.len() >= 1024 && !self.counts.contains_key(&ip) {
            return;
        }
        let n = self.counts.entry(ip).or_insert(0);
        if *n == 0 {
            tracing::warn!(peer = %ip, max_tcp_per_ip = max_per_ip, "too many TCP connections from one address; refusing (summary follows)");
        }
        *n += 1;
    }

    fn flush_due(&mut self) {
        if self.since.is_some_and(|t| t.elapsed() >= Self::INTERVAL) {
            self.since = None;
            for (ip, n) in self.counts.drain() {
                tracing::warn!(peer = %ip, refused = n, "TCP connections refused (too many from one address)");
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: ConnId,
    (pong, mut out): (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>),
    net_tx: &mpsc::Sender<NetInput>,
    limits: WireLimits,
    idle: Duration,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new(limits);
    let mut buf = vec![0u8; 16_384];
    loop {
        let n = match tokio::time::timeout(idle, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                tracing::debug!(%peer, "idle TCP connection closed");
                break;
            }
        };
        framer.push(&buf[..n]);
        loop {
            // RFC 5626 §4.4.1: every double-CRLF ping gets a single-CRLF
            // pong at once (before and between messages alike).
            while framer.take_pong() {
                let _ = pong.try_send(b"\r\n".to_vec());
            }
            match framer.next_message() {
                Ok(Some(msg)) => {
                    if net_tx
                        .send(NetInput::Message(conn, peer, msg))
                        .await
                        .is_err()
                    {
                        writer.abort();
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The messages before the bad one were handed over; the
                    // writer lives on until the driver has flushed their
                    // replies and drops its sender on `Closed` (RFC 4475
                    // dblreq over TCP), then the connection closes.
                    tracing::info!(%peer, error = %e, "bad SIP framing on TCP; closing the connection");
                    return;
                }
            }
        }
    }
    writer.abort();
}

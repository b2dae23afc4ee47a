//! One tokio task per call: its RTP socket, its [`Call`] state machine, and
//! the ledger requests it makes. The task is a loop that waits for a packet,
//! a SIP signal, a ledger reply or the call's next deadline, feeds it to the
//! call and sends what the call wants sent. No allocation per packet: the
//! receive and send buffers live in the task.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::call::{Call, CallOutput, CallParams, CallSignal};
use crate::domain::{AuthOutcome, IdNumber, Pin};
use crate::flow::dialplan::Dialplan;
use crate::flow::interpreter::{FlowConfig, LedgerUnavailable};
use crate::ledger::{AuditAction, AuditContext, Ledger};
use crate::media::prompts::PromptLibrary;
use crate::sip::CallHandle;

use super::ports::PortPool;
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
}

/// A new call as the SIP layer saw it.
pub struct CallInfo {
    pub handle: CallHandle,
    pub call_id: String,
    pub caller: String,
    pub remote: SocketAddr,
    pub offer: Option<Vec<u8>>,
}

enum Reply {
    Auth(Result<AuthOutcome, LedgerUnavailable>),
}

/// Runs one call to its end.
pub async fn run(
    info: CallInfo,
    services: Arc<Services>,
    sip: mpsc::UnboundedSender<SipCommand>,
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
    let mut tx_buf = [0u8; 1500];
    let mut signals_open = true;

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
                    let (ledger, ctx) = (services.ledger.clone(), ctx.clone());
                    tokio::spawn(async move {
                        if let Err(e) = ledger
                            .audit(&ctx, Some(&id), AuditAction::Query(insurance), "played")
                            .await
                        {
                            tracing::error!(call_id = %ctx.call_id, error = %e, "audit write failed");
                        }
                    });
                }
                CallOutput::Transfer { queue, id } => {
                    // No agent queue is configured in this build: the flow
                    // hears that the transfer failed and apologises.
                    tracing::info!(call_id = %ctx.call_id, %queue, "transfer requested; no agent queue available");
                    let (ledger, ctx2) = (services.ledger.clone(), ctx.clone());
                    tokio::spawn(async move {
                        let _ = ledger
                            .audit(
                                &ctx2,
                                id.as_ref(),
                                AuditAction::Transfer { queue },
                                "no_agent_queue",
                            )
                            .await;
                    });
                    call.handle_transfer_failed(Instant::now());
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
                    call.handle_rtp(Instant::now(), src, &rx_buf[..n]);
                }
            }
            s = signals.recv() => match s {
                Some(sig) => call.handle_signal(Instant::now(), sig),
                None => signals_open = false,
            },
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
    let _ = sip.send(SipCommand::Gone(handle));
    drop(port);
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

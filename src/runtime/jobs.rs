//! The work a call hands off so that its loop never waits: ledger queries,
//! DNS, record writes. Each runs in a task of its own and, when it has an
//! answer, passes it to `done` (the call task sends it back to itself as an
//! input). Record writes go to the records writer (`docs/records.md`),
//! which keeps each row until the database or the local spool has it.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::call::CallEvent;
use crate::domain::{AuthOutcome, CallRecord, IdNumber, Pin};
use crate::flow::interpreter::LedgerUnavailable;
use crate::ledger::{AuditAction, AuditContext};

use super::ports::PortGuard;
use super::rtp_socket::RtpSocket;
use super::types::{CallInput as Input, Services};

/// Carries out a call's ledger and record commands (authenticate, audit,
/// callback booking, CDR); answers go back to the call task on `reply`.
/// The call task's other commands are its own.
pub fn hand_off(
    services: &Services,
    ctx: &AuditContext,
    ev: CallEvent,
    reply: &mpsc::UnboundedSender<Input>,
) {
    match ev {
        CallEvent::Authenticate { id, pin } => {
            let tx = reply.clone();
            authenticate(services, ctx, id, pin, move |r| {
                let _ = tx.send(Input::Auth(r));
            });
        }
        CallEvent::AuditQuery { id, insurance } => {
            // The balance is read only once this row is durable.
            let tx = reply.clone();
            audit_durable(services, ctx, id, AuditAction::Query(insurance), move |r| {
                let _ = tx.send(Input::Audit(r));
            });
        }
        CallEvent::Audit {
            id,
            action,
            outcome,
        } => write_audit(services, ctx, id, action, outcome),
        CallEvent::Callback { queue, number, id } => {
            book_callback(services, ctx, queue, number, id)
        }
        CallEvent::WriteCdr(record) => write_cdr(services, *record),
        // The call task carries out its other commands itself.
        _ => {}
    }
}

/// The source of a datagram that could not be read.
pub const NOWHERE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Checks ID + PIN, then has the outcome audited through the records
/// writer; the flow hears the outcome only once that row is durable. A
/// check the ledger cannot answer is audited as `unavailable` (spooled
/// while the database is down) and the flow says "system busy".
pub fn authenticate(
    services: &Services,
    ctx: &AuditContext,
    id: IdNumber,
    pin: Pin,
    done: impl FnOnce(Result<AuthOutcome, LedgerUnavailable>) + Send + 'static,
) {
    let (ledger, records, ctx) = (
        services.ledger.clone(),
        services.records.clone(),
        ctx.clone(),
    );
    tokio::spawn(async move {
        let started = Instant::now();
        let r = match ledger.check_credentials(&id, &pin).await {
            Ok((outcome, label)) => {
                tracing::debug!(call_id = %ctx.call_id, outcome = label, "ledger authenticate");
                let row = ledger.audit_row(&ctx, Some(&id), AuditAction::Authenticate, label);
                match records.audit(row).await {
                    Ok(_) => Ok(outcome),
                    Err(_) => {
                        tracing::error!(call_id = %ctx.call_id, "authentication not audited (records unavailable): system busy");
                        Err(LedgerUnavailable)
                    }
                }
            }
            Err(e) => {
                tracing::error!(call_id = %ctx.call_id, error = %e, "ledger unavailable during authentication");
                let row =
                    ledger.audit_row(&ctx, Some(&id), AuditAction::Authenticate, "unavailable");
                drop(records.audit(row));
                Err(LedgerUnavailable)
            }
        };
        metrics::histogram!("ivr_auth_seconds").record(started.elapsed().as_secs_f64());
        done(r);
    });
}

/// Resolves a contact's `host:port` (the first address).
pub fn resolve(hostport: String, done: impl FnOnce(Option<SocketAddr>) + Send + 'static) {
    tokio::spawn(async move {
        let addr = tokio::net::lookup_host(hostport)
            .await
            .ok()
            .and_then(|mut a| a.next());
        done(addr);
    });
}

/// Enqueues an audit row with the records writer (kept until the database
/// or the spool has it); the call does not wait.
pub fn write_audit(
    services: &Services,
    ctx: &AuditContext,
    id: Option<IdNumber>,
    action: AuditAction,
    outcome: &'static str,
) {
    let row = services.ledger.audit_row(ctx, id.as_ref(), action, outcome);
    drop(services.records.audit(row));
}

/// Enqueues the audit row of a disclosure and reports when it is durable
/// (`Ok`) or could be stored neither in the database nor in the spool.
pub fn audit_durable(
    services: &Services,
    ctx: &AuditContext,
    id: IdNumber,
    action: AuditAction,
    done: impl FnOnce(Result<(), LedgerUnavailable>) + Send + 'static,
) {
    let row = services.ledger.audit_row(ctx, Some(&id), action, "played");
    let ack = services.records.audit(row);
    tokio::spawn(async move {
        done(ack.await.map(|_| ()).map_err(|_| LedgerUnavailable));
    });
}

/// Hands the call's record to the records writer (never dropped).
pub fn write_cdr(services: &Services, record: CallRecord) {
    tracing::info!(
        call_id = %record.call_id,
        end_reason = %record.end_reason,
        states = record.states.len(),
        prompts = record.prompts.len(),
        "call finished"
    );
    metrics::counter!("ivr_calls_ended_total", "reason" => record.end_reason.clone()).increment(1);
    services.records.cdr(record);
}

/// Books a callback through the records writer: durable (database or
/// spool) whatever the database's state, stored once. Only an invalid
/// number is refused (the flow validates it before, so this is a bug).
pub fn book_callback(
    services: &Services,
    ctx: &AuditContext,
    queue: String,
    number: String,
    id: Option<IdNumber>,
) {
    let booking = crate::ledger::callbacks::NewCallback {
        call_id: &ctx.call_id,
        number: &number,
        id: id.as_ref(),
        queue: &queue,
    };
    match services
        .ledger
        .callback_booking(&booking, std::time::SystemTime::now())
    {
        Ok(row) => {
            tracing::info!(call_id = %ctx.call_id, %queue, "callback booked");
            services.records.callback(row);
        }
        Err(e) => tracing::error!(call_id = %ctx.call_id, error = %e, "callback not booked"),
    }
}

/// A port from the pool and a socket bound to it, without awaiting (a bind
/// is a system call, not a wait). A port taken by another program: try a
/// few.
pub fn bind_rtp(services: &Services) -> Option<(RtpSocket, PortGuard)> {
    for _ in 0..8 {
        let guard = services.ports.allocate()?;
        let bound = RtpSocket::bind(SocketAddr::new(services.bind_ip, guard.port()));
        match bound {
            Ok(s) => return Some((s, guard)),
            Err(e) => tracing::debug!(port = guard.port(), error = %e, "RTP port busy"),
        }
    }
    None
}

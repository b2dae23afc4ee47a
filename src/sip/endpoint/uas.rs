//! The UAS INVITE session: RFC 3261 §13.3 (processing an INVITE: 100
//! Trying, provisional and final responses), §12.1.1 (the dialog a UAS
//! creates: our tag, Contact, Record-Route), §13.3.1.4 (the UAS core
//! retransmits its 2xx until the ACK and gives up after 64·T1 with a BYE),
//! §17.2.1 with RFC 6026 (the INVITE server transaction's Accepted state
//! absorbs INVITE retransmissions after a 2xx), and admission control for
//! new INVITEs (RFC 3261 §21.5.4 503 with Retry-After).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dialog_requests::PendingReInvite;
use super::tx_table::ServerKind;
use super::uac::UacState;
use super::{
    CallHandle, EndReason, Endpoint, EndpointConfig, SipEvent, Transmit, Transport, random_token,
};
use crate::sip::dialog::Dialog;
use crate::sip::message::{ResponseSpec, build_response, uri_user};
use crate::sip::status::{self, Reply, StatusCode};
use crate::sip::transaction::{InviteServer, InviteServerState};
use crate::sip::validate::{self, ALLOW, Request};
use crate::sip::wire::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    /// INVITE received, no final response yet.
    Early,
    /// 2xx sent, waiting for the ACK.
    WaitAck,
    Confirmed,
    /// Our BYE is in flight.
    Terminating,
}

/// §13.3.1.4: the UAS core retransmits its 2xx until the ACK, over every
/// transport, T1 doubling to T2, giving up after 64·T1.
pub(super) struct OkRetransmit {
    pub(super) bytes: Vec<u8>,
    pub(super) transport: Transport,
    pub(super) dest: SocketAddr,
    pub(super) cseq: u32,
    pub(super) next: Instant,
    pub(super) interval: Duration,
    pub(super) give_up: Instant,
}

pub(super) struct InviteSession {
    pub(super) state: CallState,
    pub(super) dialog: Dialog,
    pub(super) transport: Transport,
    /// Where the INVITE came from (fallback destination for requests).
    pub(super) remote: SocketAddr,
    pub(super) conn_closed: bool,
    pub(super) invite_tx: String,
    pub(super) invite: Message,
    pub(super) invite_src: SocketAddr,
    pub(super) ok_retx: Option<OkRetransmit>,
    pub(super) reinvite: Option<PendingReInvite>,
    /// The app hung up before the ACK: BYE goes out once it arrives.
    pub(super) hangup_after_ack: bool,
    /// Set for calls we placed (UAC); `invite`/`invite_tx` then describe
    /// our own INVITE.
    pub(super) uac: Option<UacState>,
    /// Our REFER's transaction is still waiting for its final response.
    pub(super) refer_pending: bool,
    /// Our REFER's implicit subscription is alive: its NOTIFYs are
    /// accepted (from sending the REFER until a terminated NOTIFY or a
    /// REFER failure; RFC 3515 §2.4.4 lets a NOTIFY overtake the 202).
    pub(super) refer_subscribed: bool,
}

impl InviteSession {
    /// The 2xx retransmission / ACK give-up deadline, if one is running.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.ok_retx.as_ref().map(|r| r.next.min(r.give_up))
    }
}

impl Endpoint {
    /// Sends 180 Ringing (optional).
    pub fn ringing(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Early || c.uac.is_some() {
            return;
        }
        let bytes = self.call_response(c, 180, None);
        let key = c.invite_tx.clone();
        self.respond_invite_tx(now, call, &key, 180, bytes);
    }

    /// Answers with 200 OK carrying `sdp`, then retransmits it until the ACK.
    pub fn answer(&mut self, now: Instant, call: CallHandle, sdp: Vec<u8>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Early || c.uac.is_some() {
            return;
        }
        let bytes = self.call_response(c, 200, Some(&sdp));
        let key = c.invite_tx.clone();
        let cseq = c.dialog.remote_cseq;
        let Some((transport, dest)) = self.server_txs.get(&key).map(|t| (t.transport, t.dest))
        else {
            return;
        };
        if !self.respond_invite_tx(now, call, &key, 200, bytes.clone()) {
            return;
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::WaitAck;
            c.ok_retx = Some(OkRetransmit {
                bytes,
                transport,
                dest,
                cseq,
                next: now + self.timers.t1,
                interval: self.timers.t1,
                give_up: now + self.timers.t64(),
            });
        }
    }

    /// Rejects an unanswered call with a 3xx–6xx status (others become 500).
    pub fn reject(&mut self, now: Instant, call: CallHandle, status: u16) {
        let status = if status::is_error(status) {
            status
        } else {
            StatusCode::SERVER_INTERNAL_ERROR.as_u16()
        };
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.uac.is_some() {
            self.hangup(now, call);
            return;
        }
        if c.state != CallState::Early {
            return;
        }
        let bytes = self.call_response(c, status, None);
        let key = c.invite_tx.clone();
        self.respond_invite_tx(now, call, &key, status, bytes);
        self.end_call(now, call, EndReason::Rejected(status));
    }

    pub(super) fn handle_new_invite(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
        req: Request,
    ) {
        // Admission counts and summarises refusals (no line per packet).
        let admitted = self
            .admission
            .admit(now, src.ip(), self.calls.len(), self.next_handle);
        if let Err(refusal) = admitted {
            let reply = Reply::from(refusal);
            let code = reply.code.as_u16();
            self.respond_new_tx(now, transport, src, &m, &req, code, reply.extra, None);
            return;
        }
        let handle = CallHandle(self.next_handle);
        self.next_handle = self.next_handle.wrapping_add(1);
        let local_tag = random_token();
        let dialog = Dialog::new_uas(&m, &req, local_tag.clone());
        // 100 Trying at once (§17.2.1) so the caller stops retransmitting.
        let trying = build_response(
            &m,
            src,
            self.cfg.server_header.as_deref(),
            &ResponseSpec {
                code: 100,
                to_tag: None,
                extra: &[],
                body: None,
                record_route: false,
            },
        );
        let mut tx = InviteServer::new(transport.reliable(), self.timers);
        let mut out = Vec::new();
        tx.respond(now, 100, trying, &mut out);
        let dest = Self::response_dest(transport, &m, src);
        let key = req.tx_key();
        self.insert_server_tx(&req, ServerKind::Invite(tx), transport, dest);
        self.tx_calls.insert(key.clone(), handle);
        self.flush(transport, dest, out);

        let from_user = uri_user(&req.from.uri).unwrap_or_default().to_owned();
        let to_user = uri_user(&req.to.uri).unwrap_or_default().to_owned();
        let offer = (!m.body.is_empty()).then(|| m.body.clone());
        // validate::check accepted only 0..=255 digits; 70 is §8.1.1.6's
        // recommended value for a request that had none.
        let max_forwards = m
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(70);
        self.dialogs
            .insert((req.call_id.clone(), local_tag), handle);
        self.calls.insert(
            handle,
            InviteSession {
                state: CallState::Early,
                dialog,
                transport,
                remote: src,
                conn_closed: false,
                invite_tx: key,
                invite: m,
                invite_src: src,
                ok_retx: None,
                reinvite: None,
                hangup_after_ack: false,
                uac: None,
                refer_pending: false,
                refer_subscribed: false,
            },
        );
        self.events.push_back(SipEvent::IncomingCall {
            call: handle,
            call_id: req.call_id,
            from_user,
            to_user,
            remote: src,
            transport,
            offer,
            max_forwards,
        });
    }

    pub(super) fn handle_ack(
        &mut self,
        now: Instant,
        transport: Transport,
        m: &Message,
        req: &Request,
    ) {
        // ACK for a non-2xx final: same transaction as the INVITE (§17.2.1).
        if let Some(tx) = self.server_txs.get_mut(&req.tx_key())
            && let ServerKind::Invite(t) = &mut tx.kind
            && t.state() == InviteServerState::Completed
        {
            t.on_ack(now);
            self.reap_server_txs();
            return;
        }
        // ACK for a 2xx: goes to the dialog (§13.3.1.4).
        let Some(to_tag) = req.to_tag() else { return };
        let Some(&h) = self.dialogs.get(&(req.call_id.clone(), to_tag.to_owned())) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(retx) = &c.ok_retx else { return };
        if retx.cseq != req.cseq {
            return;
        }
        c.ok_retx = None;
        if let Transport::Tcp(_) = transport {
            c.transport = transport;
            c.conn_closed = false;
        }
        if c.state == CallState::WaitAck {
            c.state = CallState::Confirmed;
            self.admission.acked(h.0);
            let sdp = (!m.body.is_empty()).then(|| m.body.clone());
            let hang = c.hangup_after_ack;
            self.events
                .push_back(SipEvent::CallConfirmed { call: h, sdp });
            if hang {
                self.send_bye(now, h);
            }
        } else if c.reinvite.as_ref().is_some_and(|r| r.answered) {
            c.reinvite = None;
            let sdp = (!m.body.is_empty()).then(|| m.body.clone());
            self.events
                .push_back(SipEvent::ReInviteAck { call: h, sdp });
        }
    }

    /// Sends a response on the call's INVITE (or re-INVITE) transaction.
    /// False (and the call ended) if the call's connection is gone.
    pub(super) fn respond_invite_tx(
        &mut self,
        now: Instant,
        call: CallHandle,
        key: &str,
        code: u16,
        bytes: Vec<u8>,
    ) -> bool {
        if self.calls.get(&call).is_some_and(|c| c.conn_closed) {
            if let Some(tx) = self.server_txs.get_mut(key)
                && let ServerKind::Invite(t) = &mut tx.kind
            {
                t.terminate();
            }
            self.reap_server_txs();
            self.end_call(now, call, EndReason::TransportError);
            return false;
        }
        let Some(tx) = self.server_txs.get_mut(key) else {
            return false;
        };
        let ServerKind::Invite(t) = &mut tx.kind else {
            return false;
        };
        let mut out = Vec::new();
        t.respond(now, code, bytes, &mut out);
        let (tr, d) = (tx.transport, tx.dest);
        self.flush(tr, d, out);
        true
    }

    pub(super) fn call_response(
        &self,
        c: &InviteSession,
        code: u16,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        Self::dialog_response(
            &self.cfg,
            &c.dialog,
            c.transport,
            &c.invite,
            c.invite_src,
            code,
            body,
        )
    }

    /// A response to a dialog's INVITE/re-INVITE: our tag, Contact and
    /// Record-Route on 1xx/2xx (§12.1.1), Allow/Supported on 2xx.
    pub(super) fn dialog_response(
        cfg: &EndpointConfig,
        dialog: &Dialog,
        transport: Transport,
        req: &Message,
        src: SocketAddr,
        code: u16,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let contact = match transport {
            Transport::Udp => format!("<sip:ivr@{}>", cfg.local_addr),
            Transport::Tcp(_) => format!("<sip:ivr@{};transport=tcp>", cfg.local_addr),
        };
        let mut extra: Vec<(&str, String)> = Vec::new();
        if code > StatusCode::TRYING.as_u16() && !status::is_error(code) {
            extra.push(("Contact", contact));
        }
        if status::is_success(code) {
            extra.push(("Allow", ALLOW.to_owned()));
            extra.push(("Supported", validate::SUPPORTED.to_owned()));
        }
        build_response(
            req,
            src,
            cfg.server_header.as_deref(),
            &ResponseSpec {
                code,
                to_tag: Some(&dialog.local_tag),
                extra: &extra,
                body: body.map(|b| ("application/sdp", b)),
                record_route: code > StatusCode::TRYING.as_u16() && !status::is_error(code),
            },
        )
    }

    pub(super) fn run_ok_retransmit(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(r) = c.ok_retx.as_mut() else { return };
        let mut sends = 0usize;
        // Bounded: each pass moves `next` forward by at least T1.
        while r.next <= now && r.next < r.give_up && sends < 1000 {
            sends += 1;
            r.interval = self.timers.backoff(r.interval);
            r.next += r.interval.max(Duration::from_millis(1));
        }
        let bytes = r.bytes.clone();
        let expired = r.give_up <= now;
        if sends > 0 && !expired {
            if c.conn_closed {
                self.end_call(now, h, EndReason::TransportError);
                return;
            }
            let (transport, dest) = (r.transport, r.dest);
            self.transmits.push_back(Transmit {
                transport,
                dest,
                bytes,
            });
        }
        if expired {
            // §13.3.1.4: no ACK in 64·T1 → BYE and the dialog ends.
            tracing::info!(call = h.0, "2xx never acknowledged; sending BYE");
            c.state = CallState::Confirmed;
            if !c.conn_closed {
                self.send_bye(now, h);
                // The BYE's outcome finds the call gone (handles are never
                // reused), so it ends nothing twice.
            }
            self.end_call(now, h, EndReason::AckTimeout);
        }
    }

    /// Removes the call and reports it, exactly once. An INVITE transaction
    /// of the call still waiting for a final answer gets 487 so that it can
    /// finish (and is not leaked).
    pub(super) fn end_call(&mut self, now: Instant, h: CallHandle, reason: EndReason) {
        let Some(c) = self.calls.remove(&h) else {
            return;
        };
        self.admission.release(h.0);
        self.dialogs
            .remove(&(c.dialog.call_id.clone(), c.dialog.local_tag.clone()));
        let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
        if c.state == CallState::Early && c.uac.is_none() {
            pending.push((
                c.invite_tx.clone(),
                self.call_response(&c, StatusCode::REQUEST_TERMINATED.as_u16(), None),
            ));
        }
        if let Some(re) = &c.reinvite
            && !re.answered
        {
            let b = Self::dialog_response(
                &self.cfg,
                &c.dialog,
                c.transport,
                &re.request,
                re.src,
                StatusCode::REQUEST_TERMINATED.as_u16(),
                None,
            );
            pending.push((re.tx_key.clone(), b));
        }
        for (key, bytes) in pending {
            if let Some(tx) = self.server_txs.get_mut(&key)
                && let ServerKind::Invite(t) = &mut tx.kind
                && t.state() == InviteServerState::Proceeding
            {
                if c.conn_closed {
                    t.terminate();
                } else {
                    let mut out = Vec::new();
                    t.respond(
                        now,
                        StatusCode::REQUEST_TERMINATED.as_u16(),
                        bytes,
                        &mut out,
                    );
                    let (tr, d) = (tx.transport, tx.dest);
                    self.flush(tr, d, out);
                }
            }
        }
        self.reap_server_txs();
        // Client transactions still naming `h` find it gone when they finish
        // (handles are never reused): no scan over the table here.
        self.events
            .push_back(SipEvent::CallEnded { call: h, reason });
    }
}

//! Requests within a dialog: RFC 3261 §12.2.2 (matching a request to its
//! dialog, CSeq ordering: 481 / 500), §9.2 (CANCEL of an INVITE or
//! re-INVITE still proceeding: 200 then 487), §14 (re-INVITE: target
//! refresh, 491 glare while one is pending), §15 (BYE, sent and received;
//! BYE held until the ACK of our 2xx), OPTIONS in a dialog (§11) and RFC
//! 6086 INFO carrying DTMF (`application/dtmf-relay`, `application/dtmf`).

use std::net::SocketAddr;
use std::time::Instant;

use super::tx_table::{ClientKind, ClientTx, Purpose, ServerKind};
use super::uas::{CallState, OkRetransmit};
use super::{CallHandle, EndReason, Endpoint, SipEvent, Transport, random_token};
use crate::sip::dtmf_info::parse_info_dtmf;
use crate::sip::message::{ResponseSpec, build_response, parse_cseq};
use crate::sip::status::{self, DialogError, Reply, StatusCode};
use crate::sip::transaction::{InviteServer, InviteServerState, NonInviteClient};
use crate::sip::validate::Request;
use crate::sip::wire::Message;

/// A re-INVITE received in a confirmed dialog.
pub(super) struct PendingReInvite {
    pub(super) tx_key: String,
    pub(super) request: Message,
    pub(super) src: SocketAddr,
    pub(super) answered: bool,
}

impl Endpoint {
    /// Hangs up: 480 before the answer, BYE after (held until the ACK if the
    /// 2xx is not yet acknowledged, §15).
    pub fn hangup(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(u) = c.uac.as_mut()
            && c.state == CallState::Early
        {
            // §9.1: CANCEL only after a provisional; before one, it is sent
            // when the first provisional arrives.
            u.cancel_requested = true;
            if u.got_provisional && !u.cancel_sent {
                self.send_cancel(now, call);
            }
            return;
        }
        match c.state {
            CallState::Early => {
                self.reject(now, call, StatusCode::TEMPORARILY_UNAVAILABLE.as_u16())
            }
            CallState::WaitAck => c.hangup_after_ack = true,
            CallState::Confirmed => self.send_bye(now, call),
            CallState::Terminating => {}
        }
    }

    /// The application's answer to a [`SipEvent::ReInvite`]: `Ok(sdp)` sends
    /// 200 with it, `Err(status)` rejects the re-INVITE (e.g. 488).
    pub fn answer_reinvite(
        &mut self,
        now: Instant,
        call: CallHandle,
        answer: Result<Vec<u8>, u16>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(re) = c.reinvite.as_mut() else {
            return;
        };
        if re.answered {
            return;
        }
        re.answered = true;
        let (code, body) = match &answer {
            Ok(sdp) => (200, Some(sdp.as_slice())),
            Err(code) if status::is_error(*code) => (*code, None),
            Err(_) => (StatusCode::SERVER_INTERNAL_ERROR.as_u16(), None),
        };
        let key = re.tx_key.clone();
        let cseq = parse_cseq(re.request.header("CSeq").unwrap_or_default()).map_or(0, |c| c.0);
        let Some((transport, dest)) = self.server_txs.get(&key).map(|t| (t.transport, t.dest))
        else {
            return;
        };
        let bytes = Self::dialog_response(
            &self.cfg,
            &c.dialog,
            c.transport,
            &re.request,
            re.src,
            code,
            body,
        );
        if status::is_error(code) {
            c.reinvite = None;
        }
        if !self.respond_invite_tx(now, call, &key, code, bytes.clone()) {
            return;
        }
        if code == 200
            && let Some(c) = self.calls.get_mut(&call)
        {
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

    pub(super) fn handle_cancel(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: &Message,
        req: &Request,
    ) {
        let invite_key = req.cancelled_invite_key();
        let proceeding = match self.server_txs.get(&invite_key).map(|t| &t.kind) {
            Some(ServerKind::Invite(t)) => t.state() == InviteServerState::Proceeding,
            _ => {
                // §9.2: no matching transaction → 481.
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    m,
                    req,
                    StatusCode::CALL_DOES_NOT_EXIST.as_u16(),
                    Vec::new(),
                    None,
                );
                return;
            }
        };
        let call = self.tx_calls.get(&invite_key).copied();
        let tag = call
            .and_then(|h| self.calls.get(&h))
            .map(|c| c.dialog.local_tag.clone());
        self.respond_new_tx(now, transport, src, m, req, 200, Vec::new(), tag.as_deref());
        if !proceeding {
            return;
        }
        let Some(h) = call else { return };
        let Some(c) = self.calls.get(&h) else { return };
        if c.invite_tx == invite_key {
            // CANCEL of the initial INVITE: 487 to it, the call ends.
            let bytes = self.call_response(c, StatusCode::REQUEST_TERMINATED.as_u16(), None);
            self.respond_invite_tx(
                now,
                h,
                &invite_key,
                StatusCode::REQUEST_TERMINATED.as_u16(),
                bytes,
            );
            self.end_call(now, h, EndReason::Cancelled);
        } else if let Some(re) = &c.reinvite
            && re.tx_key == invite_key
        {
            // CANCEL of a re-INVITE: 487 to it, the call goes on.
            let bytes = Self::dialog_response(
                &self.cfg,
                &c.dialog,
                c.transport,
                &re.request,
                re.src,
                StatusCode::REQUEST_TERMINATED.as_u16(),
                None,
            );
            if let Some(c) = self.calls.get_mut(&h) {
                c.reinvite = None;
            }
            self.respond_invite_tx(
                now,
                h,
                &invite_key,
                StatusCode::REQUEST_TERMINATED.as_u16(),
                bytes,
            );
        }
    }

    pub(super) fn handle_in_dialog(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
        req: Request,
    ) {
        let local_tag = req.to_tag().unwrap_or_default().to_owned();
        // No dialog, or a dialog whose call is gone: 481 either way.
        let found = self.dialogs.get(&(req.call_id.clone(), local_tag.clone()));
        let Some((h, c)) = found.and_then(|&h| self.calls.get_mut(&h).map(|c| (h, c))) else {
            self.respond_new_tx(
                now,
                transport,
                src,
                &m,
                &req,
                StatusCode::CALL_DOES_NOT_EXIST.as_u16(),
                Vec::new(),
                None,
            );
            return;
        };
        if !c.dialog.accept_remote_cseq(req.cseq) {
            // §12.2.2: out of order.
            self.respond_new_tx(
                now,
                transport,
                src,
                &m,
                &req,
                StatusCode::SERVER_INTERNAL_ERROR.as_u16(),
                Vec::new(),
                Some(&local_tag),
            );
            return;
        }
        if let Transport::Tcp(_) = transport {
            // The peer reconnected: answer and send on its newest connection.
            c.transport = transport;
            c.remote = src;
            c.conn_closed = false;
        }
        let state = c.state;
        let busy = state != CallState::Confirmed || c.reinvite.is_some() || c.ok_retx.is_some();
        match req.method.as_str() {
            "BYE" => {
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    200,
                    Vec::new(),
                    Some(&local_tag),
                );
                let reason = if state == CallState::Terminating {
                    EndReason::LocalBye
                } else {
                    EndReason::RemoteBye
                };
                self.end_call(now, h, reason);
            }
            "INFO" => {
                if m.body.is_empty() {
                    self.respond_new_tx(
                        now,
                        transport,
                        src,
                        &m,
                        &req,
                        200,
                        Vec::new(),
                        Some(&local_tag),
                    );
                    return;
                }
                let ct = m.header("Content-Type").unwrap_or_default();
                match parse_info_dtmf(ct, &m.body) {
                    Ok(d) => {
                        self.respond_new_tx(
                            now,
                            transport,
                            src,
                            &m,
                            &req,
                            200,
                            Vec::new(),
                            Some(&local_tag),
                        );
                        self.events.push_back(SipEvent::Dtmf {
                            call: h,
                            digit: d.digit,
                            duration_ms: d.duration_ms,
                        });
                    }
                    Err(e) => {
                        // RFC 6086: 415 + Accept for a foreign type, 400 for
                        // an unreadable DTMF body (status::Reply::from).
                        let reply = Reply::from(e);
                        self.respond_new_tx(
                            now,
                            transport,
                            src,
                            &m,
                            &req,
                            reply.code.as_u16(),
                            reply.extra,
                            Some(&local_tag),
                        );
                    }
                }
            }
            "OPTIONS" => {
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    200,
                    Self::capabilities(),
                    Some(&local_tag),
                );
            }
            "INVITE" => {
                if busy {
                    // §14.2 glare / a second re-INVITE while one is pending.
                    let extra = Reply::from(DialogError::Pending).extra;
                    self.respond_new_tx(
                        now,
                        transport,
                        src,
                        &m,
                        &req,
                        StatusCode::REQUEST_PENDING.as_u16(),
                        extra,
                        Some(&local_tag),
                    );
                    return;
                }
                let Some(c) = self.calls.get_mut(&h) else {
                    return;
                };
                c.dialog.refresh_target(&m);
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
                let key = req.tx_key();
                let offer = (!m.body.is_empty()).then(|| m.body.clone());
                c.reinvite = Some(PendingReInvite {
                    tx_key: key.clone(),
                    request: m.clone(),
                    src,
                    answered: false,
                });
                let mut tx = InviteServer::new(transport.reliable(), self.timers);
                let mut out = Vec::new();
                tx.respond(now, 100, trying, &mut out);
                let dest = Self::response_dest(transport, &m, src);
                self.insert_server_tx(&req, ServerKind::Invite(tx), transport, dest);
                self.tx_calls.insert(key, h);
                self.flush(transport, dest, out);
                self.events.push_back(SipEvent::ReInvite { call: h, offer });
            }
            "NOTIFY" => self.handle_refer_notify(now, transport, src, &m, &req, h, &local_tag),
            _ => {
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    StatusCode::NOT_IMPLEMENTED.as_u16(),
                    Vec::new(),
                    Some(&local_tag),
                );
            }
        }
    }

    /// Sends BYE in a confirmed dialog; the call ends (LocalBye) when it is
    /// answered or times out.
    pub(super) fn send_bye(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        if c.conn_closed {
            self.end_call(now, h, EndReason::TransportError);
            return;
        }
        c.state = CallState::Terminating;
        c.ok_retx = None;
        let dest = match c.transport {
            Transport::Udp => c.dialog.request_dest(c.remote),
            Transport::Tcp(_) => c.remote,
        };
        let transport = c.transport;
        let branch = format!("z9hG4bK{}", random_token());
        let proto = if transport.reliable() { "TCP" } else { "UDP" };
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            self.cfg.local_addr
        );
        let bytes =
            c.dialog
                .build_request("BYE", &via, self.cfg.server_header.as_deref(), &[], None);
        let mut out = Vec::new();
        let tx = NonInviteClient::start(now, transport.reliable(), self.timers, bytes, &mut out);
        self.client_txs.insert(
            format!("{branch}\x1fBYE"),
            ClientTx {
                kind: ClientKind::NonInvite(tx),
                purpose: Purpose::Bye,
                transport,
                dest,
                call: Some(h),
            },
        );
        self.flush(transport, dest, out);
    }
}

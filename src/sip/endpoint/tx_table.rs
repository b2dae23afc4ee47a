//! The transaction table: RFC 3261 §17.2.3 (matching requests to server
//! transactions; retransmissions never reach the TU), §17.1.3 (matching
//! responses to client transactions), §8.2 (the UAS checks and the dispatch
//! of a new request to the right handler), §8.2.2.2 (merged requests, 482),
//! §18.2.2 and RFC 3581 (where responses go), and the effect of a closed
//! TCP connection on the transactions carried by it (§18.4).

use std::net::SocketAddr;
use std::time::Instant;

use super::uas::CallState;
use super::{CallHandle, ConnId, EndReason, Endpoint, Transmit, Transport, random_token};
use crate::sip::message::{ResponseSpec, Via, build_response, parse_cseq, udp_response_dest};
use crate::sip::registrar::RegisterId;
use crate::sip::status::{Overload, Reply, StatusCode};
use crate::sip::transaction::{
    InviteClient, InviteServer, InviteServerState, NonInviteClient, NonInviteServer, TxOutput,
};
use crate::sip::validate::{self, ALLOW, Request};
use crate::sip::wire::Message;

pub(super) enum ServerKind {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

pub(super) struct ServerTx {
    pub(super) kind: ServerKind,
    pub(super) transport: Transport,
    pub(super) dest: SocketAddr,
    pub(super) merge_key: Option<String>,
}

impl ServerTx {
    pub(super) fn is_terminated(&self) -> bool {
        match &self.kind {
            ServerKind::Invite(t) => t.is_terminated(),
            ServerKind::NonInvite(t) => t.is_terminated(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match &self.kind {
            ServerKind::Invite(t) => t.poll_timeout(),
            ServerKind::NonInvite(t) => t.poll_timeout(),
        }
    }
}

pub(super) enum ClientKind {
    NonInvite(NonInviteClient),
    Invite(InviteClient),
}

impl ClientKind {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientKind::NonInvite(t) => t.poll_timeout(),
            ClientKind::Invite(t) => t.poll_timeout(),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxOutput>) {
        match self {
            ClientKind::NonInvite(t) => t.handle_timeout(now, out),
            ClientKind::Invite(t) => t.handle_timeout(now, out),
        }
    }

    pub(super) fn is_terminated(&self) -> bool {
        match self {
            ClientKind::NonInvite(t) => t.is_terminated(),
            ClientKind::Invite(t) => t.is_terminated(),
        }
    }

    pub(super) fn terminate(&mut self) {
        match self {
            ClientKind::NonInvite(t) => t.terminate(),
            ClientKind::Invite(t) => t.terminate(),
        }
    }
}

/// What a client transaction is for (how its outcome affects its call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Bye,
    Cancel,
    Invite,
    Refer,
}

pub(super) struct ClientTx {
    pub(super) kind: ClientKind,
    pub(super) purpose: Purpose,
    pub(super) transport: Transport,
    pub(super) dest: SocketAddr,
    /// The call waiting for this transaction's outcome, if any.
    pub(super) call: Option<CallHandle>,
}

impl Endpoint {
    pub(super) fn response_dest(transport: Transport, m: &Message, src: SocketAddr) -> SocketAddr {
        match transport {
            Transport::Udp => udp_response_dest(m, src),
            Transport::Tcp(_) => src,
        }
    }

    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
    ) {
        let is_ack = m.method() == Some("ACK");
        let dest = Self::response_dest(transport, &m, src);
        let req = match validate::check(&m) {
            Ok(r) => r,
            Err(rej) => {
                // Never answer an ACK; without a Via there is nowhere to answer.
                if !is_ack && m.header("Via").is_some() {
                    tracing::debug!(code = rej.code.as_u16(), %src, "rejecting malformed request");
                    let tag = random_token();
                    let bytes = build_response(
                        &m,
                        src,
                        self.cfg.server_header.as_deref(),
                        &ResponseSpec {
                            code: rej.code.as_u16(),
                            to_tag: Some(&tag),
                            extra: &rej.extra,
                            body: None,
                            record_route: false,
                        },
                    );
                    self.transmits.push_back(Transmit {
                        transport,
                        dest,
                        bytes,
                    });
                }
                return;
            }
        };
        if is_ack {
            self.handle_ack(now, transport, &m, &req);
            return;
        }
        let key = req.tx_key();
        // §17.2.3: a retransmission goes to its transaction, never the TU.
        if let Some(tx) = self.server_txs.get_mut(&key) {
            let mut out = Vec::new();
            match &mut tx.kind {
                ServerKind::Invite(t) => t.on_invite_retransmit(&mut out),
                ServerKind::NonInvite(t) => t.on_retransmit(&mut out),
            }
            let (t, d) = (tx.transport, tx.dest);
            self.flush(t, d, out);
            return;
        }
        // §8.2.2.2 merged requests: same From tag, Call-ID and CSeq as a
        // request still in progress, arriving on another branch.
        if req.to_tag().is_none()
            && let Some(other) = self.merge_index.get(&req.merge_key())
            && other != &key
            && self.server_txs.contains_key(other)
        {
            self.respond_new_tx(
                now,
                transport,
                src,
                &m,
                &req,
                StatusCode::LOOP_DETECTED.as_u16(),
                Vec::new(),
                None,
            );
            return;
        }
        if let Some(rej) = validate::semantic_with(&m, &req, self.cfg.registrar) {
            let code = rej.code.as_u16();
            self.respond_new_tx(now, transport, src, &m, &req, code, rej.extra, None);
            return;
        }
        match req.method.as_str() {
            "CANCEL" => self.handle_cancel(now, transport, src, &m, &req),
            // semantic_with let it through only when we are a registrar.
            "REGISTER" => self.handle_register(now, transport, src, m, req),
            _ if req.to_tag().is_some() => self.handle_in_dialog(now, transport, src, m, req),
            "INVITE" => self.handle_new_invite(now, transport, src, m, req),
            // While draining, OPTIONS pings get 503 so that a load balancer
            // (Kamailio dispatcher probing) stops sending new calls here.
            "OPTIONS" if !self.admission.accepting() => {
                let extra = Reply::from(Overload::Draining).extra;
                self.respond_new_tx(
                    now,
                    transport,
                    src,
                    &m,
                    &req,
                    StatusCode::SERVICE_UNAVAILABLE.as_u16(),
                    extra,
                    None,
                );
            }
            "OPTIONS" => {
                let extra = Self::capabilities();
                self.respond_new_tx(now, transport, src, &m, &req, 200, extra, None);
            }
            // BYE, INFO, NOTIFY outside any dialog (we never SUBSCRIBE, and
            // a REFER's NOTIFY comes in its dialog).
            _ => self.respond_new_tx(
                now,
                transport,
                src,
                &m,
                &req,
                StatusCode::CALL_DOES_NOT_EXIST.as_u16(),
                Vec::new(),
                None,
            ),
        }
    }

    pub(super) fn handle_response(&mut self, now: Instant, m: &Message) {
        // §17.1.3: match by top Via branch and CSeq method; anything else
        // (stray, malformed, RFC 4475 bigcode/scalarlg/bcast) is dropped.
        let Some(code) = m.status() else { return };
        let Some(via) = m.header("Via").and_then(Via::parse) else {
            return;
        };
        let Some(branch) = via.branch() else { return };
        let Some((_, method)) = m.header("CSeq").and_then(parse_cseq) else {
            return;
        };
        let key = format!("{branch}\x1f{method}");
        let Some(ctx) = self.client_txs.get_mut(&key) else {
            tracing::debug!(code, "dropping a response that matches no transaction");
            return;
        };
        let mut out = Vec::new();
        match &mut ctx.kind {
            ClientKind::NonInvite(t) => t.on_response(now, code, &mut out),
            ClientKind::Invite(t) => {
                t.on_response(now, code, m.header("To").unwrap_or_default(), &mut out)
            }
        }
        let (purpose, transport, dest) = (ctx.purpose, ctx.transport, ctx.dest);
        let call = match purpose {
            // an INVITE's call keeps listening (2xx retransmissions)
            Purpose::Invite => ctx.call,
            _ => None,
        };
        let mut bye_done = None;
        let mut refer_done = None;
        let mut finals = Vec::new();
        for o in out {
            match o {
                TxOutput::Send(bytes) => self.transmits.push_back(Transmit {
                    transport,
                    dest,
                    bytes,
                }),
                TxOutput::Provisional(c) => finals.push((false, c)),
                TxOutput::Final(c) => {
                    if purpose == Purpose::Bye {
                        bye_done = ctx.call.take();
                    }
                    if purpose == Purpose::Refer {
                        refer_done = ctx.call.take().map(|h| (h, c));
                    }
                    finals.push((true, c));
                }
                TxOutput::TimedOut => {}
            }
        }
        if ctx.kind.is_terminated() {
            self.client_txs.remove(&key);
        }
        if let Some(h) = bye_done {
            self.end_call(now, h, EndReason::LocalBye);
        }
        if let Some((h, code)) = refer_done {
            self.refer_done(h, code);
        }
        if let Some(h) = call {
            for (is_final, c) in finals {
                if is_final {
                    self.uac_final(now, h, c, m);
                } else {
                    self.uac_provisional(now, h, c, m);
                }
            }
        }
    }

    /// Creates a server transaction for `req` and sends its final response.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_new_tx(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: &Message,
        req: &Request,
        code: u16,
        extra: Vec<(&'static str, String)>,
        to_tag: Option<&str>,
    ) {
        let tag = to_tag.map_or_else(random_token, str::to_owned);
        let bytes = build_response(
            m,
            src,
            self.cfg.server_header.as_deref(),
            &ResponseSpec {
                code,
                to_tag: Some(&tag),
                extra: &extra,
                body: None,
                record_route: false,
            },
        );
        let reliable = transport.reliable();
        let mut out = Vec::new();
        let kind = if req.method == "INVITE" {
            let mut t = InviteServer::new(reliable, self.timers);
            t.respond(now, code, bytes, &mut out);
            ServerKind::Invite(t)
        } else {
            let mut t = NonInviteServer::new(reliable, self.timers);
            t.respond(now, code, bytes, &mut out);
            ServerKind::NonInvite(t)
        };
        let dest = Self::response_dest(transport, m, src);
        self.insert_server_tx(req, kind, transport, dest);
        self.flush(transport, dest, out);
    }

    pub(super) fn insert_server_tx(
        &mut self,
        req: &Request,
        kind: ServerKind,
        transport: Transport,
        dest: SocketAddr,
    ) {
        let key = req.tx_key();
        let merge_key = req.to_tag().is_none().then(|| req.merge_key());
        if let Some(mk) = &merge_key {
            self.merge_index.insert(mk.clone(), key.clone());
        }
        self.server_txs.insert(
            key,
            ServerTx {
                kind,
                transport,
                dest,
                merge_key,
            },
        );
    }

    pub(super) fn flush(&mut self, transport: Transport, dest: SocketAddr, out: Vec<TxOutput>) {
        for o in out {
            if let TxOutput::Send(bytes) = o {
                self.transmits.push_back(Transmit {
                    transport,
                    dest,
                    bytes,
                });
            }
        }
    }

    /// Drops the finished server transactions among those touched since
    /// the last timer sync (a transaction only finishes when touched).
    pub(super) fn reap_server_txs(&mut self) {
        let dead: Vec<String> = self
            .server_txs
            .touched()
            .iter()
            .filter(|k| self.server_txs.get(*k).is_some_and(ServerTx::is_terminated))
            .cloned()
            .collect();
        for k in dead {
            if let Some(tx) = self.server_txs.remove(&k)
                && let Some(mk) = tx.merge_key
                && self.merge_index.get(&mk) == Some(&k)
            {
                self.merge_index.remove(&mk);
            }
            self.tx_calls.remove(&k);
        }
    }

    /// [`Endpoint::reap_server_txs`] for client transactions.
    pub(super) fn reap_client_txs(&mut self) {
        let dead: Vec<String> = self
            .client_txs
            .touched()
            .iter()
            .filter(|k| {
                self.client_txs
                    .get(*k)
                    .is_some_and(|c| c.kind.is_terminated())
            })
            .cloned()
            .collect();
        for k in dead {
            self.client_txs.remove(&k);
        }
    }

    pub(super) fn capabilities() -> Vec<(&'static str, String)> {
        vec![
            ("Allow", ALLOW.to_owned()),
            ("Accept", validate::ACCEPT.to_owned()),
            ("Supported", validate::SUPPORTED.to_owned()),
        ]
    }

    /// A TCP connection closed: its transactions are dropped; calls on it
    /// end with `TransportError` when they next need to send.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let t = Transport::Tcp(conn);
        self.server_txs.for_each_mut(|_, tx| {
            if tx.transport != t {
                return false;
            }
            match &mut tx.kind {
                ServerKind::Invite(x) => {
                    // An INVITE still Proceeding belongs to a live call whose
                    // next send reports the error; others just end.
                    if x.state() != InviteServerState::Proceeding {
                        x.terminate();
                    }
                }
                ServerKind::NonInvite(x) => x.terminate(),
            }
            true
        });
        self.reap_server_txs();
        let mut bye_waiters = Vec::new();
        let mut invite_waiters = Vec::new();
        let mut refer_waiters = Vec::new();
        self.client_txs.for_each_mut(|_, ctx| {
            if ctx.transport != t {
                return false;
            }
            ctx.kind.terminate();
            match ctx.purpose {
                Purpose::Bye => bye_waiters.extend(ctx.call.take()),
                Purpose::Invite => invite_waiters.extend(ctx.call.take()),
                Purpose::Refer => refer_waiters.extend(ctx.call.take()),
                Purpose::Cancel => {}
            }
            true
        });
        // §8.1.3.1: a transport failure counts as 503.
        for h in refer_waiters {
            self.refer_done(h, StatusCode::SERVICE_UNAVAILABLE.as_u16());
        }
        // REGISTERs held on this connection can no longer be answered.
        let gone: Vec<RegisterId> = self
            .registers
            .iter()
            .filter(|(_, r)| !self.server_txs.contains_key(&r.tx_key))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.registers.remove(&id);
        }
        self.reap_client_txs();
        self.calls.for_each_mut(|_, c| {
            if c.transport == t {
                c.conn_closed = true;
            }
            false
        });
        if let Some(now) = self.last_now {
            for h in bye_waiters {
                self.end_call(now, h, EndReason::LocalBye);
            }
            // An outbound call still ringing has lost its only path; an
            // answered one ends when it next needs to send, like the rest.
            for h in invite_waiters {
                if self
                    .calls
                    .get(&h)
                    .is_some_and(|c| c.state == CallState::Early)
                {
                    self.end_call(now, h, EndReason::TransportError);
                }
            }
        }
        self.sync_timers();
    }
}

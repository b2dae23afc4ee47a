//! The UAC side, for outbound calls (agent legs): RFC 3261 §8.1.1 (building
//! the INVITE, Max-Forwards §8.1.1.6, application headers checked so they
//! cannot inject a header), §17.1.1 (the INVITE client transaction, Timers
//! A/B/D/M), §9.1 (CANCEL only after a provisional), §12.1.2 (the dialog
//! from the 2xx: remote tag and target, route set = Record-Route reversed)
//! and §13.2.2.4 (the ACK for a 2xx, resent for each 2xx retransmission).
//! A pre-loaded Route set (§8.1.2; RFC 3327 §5.3: the Path an agent
//! registered through) is written as Route headers on the INVITE, its
//! CANCEL (§9.1) and the ACK of a non-2xx (§17.1.1.3); the runtime sends the
//! INVITE to the first route.

use std::net::SocketAddr;
use std::time::Instant;

use super::tx_table::{ClientKind, ClientTx, Purpose};
use super::uas::{CallState, InviteSession};
use super::{CallHandle, EndReason, Endpoint, SipEvent, Transmit, Transport, random_token};
use crate::sip::dialog::Dialog;
use crate::sip::message::NameAddr;
use crate::sip::status::{self, StatusCode};
use crate::sip::transaction::invite_client::AckTemplate;
use crate::sip::transaction::{InviteClient, NonInviteClient};
use crate::sip::transfer::{self, SipError};
use crate::sip::validate::{self, ALLOW};
use crate::sip::wire::{self, Message, Parsed};

/// An outbound call's INVITE client side (RFC 3261 §13.2, §9.1).
pub(super) struct UacState {
    pub(super) dest: SocketAddr,
    pub(super) invite_cseq: u32,
    /// Our CANCEL, ready to go (same branch/CSeq as the INVITE).
    pub(super) cancel: Vec<u8>,
    pub(super) got_provisional: bool,
    pub(super) cancel_requested: bool,
    pub(super) cancel_sent: bool,
    /// The ACK for the 2xx, resent for each 2xx retransmission.
    pub(super) ack: Option<Vec<u8>>,
}

/// A call to place (agent transfer). No DNS here: `dest` is where the
/// runtime resolved the target to; `transport` is UDP or a TCP connection
/// the runtime opened to it. `Default` gives a placeholder (dest
/// 127.0.0.1:5060, UDP, Max-Forwards 70) to fill with `..Default::default()`.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// Request-URI, e.g. `sip:agent01@10.0.0.5:5060`.
    pub request_uri: String,
    pub dest: SocketAddr,
    pub transport: Transport,
    /// Our user part in From, e.g. `12333`.
    pub from_user: String,
    /// The SDP offer (None: the 2xx carries the offer; answer in ACK is
    /// not supported for outbound calls, so pass an offer).
    pub sdp: Option<Vec<u8>>,
    /// Extra headers written verbatim after the standard ones. Names must
    /// be tokens and not ones the endpoint writes (Via, From, To, Call-ID,
    /// CSeq, Max-Forwards, Contact, Content-*, Route); values must not
    /// contain CR, LF or NUL. Otherwise the call is refused
    /// ([`Endpoint::try_invite`] returns the [`SipError`]).
    pub headers: Vec<(String, String)>,
    /// Max-Forwards of the INVITE (RFC 3261 §8.1.1.6; a B2BUA passes the
    /// caller's value minus one).
    pub max_forwards: u8,
    /// Pre-loaded Route set (RFC 3261 §8.1.2), each a name-addr such as
    /// `<sip:10.0.0.2;lr>`, written as Route headers in this order: the
    /// Path stored with an agent's binding (RFC 3327). `dest` should then
    /// be the first route's address. Each must parse as a bracketed
    /// `sip:`/`sips:` name-addr without CR/LF/NUL, else
    /// [`SipError::InvalidHeaderValue`].
    pub route_set: Vec<String>,
}

impl Default for OutboundCall {
    fn default() -> Self {
        OutboundCall {
            request_uri: "sip:agent@127.0.0.1:5060".to_owned(),
            dest: SocketAddr::from(([127, 0, 0, 1], 5060)),
            transport: Transport::Udp,
            from_user: "12333".to_owned(),
            sdp: None,
            headers: Vec::new(),
            max_forwards: 70,
            route_set: Vec::new(),
        }
    }
}

impl Endpoint {
    /// Places an outbound call (e.g. to an agent). Events follow:
    /// `Progress`, then `Answered` (the ACK is sent by the endpoint) or
    /// `CallEnded(Rejected(status))` (408 when nobody answered within
    /// 64·T1). `hangup` before the answer sends CANCEL.
    ///
    /// Parameters that fail the checks of [`Endpoint::try_invite`] (header
    /// injection, bad URI) end the call at once with
    /// `CallEnded(Rejected(400))`; nothing is sent.
    pub fn invite(&mut self, now: Instant, out: OutboundCall) -> CallHandle {
        match self.try_invite(now, out) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "outbound INVITE refused");
                let handle = CallHandle(self.next_handle);
                self.next_handle = self.next_handle.wrapping_add(1);
                self.events.push_back(SipEvent::CallEnded {
                    call: handle,
                    reason: EndReason::Rejected(StatusCode::BAD_REQUEST.as_u16()),
                });
                handle
            }
        }
    }

    /// [`Endpoint::invite`] that reports invalid parameters as an error
    /// instead of an ended call: extra header names must be tokens and not
    /// written by the endpoint, values without CR/LF/NUL, `request_uri` a
    /// URI without spaces or brackets, `from_user` free of `@<>;:` and
    /// whitespace.
    pub fn try_invite(&mut self, now: Instant, out: OutboundCall) -> Result<CallHandle, SipError> {
        transfer::check_extra_headers(&out.headers)?;
        transfer::check_uri(&out.request_uri)?;
        for r in &out.route_set {
            let ok = !r.contains(['\r', '\n', '\0'])
                && NameAddr::parse(r).is_some_and(|n| {
                    n.bracketed
                        && matches!(
                            crate::sip::message::uri_scheme(&n.uri).as_deref(),
                            Some("sip" | "sips")
                        )
                });
            if !ok {
                return Err(SipError::InvalidHeaderValue("Route".to_owned()));
            }
        }
        if out.from_user.is_empty()
            || !out
                .from_user
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"@<>;:?\"".contains(&b))
        {
            return Err(SipError::InvalidUri);
        }
        let handle = CallHandle(self.next_handle);
        self.next_handle = self.next_handle.wrapping_add(1);
        let local_tag = random_token();
        let call_id = format!("{}@ivr12333", random_token());
        let branch = format!("z9hG4bK{}", random_token());
        let proto = if out.transport.reliable() {
            "TCP"
        } else {
            "UDP"
        };
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            self.cfg.local_addr
        );
        let host = self.cfg.local_addr;
        let from = format!("<sip:{}@{host}>;tag={local_tag}", out.from_user);
        let to = format!("<{}>", out.request_uri);
        let cseq = 1u32;
        let contact = match out.transport {
            Transport::Udp => format!("<sip:{}@{host}>", out.from_user),
            Transport::Tcp(_) => format!("<sip:{}@{host};transport=tcp>", out.from_user),
        };
        let ua = self
            .cfg
            .server_header
            .as_deref()
            .map(|s| format!("User-Agent: {s}\r\n"))
            .unwrap_or_default();
        let routes: String = out
            .route_set
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        let mut head = format!(
            "INVITE {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: {}\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {contact}\r\nAllow: {ALLOW}\r\n{ua}",
            out.request_uri, out.max_forwards
        );
        // Checked above: token names, single-line values.
        for (name, value) in &out.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = out.sdp.clone().unwrap_or_default();
        if out.sdp.is_some() {
            head.push_str("Content-Type: application/sdp\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        let cancel = format!(
            "CANCEL {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} CANCEL\r\n{ua}Content-Length: 0\r\n\r\n",
            out.request_uri
        )
        .into_bytes();
        let ack = AckTemplate {
            request_uri: out.request_uri.clone(),
            via,
            from: from.clone(),
            call_id: call_id.clone(),
            cseq,
            routes: out.route_set.clone(),
        };
        let parsed = match wire::parse(&bytes, &self.cfg.limits) {
            Ok(Parsed::Message(m)) => Some(m),
            _ => None,
        };
        let request = parsed.and_then(|m| validate::check(&m).ok().map(|r| (m, r)));
        let Some((invite_msg, _)) = request else {
            // The checks above should make this unreachable; a header value
            // our own parser refuses (e.g. a duplicate single-valued header
            // under a name we do not reserve) still ends up here.
            tracing::warn!("outbound INVITE could not be built from its parameters");
            return Err(SipError::InvalidHeaderName);
        };
        let dialog = Dialog {
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: String::new(),
            remote_party: to,
            local_party: from,
            remote_target: out.request_uri.clone(),
            // Until the 2xx replaces it with its Record-Route (§12.1.2).
            route_set: out.route_set.clone(),
            remote_cseq: 0,
            local_cseq: cseq,
        };
        let mut txo = Vec::new();
        let tx = InviteClient::start(
            now,
            out.transport.reliable(),
            self.timers,
            bytes,
            ack,
            &mut txo,
        );
        let key = format!("{branch}\x1fINVITE");
        self.client_txs.insert(
            key.clone(),
            ClientTx {
                kind: ClientKind::Invite(tx),
                purpose: Purpose::Invite,
                transport: out.transport,
                dest: out.dest,
                call: Some(handle),
            },
        );
        self.flush(out.transport, out.dest, txo);
        self.dialogs.insert((call_id, local_tag), handle);
        self.calls.insert(
            handle,
            InviteSession {
                state: CallState::Early,
                dialog,
                transport: out.transport,
                remote: out.dest,
                conn_closed: false,
                invite_tx: key,
                invite: invite_msg,
                invite_src: out.dest,
                ok_retx: None,
                reinvite: None,
                hangup_after_ack: false,
                uac: Some(UacState {
                    dest: out.dest,
                    invite_cseq: cseq,
                    cancel,
                    got_provisional: false,
                    cancel_requested: false,
                    cancel_sent: false,
                    ack: None,
                }),
                refer_pending: false,
                refer_subscribed: false,
            },
        );
        Ok(handle)
    }

    pub(super) fn send_cancel(&mut self, now: Instant, h: CallHandle) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(u) = c.uac.as_mut() else { return };
        if u.cancel_sent {
            return;
        }
        if c.conn_closed {
            self.end_call(now, h, EndReason::TransportError);
            return;
        }
        u.cancel_sent = true;
        let bytes = u.cancel.clone();
        let (transport, dest) = (c.transport, u.dest);
        let key = c.invite_tx.replace("\x1fINVITE", "\x1fCANCEL");
        let mut out = Vec::new();
        let tx = NonInviteClient::start(now, transport.reliable(), self.timers, bytes, &mut out);
        self.client_txs.insert(
            key,
            ClientTx {
                kind: ClientKind::NonInvite(tx),
                purpose: Purpose::Cancel,
                transport,
                dest,
                call: None,
            },
        );
        self.flush(transport, dest, out);
    }

    pub(super) fn uac_provisional(&mut self, now: Instant, h: CallHandle, code: u16, m: &Message) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(u) = c.uac.as_mut() else { return };
        if c.state != CallState::Early {
            return;
        }
        u.got_provisional = true;
        let cancel_now = u.cancel_requested && !u.cancel_sent;
        if code > 100 && !cancel_now {
            let sdp = (!m.body.is_empty()).then(|| m.body.clone());
            self.events.push_back(SipEvent::Progress {
                call: h,
                status: code,
                sdp,
            });
        }
        if cancel_now {
            self.send_cancel(now, h);
        }
    }

    pub(super) fn uac_final(&mut self, now: Instant, h: CallHandle, code: u16, m: &Message) {
        if !status::is_success(code) {
            self.uac_failed(now, h, code);
            return;
        }
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        let Some(u) = c.uac.as_mut() else { return };
        if let Some(ack) = &u.ack {
            // 2xx retransmission: the ACK again (§13.2.2.4).
            let t = Transmit {
                transport: c.transport,
                dest: c.dialog.request_dest(u.dest),
                bytes: ack.clone(),
            };
            self.transmits.push_back(t);
            return;
        }
        // §12.1.2: the dialog from the 2xx. Route set = Record-Route reversed.
        let to = m.header("To").unwrap_or_default().to_owned();
        let remote_tag = NameAddr::parse(&to)
            .and_then(|n| n.tag().map(str::to_owned))
            .unwrap_or_default();
        c.dialog.remote_tag = remote_tag;
        c.dialog.remote_party = to;
        if let Some(contact) = m.header("Contact").and_then(NameAddr::parse) {
            c.dialog.remote_target = contact.uri;
        }
        let mut routes: Vec<String> = m.header_all("Record-Route").map(str::to_owned).collect();
        routes.reverse();
        c.dialog.route_set = routes;
        let proto = if c.transport.reliable() { "TCP" } else { "UDP" };
        let via = format!(
            "SIP/2.0/{proto} {};branch=z9hG4bK{};rport",
            self.cfg.local_addr,
            random_token()
        );
        let cseq = u.invite_cseq;
        let ack = c.dialog.build_request_with_cseq(
            "ACK",
            cseq,
            &via,
            self.cfg.server_header.as_deref(),
            &[],
            None,
        );
        u.ack = Some(ack.clone());
        let hang = u.cancel_requested;
        let dest = c.dialog.request_dest(u.dest);
        c.state = CallState::Confirmed;
        if c.conn_closed {
            self.end_call(now, h, EndReason::TransportError);
            return;
        }
        self.transmits.push_back(Transmit {
            transport: c.transport,
            dest,
            bytes: ack,
        });
        let sdp = (!m.body.is_empty()).then(|| m.body.clone());
        if hang {
            // We hung up while it rang and it answered anyway: BYE at once.
            self.send_bye(now, h);
        } else {
            self.events.push_back(SipEvent::Answered { call: h, sdp });
        }
    }

    pub(super) fn uac_failed(&mut self, now: Instant, h: CallHandle, code: u16) {
        let Some(c) = self.calls.get(&h) else { return };
        let Some(u) = c.uac.as_ref() else { return };
        if c.state != CallState::Early {
            return;
        }
        let reason = if u.cancel_requested {
            EndReason::Cancelled
        } else {
            EndReason::Rejected(code)
        };
        self.end_call(now, h, reason);
    }
}

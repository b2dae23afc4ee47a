//! REGISTER for agent phones, RFC 3261 §10.3: each REGISTER is held in its
//! non-INVITE server transaction (§17.2.2: retransmissions absorbed, nothing
//! sent) until the application answers with [`Endpoint::respond_register`]
//! (200 with Contact/Expires, 401 with WWW-Authenticate, RFC 3261 §22.4, or
//! 403), or 500 after [`REGISTER_TIMEOUT`]. Parsing of Contact/Expires is in
//! [`crate::sip::registrar`]; the bindings and the digest check belong to
//! the application. RFC 3327: the REGISTER's Path goes to the application
//! with the binding and is echoed in the 200 when the UA supports it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::tx_table::ServerKind;
use super::{Endpoint, SipEvent, Transport, random_token};
use crate::sip::message::{ResponseSpec, build_response, uri_user};
use crate::sip::registrar::{RegisterId, RegisterReply, parse_register};
use crate::sip::status::{Overload, Reply, StatusCode};
use crate::sip::transaction::NonInviteServer;
use crate::sip::validate::Request;
use crate::sip::wire::Message;

/// A REGISTER held in its server transaction until the application answers
/// (or [`REGISTER_TIMEOUT`] passes).
pub(super) struct PendingRegister {
    pub(super) tx_key: String,
    pub(super) request: Message,
    pub(super) src: SocketAddr,
    pub(super) deadline: Instant,
    /// Path values to echo in a 200 that makes a binding (RFC 3327 §5.3:
    /// only when the UA listed `path` in Supported; empty otherwise).
    pub(super) echo_path: Vec<String>,
}

/// How long a REGISTER waits for [`Endpoint::respond_register`] before 500.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// REGISTERs waiting for the application at once; more get 503 (a flood
/// must not grow memory without bound).
pub(super) const MAX_PENDING_REGISTERS: usize = 1024;

impl Endpoint {
    /// Answers a [`SipEvent::Register`]: 200 (Contact with `;expires=` and
    /// Expires), 401 (one WWW-Authenticate per challenge) or 403. Unknown
    /// or already answered (timed out) ids are ignored. A contact or
    /// challenge with CR/LF is never written: 500 is sent instead.
    pub fn respond_register(&mut self, now: Instant, reg: RegisterId, reply: RegisterReply) {
        if !self.registers.contains_key(&reg) {
            return;
        }
        let one_line = |v: &str| !v.contains(['\r', '\n', '\0']);
        let (code, extra): (u16, Vec<(&'static str, String)>) = match reply {
            RegisterReply::Ok { contact, expires } => {
                let mut extra = Vec::new();
                match contact {
                    Some(c) if !one_line(&c) => {
                        self.send_register_response(
                            now,
                            reg,
                            StatusCode::SERVER_INTERNAL_ERROR.as_u16(),
                            Vec::new(),
                        );
                        return;
                    }
                    Some(c) => {
                        let c = if c.trim_start().starts_with('<') || c == "*" {
                            c
                        } else {
                            format!("<{c}>")
                        };
                        if c != "*" {
                            extra.push(("Contact", format!("{c};expires={expires}")));
                            if let Some(r) = self.registers.get(&reg) {
                                extra.extend(r.echo_path.iter().map(|p| ("Path", p.clone())));
                            }
                        }
                    }
                    None => {}
                }
                extra.push(("Expires", expires.to_string()));
                (200, extra)
            }
            RegisterReply::Challenge {
                www_authenticate,
                stale,
            } => {
                if www_authenticate.is_empty() || !www_authenticate.iter().all(|v| one_line(v)) {
                    self.send_register_response(
                        now,
                        reg,
                        StatusCode::SERVER_INTERNAL_ERROR.as_u16(),
                        Vec::new(),
                    );
                    return;
                }
                let extra = www_authenticate
                    .into_iter()
                    .map(|v| {
                        if stale && !v.to_ascii_lowercase().contains("stale=") {
                            ("WWW-Authenticate", format!("{v}, stale=true"))
                        } else {
                            ("WWW-Authenticate", v)
                        }
                    })
                    .collect();
                (StatusCode::UNAUTHORIZED.as_u16(), extra)
            }
            RegisterReply::Forbidden => (StatusCode::FORBIDDEN.as_u16(), Vec::new()),
        };
        self.send_register_response(now, reg, code, extra);
    }

    /// §10.3: a REGISTER goes to the application, held in its (silent)
    /// server transaction; retransmissions are absorbed until the answer.
    pub(super) fn handle_register(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: Message,
        req: Request,
    ) {
        if self.registers.len() >= MAX_PENDING_REGISTERS {
            let extra = Reply::from(Overload::RegistersWaiting).extra;
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
            return;
        }
        let Ok(fields) = parse_register(&m) else {
            self.respond_new_tx(
                now,
                transport,
                src,
                &m,
                &req,
                StatusCode::BAD_REQUEST.as_u16(),
                Vec::new(),
                None,
            );
            return;
        };
        let reg = RegisterId(self.next_register);
        self.next_register = self.next_register.wrapping_add(1);
        let dest = Self::response_dest(transport, &m, src);
        let tx = NonInviteServer::new(transport.reliable(), self.timers);
        self.insert_server_tx(&req, ServerKind::NonInvite(tx), transport, dest);
        let user = uri_user(&req.to.uri).unwrap_or_default().to_owned();
        let authorization = m.header("Authorization").map(str::to_owned);
        let echo_path = if fields.path_supported {
            fields.path.clone()
        } else {
            Vec::new()
        };
        self.registers.insert(
            reg,
            PendingRegister {
                tx_key: req.tx_key(),
                request: m,
                src,
                deadline: now + REGISTER_TIMEOUT,
                echo_path,
            },
        );
        self.events.push_back(SipEvent::Register {
            reg,
            user,
            contact: fields.contact,
            expires: fields.expires,
            authorization,
            method_uri: req.uri,
            path: fields.path,
            src,
            transport,
        });
    }

    /// Sends the final response of a held REGISTER; its transaction then
    /// runs Timer J.
    pub(super) fn send_register_response(
        &mut self,
        now: Instant,
        reg: RegisterId,
        code: u16,
        extra: Vec<(&'static str, String)>,
    ) {
        let Some(r) = self.registers.remove(&reg) else {
            return;
        };
        let tag = random_token();
        let bytes = build_response(
            &r.request,
            r.src,
            self.cfg.server_header.as_deref(),
            &ResponseSpec {
                code,
                to_tag: Some(&tag),
                extra: &extra,
                body: None,
                record_route: false,
            },
        );
        let Some(tx) = self.server_txs.get_mut(&r.tx_key) else {
            return;
        };
        let ServerKind::NonInvite(t) = &mut tx.kind else {
            return;
        };
        let mut out = Vec::new();
        t.respond(now, code, bytes, &mut out);
        let (tr, d) = (tx.transport, tx.dest);
        self.flush(tr, d, out);
    }
}

//! Call transfer, client side: RFC 3515 §2.4.1 (REFER in a confirmed
//! dialog, `Refer-To`, RFC 3892 `Referred-By`), §2.4.4 (the implicit
//! subscription: NOTIFYs accepted from sending the REFER, even before the
//! 202, until `Subscription-State: terminated`, RFC 6665 §4.1.3) and §2.4.5
//! (`message/sipfrag` bodies, RFC 3420). The parsing and the header checks
//! live in [`crate::sip::transfer`]; this file holds the dialog side.

use std::net::SocketAddr;
use std::time::Instant;

use super::tx_table::{ClientKind, ClientTx, Purpose};
use super::uas::CallState;
use super::{CallHandle, Endpoint, SipEvent, Transport, random_token};
use crate::sip::message::NameAddr;
use crate::sip::status::{self, NotifyError, Reply};
use crate::sip::transaction::NonInviteClient;
use crate::sip::transfer::{self, SipError};
use crate::sip::validate::Request;
use crate::sip::wire::Message;

impl Endpoint {
    /// Sends REFER (RFC 3515) in the call's confirmed dialog: `Refer-To:
    /// <refer_to>` (a bare URI, e.g. `sip:agent01@10.0.0.5`), `Referred-By`
    /// our address of record. Outcome: [`SipEvent::ReferAccepted`] or
    /// [`SipEvent::ReferFailed`], then [`SipEvent::ReferNotify`]s. The call
    /// stays up: after a successful transfer the application hangs up.
    pub fn refer(
        &mut self,
        now: Instant,
        call: CallHandle,
        refer_to: &str,
    ) -> Result<(), SipError> {
        let refer_to = transfer::refer_to_value(refer_to)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(SipError::UnknownCall);
        };
        if c.state != CallState::Confirmed {
            return Err(SipError::NotConfirmed);
        }
        if c.refer_pending {
            return Err(SipError::ReferPending);
        }
        if c.conn_closed {
            return Err(SipError::TransportClosed);
        }
        let dest = match c.transport {
            Transport::Udp => c.dialog.request_dest(c.remote),
            Transport::Tcp(_) => c.remote,
        };
        let transport = c.transport;
        let host = self.cfg.local_addr;
        let our_uri = NameAddr::parse(&c.dialog.local_party)
            .map_or_else(|| format!("sip:ivr@{host}"), |n| n.uri);
        let contact = match transport {
            Transport::Udp => format!("<sip:ivr@{host}>"),
            Transport::Tcp(_) => format!("<sip:ivr@{host};transport=tcp>"),
        };
        let branch = format!("z9hG4bK{}", random_token());
        let proto = if transport.reliable() { "TCP" } else { "UDP" };
        let via = format!("SIP/2.0/{proto} {host};branch={branch};rport");
        let extra = [
            ("Refer-To", refer_to),
            ("Referred-By", format!("<{our_uri}>")),
            ("Contact", contact),
        ];
        let bytes = c.dialog.build_request(
            "REFER",
            &via,
            self.cfg.server_header.as_deref(),
            &extra,
            None,
        );
        c.refer_pending = true;
        c.refer_subscribed = true;
        let mut out = Vec::new();
        let tx = NonInviteClient::start(now, transport.reliable(), self.timers, bytes, &mut out);
        self.client_txs.insert(
            format!("{branch}\x1fREFER"),
            ClientTx {
                kind: ClientKind::NonInvite(tx),
                purpose: Purpose::Refer,
                transport,
                dest,
                call: Some(call),
            },
        );
        self.flush(transport, dest, out);
        Ok(())
    }

    /// RFC 3515 §2.4.4: a NOTIFY of our REFER's implicit subscription.
    /// 481 without one (never referred, or already terminated), 489 for
    /// another event package, 400 without a body, 415 for a body that is
    /// not `message/sipfrag`, 400 for a missing Subscription-State or a
    /// body without a SIP status line; else 200 and a ReferNotify.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_refer_notify(
        &mut self,
        now: Instant,
        transport: Transport,
        src: SocketAddr,
        m: &Message,
        req: &Request,
        h: CallHandle,
        local_tag: &str,
    ) {
        let subscribed = self.calls.get(&h).is_some_and(|c| c.refer_subscribed);
        let verdict = if !subscribed {
            Err(NotifyError::NotSubscribed)
        } else if !m.header("Event").is_some_and(transfer::is_refer_event) {
            Err(NotifyError::BadEvent)
        } else if m.body.is_empty() {
            // §2.4.5: every NOTIFY of a REFER carries a sipfrag.
            Err(NotifyError::Malformed)
        } else if m
            .header("Content-Type")
            .map(transfer::media_type)
            .as_deref()
            != Some("message/sipfrag")
        {
            Err(NotifyError::BodyType)
        } else {
            match (
                m.header("Subscription-State"),
                transfer::sipfrag_status(&m.body),
            ) {
                (Some(state), Some(status)) => {
                    Ok((status, transfer::subscription_terminated(state)))
                }
                _ => Err(NotifyError::Malformed),
            }
        };
        let (code, extra) = match &verdict {
            Ok(_) => (200, Vec::new()),
            Err(e) => {
                let r = Reply::from(*e);
                (r.code.as_u16(), r.extra)
            }
        };
        self.respond_new_tx(now, transport, src, m, req, code, extra, Some(local_tag));
        if let Ok((status, terminated)) = verdict {
            if terminated && let Some(c) = self.calls.get_mut(&h) {
                c.refer_subscribed = false;
            }
            self.events.push_back(SipEvent::ReferNotify {
                call: h,
                status,
                terminated,
            });
        }
    }

    /// The final outcome of our REFER's transaction.
    pub(super) fn refer_done(&mut self, h: CallHandle, code: u16) {
        let Some(c) = self.calls.get_mut(&h) else {
            return;
        };
        c.refer_pending = false;
        if status::is_success(code) {
            self.events.push_back(SipEvent::ReferAccepted { call: h });
        } else {
            c.refer_subscribed = false;
            self.events.push_back(SipEvent::ReferFailed {
                call: h,
                status: code,
            });
        }
    }
}

//! Dialog state, RFC 3261 §12 (UAS side, §12.1.1 and §12.2).
//!
//! Created from the INVITE we answer: Call-ID, our tag (To) and theirs
//! (From), the route set from Record-Route (kept in order for a UAS), the
//! remote target from Contact, the remote CSeq (§12.2.2: a lower or equal
//! one on a new request is answered 500) and our own CSeq for the requests
//! we send (§12.2.1.1). Routing decisions stay sans-IO: a destination is only
//! derived from IP-literal URIs, else the address the INVITE came from.

use std::net::SocketAddr;

use super::message::{NameAddr, uri_has_param, uri_socket_addr};
use super::validate::Request;
use super::wire::Message;

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Their From header value (our To in requests we send).
    pub remote_party: String,
    /// Their To header value plus our tag (our From in requests we send).
    pub local_party: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub remote_cseq: u32,
    pub local_cseq: u32,
}

impl Dialog {
    /// The UAS dialog for an INVITE we are answering.
    pub fn new_uas(invite: &Message, req: &Request, local_tag: String) -> Dialog {
        let remote_target = invite
            .header("Contact")
            .and_then(NameAddr::parse)
            .map(|c| c.uri)
            .unwrap_or_else(|| req.from.uri.clone());
        let to = invite.header("To").unwrap_or_default();
        Dialog {
            call_id: req.call_id.clone(),
            remote_tag: req.from_tag().to_owned(),
            remote_party: invite.header("From").unwrap_or_default().to_owned(),
            local_party: format!("{to};tag={local_tag}"),
            local_tag,
            remote_target,
            route_set: invite
                .header_all("Record-Route")
                .map(str::to_owned)
                .collect(),
            remote_cseq: req.cseq,
            local_cseq: 0,
        }
    }

    /// §12.2.2: a new in-dialog request must carry a higher CSeq. Updates
    /// the remembered value when it does.
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        if cseq <= self.remote_cseq {
            return false;
        }
        self.remote_cseq = cseq;
        true
    }

    /// §12.2.1.2 target refresh: a re-INVITE's Contact replaces the target.
    pub fn refresh_target(&mut self, m: &Message) {
        if let Some(c) = m.header("Contact").and_then(NameAddr::parse) {
            self.remote_target = c.uri;
        }
    }

    /// Where requests in this dialog go: the first (loose) route or the
    /// remote target when it is an IP literal, else `fallback` (the source
    /// of the dialog-creating request).
    pub fn request_dest(&self, fallback: SocketAddr) -> SocketAddr {
        let first_route = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|n| n.uri);
        match first_route {
            Some(r) => uri_socket_addr(&r).unwrap_or(fallback),
            None => uri_socket_addr(&self.remote_target).unwrap_or(fallback),
        }
    }

    /// Builds an in-dialog request (§12.2.1.1) with the next local CSeq.
    /// Only loose routing is produced; a strict first route (no `;lr`) is
    /// still sent as a Route header (strict routers are long obsolete).
    pub fn build_request(
        &mut self,
        method: &str,
        via: &str,
        user_agent: Option<&str>,
        extra: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        self.local_cseq = self.local_cseq.saturating_add(1);
        let cseq = self.local_cseq;
        self.build_request_with_cseq(method, cseq, via, user_agent, extra, body)
    }

    /// Builds an in-dialog request with a given CSeq (the ACK for a 2xx
    /// carries the INVITE's, §13.2.2.4).
    pub fn build_request_with_cseq(
        &self,
        method: &str,
        cseq: u32,
        via: &str,
        user_agent: Option<&str>,
        extra: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let mut s = format!(
            "{method} {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n",
            self.remote_target
        );
        for r in &self.route_set {
            s.push_str("Route: ");
            s.push_str(r);
            s.push_str("\r\n");
        }
        s.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n",
            self.local_party, self.remote_party, self.call_id, cseq
        ));
        if let Some(ua) = user_agent {
            s.push_str(&format!("User-Agent: {ua}\r\n"));
        }
        for (n, v) in extra {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        let mut bytes = s.into_bytes();
        match body {
            Some((ct, b)) => {
                bytes.extend_from_slice(
                    format!("Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
                );
                bytes.extend_from_slice(b);
            }
            None => bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        bytes
    }

    /// True when the first route is a loose router (`;lr`).
    pub fn loose_routing(&self) -> bool {
        self.route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .is_none_or(|n| uri_has_param(&n.uri, "lr"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::validate::check;
    use crate::sip::wire::{Parsed, WireLimits, parse};

    #[test]
    fn uas_dialog_and_bye() {
        let raw = "INVITE sip:12333@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nRecord-Route: <sip:10.0.0.9;lr>\r\nFrom: <sip:caller@127.0.0.1>;tag=abc\r\nTo: <sip:12333@127.0.0.1>\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\nContact: <sip:caller@127.0.0.1:5070>\r\n\r\n";
        let Ok(Parsed::Message(m)) = parse(raw.as_bytes(), &WireLimits::default()) else {
            panic!()
        };
        let req = check(&m).unwrap();
        let mut d = Dialog::new_uas(&m, &req, "loc".into());
        assert!(!d.accept_remote_cseq(7));
        assert!(d.accept_remote_cseq(8));
        assert!(d.loose_routing());
        let fallback: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(d.request_dest(fallback), "10.0.0.9:5060".parse().unwrap());
        let bye = String::from_utf8(d.build_request(
            "BYE",
            "SIP/2.0/UDP me;branch=z9hG4bKx",
            Some("ua"),
            &[],
            None,
        ))
        .unwrap();
        assert!(bye.starts_with("BYE sip:caller@127.0.0.1:5070 SIP/2.0\r\n"));
        assert!(bye.contains("Route: <sip:10.0.0.9;lr>\r\n"));
        assert!(bye.contains("From: <sip:12333@127.0.0.1>;tag=loc\r\n"));
        assert!(bye.contains("To: <sip:caller@127.0.0.1>;tag=abc\r\n"));
        assert!(bye.contains("CSeq: 1 BYE\r\n"));
    }
}

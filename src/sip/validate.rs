//! Request validation, RFC 3261 §8.2 (UAS behaviour) and the RFC 4475
//! torture cases.
//!
//! Two stages. [`check`] is syntax (§8.2 preamble, §7, §20): anything it
//! rejects gets a stateless 400 (or 505 for another SIP version) because
//! transaction matching itself cannot be trusted. [`semantic`] runs on a
//! well-formed request after transaction matching: method (405/501, §8.2.1),
//! Request-URI scheme (416, §8.2.2.1), extensions (420, §8.2.2.3) and
//! content (415/406, §8.2.3).

use super::message::{NameAddr, Via, parse_cseq, uri_scheme};
use super::status::{Invalid, Reply};
use super::transaction::BRANCH_COOKIE;
use super::wire::{Message, StartLine};

/// Methods this UA implements (NOTIFY: only those of a REFER we sent, RFC
/// 3515; REGISTER is added to 405 answers' Allow only when the endpoint is
/// configured as a registrar, see [`ALLOW_WITH_REGISTER`]).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY";
/// [`ALLOW`] of an endpoint configured as a registrar for agent phones.
pub const ALLOW_WITH_REGISTER: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REGISTER";
/// Body types accepted in INVITE/re-INVITE (the media layer negotiates SDP).
pub const ACCEPT: &str = "application/sdp";
/// Option tags we support (we send no reliable provisionals, no timers).
pub const SUPPORTED: &str = "";
/// Methods we know but do not serve: 405 with Allow (the hotline reveals
/// nothing else).
pub const NOT_ALLOWED: &[&str] = &[
    "REGISTER",
    "MESSAGE",
    "SUBSCRIBE",
    "PUBLISH",
    "REFER",
    "UPDATE",
    "PRACK",
];
const SERVED: &[&str] = &[
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "NOTIFY",
];

/// A syntactically valid request: the pieces the endpoint works with.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub via: Via,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: u32,
}

impl Request {
    pub fn from_tag(&self) -> &str {
        self.from.tag().unwrap_or("")
    }

    pub fn to_tag(&self) -> Option<&str> {
        self.to.tag().filter(|t| !t.is_empty())
    }

    /// §17.2.3 server transaction key; ACK matches the INVITE's key. A branch
    /// without the cookie falls back to RFC 2543-style matching.
    pub fn tx_key(&self) -> String {
        let method = if self.method == "ACK" {
            "INVITE"
        } else {
            self.method.as_str()
        };
        self.key_for(method)
    }

    /// The key of the INVITE a CANCEL refers to (§9.2: same branch).
    pub fn cancelled_invite_key(&self) -> String {
        self.key_for("INVITE")
    }

    fn key_for(&self, method: &str) -> String {
        match self.via.branch() {
            // Call-ID and CSeq number are added to the §17.2.3 rule: a
            // sender that reuses branches (RFC 4475 does, on purpose) must
            // not get another request's response. CANCEL and ACK share both
            // with their INVITE, so matching is unchanged for them.
            Some(b) if b.starts_with(BRANCH_COOKIE) && b.len() > BRANCH_COOKIE.len() => format!(
                "{b}\x1f{}\x1f{}\x1f{}\x1f{method}",
                self.via.sent_by(),
                self.call_id,
                self.cseq
            ),
            _ => format!(
                "2543\x1f{}\x1f{}\x1f{}\x1f{}\x1f{method}",
                self.call_id,
                self.from_tag(),
                self.cseq,
                self.via.sent_by()
            ),
        }
    }

    /// §8.2.2.2 merged-request key: From tag, Call-ID, CSeq.
    pub fn merge_key(&self) -> String {
        format!(
            "{}\x1f{}\x1f{}\x1f{}",
            self.from_tag(),
            self.call_id,
            self.cseq,
            self.method
        )
    }
}

/// A reply the validator wants sent, with its extra headers: the
/// [`Invalid`] reason mapped by [`super::status`].
pub type Reject = Reply;

fn reject(why: Invalid) -> Reject {
    Reply::from(&why)
}

const SINGLE: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
    "Content-Length",
];

/// Syntax checks: Err is a 400 or 505 to send statelessly.
pub fn check(m: &Message) -> Result<Request, Reject> {
    let StartLine::Request {
        method,
        uri,
        version,
    } = &m.start
    else {
        return Err(reject(Invalid::Malformed));
    };
    if version.is_empty() || uri.is_empty() {
        return Err(reject(Invalid::Malformed));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let looks_sip = version.len() > 4
            && version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
        return Err(reject(if looks_sip {
            Invalid::Version
        } else {
            Invalid::Malformed
        }));
    }
    if m.defect.is_some() {
        return Err(reject(Invalid::Malformed));
    }
    for name in SINGLE {
        if m.header_count(name) > 1 {
            return Err(reject(Invalid::Malformed));
        }
    }
    let bad = || reject(Invalid::Malformed);
    let mut vias = m.header_all("Via");
    let via = Via::parse(vias.next().ok_or_else(bad)?).ok_or_else(bad)?;
    for v in vias {
        Via::parse(v).ok_or_else(bad)?;
    }
    if via.branch() == Some(BRANCH_COOKIE) || via.branch() == Some("") {
        // RFC 4475 badbranch: the cookie and nothing after it.
        return Err(bad());
    }
    let from = NameAddr::parse(m.header("From").ok_or_else(bad)?).ok_or_else(bad)?;
    let to = NameAddr::parse(m.header("To").ok_or_else(bad)?).ok_or_else(bad)?;
    let call_id = m.header("Call-ID").ok_or_else(bad)?.trim();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (cseq, cseq_method) = parse_cseq(m.header("CSeq").ok_or_else(bad)?).ok_or_else(bad)?;
    if cseq_method != *method {
        return Err(bad());
    }
    if let Some(mf) = m.header("Max-Forwards") {
        let ok = !mf.is_empty()
            && mf.len() <= 10
            && mf.bytes().all(|b| b.is_ascii_digit())
            && mf.parse::<u32>().is_ok_and(|v| v <= 255);
        if !ok {
            return Err(bad());
        }
    }
    for c in m.header_all("Contact") {
        if c != "*" {
            NameAddr::parse(c).ok_or_else(bad)?;
        }
    }
    for r in m.header_all("Record-Route").chain(m.header_all("Route")) {
        let na = NameAddr::parse(r).ok_or_else(bad)?;
        if !na.bracketed {
            return Err(bad());
        }
    }
    // Request-URI: an absolute URI, not a name-addr (ltgtruri), no escaped
    // headers (escruri: never turned into real headers, so refused).
    // `?` is legal inside the user part (RFC 4475 intmeth), so only the part
    // after the last `@` is checked for it.
    let host_part = uri.rsplit_once('@').map_or(uri.as_str(), |(_, h)| h);
    if uri.contains(['<', '>', '"']) || host_part.contains('?') || uri_scheme(uri).is_none() {
        return Err(bad());
    }
    Ok(Request {
        method: method.clone(),
        uri: uri.clone(),
        via,
        from,
        to,
        call_id: call_id.to_owned(),
        cseq,
    })
}

/// Semantic checks in §8.2 order; `None` means go on and process it.
pub fn semantic(m: &Message, req: &Request) -> Option<Reject> {
    semantic_with(m, req, false)
}

/// [`semantic`] for an endpoint that also serves REGISTER when `registrar`.
pub fn semantic_with(m: &Message, req: &Request, registrar: bool) -> Option<Reject> {
    let method = req.method.as_str();
    let served = SERVED.contains(&method) || (registrar && method == "REGISTER");
    if !served {
        if NOT_ALLOWED.contains(&method) {
            let allow = if registrar {
                ALLOW_WITH_REGISTER
            } else {
                ALLOW
            };
            return Some(reject(Invalid::MethodNotAllowed { allow }));
        }
        return Some(reject(Invalid::UnknownMethod));
    }
    let scheme = uri_scheme(&req.uri).unwrap_or_default();
    if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
        return Some(reject(Invalid::UriScheme));
    }
    if method != "ACK" && method != "CANCEL" {
        // §8.2.2.3: every Require tag we do not support (we support none);
        // Proxy-Require is for proxies and ignored here.
        let unsupported: Vec<String> = m
            .header_all("Require")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if !unsupported.is_empty() {
            return Some(reject(Invalid::Unsupported(unsupported)));
        }
    }
    if method == "INVITE" {
        if !m.body.is_empty() {
            let ct = m.header("Content-Type").map(super::transfer::media_type);
            if ct.as_deref() != Some("application/sdp") {
                return Some(reject(Invalid::BodyType { accept: ACCEPT }));
            }
        }
        let enc_ok = m.header_all("Content-Encoding").all(|e| {
            e.split(',')
                .all(|t| t.trim().is_empty() || t.trim().eq_ignore_ascii_case("identity"))
        });
        if !enc_ok {
            return Some(reject(Invalid::Encoding { accept: ACCEPT }));
        }
        // Our 2xx carries SDP: the caller must accept it (RFC 4475 sdp01).
        let accepts: Vec<String> = m
            .header_all("Accept")
            .flat_map(|v| v.split(','))
            .map(super::transfer::media_type)
            .filter(|t| !t.is_empty())
            .collect();
        if !accepts.is_empty()
            && !accepts
                .iter()
                .any(|t| t == "application/sdp" || t == "application/*" || t == "*/*")
        {
            return Some(reject(Invalid::NotAcceptable));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::wire::{Parsed, WireLimits, parse};

    fn msg(s: &str) -> Message {
        match parse(s.as_bytes(), &WireLimits::default()) {
            Ok(Parsed::Message(m)) => m,
            _ => panic!("unparseable"),
        }
    }

    const BASE: &str = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nMax-Forwards: 70\r\n";

    #[test]
    fn version_and_mismatch() {
        let m = msg(&format!(
            "OPTIONS sip:c@d SIP/3.0\r\n{BASE}CSeq: 1 OPTIONS\r\n\r\n"
        ));
        assert_eq!(check(&m).unwrap_err().code, 505);
        let m = msg(&format!(
            "OPTIONS sip:c@d SIP/2.0\r\n{BASE}CSeq: 1 INVITE\r\n\r\n"
        ));
        assert_eq!(check(&m).unwrap_err().code, 400);
        let m = msg(&format!(
            "OPTIONS sip:c@d SIP/2.0\r\n{BASE}CSeq: 1 OPTIONS\r\n\r\n"
        ));
        let r = check(&m).unwrap();
        assert!(semantic(&m, &r).is_none());
    }

    #[test]
    fn semantic_codes() {
        let m = msg(&format!(
            "OPTIONS mailto:c@d SIP/2.0\r\n{BASE}CSeq: 1 OPTIONS\r\n\r\n"
        ));
        let r = check(&m).unwrap();
        assert_eq!(semantic(&m, &r).unwrap().code, 416);
        let m = msg(&format!(
            "OPTIONS sip:c@d SIP/2.0\r\n{BASE}CSeq: 1 OPTIONS\r\nRequire: foo, bar\r\n\r\n"
        ));
        let r = check(&m).unwrap();
        let rej = semantic(&m, &r).unwrap();
        assert_eq!(rej.code, 420);
        assert_eq!(rej.extra, vec![("Unsupported", "foo, bar".to_owned())]);
        let m = msg(&format!("FOO sip:c@d SIP/2.0\r\n{BASE}CSeq: 1 FOO\r\n\r\n"));
        assert_eq!(semantic(&m, &check(&m).unwrap()).unwrap().code, 501);
        let m = msg(&format!(
            "REGISTER sip:c@d SIP/2.0\r\n{BASE}CSeq: 1 REGISTER\r\n\r\n"
        ));
        assert_eq!(semantic(&m, &check(&m).unwrap()).unwrap().code, 405);
        let m = msg(&format!(
            "INVITE sip:c@d SIP/2.0\r\n{BASE}CSeq: 1 INVITE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        ));
        assert_eq!(semantic(&m, &check(&m).unwrap()).unwrap().code, 415);
    }
}

//! Call transfer pieces: RFC 3515 REFER (client side) and the NOTIFYs of
//! its implicit subscription (RFC 3515 §2.4.4–§2.4.5, RFC 6665 §4.1.3
//! Subscription-State, RFC 3420 `message/sipfrag` bodies), plus the checks
//! on application-supplied header lines (outbound INVITE extra headers,
//! Refer-To) so that nothing the application passes can inject a header or
//! break framing (RFC 3261 §7.3.1: a header value is one logical line; §25.1
//! `token` for names).
//!
//! Everything here is pure parsing: the endpoint decides what to answer.

use std::fmt;

/// Errors of the application-facing endpoint calls ([`refer`], outbound
/// INVITE building). Messages never include header values (they may carry
/// personal data), only header names that passed the token check.
///
/// [`refer`]: super::Endpoint::refer
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SipError {
    /// No such call (ended, or never existed).
    UnknownCall,
    /// The call is not in a confirmed dialog (REFER needs one, RFC 3515 §2.4.1).
    NotConfirmed,
    /// A REFER of this call is still waiting for its final response.
    ReferPending,
    /// The call's TCP connection is gone.
    TransportClosed,
    /// An extra header name that is not an RFC 3261 token.
    InvalidHeaderName,
    /// A header the endpoint writes itself (Via, From, Content-Length, ...):
    /// passing it again would corrupt the message.
    ReservedHeader(String),
    /// A header value with CR, LF or NUL (header injection).
    InvalidHeaderValue(String),
    /// A URI that is empty, has no scheme, or carries CR/LF/space/`<>`.
    InvalidUri,
}

impl fmt::Display for SipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipError::UnknownCall => write!(f, "no such call"),
            SipError::NotConfirmed => write!(f, "the call has no confirmed dialog"),
            SipError::ReferPending => write!(f, "a REFER is already in progress on this call"),
            SipError::TransportClosed => write!(f, "the call's connection is closed"),
            SipError::InvalidHeaderName => write!(f, "header name is not a SIP token"),
            SipError::ReservedHeader(n) => write!(f, "header {n} is written by the endpoint"),
            SipError::InvalidHeaderValue(n) => {
                write!(f, "value of header {n} contains CR, LF or NUL")
            }
            SipError::InvalidUri => write!(f, "invalid SIP URI"),
        }
    }
}

impl std::error::Error for SipError {}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(super::wire::is_token_char)
}

/// Headers the endpoint writes in an outbound INVITE (or that frame the
/// message): an application copy would duplicate or contradict them.
const RESERVED: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "max-forwards",
    "contact",
    "m",
    "content-length",
    "l",
    "content-type",
    "c",
    "route",
    "record-route",
];

/// Checks application-supplied extra headers (name is a token and not one
/// the endpoint writes; value has no CR, LF or NUL).
pub fn check_extra_headers(headers: &[(String, String)]) -> Result<(), SipError> {
    for (name, value) in headers {
        if !is_token(name) {
            return Err(SipError::InvalidHeaderName);
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(SipError::ReservedHeader(name.clone()));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(SipError::InvalidHeaderValue(name.clone()));
        }
    }
    Ok(())
}

/// A bare URI the endpoint may put between `<` and `>`: a scheme, no
/// whitespace, controls or angle brackets (which would end the name-addr).
pub fn check_uri(uri: &str) -> Result<(), SipError> {
    let scheme_ok = super::message::uri_scheme(uri).is_some();
    let chars_ok = uri
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"<>\"".contains(&b));
    if scheme_ok && chars_ok {
        Ok(())
    } else {
        Err(SipError::InvalidUri)
    }
}

/// The Refer-To value for `target`: a bare URI is bracketed (it may carry
/// `?Replaces=` style headers, which need the brackets, RFC 3515 §2.1).
pub fn refer_to_value(target: &str) -> Result<String, SipError> {
    check_uri(target)?;
    Ok(format!("<{target}>"))
}

/// Is this an `Event: refer` (with or without `;id=`) NOTIFY? RFC 6665
/// §8.2.1: the event package name is a token compared case-insensitively.
pub fn is_refer_event(event: &str) -> bool {
    event
        .split(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("refer"))
}

/// RFC 6665 §4.1.3: `Subscription-State: terminated;reason=...`.
pub fn subscription_terminated(state: &str) -> bool {
    state
        .split(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("terminated"))
}

/// The status code of a `message/sipfrag` body (RFC 3420; RFC 3515 §2.4.5
/// requires at least the status line): `SIP/2.0 200 OK`. None when the
/// first line is not a SIP status line with a 100–699 code.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let end = body
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(body.len());
    let line = std::str::from_utf8(body.get(..end)?).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    super::status::is_valid(code).then_some(code)
}

/// The lower-cased media type of a Content-Type value, without parameters.
pub fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let ok = vec![
            ("X-Caller-Id".to_owned(), "13800138000".to_owned()),
            ("P-Asserted-Identity".to_owned(), "<sip:1@h>".to_owned()),
        ];
        assert!(check_extra_headers(&ok).is_ok());
        let inj = vec![("X-A".to_owned(), "a\r\nVia: evil".to_owned())];
        let e = check_extra_headers(&inj).unwrap_err();
        assert_eq!(e, SipError::InvalidHeaderValue("X-A".into()));
        assert!(!e.to_string().contains("evil"));
        let bad_name = vec![("X A:".to_owned(), "v".to_owned())];
        assert_eq!(
            check_extra_headers(&bad_name),
            Err(SipError::InvalidHeaderName)
        );
        let reserved = vec![("content-length".to_owned(), "0".to_owned())];
        assert!(matches!(
            check_extra_headers(&reserved),
            Err(SipError::ReservedHeader(_))
        ));
        assert!(check_extra_headers(&[(String::new(), "v".into())]).is_err());
    }

    #[test]
    fn uris() {
        assert_eq!(
            refer_to_value("sip:agent01@10.0.0.5:5060").unwrap(),
            "<sip:agent01@10.0.0.5:5060>"
        );
        assert!(check_uri("tel:+8612333").is_ok());
        for bad in [
            "",
            "agent",
            "sip:",
            "sip:a b@h",
            "sip:a@h>x",
            "sip:a@h\r\nX: y",
        ] {
            assert_eq!(check_uri(bad), Err(SipError::InvalidUri), "{bad:?}");
        }
    }

    #[test]
    fn sipfrag_and_event() {
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying\r\n"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 603 Declined\r\nX: y\r\n"),
            Some(603)
        );
        for bad in [
            &b""[..],
            b"SIP/2.0 20 OK",
            b"SIP/2.0 2000 OK",
            b"HTTP/1.1 200 OK",
            b"SIP/2.0 099 x",
            b"\xff\xfe",
            b"INVITE sip:a@b SIP/2.0",
        ] {
            assert_eq!(sipfrag_status(bad), None, "{bad:?}");
        }
        assert!(is_refer_event("refer"));
        assert!(is_refer_event("Refer;id=93809824"));
        assert!(!is_refer_event("presence"));
        assert!(subscription_terminated("terminated;reason=noresource"));
        assert!(!subscription_terminated("active;expires=60"));
    }
}

//! SIP status codes (RFC 3261 §21) and the one place where every error the
//! service answers maps to its reply (the way rustls maps its errors to TLS
//! alerts): validation failures, SDP problems, dialog and transaction
//! mismatches, admission refusals, REFER/NOTIFY and REGISTER failures.
//!
//! Two rules live here and nowhere else:
//! - every 503 carries `Retry-After` (RFC 3261 §21.5.4, §20.33), so that a
//!   caller or balancer backs off instead of retrying at once;
//! - the reason phrase of every code we send.
//!
//! Nothing else in the SIP core, the call or the SIP driver writes a 3xx–6xx
//! number; `tests/sip_status_literals.rs` keeps it so.

use std::fmt;

use super::admission::Refusal;
use super::dtmf_info::InfoDtmfError;
use super::transfer::SipError;
use crate::media::sdp::SdpError;

/// A response status code, 100–699.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

macro_rules! codes {
    ($($name:ident = $code:literal, $reason:literal;)*) => {
        impl StatusCode {
            $(
                #[doc = $reason]
                pub const $name: StatusCode = StatusCode($code);
            )*

            /// The standard reason phrase ("Unknown" for a code we never send).
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $($code => $reason,)*
                    _ => "Unknown",
                }
            }
        }
    };
}

codes! {
    TRYING = 100, "Trying";
    RINGING = 180, "Ringing";
    SESSION_PROGRESS = 183, "Session Progress";
    OK = 200, "OK";
    ACCEPTED = 202, "Accepted";
    BAD_REQUEST = 400, "Bad Request";
    UNAUTHORIZED = 401, "Unauthorized";
    FORBIDDEN = 403, "Forbidden";
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    NOT_ACCEPTABLE = 406, "Not Acceptable";
    REQUEST_TIMEOUT = 408, "Request Timeout";
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    UNSUPPORTED_URI_SCHEME = 416, "Unsupported URI Scheme";
    BAD_EXTENSION = 420, "Bad Extension";
    TEMPORARILY_UNAVAILABLE = 480, "Temporarily Unavailable";
    CALL_DOES_NOT_EXIST = 481, "Call/Transaction Does Not Exist";
    LOOP_DETECTED = 482, "Loop Detected";
    TOO_MANY_HOPS = 483, "Too Many Hops";
    BUSY_HERE = 486, "Busy Here";
    REQUEST_TERMINATED = 487, "Request Terminated";
    NOT_ACCEPTABLE_HERE = 488, "Not Acceptable Here";
    BAD_EVENT = 489, "Bad Event";
    REQUEST_PENDING = 491, "Request Pending";
    SERVER_INTERNAL_ERROR = 500, "Server Internal Error";
    NOT_IMPLEMENTED = 501, "Not Implemented";
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    VERSION_NOT_SUPPORTED = 505, "Version Not Supported";
    BUSY_EVERYWHERE = 600, "Busy Everywhere";
    DECLINE = 603, "Decline";
}

impl StatusCode {
    /// A code from the wire or the application; None outside 100–699.
    pub const fn new(code: u16) -> Option<StatusCode> {
        if is_valid(code) {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    /// A final non-2xx for rejecting a request: `code` when it is 3xx–6xx,
    /// else 500 (the application asked for something that is no rejection).
    pub const fn rejection(code: u16) -> StatusCode {
        if is_error(code) && is_valid(code) {
            StatusCode(code)
        } else {
            StatusCode::SERVER_INTERNAL_ERROR
        }
    }

    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub const fn is_provisional(self) -> bool {
        is_provisional(self.0)
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        is_success(self.0)
    }

    /// 3xx–6xx.
    pub const fn is_error(self) -> bool {
        is_error(self.0)
    }
}

/// A code of 100–699.
pub const fn is_valid(code: u16) -> bool {
    code >= 100 && code <= 699
}

/// 1xx (for codes read off the wire, which the transactions keep as `u16`).
pub const fn is_provisional(code: u16) -> bool {
    code < 200
}

/// 2xx.
pub const fn is_success(code: u16) -> bool {
    code >= 200 && code < 300
}

/// 3xx–6xx: a final answer that is not a success.
pub const fn is_error(code: u16) -> bool {
    code >= 300
}

impl From<StatusCode> for u16 {
    fn from(s: StatusCode) -> u16 {
        s.0
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// `Retry-After` seconds on a 503 that names no better value (overload of
/// a shared resource: RTP ports, REGISTER slots).
pub const DEFAULT_RETRY_AFTER_SECS: u32 = 5;
/// `Retry-After` while draining for shutdown.
pub const DRAINING_RETRY_AFTER_SECS: u32 = 60;
/// `Retry-After` of a 491 to a re-INVITE in glare (§14.1 lets the UAC pick
/// its own delay; this is a hint).
pub const GLARE_RETRY_AFTER_SECS: u32 = 1;

/// A response to send: status plus the extra headers it needs. Build it
/// with [`Reply::new`] (or `From` one of the error types) so that the
/// rules of this module apply.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: StatusCode,
    pub extra: Vec<(&'static str, String)>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("code", &self.code)
            .field("extra", &self.extra)
            .finish()
    }
}

impl Reply {
    /// A reply with no extra headers, except `Retry-After:`
    /// [`DEFAULT_RETRY_AFTER_SECS`] on a 503.
    pub fn new(code: StatusCode) -> Reply {
        let mut r = Reply {
            code,
            extra: Vec::new(),
        };
        if code == StatusCode::SERVICE_UNAVAILABLE {
            r.extra
                .push(("Retry-After", DEFAULT_RETRY_AFTER_SECS.to_string()));
        }
        r
    }

    /// A 503 with this `Retry-After`.
    pub fn unavailable(retry_after_secs: u32) -> Reply {
        Reply {
            code: StatusCode::SERVICE_UNAVAILABLE,
            extra: vec![("Retry-After", retry_after_secs.to_string())],
        }
    }

    /// Adds (or, for `Retry-After`, replaces) a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        if name == "Retry-After" {
            self.extra.retain(|(n, _)| *n != "Retry-After");
        }
        self.extra.push((name, value.into()));
        self
    }

    /// The headers to write; guarantees `Retry-After` on a 503 whatever
    /// was pushed into `extra` by hand.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = self.extra.clone();
        if self.code == StatusCode::SERVICE_UNAVAILABLE
            && !h.iter().any(|(n, _)| *n == "Retry-After")
        {
            h.push(("Retry-After", DEFAULT_RETRY_AFTER_SECS.to_string()));
        }
        h
    }
}

/// Headers the rules of this module add to a response with `extra`
/// already chosen: `Retry-After` on a 503 that has none.
pub fn required_headers(code: u16, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    if code == StatusCode::SERVICE_UNAVAILABLE.0
        && !extra
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("Retry-After"))
    {
        vec![("Retry-After", DEFAULT_RETRY_AFTER_SECS.to_string())]
    } else {
        Vec::new()
    }
}

impl From<StatusCode> for Reply {
    fn from(code: StatusCode) -> Reply {
        Reply::new(code)
    }
}

// ----- the error → reply table ---------------------------------------------

/// Why a request fails the RFC 3261 §8.2 checks of `validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Syntax (§7, §20, §8.2 preamble): 400, sent statelessly.
    Malformed,
    /// `SIP/x.y` other than 2.0: 505.
    Version,
    /// A method we know but do not serve: 405 with this `Allow`.
    MethodNotAllowed { allow: &'static str },
    /// An unknown method: 501.
    UnknownMethod,
    /// Request-URI scheme other than sip/sips/tel: 416.
    UriScheme,
    /// `Require` tags we do not support (all of them): 420 + Unsupported.
    Unsupported(Vec<String>),
    /// INVITE body that is not SDP: 415 + Accept.
    BodyType { accept: &'static str },
    /// Content-Encoding other than identity: 415 + Accept + Accept-Encoding.
    Encoding { accept: &'static str },
    /// The caller does not accept the SDP our 2xx carries: 406 + Warning.
    NotAcceptable,
}

impl From<&Invalid> for Reply {
    fn from(e: &Invalid) -> Reply {
        match e {
            Invalid::Malformed => Reply::new(StatusCode::BAD_REQUEST),
            Invalid::Version => Reply::new(StatusCode::VERSION_NOT_SUPPORTED),
            Invalid::MethodNotAllowed { allow } => {
                Reply::new(StatusCode::METHOD_NOT_ALLOWED).with("Allow", *allow)
            }
            Invalid::UnknownMethod => Reply::new(StatusCode::NOT_IMPLEMENTED),
            Invalid::UriScheme => Reply::new(StatusCode::UNSUPPORTED_URI_SCHEME),
            Invalid::Unsupported(tags) => {
                Reply::new(StatusCode::BAD_EXTENSION).with("Unsupported", tags.join(", "))
            }
            Invalid::BodyType { accept } => {
                Reply::new(StatusCode::UNSUPPORTED_MEDIA_TYPE).with("Accept", *accept)
            }
            Invalid::Encoding { accept } => Reply::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with("Accept", *accept)
                .with("Accept-Encoding", "identity"),
            Invalid::NotAcceptable => Reply::new(StatusCode::NOT_ACCEPTABLE)
                .with("Warning", "399 - \"only application/sdp bodies are sent\""),
        }
    }
}

/// Dialog and transaction mismatches (RFC 3261 §8.2.2.2, §9.2, §12.2.2,
/// §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogError {
    /// No dialog / transaction matches (BYE, INFO, NOTIFY, CANCEL): 481.
    NoMatch,
    /// Same From tag, Call-ID and CSeq as a request in progress: 482.
    Merged,
    /// In-dialog CSeq lower than the last one: 500.
    OutOfOrder,
    /// A re-INVITE while one is pending or before the ACK: 491.
    Pending,
    /// A method we do not serve inside a dialog: 501.
    UnknownMethod,
    /// The caller's Max-Forwards would reach 0 on our outbound leg: 483.
    TooManyHops,
}

impl From<DialogError> for Reply {
    fn from(e: DialogError) -> Reply {
        match e {
            DialogError::NoMatch => Reply::new(StatusCode::CALL_DOES_NOT_EXIST),
            DialogError::Merged => Reply::new(StatusCode::LOOP_DETECTED),
            DialogError::OutOfOrder => Reply::new(StatusCode::SERVER_INTERNAL_ERROR),
            DialogError::Pending => Reply::new(StatusCode::REQUEST_PENDING)
                .with("Retry-After", GLARE_RETRY_AFTER_SECS.to_string()),
            DialogError::UnknownMethod => Reply::new(StatusCode::NOT_IMPLEMENTED),
            DialogError::TooManyHops => Reply::new(StatusCode::TOO_MANY_HOPS),
        }
    }
}

/// Admission control (`admission.rs`): 403 outside the allowlist, 503 with
/// the refusal's `Retry-After` otherwise.
impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        match r {
            Refusal::NotAllowed => Reply::new(StatusCode::FORBIDDEN),
            Refusal::ShuttingDown => Reply::unavailable(DRAINING_RETRY_AFTER_SECS),
            other => match other.retry_after() {
                Some(secs) => Reply::unavailable(secs),
                None => Reply::new(StatusCode::SERVICE_UNAVAILABLE),
            },
        }
    }
}

/// Overload and shutdown answers that are not admission refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// OPTIONS while draining (a balancer's probe takes us out of rotation).
    Draining,
    /// Too many REGISTERs waiting for the application.
    RegistersWaiting,
    /// No RTP port free for a new call.
    NoMediaPort,
}

impl From<Overload> for Reply {
    fn from(o: Overload) -> Reply {
        match o {
            Overload::Draining => Reply::unavailable(DRAINING_RETRY_AFTER_SECS),
            Overload::RegistersWaiting | Overload::NoMediaPort => {
                Reply::unavailable(DEFAULT_RETRY_AFTER_SECS)
            }
        }
    }
}

/// The SDP offer of an INVITE or re-INVITE cannot be answered: 488 when it
/// is SDP we share nothing with, 400 when it is not SDP we can read.
impl From<&SdpError> for StatusCode {
    fn from(e: &SdpError) -> StatusCode {
        match e {
            SdpError::NoCommonCodec | SdpError::NoAudio => StatusCode::NOT_ACCEPTABLE_HERE,
            SdpError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<&SdpError> for Reply {
    fn from(e: &SdpError) -> Reply {
        Reply::new(StatusCode::from(e))
    }
}

/// An INFO body that is not DTMF we read (RFC 6086 §4.2).
impl From<InfoDtmfError> for Reply {
    fn from(e: InfoDtmfError) -> Reply {
        match e {
            InfoDtmfError::UnsupportedType => Reply::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with("Accept", "application/dtmf-relay, application/dtmf"),
            InfoDtmfError::Malformed => Reply::new(StatusCode::BAD_REQUEST),
        }
    }
}

/// Why a NOTIFY of our REFER's subscription is refused (RFC 3515 §2.4.4,
/// RFC 6665 §8.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyError {
    /// No REFER subscription alive in the dialog: 481.
    NotSubscribed,
    /// Another event package: 489 + Allow-Events.
    BadEvent,
    /// No body, no Subscription-State, or no SIP status line: 400.
    Malformed,
    /// A body that is not `message/sipfrag`: 415 + Accept.
    BodyType,
}

impl From<NotifyError> for Reply {
    fn from(e: NotifyError) -> Reply {
        match e {
            NotifyError::NotSubscribed => Reply::new(StatusCode::CALL_DOES_NOT_EXIST),
            NotifyError::BadEvent => {
                Reply::new(StatusCode::BAD_EVENT).with("Allow-Events", "refer")
            }
            NotifyError::Malformed => Reply::new(StatusCode::BAD_REQUEST),
            NotifyError::BodyType => {
                Reply::new(StatusCode::UNSUPPORTED_MEDIA_TYPE).with("Accept", "message/sipfrag")
            }
        }
    }
}

/// REGISTER failures of the endpoint itself (the application's own 401 and
/// 403 are `RegisterReply`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// Bad Expires/Contact, `*` without `Expires: 0`: 400.
    Malformed,
    /// The application did not answer in time: 500.
    NotAnswered,
    /// The application's reply would break framing (CR/LF): 500.
    UnsafeReply,
}

impl From<RegisterError> for Reply {
    fn from(e: RegisterError) -> Reply {
        match e {
            RegisterError::Malformed => Reply::new(StatusCode::BAD_REQUEST),
            RegisterError::NotAnswered | RegisterError::UnsafeReply => {
                Reply::new(StatusCode::SERVER_INTERNAL_ERROR)
            }
        }
    }
}

/// What a client-side failure (our REFER, our outbound INVITE) reports as
/// its status: a closed connection counts as 503 (§8.1.3.1), a request we
/// refused to build as 400, a transaction timeout (Timer B/F) as 408.
impl From<&SipError> for StatusCode {
    fn from(e: &SipError) -> StatusCode {
        match e {
            SipError::TransportClosed => StatusCode::SERVICE_UNAVAILABLE,
            SipError::UnknownCall => StatusCode::CALL_DOES_NOT_EXIST,
            SipError::NotConfirmed | SipError::ReferPending => StatusCode::REQUEST_PENDING,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_503_has_retry_after() {
        let replies: Vec<Reply> = vec![
            Reply::new(StatusCode::SERVICE_UNAVAILABLE),
            Reply::from(Refusal::AtCapacity),
            Reply::from(Refusal::TooFast),
            Reply::from(Refusal::ShuttingDown),
            Reply::from(Overload::Draining),
            Reply::from(Overload::RegistersWaiting),
            Reply::from(Overload::NoMediaPort),
            Reply {
                code: StatusCode::SERVICE_UNAVAILABLE,
                extra: Vec::new(),
            },
        ];
        for r in replies {
            assert_eq!(r.code, 503);
            let n = r
                .headers()
                .iter()
                .filter(|(n, _)| *n == "Retry-After")
                .count();
            assert_eq!(n, 1, "{r:?}");
        }
    }

    #[test]
    fn table() {
        assert_eq!(Reply::from(Refusal::NotAllowed).code, 403);
        assert_eq!(Reply::from(Refusal::ShuttingDown).headers()[0].1, "60");
        assert_eq!(Reply::from(DialogError::Pending).code, 491);
        assert_eq!(
            StatusCode::from(&SdpError::NoCommonCodec),
            StatusCode::NOT_ACCEPTABLE_HERE
        );
        assert_eq!(StatusCode::from(&SdpError::Malformed(String::new())), 400);
        assert_eq!(StatusCode::rejection(486), StatusCode::BUSY_HERE);
        assert_eq!(StatusCode::rejection(200), 500);
        assert_eq!(StatusCode::rejection(700), 500);
        assert_eq!(StatusCode::BUSY_HERE.reason(), "Busy Here");
        assert_eq!(format!("{:?}", StatusCode::DECLINE), "603 Decline");
        assert_eq!(StatusCode::new(99), None);
    }
}

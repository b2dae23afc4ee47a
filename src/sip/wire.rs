//! The wire front end: framing and normalising raw SIP bytes (RFC 3261 §7,
//! §7.3.1, §7.5, §18.3, §20; RFC 5626 §3.5.1 keep-alives).
//!
//! rsip 0.4 does not recognise compact header names, ignores
//! Content-Length, rejects folded lines and bare LF, and keeps `Via: a, b`
//! as one header (docs/interop.md#crates). Rather than patching bytes for it, this
//! module parses the message framing itself into a [`Message`]: a start line,
//! an ordered list of headers with canonical long names (one entry per
//! comma-separated Via/Route/Record-Route/Contact value) and a body framed by
//! Content-Length. [`Message::to_bytes`] prints the normalised form, which
//! rsip accepts (tested on the valid RFC 4475 messages; rsip still rejects a
//! `;` inside a URI user part, RFC 4475 `semiuri`).
//!
//! Everything here treats its input as hostile: sizes are capped by
//! [`WireLimits`], no indexing is unchecked, and defects that still leave a
//! request answerable are recorded in [`Message::defect`] so that the
//! validator can answer 400 instead of dropping it silently.

use std::fmt;

/// Size caps applied before any parsing work (RFC 3261 leaves them to the
/// implementation; these keep a hostile peer from making us buffer or scan
/// without bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Whole message (start line + headers + body), in bytes.
    pub max_message_bytes: usize,
    /// Number of header fields after splitting comma lists.
    pub max_headers: usize,
    /// Length of one physical header line, in bytes.
    pub max_line_len: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_message_bytes: 65_535,
            max_headers: 256,
            max_line_len: 8_192,
        }
    }
}

/// Why bytes could not be framed or parsed into a message at all. Carries no
/// part of the input (it may hold anything a caller sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message larger than the configured maximum")]
    TooLarge,
    #[error("header line longer than the configured maximum")]
    LineTooLong,
    #[error("more header fields than the configured maximum")]
    TooManyHeaders,
    #[error("stream message without a valid Content-Length")]
    BadContentLength,
    #[error("unparseable start line")]
    BadStartLine,
    #[error("message is not text where a start line is expected")]
    NotSip,
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: String,
        uri: String,
        version: String,
    },
    Response {
        version: String,
        code: u16,
        reason: String,
    },
}

/// One header field with its canonical name (long form, canonical case for
/// the names we know) and its value, trimmed and unfolded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A framed, normalised SIP message.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    /// A syntax defect found while framing (bad/duplicate Content-Length,
    /// header line without a colon, ...): a request carrying one gets a 400.
    pub defect: Option<&'static str>,
}

// Bodies and header values may hold personal data (DTMF in INFO bodies):
// the Debug form shows only the shape of the message.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("method", &self.method())
            .field("status", &self.status())
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .field("defect", &self.defect)
            .finish()
    }
}

/// What a datagram (or one framed stream message) turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Only CR/LF bytes: a keep-alive (RFC 5626 §3.5.1). Never answered on UDP.
    KeepAlive,
    Message(Message),
}

/// Compact forms (RFC 3261 §7.3.3 and the extension RFCs' registrations).
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Long names we print in their canonical spelling.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow",
    "Authorization",
    "Call-ID",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Event",
    "Expires",
    "From",
    "Max-Forwards",
    "Proxy-Require",
    "Record-Route",
    "Refer-To",
    "Require",
    "Retry-After",
    "Route",
    "Server",
    "Subject",
    "Supported",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
];

/// Headers whose comma-separated values are split into one field each
/// (RFC 3261 §7.3.1 allows either form; we need per-hop Vias and routes).
const SPLIT: &[&str] = &["Via", "Route", "Record-Route", "Contact"];

/// The canonical name for a header name as received (compact or any case).
pub fn canonical_name(raw: &str) -> String {
    let b = raw.as_bytes();
    if b.len() == 1 {
        let c = b[0].to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(k, _)| *k == c) {
            return (*long).to_owned();
        }
    }
    if let Some(k) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(raw)) {
        return (*k).to_owned();
    }
    raw.to_owned()
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Splits a header value on commas that are outside quoted strings and
/// outside `<...>` (RFC 3261 §7.3.1). Empty elements are kept so that the
/// validator can reject `Via: a,,b`.
pub fn split_commas(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut escaped = false;
    let mut in_angle = false;
    for ch in value.chars() {
        if in_quote {
            cur.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quote = false;
            }
            continue;
        }
        match ch {
            '"' => {
                in_quote = true;
                cur.push(ch);
            }
            '<' => {
                in_angle = true;
                cur.push(ch);
            }
            '>' => {
                in_angle = false;
                cur.push(ch);
            }
            ',' if !in_angle => {
                out.push(cur.trim().to_owned());
                cur.clear();
            }
            _ => cur.push(ch),
        }
    }
    out.push(cur.trim().to_owned());
    out
}

/// Parses one complete message (a UDP datagram, or one message cut by a
/// [`StreamFramer`]).
///
/// Leading CRLFs are skipped (RFC 3261 §7.5). Bare LF line ends are
/// accepted, folded lines unfolded, compact names expanded, lists split.
/// Content-Length frames the body: bytes after it are ignored (RFC 4475
/// `dblreq`), a value larger than the body, negative, non-numeric or given
/// twice is recorded as a [`Message::defect`].
pub fn parse(bytes: &[u8], limits: &WireLimits) -> Result<Parsed, FrameError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(FrameError::TooLarge);
    }
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let rest = bytes.get(start..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(Parsed::KeepAlive);
    }

    // Physical lines up to the empty line that ends the headers. A message
    // with no empty line (a truncated datagram) ends its headers at the end.
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = 0usize;
    let mut body_start = rest.len();
    while pos < rest.len() {
        let tail = rest.get(pos..).unwrap_or_default();
        let (line, next) = match tail.iter().position(|&b| b == b'\n') {
            Some(nl) => (tail.get(..nl).unwrap_or_default(), pos + nl + 1),
            None => (tail, rest.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > limits.max_line_len {
            return Err(FrameError::LineTooLong);
        }
        if line.is_empty() {
            body_start = next;
            break;
        }
        lines.push(line);
        if lines.len() > limits.max_headers.saturating_add(1) {
            return Err(FrameError::TooManyHeaders);
        }
        pos = next;
    }

    let mut iter = lines.into_iter();
    let first = iter.next().ok_or(FrameError::BadStartLine)?;
    let first = std::str::from_utf8(first).map_err(|_| FrameError::NotSip)?;
    let start_line = parse_start_line(first)?;

    let mut defect: Option<&'static str> = None;
    // Unfold (RFC 3261 §7.3.1): a line starting with SP/HT continues the
    // previous header; the line break and leading whitespace become one SP.
    let mut logical: Vec<String> = Vec::new();
    for raw in iter {
        let text = String::from_utf8_lossy(raw);
        if raw.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            match logical.last_mut() {
                Some(prev) => {
                    prev.push(' ');
                    prev.push_str(text.trim());
                }
                None => defect = defect.or(Some("continuation line before any header")),
            }
        } else {
            logical.push(text.into_owned());
        }
    }

    let mut headers: Vec<Header> = Vec::new();
    for line in logical {
        let Some((name, value)) = line.split_once(':') else {
            defect = defect.or(Some("header line without a colon"));
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            defect = defect.or(Some("invalid header name"));
            continue;
        }
        let name = canonical_name(name);
        let value = value.trim();
        if SPLIT.iter().any(|s| *s == name) && value != "*" {
            for v in split_commas(value) {
                headers.push(Header {
                    name: name.clone(),
                    value: v,
                });
            }
        } else {
            headers.push(Header {
                name,
                value: value.to_owned(),
            });
        }
        if headers.len() > limits.max_headers {
            return Err(FrameError::TooManyHeaders);
        }
    }

    let available = rest.get(body_start..).unwrap_or_default();
    let mut cls = headers.iter().filter(|h| h.name == "Content-Length");
    let body = match (cls.next(), cls.next()) {
        (None, _) => available.to_vec(),
        (Some(_), Some(_)) => {
            defect = defect.or(Some("more than one Content-Length"));
            Vec::new()
        }
        (Some(cl), None) => match parse_content_length(&cl.value) {
            Some(n) if n <= available.len() => available.get(..n).unwrap_or_default().to_vec(),
            Some(_) => {
                defect = defect.or(Some("Content-Length larger than the body"));
                available.to_vec()
            }
            None => {
                defect = defect.or(Some("invalid Content-Length"));
                Vec::new()
            }
        },
    };

    Ok(Parsed::Message(Message {
        start: start_line,
        headers,
        body,
        defect,
    }))
}

/// `1*DIGIT`, bounded; anything else (sign, spaces inside, overflow) is None.
pub fn parse_content_length(v: &str) -> Option<usize> {
    let v = v.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_start_line(line: &str) -> Result<StartLine, FrameError> {
    // Whitespace-split: lenient about doubled or trailing spaces (RFC 4475
    // lwsstart/trws), strict about the number of elements (lwsruri).
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let code_s = parts.next().unwrap_or_default();
        let reason = parts.next().unwrap_or_default().trim().to_owned();
        if code_s.len() != 3 || !code_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FrameError::BadStartLine);
        }
        let code: u16 = code_s.parse().map_err(|_| FrameError::BadStartLine)?;
        if !super::status::is_valid(code) {
            return Err(FrameError::BadStartLine);
        }
        return Ok(StartLine::Response {
            version,
            code,
            reason,
        });
    }
    let parts: Vec<&str> = line.split_ascii_whitespace().collect();
    if parts.is_empty() || !parts.iter().all(|p| p.is_ascii()) {
        return Err(FrameError::BadStartLine);
    }
    let method = parts.first().copied().unwrap_or_default();
    if !method.bytes().all(is_token_char) {
        return Err(FrameError::BadStartLine);
    }
    // A request line with the wrong number of elements is still a request
    // (we can answer it 400): the validator sees an empty version.
    let (uri, version) = if parts.len() == 3 {
        (
            parts.get(1).copied().unwrap_or_default(),
            parts.get(2).copied().unwrap_or_default(),
        )
    } else {
        ("", "")
    };
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
        version: version.to_owned(),
    })
}

impl Message {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The first value of a header (name compared case-insensitively, so
    /// both canonical and unknown names work).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.header_all(name).count()
    }

    /// The normalised wire form: CRLF line ends, long names, one field per
    /// list value, Content-Length set to the framed body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } => {
                out.extend_from_slice(format!("{method} {uri} {version}\r\n").as_bytes());
            }
            StartLine::Response {
                version,
                code,
                reason,
            } => {
                out.extend_from_slice(format!("{version} {code} {reason}\r\n").as_bytes());
            }
        }
        for h in self.headers.iter().filter(|h| h.name != "Content-Length") {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Cuts a TCP byte stream into messages by Content-Length (RFC 3261 §18.3),
/// one per connection. Several messages in one read and one message over
/// several reads both work. CRLF keep-alives between messages are skipped;
/// a double-CRLF ping asks for a single-CRLF pong (RFC 5626 §3.5.1), which
/// the runtime learns from [`StreamFramer::take_pong`].
#[derive(Debug)]
pub struct StreamFramer {
    limits: WireLimits,
    buf: Vec<u8>,
    pongs: u32,
    /// How much of "\r\n\r\n" the keep-alive bytes so far matched.
    ping_state: u8,
    failed: bool,
}

impl StreamFramer {
    pub fn new(limits: WireLimits) -> Self {
        StreamFramer {
            limits,
            buf: Vec::new(),
            pongs: 0,
            ping_state: 0,
            failed: false,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True once for every double-CRLF ping seen: the runtime then writes a
    /// single `\r\n` pong on the connection.
    pub fn take_pong(&mut self) -> bool {
        // A ping alone in its read is counted here too, so that the runtime
        // answers it at once instead of when the next bytes arrive.
        if !self.failed {
            self.scan_keepalives();
        }
        if self.pongs > 0 {
            self.pongs -= 1;
            true
        } else {
            false
        }
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or an
    /// error after which the connection must be closed (framing is lost:
    /// missing/invalid/duplicate Content-Length, size caps exceeded).
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.failed {
            return Err(FrameError::BadContentLength);
        }
        match self.next_inner() {
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_inner(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.scan_keepalives();
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((header_end, body_start)) = find_header_end(&self.buf) else {
            if self.buf.len() > self.limits.max_message_bytes {
                return Err(FrameError::TooLarge);
            }
            return Ok(None);
        };
        let head = self.buf.get(..header_end).unwrap_or_default();
        let cl = stream_content_length(head, &self.limits)?;
        let total = body_start
            .checked_add(cl)
            .ok_or(FrameError::BadContentLength)?;
        if total > self.limits.max_message_bytes {
            return Err(FrameError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(msg))
    }

    /// Keep-alives: CR/LF bytes before a message are skipped; a complete
    /// "\r\n\r\n" among them (possibly spread over several reads) is a
    /// ping that asks for a pong.
    fn scan_keepalives(&mut self) {
        let lead = self
            .buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(self.buf.len());
        for i in 0..lead {
            let b = self.buf.get(i).copied().unwrap_or(0);
            let expected = if self.ping_state.is_multiple_of(2) {
                b'\r'
            } else {
                b'\n'
            };
            if b == expected {
                self.ping_state += 1;
                if self.ping_state == 4 {
                    self.pongs = self.pongs.saturating_add(1);
                    self.ping_state = 0;
                }
            } else {
                self.ping_state = u8::from(b == b'\r');
            }
        }
        if lead > 0 {
            self.buf.drain(..lead);
        }
        if !self.buf.is_empty() {
            self.ping_state = 0;
        }
    }
}

/// Position of the end of the header block: (index of the blank line, index
/// of the first body byte). Accepts CRLF and bare LF.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0usize;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let after = nl + 1;
        match buf.get(after) {
            Some(b'\n') => return Some((nl, after + 1)),
            Some(b'\r') if buf.get(after + 1) == Some(&b'\n') => return Some((nl, after + 2)),
            Some(_) => {}
            None => return None,
        }
        i = after;
    }
    None
}

/// The single Content-Length of a stream message's header block; missing,
/// duplicated or invalid is a framing error (RFC 3261 §18.3: mandatory on
/// stream transports).
fn stream_content_length(head: &[u8], limits: &WireLimits) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    let mut count = 0usize;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > limits.max_line_len {
            return Err(FrameError::LineTooLong);
        }
        count += 1;
        if count > limits.max_headers.saturating_add(1) {
            return Err(FrameError::TooManyHeaders);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(line.get(..colon).unwrap_or_default());
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let value = String::from_utf8_lossy(line.get(colon + 1..).unwrap_or_default());
            let n = parse_content_length(&value).ok_or(FrameError::BadContentLength)?;
            if found.is_some() {
                return Err(FrameError::BadContentLength);
            }
            found = Some(n);
        }
    }
    found.ok_or(FrameError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(bytes: &[u8]) -> Message {
        match parse(bytes, &WireLimits::default()) {
            Ok(Parsed::Message(m)) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn compact_and_folded_and_bare_lf() {
        let m = msg(b"OPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/TCP g\nf: <sip:x@y>;tag=1\nt:\n  <sip:a@b>\ni: c1\nCSeq: 1 OPTIONS\nl: 0\n\n");
        assert_eq!(m.header_count("Via"), 2);
        assert_eq!(m.header("To"), Some("<sip:a@b>"));
        assert_eq!(m.header("call-id"), Some("c1"));
        assert!(m.defect.is_none());
        let again = msg(&m.to_bytes());
        assert_eq!(again, m);
    }

    #[test]
    fn content_length_frames_body() {
        let m = msg(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef");
        assert_eq!(m.body, b"abc");
        let m = msg(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 30\r\n\r\nabcdef");
        assert!(m.defect.is_some());
        let m = msg(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: -3\r\n\r\nabcdef");
        assert!(m.defect.is_some());
        let m = msg(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nabcdef");
        assert!(m.defect.is_some());
    }

    #[test]
    fn keepalive_and_limits() {
        let l = WireLimits::default();
        assert_eq!(parse(b"\r\n\r\n", &l), Ok(Parsed::KeepAlive));
        let small = WireLimits {
            max_message_bytes: 10,
            ..l
        };
        assert_eq!(
            parse(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", &small),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn framer_splits_and_joins() {
        let one = b"BYE sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhi";
        let mut joined = Vec::new();
        joined.extend_from_slice(b"\r\n\r\n");
        joined.extend_from_slice(one);
        joined.extend_from_slice(one);
        let mut f = StreamFramer::new(WireLimits::default());
        for b in &joined {
            f.push(std::slice::from_ref(b));
        }
        assert_eq!(f.next_message(), Ok(Some(one.to_vec())));
        assert!(f.take_pong());
        assert!(!f.take_pong());
        assert_eq!(f.next_message(), Ok(Some(one.to_vec())));
        assert_eq!(f.next_message(), Ok(None));
        f.push(b"BYE sip:a@b SIP/2.0\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::BadContentLength));
    }
}

//! Typed views of the header values the UA core needs (RFC 3261 §20, §25
//! grammar): Via, name-addr (From/To/Contact/Route), CSeq and SIP URIs,
//! plus the response builder of §8.2.6.
//!
//! The parsers are deliberately small and lenient about whitespace (RFC 4475
//! `wsinv` puts LWS around every separator) but return `None` on anything
//! structurally wrong, which the validator turns into a 400.

use std::net::{IpAddr, SocketAddr};

use super::wire::Message;

/// Generic `;name[=value]` parameters, names lower-cased, values trimmed.
pub type Params = Vec<(String, Option<String>)>;

/// Parses `;a=b;c` (the leading `;` already removed). An empty parameter
/// (`;;`) or an empty name is an error.
pub fn parse_params(s: &str) -> Option<Params> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Some(out);
    }
    for p in split_outside_quotes(s, ';') {
        let p = p.trim();
        if p.is_empty() {
            return None;
        }
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
            None => (p, None),
        };
        if n.is_empty() || n.contains(char::is_whitespace) {
            return None;
        }
        out.push((n.to_ascii_lowercase(), v));
    }
    Some(out)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quote = false;
            }
        } else if ch == '"' {
            in_quote = true;
        } else if ch == sep {
            out.push(s.get(start..i).unwrap_or_default());
            start = i + ch.len_utf8();
        }
    }
    out.push(s.get(start..).unwrap_or_default());
    out
}

pub fn param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref())
}

/// One Via value: `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(v: &str) -> Option<Via> {
        let (proto, params) = match v.split_once(';') {
            Some((a, b)) => (a, b),
            None => (v, ""),
        };
        let mut it = proto.splitn(3, '/');
        let name = it.next()?.trim();
        let ver = it.next()?.trim();
        let rest = it.next()?.trim_start();
        if !name.eq_ignore_ascii_case("SIP") || ver != "2.0" {
            return None;
        }
        let (transport, sent_by) = rest.split_once(char::is_whitespace)?;
        let transport = transport.trim();
        if transport.is_empty()
            || !transport
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        let (host, port) = parse_hostport(sent_by.trim())?;
        let params = parse_params(params)?;
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch").flatten()
    }

    pub fn has_rport(&self) -> bool {
        param(&self.params, "rport").is_some()
    }

    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }
}

/// `host[:port]` with IPv6 references in brackets. Hosts are tokens of
/// alphanumerics, `-`, `.` (and hex/`:` inside brackets).
pub fn parse_hostport(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        if h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.trim().is_empty() => None,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    let (h, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p.trim().parse::<u16>().ok()?)),
        None => (s, None),
    };
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some((h.to_owned(), port))
}

/// A name-addr or addr-spec with its header parameters (From, To, Contact,
/// Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Params,
    /// The URI was given inside `<>`.
    pub bracketed: bool,
}

impl NameAddr {
    pub fn parse(v: &str) -> Option<NameAddr> {
        let v = v.trim();
        if v.is_empty() {
            return None;
        }
        let mut display = None;
        let mut rest = v;
        if let Some(after_q) = v.strip_prefix('"') {
            // quoted-string display name; must be terminated (RFC 4475 quotbal)
            let mut escaped = false;
            let mut end = None;
            for (i, ch) in after_q.char_indices() {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end?;
            display = Some(after_q.get(..end)?.to_owned());
            rest = after_q.get(end + 1..)?.trim_start();
            if !rest.starts_with('<') {
                return None;
            }
        }
        if let Some(lt) = rest.find('<') {
            let before = rest.get(..lt)?.trim();
            if display.is_none() && !before.is_empty() {
                // unquoted display name: tokens and LWS only (RFC 4475 baddn)
                if !before
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~ \t".contains(&b))
                {
                    return None;
                }
                display = Some(before.to_owned());
            } else if display.is_some() && !before.is_empty() {
                return None;
            }
            let after = rest.get(lt + 1..)?;
            let gt = after.find('>')?;
            let uri = after.get(..gt)?.trim();
            if uri.is_empty() || uri.contains(['<', '"']) || uri.contains(char::is_whitespace) {
                return None;
            }
            let tail = after.get(gt + 1..)?.trim();
            let params = match tail.strip_prefix(';') {
                Some(p) => parse_params(p)?,
                None if tail.is_empty() => Vec::new(),
                None => return None,
            };
            return Some(NameAddr {
                display,
                uri: uri.to_owned(),
                params,
                bracketed: true,
            });
        }
        // addr-spec: the URI ends at the first ';' and what follows are
        // header parameters (RFC 3261 §20.10; RFC 4475 cparam01). A URI with
        // headers ('?') or a comma must be bracketed (regbadct).
        let (uri, p) = match rest.split_once(';') {
            Some((u, p)) => (u.trim(), Some(p)),
            None => (rest.trim(), None),
        };
        if uri.is_empty()
            || uri.contains(['?', ',', '<', '>', '"'])
            || uri.contains(char::is_whitespace)
        {
            return None;
        }
        let params = match p {
            Some(p) => parse_params(p)?,
            None => Vec::new(),
        };
        Some(NameAddr {
            display,
            uri: uri.to_owned(),
            params,
            bracketed: false,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }
}

/// `CSeq: <32-bit number> <method>` (RFC 3261 §8.1.1.5: below 2^31 when we
/// pick it, any 32-bit value accepted).
pub fn parse_cseq(v: &str) -> Option<(u32, String)> {
    let mut it = v.split_ascii_whitespace();
    let n = it.next()?;
    let m = it.next()?;
    if it.next().is_some() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = n.trim_start_matches('0');
    let n: u32 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some((n, m.to_owned()))
}

/// The scheme of a URI, lower-cased, if syntactically valid (RFC 3986
/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`).
pub fn uri_scheme(uri: &str) -> Option<String> {
    let (s, rest) = uri.split_once(':')?;
    let mut b = s.bytes();
    if !b.next()?.is_ascii_alphabetic()
        || !b.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
        || rest.is_empty()
    {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

/// User part of a sip/sips/tel URI (`tel:` gives the number).
pub fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        return Some(rest.split(';').next().unwrap_or(rest));
    }
    let hostpart_start = rest.rfind('@')?;
    rest.get(..hostpart_start)
        .map(|u| u.split(':').next().unwrap_or(u))
}

/// `host[:port]` of a sip/sips URI, as a socket address when the host is an
/// IP literal (we never resolve names: this is the sans-IO core).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = rest.split([';', '?']).next().unwrap_or(rest);
    let (host, port) = parse_hostport(hostport)?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let default = if scheme == "sips" { 5061 } else { 5060 };
    Some(SocketAddr::new(ip, port.unwrap_or(default)))
}

/// A URI's parameter, e.g. `lr` or `transport`.
pub fn uri_has_param(uri: &str, name: &str) -> bool {
    let rest = uri.split('?').next().unwrap_or(uri);
    rest.split(';').skip(1).any(|p| {
        p.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
    })
}

/// The standard reason phrase for the codes we send (see
/// [`super::status::StatusCode::reason`]).
pub fn reason_phrase(code: u16) -> &'static str {
    super::status::StatusCode::new(code).map_or("Unknown", super::status::StatusCode::reason)
}

/// Builds a response to `req` (RFC 3261 §8.2.6): Vias copied in order (the
/// top one with `received`/`rport` filled in from `src`, RFC 3581), From,
/// Call-ID and CSeq copied, To copied with `to_tag` added when it has none.
pub struct ResponseSpec<'a> {
    pub code: u16,
    pub to_tag: Option<&'a str>,
    pub extra: &'a [(&'a str, String)],
    pub body: Option<(&'a str, &'a [u8])>,
    /// Copy Record-Route (2xx/1xx to a dialog-creating INVITE, §12.1.1).
    pub record_route: bool,
}

pub fn build_response(
    req: &Message,
    src: SocketAddr,
    server: Option<&str>,
    spec: &ResponseSpec<'_>,
) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    out.push_str(&format!(
        "SIP/2.0 {} {}\r\n",
        spec.code,
        reason_phrase(spec.code)
    ));
    for (i, via) in req.header_all("Via").enumerate() {
        out.push_str("Via: ");
        if i == 0 {
            out.push_str(&top_via_with_received(via, src));
        } else {
            out.push_str(via);
        }
        out.push_str("\r\n");
    }
    if spec.record_route {
        for rr in req.header_all("Record-Route") {
            out.push_str("Record-Route: ");
            out.push_str(rr);
            out.push_str("\r\n");
        }
    }
    if let Some(f) = req.header("From") {
        out.push_str("From: ");
        out.push_str(f);
        out.push_str("\r\n");
    }
    if let Some(t) = req.header("To") {
        out.push_str("To: ");
        out.push_str(t);
        let has_tag = NameAddr::parse(t).is_some_and(|n| n.tag().is_some());
        if let (false, Some(tag)) = (has_tag, spec.to_tag) {
            out.push_str(";tag=");
            out.push_str(tag);
        }
        out.push_str("\r\n");
    }
    if let Some(c) = req.header("Call-ID") {
        out.push_str("Call-ID: ");
        out.push_str(c);
        out.push_str("\r\n");
    }
    if let Some(c) = req.header("CSeq") {
        out.push_str("CSeq: ");
        out.push_str(c);
        out.push_str("\r\n");
    }
    for (n, v) in spec.extra {
        out.push_str(n);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    // The status module's rule for every response, whoever built its
    // header list: a 503 always says when to come back.
    for (n, v) in super::status::required_headers(spec.code, spec.extra) {
        out.push_str(n);
        out.push_str(": ");
        out.push_str(&v);
        out.push_str("\r\n");
    }
    if let Some(server) = server {
        out.push_str("Server: ");
        out.push_str(server);
        out.push_str("\r\n");
    }
    let mut bytes = out.into_bytes();
    match spec.body {
        Some((ct, body)) => {
            bytes.extend_from_slice(
                format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            bytes.extend_from_slice(body);
        }
        None => bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
    bytes
}

/// RFC 3261 §18.2.1 `received` and RFC 3581 `rport` on the top Via.
fn top_via_with_received(via: &str, src: SocketAddr) -> String {
    let Some(parsed) = Via::parse(via) else {
        return via.to_owned();
    };
    let src_ip = src.ip().to_string();
    let host = parsed.host.trim_start_matches('[').trim_end_matches(']');
    let mut out = String::with_capacity(via.len() + 40);
    // Rebuild the params, replacing a bare `rport` with its value.
    let (head, _) = via.split_once(';').unwrap_or((via, ""));
    out.push_str(head.trim_end());
    for (n, v) in &parsed.params {
        if n == "received" {
            continue;
        }
        out.push(';');
        out.push_str(n);
        if n == "rport" {
            out.push('=');
            out.push_str(&src.port().to_string());
        } else if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    if host != src_ip || parsed.has_rport() {
        out.push_str(";received=");
        out.push_str(&src_ip);
    }
    out
}

/// Where a UDP response goes (RFC 3261 §18.2.2 + RFC 3581 §4): the source
/// address when `rport` was asked for; otherwise the source IP (`received`)
/// and the sent-by port.
pub fn udp_response_dest(req: &Message, src: SocketAddr) -> SocketAddr {
    match req.header("Via").and_then(Via::parse) {
        Some(v) if v.has_rport() => src,
        Some(v) => SocketAddr::new(src.ip(), v.port.unwrap_or(5060)),
        None => src,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse("SIP/2.0/TCP spindle.example.com ; branch = z9hG4bK9ikj8").unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(Via::parse("SIP/2.0/UDP host;;").is_none());
        assert!(Via::parse("").is_none());
        let v = Via::parse("SIP/2.0/UDP [::1]:5070;rport").unwrap();
        assert_eq!(v.port, Some(5070));
        assert!(v.has_rport());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"A \\\"b\\\"\" <sip:a@b>;tag=9").unwrap();
        assert_eq!(n.tag(), Some("9"));
        let n = NameAddr::parse("sip:a@b;tag=1;x").unwrap();
        assert_eq!(n.uri, "sip:a@b");
        assert_eq!(n.tag(), Some("1"));
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_none());
        assert!(NameAddr::parse("\"Unterminated <sip:a@b>").is_none());
        assert!(NameAddr::parse("sip:u@e.com?Route=%3Csip:x%3E").is_none());
        assert!(NameAddr::parse("caller<sip:a@b>").is_some());
    }

    #[test]
    fn cseq_and_uris() {
        assert_eq!(parse_cseq("0009 INVITE"), Some((9, "INVITE".into())));
        assert!(parse_cseq("36893488147419103232 INVITE").is_none());
        assert!(parse_cseq("4294967296 INVITE").is_none());
        assert_eq!(uri_scheme("SIP:a@b").as_deref(), Some("sip"));
        assert!(uri_scheme("<sip:a@b>").is_none());
        assert_eq!(uri_user("sip:12333@10.0.0.1:5060"), Some("12333"));
        assert_eq!(
            uri_socket_addr("sip:a@127.0.0.1:5070;transport=udp"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert!(uri_has_param("sip:p.example.com;lr", "lr"));
    }
}

//! REGISTER for agent phones, RFC 3261 §10.3 (processing REGISTER
//! requests), reduced to what a sans-IO endpoint can do: the request is
//! parsed here and handed to the application, which owns the bindings and
//! the digest check (RFC 3261 §22.4 / RFC 7616) and answers with a
//! [`RegisterReply`]. The endpoint holds the request in a non-INVITE server
//! transaction meanwhile (§17.2.2) and answers 500 if the application never
//! does.
//!
//! RFC 3327 (Path): a proxy in front of the registrar (Kamailio's
//! `add_path_received()`) adds a Path header so that calls to the agent
//! come back through it. The Path values are handed to the application with
//! the binding; the 200 echoes them when the UA said `Supported: path`
//! (§5.3; the "lazy" mode of common registrars: a UA that does not support
//! Path still gets its binding, the proxy is the one that needs it); a call
//! to the agent uses them as its pre-loaded Route set (§5.3, RFC 3261
//! §8.1.2).

use super::message::{NameAddr, param, uri_scheme};
use super::wire::{Message, split_commas};

/// One REGISTER request waiting for [`Endpoint::respond_register`].
///
/// [`Endpoint::respond_register`]: super::Endpoint::respond_register
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterId(pub u64);

/// The application's answer to a `SipEvent::Register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterReply {
    /// 200 OK. `contact` (a URI, or a `<...>` name-addr) is echoed as
    /// `Contact: <uri>;expires=N`; `Expires: N` is always sent.
    Ok {
        contact: Option<String>,
        expires: u32,
    },
    /// 401 with one WWW-Authenticate header per string (each a full
    /// challenge, e.g. `Digest realm="12333", nonce="...", algorithm=MD5`).
    /// `stale` adds `, stale=true` to challenges that do not carry it.
    Challenge {
        www_authenticate: Vec<String>,
        stale: bool,
    },
    /// 403.
    Forbidden,
}

/// RFC 3261 §10.2.1.1: a REGISTER without Expires lasts 3600 s.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// What the endpoint extracts from a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterFields {
    /// First Contact URI; `*` for "remove all"; None = a query.
    pub contact: Option<String>,
    pub expires: u32,
    /// The Path values in order (first = the proxy nearest the registrar),
    /// each one name-addr as received, e.g. `<sip:10.0.0.2;lr>`.
    pub path: Vec<String>,
    /// The UA listed `path` in Supported.
    pub path_supported: bool,
}

/// Path entries accepted in one REGISTER; more is a 400 (a real path has
/// one or two proxies; a longer one is a loop or an attack).
pub const MAX_PATH: usize = 8;

/// RFC 3327 §4: `Path: name-addr *( "," name-addr )`, possibly in several
/// header fields. Each entry must be a bracketed `sip:`/`sips:` URI;
/// anything else (or more than [`MAX_PATH`] entries, or CR/LF/NUL) is
/// `None` (400).
pub fn parse_path(m: &Message) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for value in m.header_all("Path") {
        for entry in split_commas(value) {
            let na = NameAddr::parse(&entry)?;
            let scheme = uri_scheme(&na.uri)?;
            if !na.bracketed
                || (scheme != "sip" && scheme != "sips")
                || entry.contains(['\r', '\n', '\0'])
                || out.len() == MAX_PATH
            {
                return None;
            }
            out.push(entry);
        }
    }
    Some(out)
}

/// Whether `Supported` lists the option tag `tag` (any case, any field).
pub fn supports(m: &Message, tag: &str) -> bool {
    m.header_all("Supported")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

fn parse_expires(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // §20.19: larger than 2**32-1 is allowed on the wire; clamp it.
    Some(
        v.parse::<u64>()
            .ok()
            .and_then(|x| u32::try_from(x).ok())
            .unwrap_or(u32::MAX),
    )
}

/// A REGISTER the endpoint answers 400 (§10.3 steps 6–8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedRegister;

/// §10.3 steps 6–8: Contact and expiry. Err = 400 (unparseable Expires or
/// Contact, `*` with a non-zero expiry or other contacts, §10.3 step 6).
pub fn parse_register(m: &Message) -> Result<RegisterFields, MalformedRegister> {
    let path = parse_path(m).ok_or(MalformedRegister)?;
    let path_supported = supports(m, "path");
    let header_expires = match m.header("Expires") {
        Some(v) => Some(parse_expires(v).ok_or(MalformedRegister)?),
        None => None,
    };
    let Some(first) = m.header_all("Contact").next() else {
        return Ok(RegisterFields {
            contact: None,
            expires: header_expires.unwrap_or(DEFAULT_EXPIRES),
            path,
            path_supported,
        });
    };
    if first.trim() == "*" {
        if header_expires != Some(0) || m.header_count("Contact") > 1 {
            return Err(MalformedRegister);
        }
        return Ok(RegisterFields {
            contact: Some("*".to_owned()),
            expires: 0,
            path,
            path_supported,
        });
    }
    let na = NameAddr::parse(first).ok_or(MalformedRegister)?;
    // The contact's `expires` param wins over the header (§10.2.1.1).
    let param_expires = match param(&na.params, "expires") {
        Some(Some(v)) => Some(parse_expires(v).ok_or(MalformedRegister)?),
        Some(None) => return Err(MalformedRegister),
        None => None,
    };
    Ok(RegisterFields {
        contact: Some(na.uri),
        expires: param_expires.or(header_expires).unwrap_or(DEFAULT_EXPIRES),
        path,
        path_supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::wire::{Parsed, WireLimits, parse};

    fn reg(extra: &str) -> Message {
        let s = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKr\r\nFrom: <sip:agent01@127.0.0.1>;tag=a\r\nTo: <sip:agent01@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(s.as_bytes(), &WireLimits::default()) {
            Ok(Parsed::Message(m)) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn contact_and_expires() {
        let f = parse_register(&reg("Contact: <sip:agent01@127.0.0.1:5080>\r\n")).unwrap();
        assert_eq!(f.contact.as_deref(), Some("sip:agent01@127.0.0.1:5080"));
        assert_eq!(f.expires, 3600);
        let f = parse_register(&reg(
            "Contact: <sip:a@127.0.0.1:5080>;expires=60\r\nExpires: 120\r\n",
        ))
        .unwrap();
        assert_eq!(f.expires, 60);
        let f = parse_register(&reg("Contact: <sip:a@h>\r\nExpires: 0\r\n")).unwrap();
        assert_eq!(f.expires, 0);
        let f = parse_register(&reg("")).unwrap();
        assert_eq!(f.contact, None);
        let f = parse_register(&reg("Contact: *\r\nExpires: 0\r\n")).unwrap();
        assert_eq!(f.contact.as_deref(), Some("*"));
        let f = parse_register(&reg("Contact: <sip:a@h>\r\nExpires: 99999999999\r\n")).unwrap();
        assert_eq!(f.expires, u32::MAX);
    }

    #[test]
    fn path_values_in_order_and_supported() {
        let f = parse_register(&reg(
            "Path: <sip:10.0.0.2;lr;received=sip:10.1.1.1:5066>, <sip:p2.example;lr>\r\nPath: <sips:p3.example;lr>\r\nSupported: timer, Path\r\nContact: <sip:a@h>\r\n",
        ))
        .unwrap();
        assert_eq!(
            f.path,
            [
                "<sip:10.0.0.2;lr;received=sip:10.1.1.1:5066>",
                "<sip:p2.example;lr>",
                "<sips:p3.example;lr>"
            ]
        );
        assert!(f.path_supported);
        let f = parse_register(&reg("Contact: <sip:a@h>\r\nSupported: pathx\r\n")).unwrap();
        assert!(f.path.is_empty());
        assert!(!f.path_supported);
        // A name-addr with a display name and header params is fine.
        let f = parse_register(&reg("Path: \"edge\" <sip:10.0.0.2;lr>;x=1\r\n")).unwrap();
        assert_eq!(f.path, ["\"edge\" <sip:10.0.0.2;lr>;x=1"]);
    }

    #[test]
    fn bad_or_long_path_is_400() {
        for bad in [
            "Path: sip:10.0.0.2;lr\r\n",
            "Path: <tel:+8612333>\r\n",
            "Path: <sip:10.0.0.2;lr>,\r\n",
            "Path: <>\r\n",
        ] {
            assert!(parse_register(&reg(bad)).is_err(), "{bad}");
        }
        let long = ["<sip:10.0.0.2;lr>"; MAX_PATH + 1].join(", ");
        assert!(parse_register(&reg(&format!("Path: {long}\r\n"))).is_err());
        let max = ["<sip:10.0.0.2;lr>"; MAX_PATH].join(", ");
        assert_eq!(
            parse_register(&reg(&format!("Path: {max}\r\n")))
                .unwrap()
                .path
                .len(),
            MAX_PATH
        );
    }

    #[test]
    fn malformed_is_400() {
        for bad in [
            "Contact: *\r\n",
            "Contact: *\r\nExpires: 10\r\n",
            "Contact: <sip:a@h>\r\nExpires: soon\r\n",
            "Contact: <sip:a@h>;expires=-1\r\n",
            "Contact: <sip:a@h>;expires\r\n",
        ] {
            assert!(parse_register(&reg(bad)).is_err(), "{bad}");
        }
    }
}

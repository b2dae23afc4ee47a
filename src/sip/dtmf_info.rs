//! DTMF carried in SIP INFO bodies (not an RFC: the de-facto
//! `application/dtmf-relay` (`Signal=5\r\nDuration=160`) and
//! `application/dtmf` (`5`) formats that Cisco, Asterisk and most trunks
//! send when RFC 4733 events are not negotiated).
//!
//! The digit is personal data (it may be part of an ID number or a PIN): the
//! error type carries nothing of the input.

/// A parsed INFO DTMF: the key and, when given, its duration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InfoDtmf {
    pub digit: char,
    pub duration_ms: Option<u32>,
}

impl std::fmt::Debug for InfoDtmf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfoDtmf")
            .field("digit", &"<redacted>")
            .field("duration_ms", &self.duration_ms)
            .finish()
    }
}

/// Why an INFO body is not DTMF we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoDtmfError {
    /// Content type is not a DTMF one: answer 415.
    UnsupportedType,
    /// Right type, unreadable body: answer 400.
    Malformed,
}

/// The RFC 4733 event code mapping, also used by `Signal=10`-style senders.
fn digit_from(s: &str) -> Option<char> {
    let s = s.trim();
    let mut chars = s.chars();
    let (first, rest) = (chars.next()?, chars.next());
    if rest.is_none() {
        let c = first.to_ascii_uppercase();
        return matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c);
    }
    match s {
        "10" => Some('*'),
        "11" => Some('#'),
        "12" => Some('A'),
        "13" => Some('B'),
        "14" => Some('C'),
        "15" => Some('D'),
        _ => None,
    }
}

/// Parses an INFO body by its Content-Type (media type only, any case).
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Result<InfoDtmf, InfoDtmfError> {
    let ct = super::transfer::media_type(content_type);
    if ct != "application/dtmf-relay" && ct != "application/dtmf" {
        // The type decides first: a foreign body is 415 whatever its bytes.
        return Err(InfoDtmfError::UnsupportedType);
    }
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::Malformed)?;
    match ct.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration = None;
            for line in text.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let k = k.trim();
                if k.eq_ignore_ascii_case("signal") {
                    digit = Some(digit_from(v).ok_or(InfoDtmfError::Malformed)?);
                } else if k.eq_ignore_ascii_case("duration") {
                    duration = v.trim().parse::<u32>().ok();
                }
            }
            let digit = digit.ok_or(InfoDtmfError::Malformed)?;
            Ok(InfoDtmf {
                digit,
                duration_ms: duration,
            })
        }
        "application/dtmf" => Ok(InfoDtmf {
            digit: digit_from(text).ok_or(InfoDtmfError::Malformed)?,
            duration_ms: None,
        }),
        _ => Err(InfoDtmfError::UnsupportedType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_body_types() {
        let d = parse_info_dtmf("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n").unwrap();
        assert_eq!((d.digit, d.duration_ms), ('5', Some(160)));
        let d = parse_info_dtmf("Application/DTMF-Relay", b"signal= #\nduration=250").unwrap();
        assert_eq!((d.digit, d.duration_ms), ('#', Some(250)));
        let d = parse_info_dtmf("application/dtmf", b"5").unwrap();
        assert_eq!((d.digit, d.duration_ms), ('5', None));
        let d = parse_info_dtmf("application/dtmf", b"10\r\n").unwrap();
        assert_eq!(d.digit, '*');
        assert_eq!(
            parse_info_dtmf("text/plain", b"5"),
            Err(InfoDtmfError::UnsupportedType)
        );
        assert_eq!(
            parse_info_dtmf("text/plain", b"\xff\xfe"),
            Err(InfoDtmfError::UnsupportedType)
        );
        assert_eq!(
            parse_info_dtmf("application/dtmf-relay", b"Signal=Z"),
            Err(InfoDtmfError::Malformed)
        );
        assert_eq!(
            parse_info_dtmf("application/dtmf", &[0xff]),
            Err(InfoDtmfError::Malformed)
        );
    }

    #[test]
    fn debug_hides_digit() {
        let d = parse_info_dtmf("application/dtmf", b"7").unwrap();
        assert!(!format!("{d:?}").contains('7'));
    }
}

//! SDP offer/answer for one call (RFC 3264 on top of RFC 4566/8866 syntax).
//!
//! Parsing and serialising go through the `sdp-types` crate; this module holds
//! the negotiation rules:
//!
//! * Codecs: PCMU (static PT 0) and PCMA (static PT 8). The answer picks the
//!   first payload type *in the offer's order* that we support (RFC 3264 §6.1
//!   lets the answerer pick; honouring the offerer's preference is what SIP
//!   peers expect).
//! * RFC 4733 telephone-event is matched by its `a=rtpmap:<pt>
//!   telephone-event/8000` line, and the answer keeps the caller's payload
//!   type (it is dynamic: never assume 101).
//! * Several m-lines: the answer has exactly as many m-lines as the offer, in
//!   the same order (RFC 3264 §6); the first usable audio stream is accepted
//!   and every other one is rejected with port 0.
//! * Direction (RFC 3264 §6.1, §8.4): the offer's `sendonly` is answered
//!   `recvonly`, `inactive` with `inactive`, `recvonly` with `sendonly`. An
//!   RFC 2543-style hold (`c=0.0.0.0`) means the peer cannot receive, so we
//!   never answer a direction in which we would send.
//! * The `o=` version increases by one on every SDP we send (RFC 3264 §8).
//! * Late offer (RFC 3261 §13.2.1): [`SdpSession::offer`] builds our offer
//!   for a 200 OK to an INVITE without a body, and
//!   [`SdpSession::accept_answer`] takes the answer from the ACK.
//!
//! Any parse problem is an [`SdpError`] (the SIP layer turns
//! `NoCommonCodec`/`NoAudio` into 488 and `Malformed` into 400); nothing here
//! panics on peer input.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};

use super::g711::Codec;

/// The payload type we use for telephone-event in our own offers.
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;
/// Packetisation time we send and advertise.
pub const PTIME_MS: u32 = 20;

/// Our side of the media: where we receive RTP and which codecs we accept,
/// most preferred first (the preference only orders our own offers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub port: u16,
    pub codecs: Vec<Codec>,
}

/// Media direction, always from *our* point of view in [`Negotiated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction seen from the other end.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether this side sends media in this direction.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media in this direction.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Drops the sending half (used when the peer gave no address).
    fn without_send(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            Direction::SendOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

/// The outcome of one offer/answer exchange, ready for
/// `MediaSession::new`/`update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The RFC 4733 payload type, `None` when telephone-event was not
    /// negotiated (then in-band detection runs).
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP; `None` for `c=0.0.0.0` (RFC 2543 hold) or port 0.
    pub remote: Option<SocketAddr>,
    /// Our direction.
    pub direction: Direction,
    pub ptime_ms: u32,
}

/// Why an SDP could not be used. None of the messages carry caller data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// Not parseable SDP, or an unusable address (→ 400 / 488).
    Malformed(String),
    /// An audio stream exists but shares no codec with us (→ 488).
    NoCommonCodec,
    /// No audio m-line that could be accepted (→ 488).
    NoAudio,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::Malformed(why) => write!(f, "malformed SDP: {why}"),
            SdpError::NoCommonCodec => f.write_str("no common audio codec"),
            SdpError::NoAudio => f.write_str("no usable audio stream"),
        }
    }
}

impl std::error::Error for SdpError {}

/// Offer/answer state of one call: our session id and the `o=` version.
#[derive(Debug, Clone)]
pub struct SdpSession {
    local: LocalMedia,
    session_id: u64,
    /// Version of the last SDP we sent (0: none sent yet).
    version: u64,
}

/// What we found in the peer's audio m-line.
struct PeerAudio {
    codec: Codec,
    telephone_event_pt: Option<u8>,
    remote: Option<SocketAddr>,
    /// The peer's direction as written in its SDP.
    peer_direction: Direction,
}

impl SdpSession {
    pub fn new(local: LocalMedia, session_id: u64) -> Self {
        SdpSession {
            local,
            session_id,
            version: 0,
        }
    }

    /// Version that the next SDP we send will carry in `o=`.
    pub fn next_version(&self) -> u64 {
        self.version.saturating_add(1)
    }

    /// Answers an offer (initial INVITE or re-INVITE). On error nothing
    /// changes and the caller replies 488/400.
    pub fn answer(&mut self, offer: &[u8]) -> Result<(Negotiated, Vec<u8>), SdpError> {
        let offer = parse(offer)?;
        let session_conn = offer.connection.as_ref();
        let session_dir = direction_attr(&offer.attributes);

        let mut chosen: Option<(usize, PeerAudio)> = None;
        let mut saw_audio = false;
        for (i, m) in offer.medias.iter().enumerate() {
            if chosen.is_some() || !is_usable_audio(m) {
                continue;
            }
            saw_audio = true;
            if let Some(codec) = first_common_codec(m, &self.local.codecs) {
                let peer = peer_audio(m, session_conn, session_dir, codec)?;
                chosen = Some((i, peer));
            }
        }
        let Some((index, peer)) = chosen else {
            return Err(if saw_audio {
                SdpError::NoCommonCodec
            } else {
                SdpError::NoAudio
            });
        };

        let mut direction = peer.peer_direction.reversed();
        if peer.remote.is_none() {
            direction = direction.without_send();
        }

        let mut answer = self.session_skeleton();
        for (i, m) in offer.medias.iter().enumerate() {
            if i == index {
                let mut media = self.audio_media(&[peer.codec], peer.telephone_event_pt, direction);
                // RFC 3264 §6: the answer keeps the offered transport
                // (RTP/AVP or RTP/AVPF).
                media.proto = m.proto.clone();
                answer.medias.push(media);
            } else {
                answer.medias.push(rejected_media(m));
            }
        }
        let bytes = self.emit(answer);
        Ok((
            Negotiated {
                codec: peer.codec,
                telephone_event_pt: peer.telephone_event_pt,
                remote: peer.remote,
                direction,
                ptime_ms: PTIME_MS,
            },
            bytes,
        ))
    }

    /// Builds our offer (late offer: 200 OK to an INVITE without SDP): all
    /// our codecs in preference order plus telephone-event, `sendrecv`.
    pub fn offer(&mut self) -> Vec<u8> {
        let mut s = self.session_skeleton();
        let codecs = self.local.codecs.clone();
        s.medias.push(self.audio_media(
            &codecs,
            Some(OFFER_TELEPHONE_EVENT_PT),
            Direction::SendRecv,
        ));
        self.emit(s)
    }

    /// Accepts the answer to our [`offer`](Self::offer) (from the ACK).
    pub fn accept_answer(&mut self, answer: &[u8]) -> Result<Negotiated, SdpError> {
        let answer = parse(answer)?;
        let session_conn = answer.connection.as_ref();
        let session_dir = direction_attr(&answer.attributes);
        // Our offer had one audio m-line, so the answer's first audio m-line
        // is its answer; port 0 there means it was rejected.
        if let Some(m) = answer.medias.iter().find(|m| m.media == "audio") {
            if !is_usable_audio(m) {
                return Err(SdpError::NoAudio);
            }
            let Some(codec) = first_common_codec(m, &self.local.codecs) else {
                return Err(SdpError::NoCommonCodec);
            };
            let peer = peer_audio(m, session_conn, session_dir, codec)?;
            let mut direction = peer.peer_direction.reversed();
            if peer.remote.is_none() {
                direction = direction.without_send();
            }
            return Ok(Negotiated {
                codec,
                telephone_event_pt: peer.telephone_event_pt,
                remote: peer.remote,
                direction,
                ptime_ms: PTIME_MS,
            });
        }
        Err(SdpError::NoAudio)
    }

    fn session_skeleton(&self) -> Session {
        let origin = Origin {
            username: Some("ivr12333".to_string()),
            sess_id: self.session_id.to_string(),
            sess_version: self.next_version(),
            nettype: NetType::In,
            addrtype: self.local.addr.into(),
            unicast_address: self.local.addr.to_string(),
        };
        let mut s = Session::new(origin, "ivr12333");
        s.connection = Some(Connection::from_ip_addr(self.local.addr));
        s.times.push(Time::new(0, 0));
        s
    }

    fn audio_media(&self, codecs: &[Codec], te: Option<u8>, dir: Direction) -> Media {
        let mut fmt = String::new();
        let mut attributes = Vec::new();
        for c in codecs {
            push_fmt(&mut fmt, c.payload_type());
            attributes.push(Attribute::with_value("rtpmap", rtpmap_value(*c)));
        }
        if let Some(pt) = te {
            push_fmt(&mut fmt, pt);
            attributes.push(Attribute::with_value(
                "rtpmap",
                format!("{pt} telephone-event/8000"),
            ));
            attributes.push(Attribute::with_value("fmtp", format!("{pt} 0-15")));
        }
        attributes.push(Attribute::with_value("ptime", PTIME_MS));
        attributes.push(Attribute::new(dir.as_attr()));
        Media {
            media: "audio".to_string(),
            port: self.local.port,
            num_ports: None,
            proto: "RTP/AVP".to_string(),
            fmt,
            media_title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes,
        }
    }

    fn emit(&mut self, s: Session) -> Vec<u8> {
        self.version = self.next_version();
        let mut out = Vec::with_capacity(256);
        // Writing into a Vec cannot fail.
        let _ = s.write(&mut out);
        out
    }
}

fn parse(bytes: &[u8]) -> Result<Session, SdpError> {
    Session::parse(bytes).map_err(|e| {
        SdpError::Malformed(match e {
            // Its Display echoes the peer's bytes: keep only the line number
            // (error strings end up in logs).
            sdp_types::ParserError::InvalidVersion(line, _) => {
                format!("invalid version in line {line}")
            }
            other => other.to_string(),
        })
    })
}

fn push_fmt(fmt: &mut String, pt: u8) {
    if !fmt.is_empty() {
        fmt.push(' ');
    }
    fmt.push_str(&pt.to_string());
}

fn rtpmap_value(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "0 PCMU/8000",
        Codec::Pcma => "8 PCMA/8000",
    }
}

/// An audio stream over plain RTP/AVP that the peer did not itself disable.
fn is_usable_audio(m: &Media) -> bool {
    m.media.eq_ignore_ascii_case("audio")
        && m.port != 0
        && (m.proto.eq_ignore_ascii_case("RTP/AVP") || m.proto.eq_ignore_ascii_case("RTP/AVPF"))
}

/// `m=` answer line that rejects a stream (RFC 3264 §6: port 0, same media
/// and transport, at least one format from the offer).
fn rejected_media(m: &Media) -> Media {
    let fmt = m.fmt.split_whitespace().next().unwrap_or("0").to_string();
    Media {
        media: m.media.clone(),
        port: 0,
        num_ports: None,
        proto: m.proto.clone(),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    }
}

/// `(pt, encoding name, clock rate)` of every parseable `a=rtpmap`.
fn rtpmaps(m: &Media) -> impl Iterator<Item = (u8, &str, u32)> + '_ {
    m.attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case("rtpmap"))
        .filter_map(|a| {
            let v = a.value.as_deref()?;
            let (pt, rest) = v.trim().split_once(char::is_whitespace)?;
            let pt: u8 = pt.parse().ok()?;
            let mut parts = rest.trim().split('/');
            let name = parts.next()?;
            let rate: u32 = parts.next()?.trim().parse().ok()?;
            Some((pt, name, rate))
        })
}

fn formats(m: &Media) -> impl Iterator<Item = u8> + '_ {
    m.fmt
        .split_whitespace()
        .filter_map(|f| f.parse::<u8>().ok())
}

/// Which codec a payload type means in this m-line. Static types 0 and 8
/// mean PCMU/PCMA unless an rtpmap says otherwise; a dynamic type only via
/// an rtpmap to a codec whose static type equals it is not supported (we
/// always send with the static type), so dynamic G.711 is ignored.
fn codec_of(m: &Media, pt: u8) -> Option<Codec> {
    let mapped = rtpmaps(m).find(|(p, _, _)| *p == pt);
    let codec = match pt {
        0 => Codec::Pcmu,
        8 => Codec::Pcma,
        _ => return None,
    };
    match mapped {
        None => Some(codec),
        Some((_, name, rate)) => {
            let expect = match codec {
                Codec::Pcmu => "PCMU",
                Codec::Pcma => "PCMA",
            };
            (name.eq_ignore_ascii_case(expect) && rate == 8000).then_some(codec)
        }
    }
}

fn first_common_codec(m: &Media, ours: &[Codec]) -> Option<Codec> {
    formats(m)
        .filter_map(|pt| codec_of(m, pt))
        .find(|c| ours.contains(c))
}

fn telephone_event_pt(m: &Media) -> Option<u8> {
    let listed: Vec<u8> = formats(m).collect();
    rtpmaps(m)
        .find(|(pt, name, rate)| {
            name.eq_ignore_ascii_case("telephone-event") && *rate == 8000 && listed.contains(pt)
        })
        .map(|(pt, _, _)| pt)
}

fn direction_attr(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().rev().find_map(|a| {
        let name = a.attribute.as_str();
        if name.eq_ignore_ascii_case("sendrecv") {
            Some(Direction::SendRecv)
        } else if name.eq_ignore_ascii_case("sendonly") {
            Some(Direction::SendOnly)
        } else if name.eq_ignore_ascii_case("recvonly") {
            Some(Direction::RecvOnly)
        } else if name.eq_ignore_ascii_case("inactive") {
            Some(Direction::Inactive)
        } else {
            None
        }
    })
}

fn peer_audio(
    m: &Media,
    session_conn: Option<&Connection>,
    session_dir: Option<Direction>,
    codec: Codec,
) -> Result<PeerAudio, SdpError> {
    let conn = m
        .connections
        .first()
        .or(session_conn)
        .ok_or_else(|| SdpError::Malformed("no c= line for the audio stream".into()))?;
    if conn.nettype != NetType::In {
        return Err(SdpError::Malformed("c= network type is not IN".into()));
    }
    if matches!(conn.addrtype, AddrType::Other(_)) {
        return Err(SdpError::Malformed("c= address type is not IP4/IP6".into()));
    }
    // RFC 4566 allows "addr/ttl" for multicast; we only do unicast.
    let ip: IpAddr = conn
        .connection_address
        .parse()
        .map_err(|_| SdpError::Malformed("c= address is not a unicast IP address".into()))?;
    let remote = (!ip.is_unspecified() && m.port != 0).then(|| SocketAddr::new(ip, m.port));
    let peer_direction = direction_attr(&m.attributes)
        .or(session_dir)
        .unwrap_or(Direction::SendRecv);
    Ok(PeerAudio {
        codec,
        telephone_event_pt: telephone_event_pt(m),
        remote,
        peer_direction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn local() -> LocalMedia {
        LocalMedia {
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            port: 40000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
        }
    }

    fn sdp(body: &str) -> Vec<u8> {
        body.replace('\n', "\r\n").into_bytes()
    }

    const BASIC: &str = "v=0
o=- 1 1 IN IP4 127.0.0.2
s=-
c=IN IP4 127.0.0.2
t=0 0
m=audio 6000 RTP/AVP 8 0 96
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
";

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn answers_first_offered_codec_and_keeps_event_pt() {
        let mut s = SdpSession::new(local(), 42);
        let (n, ans) = s.answer(&sdp(BASIC)).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event_pt, Some(96));
        assert_eq!(n.remote, Some("127.0.0.2:6000".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        assert_eq!(n.ptime_ms, 20);
        let a = text(&ans);
        assert!(a.contains("m=audio 40000 RTP/AVP 8 96\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:96 telephone-event/8000\r\n"));
        assert!(a.contains("a=fmtp:96 0-15\r\n"));
        assert!(a.contains("a=ptime:20\r\n"));
        assert!(a.contains("a=sendrecv\r\n"));
        assert!(a.contains("o=ivr12333 42 1 IN IP4 127.0.0.1\r\n"), "{a}");
        assert!(a.contains("c=IN IP4 127.0.0.1\r\n"));
    }

    #[test]
    fn no_telephone_event_means_none() {
        let mut s = SdpSession::new(local(), 1);
        let offer =
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 7000 RTP/AVP 0\n";
        let (n, ans) = s.answer(offer.as_bytes()).unwrap();
        assert_eq!(n.telephone_event_pt, None);
        assert!(text(&ans).contains("m=audio 40000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn version_increments_and_hold_resume() {
        let mut s = SdpSession::new(local(), 7);
        let (_, a1) = s.answer(&sdp(BASIC)).unwrap();
        let hold = BASIC.replace("a=fmtp:96 0-16\n", "a=fmtp:96 0-16\na=sendonly\n");
        let (n2, a2) = s.answer(&sdp(&hold)).unwrap();
        assert_eq!(n2.direction, Direction::RecvOnly);
        assert!(text(&a2).contains("a=recvonly\r\n"));
        let inactive = BASIC.replace("t=0 0\n", "t=0 0\na=inactive\n");
        let (n3, a3) = s.answer(&sdp(&inactive)).unwrap();
        assert_eq!(n3.direction, Direction::Inactive);
        assert!(text(&a3).contains("a=inactive\r\n"));
        let (n4, a4) = s.answer(&sdp(BASIC)).unwrap();
        assert_eq!(n4.direction, Direction::SendRecv);
        assert!(text(&a1).contains("o=ivr12333 7 1 "));
        assert!(text(&a2).contains("o=ivr12333 7 2 "));
        assert!(text(&a3).contains("o=ivr12333 7 3 "));
        assert!(text(&a4).contains("o=ivr12333 7 4 "));
        assert!(!s.offer().is_empty());
        assert_eq!(s.next_version(), 6);
    }

    #[test]
    fn rfc2543_hold_with_zero_address() {
        let mut s = SdpSession::new(local(), 1);
        let hold = BASIC.replace("c=IN IP4 127.0.0.2", "c=IN IP4 0.0.0.0");
        let (n, a) = s.answer(&sdp(&hold)).unwrap();
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(text(&a).contains("a=recvonly\r\n"));
        let both = hold.replace("t=0 0\n", "t=0 0\na=sendonly\n");
        let (n, _) = s.answer(&sdp(&both)).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
    }

    #[test]
    fn multiple_m_lines_reject_others_with_port_zero() {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
m=video 5000 RTP/AVP 31\n\
m=audio 5002 RTP/AVP 18\n\
m=audio 5004 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\n\
m=audio 5006 RTP/AVP 0\n";
        let mut s = SdpSession::new(local(), 1);
        let (n, a) = s.answer(offer.as_bytes()).unwrap();
        assert_eq!(n.remote, Some("10.0.0.1:5004".parse().unwrap()));
        assert_eq!(n.telephone_event_pt, Some(101));
        let a = text(&a);
        let ms: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            ms,
            vec![
                "m=video 0 RTP/AVP 31",
                "m=audio 0 RTP/AVP 18",
                "m=audio 40000 RTP/AVP 0 101",
                "m=audio 0 RTP/AVP 0"
            ]
        );
    }

    #[test]
    fn errors() {
        let mut s = SdpSession::new(local(), 1);
        let g729 = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5000 RTP/AVP 18\n";
        assert_eq!(s.answer(g729.as_bytes()), Err(SdpError::NoCommonCodec));
        let video = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=video 5000 RTP/AVP 31\n";
        assert_eq!(s.answer(video.as_bytes()), Err(SdpError::NoAudio));
        let none = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n";
        assert_eq!(s.answer(none.as_bytes()), Err(SdpError::NoAudio));
        let rejected =
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 0 RTP/AVP 0\n";
        assert_eq!(s.answer(rejected.as_bytes()), Err(SdpError::NoAudio));
        assert!(matches!(s.answer(b"garbage"), Err(SdpError::Malformed(_))));
        let Err(SdpError::Malformed(why)) = s.answer(b"v=SECRET\r\n") else {
            panic!("expected Malformed");
        };
        assert!(!why.contains("SECRET"), "{why}");
        let host = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 pbx.example\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
        assert!(matches!(
            s.answer(host.as_bytes()),
            Err(SdpError::Malformed(_))
        ));
        let noc = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
        assert!(matches!(
            s.answer(noc.as_bytes()),
            Err(SdpError::Malformed(_))
        ));
        // A failed offer consumed no version.
        assert_eq!(s.next_version(), 1);
    }

    #[test]
    fn late_offer_and_answer() {
        let mut s = SdpSession::new(local(), 9);
        let offer = text(&s.offer());
        assert!(
            offer.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"),
            "{offer}"
        );
        assert!(offer.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        let answer = "v=0\no=- 5 5 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 8000 RTP/AVP 8 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n";
        let n = s.accept_answer(answer.as_bytes()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote, Some("10.0.0.9:8000".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        let rejected =
            "v=0\no=- 5 5 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 0 RTP/AVP 0\n";
        assert_eq!(s.accept_answer(rejected.as_bytes()), Err(SdpError::NoAudio));
        let g729 = "v=0\no=- 5 5 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\nm=audio 8000 RTP/AVP 18\n";
        assert_eq!(
            s.accept_answer(g729.as_bytes()),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn bare_lf_and_ipv6() {
        let mut s = SdpSession::new(local(), 1);
        let offer = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 5000 RTP/AVP 0\na=recvonly\n";
        let (n, a) = s.answer(offer.as_bytes()).unwrap();
        assert_eq!(n.remote, Some("[::1]:5000".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(text(&a).contains("a=sendonly\r\n"));
    }
}

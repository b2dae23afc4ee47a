//! SDP offer/answer against SDPs shaped like real peers' (baresip, SIPp,
//! a Cisco-style RFC 2543 hold, a WebRTC-ish gateway), plus property tests:
//! arbitrary bytes never panic, and answers re-parse.

use std::net::{IpAddr, Ipv4Addr};

use ivr12333::media::g711::Codec;
use ivr12333::media::sdp::{Direction, LocalMedia, SdpError, SdpSession};
use proptest::prelude::*;

fn local() -> LocalMedia {
    LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        port: 30000,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
    }
}

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

const BARESIP: &str = "v=0
o=- 1234 5678 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10000 RTP/AVP 0 8 101
b=AS:64
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1111 cname:abc
a=rtcp-rsize
a=ptime:20
";

const SIPP_UAC: &str = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
";

#[test]
fn baresip_offer() {
    let mut s = SdpSession::new(local(), 1);
    let (n, ans) = s.answer(&crlf(BARESIP)).unwrap();
    assert_eq!(n.codec, Codec::Pcmu);
    assert_eq!(n.telephone_event_pt, Some(101));
    assert_eq!(n.remote.unwrap().port(), 10000);
    assert_eq!(n.direction, Direction::SendRecv);
    // our answer is valid SDP itself
    let again = SdpSession::new(local(), 2).answer(&ans).unwrap().0;
    assert_eq!(again.codec, Codec::Pcmu);
    assert_eq!(again.remote.unwrap().port(), 30000);
}

#[test]
fn sipp_offer_with_bare_lf() {
    let mut s = SdpSession::new(local(), 1);
    let (n, _) = s.answer(SIPP_UAC.as_bytes()).unwrap();
    assert_eq!(n.codec, Codec::Pcmu);
    assert_eq!(n.telephone_event_pt, Some(101));
}

#[test]
fn dynamic_telephone_event_pt_is_kept() {
    for pt in [96u8, 100, 101, 110, 126, 127] {
        let offer = format!(
            "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 8 {pt}\na=rtpmap:{pt} telephone-event/8000\na=fmtp:{pt} 0-16\n"
        );
        let (n, ans) = SdpSession::new(local(), 1)
            .answer(offer.as_bytes())
            .unwrap();
        assert_eq!(n.telephone_event_pt, Some(pt));
        let ans = String::from_utf8(ans).unwrap();
        assert!(
            ans.contains(&format!("m=audio 30000 RTP/AVP 8 {pt}\r\n")),
            "{ans}"
        );
        assert!(ans.contains(&format!("a=rtpmap:{pt} telephone-event/8000\r\n")));
    }
    // telephone-event at 16 kHz only (wideband): not usable with G.711
    let wb = "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0 97\na=rtpmap:97 telephone-event/16000\n";
    let (n, _) = SdpSession::new(local(), 1).answer(wb.as_bytes()).unwrap();
    assert_eq!(n.telephone_event_pt, None);
}

#[test]
fn only_pcma_locally() {
    let mut l = local();
    l.codecs = vec![Codec::Pcma];
    let (n, _) = SdpSession::new(l.clone(), 1)
        .answer(&crlf(BARESIP))
        .unwrap();
    assert_eq!(n.codec, Codec::Pcma);
    assert_eq!(
        SdpSession::new(l, 1).answer(SIPP_UAC.as_bytes()),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn cisco_style_hold_and_resume() {
    let mut s = SdpSession::new(local(), 5);
    let (n1, _) = s.answer(&crlf(BARESIP)).unwrap();
    assert_eq!(n1.direction, Direction::SendRecv);
    let hold = BARESIP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let (n2, a2) = s.answer(&crlf(&hold)).unwrap();
    assert_eq!(n2.remote, None);
    assert_eq!(n2.direction, Direction::RecvOnly);
    assert!(String::from_utf8(a2).unwrap().contains("o=ivr12333 5 2 "));
    let (n3, a3) = s.answer(&crlf(BARESIP)).unwrap();
    assert_eq!(n3.direction, Direction::SendRecv);
    assert!(String::from_utf8(a3).unwrap().contains("o=ivr12333 5 3 "));
}

#[test]
fn media_level_direction_overrides_session_level() {
    let offer = "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\na=sendonly\nm=audio 4000 RTP/AVP 0\na=sendrecv\n";
    let (n, _) = SdpSession::new(local(), 1)
        .answer(offer.as_bytes())
        .unwrap();
    assert_eq!(n.direction, Direction::SendRecv);
    let offer = "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\na=inactive\nm=audio 4000 RTP/AVP 0\n";
    let (n, _) = SdpSession::new(local(), 1)
        .answer(offer.as_bytes())
        .unwrap();
    assert_eq!(n.direction, Direction::Inactive);
}

#[test]
fn secure_or_unknown_transport_is_not_accepted() {
    let offer = "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/SAVP 0\nm=audio 4002 RTP/AVP 8\n";
    let (n, ans) = SdpSession::new(local(), 1)
        .answer(offer.as_bytes())
        .unwrap();
    assert_eq!(n.codec, Codec::Pcma);
    let ans = String::from_utf8(ans).unwrap();
    assert!(ans.contains("m=audio 0 RTP/SAVP 0\r\n"), "{ans}");
    assert!(ans.contains("m=audio 30000 RTP/AVP 8\r\n"));
}

#[test]
fn avpf_offer_is_answered_with_avpf() {
    let offer =
        "v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVPF 0\n";
    let (_, ans) = SdpSession::new(local(), 1)
        .answer(offer.as_bytes())
        .unwrap();
    let ans = String::from_utf8(ans).unwrap();
    assert!(ans.contains("m=audio 30000 RTP/AVPF 0\r\n"), "{ans}");
}

#[test]
fn error_messages_are_generic() {
    let e = SdpSession::new(local(), 1).answer(b"v=1\r\n").unwrap_err();
    assert!(matches!(e, SdpError::Malformed(_)));
    assert!(!e.to_string().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut s = SdpSession::new(local(), 1);
        let _ = s.answer(&bytes);
        let _ = s.accept_answer(&bytes);
    }

    /// "v=0" then random typed lines (with arbitrary bytes in the values):
    /// reaches the parser's per-line code and our attribute handling.
    #[test]
    fn random_lines_never_panic(
        lines in proptest::collection::vec(
            (prop::sample::select(vec!['o', 's', 'c', 't', 'm', 'a', 'b', 'k', 'r', 'z', 'i', 'x']),
             proptest::collection::vec(any::<u8>(), 0..30),
             "(audio [0-9]{1,5} RTP/AVP( [0-9]{1,3}){0,4})|(IN IP[46] [0-9a-f.:]{0,20})|(rtpmap:[0-9]{1,3} [A-Za-z-]{0,16}/[0-9]{0,6})|(sendonly|recvonly|inactive|ptime:[0-9]{0,4})"),
            0..12),
    ) {
        let mut sdp = b"v=0\r\n".to_vec();
        for (key, raw, text) in lines {
            sdp.push(key as u8);
            sdp.push(b'=');
            if raw.len() % 3 == 0 { sdp.extend_from_slice(&raw); } else { sdp.extend_from_slice(text.as_bytes()); }
            sdp.extend_from_slice(b"\r\n");
        }
        let mut s = SdpSession::new(local(), 1);
        let _ = s.answer(&sdp);
        let _ = s.accept_answer(&sdp);
    }

    /// Valid-looking SDP with random lines spliced in: never a panic, and
    /// every answer we produce parses back.
    #[test]
    fn mutated_sdp_never_panics(
        cut in 0usize..400,
        junk in "[a-z]=[ -~]{0,40}",
        port in any::<u16>(),
        pts in proptest::collection::vec(any::<u8>(), 0..6),
    ) {
        let fmts: Vec<String> = pts.iter().map(|p| p.to_string()).collect();
        let base = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\na=rtpmap:101 telephone-event/8000\r\n",
            fmts.join(" ")
        );
        let at = cut.min(base.len());
        let at = (0..=at).rev().find(|i| base.is_char_boundary(*i)).unwrap_or(0);
        let sdp = format!("{}{}\r\n{}", &base[..at], junk, &base[at..]);
        let mut s = SdpSession::new(local(), 1);
        if let Ok((_, answer)) = s.answer(sdp.as_bytes()) {
            let reparsed = SdpSession::new(local(), 2).accept_answer(&answer);
            prop_assert!(reparsed.is_ok(), "{:?}", reparsed);
        }
    }
}

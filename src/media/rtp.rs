//! RTP packets (RFC 3550 §5.1) and the RFC 4733 §2.3 telephone-event
//! payload, read and written without allocation.
//!
//! Header parsing and building go through `rtp-rs`, which validates the
//! version, CSRC count, extension header and padding length against the
//! buffer, so a hostile packet (CC=15 in a 13-byte datagram, a padding
//! count larger than the packet, a truncated extension) is an error here and
//! never an out-of-bounds read later.

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

/// Fixed RTP header length (no CSRC, no extension).
pub const HEADER_LEN: usize = 12;

/// The header fields we use from a received packet, plus its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIn<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Payload without CSRCs, extension or padding.
    pub payload: &'a [u8],
}

/// Parses one received datagram; `None` for anything that is not valid
/// RTP version 2.
pub fn parse(packet: &[u8]) -> Option<RtpIn<'_>> {
    let r = RtpReader::new(packet).ok()?;
    Some(RtpIn {
        payload_type: r.payload_type(),
        marker: r.mark(),
        sequence: u16::from(r.sequence_number()),
        timestamp: r.timestamp(),
        ssrc: r.ssrc(),
        payload: r.payload(),
    })
}

/// Header fields of a packet we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpOut {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Writes header and payload into `buf`; `None` when `buf` is too small.
pub fn write(h: RtpOut, payload: &[u8], buf: &mut [u8]) -> Option<usize> {
    RtpPacketBuilder::new()
        .payload_type(h.payload_type)
        .marked(h.marker)
        .sequence(Seq::from(h.sequence))
        .timestamp(h.timestamp)
        .ssrc(h.ssrc)
        .payload(payload)
        .build_into(buf)
        .ok()
}

/// One RFC 4733 named event (the first 4 bytes of a telephone-event
/// payload; redundant trailing blocks, RFC 4733 §2.5.1.5, are ignored since
/// the header timestamp identifies the current event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code 0-15 (DTMF); other codes are rejected by [`parse_event`].
    pub event: u8,
    /// E bit: this packet ends the event.
    pub end: bool,
    pub volume: u8,
    /// Duration so far in timestamp units (wraps for long events, §2.5.2.3).
    pub duration: u16,
}

/// Parses a telephone-event payload; `None` for a short payload or an event
/// that is not a DTMF key (flash-hook, modem tones, ...).
pub fn parse_event(payload: &[u8]) -> Option<TelephoneEvent> {
    let [event, flags, d0, d1, ..] = *payload else {
        return None;
    };
    if event > 15 {
        return None;
    }
    Some(TelephoneEvent {
        event,
        end: flags & 0x80 != 0,
        volume: flags & 0x3F,
        duration: u16::from_be_bytes([d0, d1]),
    })
}

/// Encodes a telephone-event payload (used by tests and benches).
pub fn encode_event(ev: TelephoneEvent) -> [u8; 4] {
    let d = ev.duration.to_be_bytes();
    [
        ev.event,
        (if ev.end { 0x80 } else { 0 }) | (ev.volume & 0x3F),
        d[0],
        d[1],
    ]
}

/// DTMF event code → key (RFC 4733 §3.2 table 3).
pub fn event_char(event: u8) -> Option<char> {
    const KEYS: &[u8; 16] = b"0123456789*#ABCD";
    KEYS.get(usize::from(event)).map(|&b| char::from(b))
}

/// Key → DTMF event code.
pub fn char_event(c: char) -> Option<u8> {
    const KEYS: &str = "0123456789*#ABCD";
    let c = c.to_ascii_uppercase();
    KEYS.find(c).and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 200];
        let h = RtpOut {
            payload_type: 8,
            marker: true,
            sequence: 65535,
            timestamp: 0xDEADBEEF,
            ssrc: 0x01020304,
        };
        let n = write(h, &[0xD5; 160], &mut buf).unwrap();
        assert_eq!(n, 172);
        let p = parse(&buf[..n]).unwrap();
        assert_eq!(p.payload_type, 8);
        assert!(p.marker);
        assert_eq!(p.sequence, 65535);
        assert_eq!(p.timestamp, 0xDEADBEEF);
        assert_eq!(p.ssrc, 0x01020304);
        assert_eq!(p.payload.len(), 160);
        assert_eq!(write(h, &[0; 160], &mut [0u8; 100]), None);
    }

    #[test]
    fn hostile_headers() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x80; 11]), None);
        // version 1
        assert_eq!(parse(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        // CC=15 but only 16 bytes
        let mut cc = [0u8; 16];
        cc[0] = 0x8F;
        assert_eq!(parse(&cc), None);
        // padding count larger than the packet
        let mut pad = [0u8; 16];
        pad[0] = 0xA0;
        pad[15] = 200;
        assert_eq!(parse(&pad), None);
        // padding count 0
        pad[15] = 0;
        assert_eq!(parse(&pad), None);
        // extension header truncated
        let mut ext = [0u8; 16];
        ext[0] = 0x90;
        ext[14] = 0;
        ext[15] = 5;
        assert_eq!(parse(&ext), None);
        // valid padding: 4 payload bytes + 4 padding
        let mut ok = [0u8; 20];
        ok[0] = 0xA0;
        ok[1] = 101;
        ok[12] = 5;
        ok[19] = 4;
        let p = parse(&ok).unwrap();
        assert_eq!(p.payload, &[5, 0, 0, 0]);
        // valid extension of one word
        let mut e = [0u8; 24];
        e[0] = 0x90;
        e[15] = 1;
        e[20] = 7;
        assert_eq!(parse(&e).unwrap().payload, &[7, 0, 0, 0]);
    }

    #[test]
    fn events() {
        assert_eq!(parse_event(&[1, 0x80]), None);
        assert_eq!(parse_event(&[16, 0, 0, 0]), None);
        let e = parse_event(&[15, 0x8A, 0x01, 0x40]).unwrap();
        assert_eq!((e.event, e.end, e.volume, e.duration), (15, true, 10, 320));
        assert_eq!(encode_event(e), [15, 0x8A, 0x01, 0x40]);
        assert_eq!(event_char(10), Some('*'));
        assert_eq!(event_char(11), Some('#'));
        assert_eq!(event_char(15), Some('D'));
        assert_eq!(event_char(16), None);
        assert_eq!(char_event('#'), Some(11));
        assert_eq!(char_event('a'), Some(12));
        assert_eq!(char_event('x'), None);
    }
}

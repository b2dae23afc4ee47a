//! The fuzz targets: each feeds one input through a parser that sees peer or
//! operator input and returns an outcome signature (see `engine.rs`). They
//! call the library's public entry points only, the same ones the service
//! uses, so a panic here is a panic the service can hit.
//!
//! | target | what the input is | code exercised |
//! |---|---|---|
//! | `sip` | a datagram, then the same bytes as a TCP stream cut at input-derived points | `sip::wire` (parse, `StreamFramer`, `to_bytes` and re-parse), `sip::message` (Via, name-addr, CSeq, URIs, `build_response`), `sip::validate` (`check`, `semantic_with`), INFO DTMF bodies |
//! | `sdp` | an SDP offer, also taken as an answer to our own offer | `media::sdp` |
//! | `rtp-dtmf` | a sequence of RTP packets with time steps (format below) | `media::rtp` parse, `media::dtmf` RFC 4733 receiver and INFO merge |
//! | `dialplan` | a dialplan TOML file | `flow::dialplan` (parse + validate), `flow::graph` |
//! | `csv-import` | a CSV import file | `ledger::import` through an in-memory SQLite ledger |

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ivr12333::flow::dialplan::{builtin_prompts, parse_dialplan, successors};
use ivr12333::ledger::{ImportOptions, Ledger, LedgerConfig};
use ivr12333::media::dtmf::{DigitMerger, Rfc4733Receiver, Source};
use ivr12333::media::g711::Codec;
use ivr12333::media::rtp;
use ivr12333::media::sdp::{LocalMedia, SdpSession};
use ivr12333::sip::dtmf_info::parse_info_dtmf;
use ivr12333::sip::message::{
    NameAddr, ResponseSpec, Via, build_response, parse_cseq, parse_hostport, uri_has_param,
    uri_scheme, uri_socket_addr, uri_user,
};
use ivr12333::sip::validate;
use ivr12333::sip::wire::{Parsed, StreamFramer, WireLimits, parse};

use super::engine::{TargetFn, fnv};

/// Every target name, in the order `all` runs them.
pub const NAMES: &[&str] = &["sip", "sdp", "rtp-dtmf", "dialplan", "csv-import"];

/// Builds a target by name.
pub fn make(name: &str) -> Option<TargetFn> {
    Some(match name {
        "sip" => Box::new(sip),
        "sdp" => Box::new(sdp),
        "rtp-dtmf" => Box::new(rtp_dtmf),
        "dialplan" => {
            let known = builtin_prompts();
            Box::new(move |b: &[u8]| dialplan(b, &known))
        }
        "csv-import" => {
            let mut c = CsvImport::new();
            Box::new(move |b: &[u8]| c.run(b))
        }
        _ => return None,
    })
}

/// Tokens each target's mutator may insert.
pub fn dictionary(name: &str) -> &'static [&'static str] {
    match name {
        "sip" => SIP_DICT,
        "sdp" => SDP_DICT,
        "dialplan" => TOML_DICT,
        "csv-import" => CSV_DICT,
        _ => &[],
    }
}

/// Longest input a target gets (the wire limit plus slack for SIP, so the
/// size caps themselves are exercised).
pub fn max_len(name: &str) -> usize {
    match name {
        "sip" => 70_000,
        "rtp-dtmf" => 8_192,
        _ => 32_768,
    }
}

const SIP_DICT: &[&str] = &[
    "\r\n",
    "\r\n\r\n",
    "\n",
    "SIP/2.0",
    "SIP/2.0 200 OK\r\n",
    "INVITE sip:12333@127.0.0.1 SIP/2.0\r\n",
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "OPTIONS",
    "REGISTER",
    "REFER",
    "NOTIFY",
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n",
    "Via: SIP/2.0/TCP [::1]:5070;rport;received=1.2.3.4\r\n",
    "v: ",
    "f: ",
    "t: ",
    "i: ",
    "m: ",
    "l: ",
    "c: ",
    "k: ",
    "Content-Length: ",
    "Content-Length: 0\r\n",
    "Content-Length: 4294967296\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Type: application/dtmf-relay\r\n",
    "Content-Type: application/dtmf\r\n",
    "Signal=5\r\nDuration=160\r\n",
    "Call-ID: ",
    "CSeq: 1 INVITE\r\n",
    "CSeq: 4294967295 BYE\r\n",
    "Max-Forwards: 70\r\n",
    "Max-Forwards: 0\r\n",
    "From: <sip:a@127.0.0.1>;tag=1\r\n",
    "To: \"\\\"q\" <sip:12333@127.0.0.1>\r\n",
    "Contact: *\r\n",
    "Contact: <sip:a@127.0.0.1:5070;transport=tcp>;expires=0\r\n",
    "Route: <sip:127.0.0.1;lr>\r\n",
    "Record-Route: <sip:p@[::1];lr>, <sip:q>\r\n",
    "Require: 100rel\r\n",
    "Proxy-Require: foo\r\n",
    "Authorization: Digest username=\"a\", nonce=\"n\", response=\"r\"\r\n",
    "Refer-To: <sip:x@127.0.0.1>\r\n",
    ";branch=z9hG4bK",
    ";tag=",
    ";lr",
    ";rport",
    ";received=",
    ";maddr=",
    ";transport=",
    "sip:",
    "sips:",
    "tel:",
    "%00",
    "%",
    "<",
    ">",
    "\"",
    "\\",
    ",",
    "@",
    "[::1]",
    "[",
    ":65536",
    " \t ",
    "\r\n ",
];

const SDP_DICT: &[&str] = &[
    "\r\n",
    "\n",
    "v=0\r\n",
    "o=- 1 1 IN IP4 127.0.0.1\r\n",
    "s=-\r\n",
    "c=IN IP4 127.0.0.1\r\n",
    "c=IN IP4 0.0.0.0\r\n",
    "c=IN IP6 ::1\r\n",
    "c=IN IP4 224.2.1.1/127/3\r\n",
    "t=0 0\r\n",
    "m=audio 4000 RTP/AVP 0 8 101\r\n",
    "m=audio 0 RTP/AVP 0\r\n",
    "m=video 5000 RTP/AVP 31\r\n",
    "m=audio 4000/2 RTP/SAVP 0\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:96 PCMA/8000/1\r\n",
    "a=fmtp:101 0-15\r\n",
    "a=ptime:20\r\n",
    "a=ptime:0\r\n",
    "a=maxptime:",
    "a=sendonly\r\n",
    "a=recvonly\r\n",
    "a=inactive\r\n",
    "a=sendrecv\r\n",
    "RTP/AVP",
    "telephone-event/8000",
    "IN IP4 ",
    "IN IP6 ",
    " ",
    "=",
    ":",
    "/",
];

const TOML_DICT: &[&str] = &[
    "\n",
    "[state.",
    "[dialplan]\n",
    "]\n",
    "type = \"menu\"\n",
    "type = \"play\"\n",
    "type = \"collect\"\n",
    "type = \"authenticate\"\n",
    "type = \"branch\"\n",
    "type = \"transfer\"\n",
    "type = \"hangup\"\n",
    "next = ",
    "initial = ",
    "prompt = ",
    "play = ",
    "keys = ",
    "on_fail = ",
    "tries = ",
    "min_len = ",
    "max_len = ",
    "terminator = ",
    "validate = ",
    "no_input_limit = ",
    "on_no_input = ",
    "if = ",
    "then = ",
    "else = ",
    "audit = ",
    "repeatable = ",
    "queue = ",
    "barge_in = ",
    "star_as_x = ",
    "{ say = \"amount\", field = \"pension.balance\" }",
    "\"@repeat\"",
    "\"",
    "'''",
    "= ",
    "{ }",
    "[]",
    "[",
    "]",
    ", ",
    "true",
    "false",
    "-1",
    "1e400",
    "nan",
    "inf",
    "9223372036854775808",
    "0o777",
    "1979-05-27T07:32:00Z",
    "# ",
    "\\u0000",
    "\\",
    ".",
];

const CSV_DICT: &[&str] = &[
    ",",
    "\n",
    "\r\n",
    "\"",
    "\"\"",
    "\u{feff}",
    "id_number",
    "name",
    "pin",
    "pension_balance",
    "pension_months",
    "pension_last_paid",
    "medical_balance",
    "data_as_of",
    "unemployment_status",
    "maternity_last_paid",
    "active",
    "suspended",
    "none",
    "2026-13",
    "0000-00",
    "2026-02",
    "-0.01",
    "0.001",
    "1e3",
    "12345.67",
    "92233720368547758.07",
    "X",
    "x",
    "*",
    "11010519491231002X",
    "310104198507151239",
    "张三",
    "\u{0}",
];

// ---------------------------------------------------------------- sip

fn src_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5070)
}

/// What the endpoint's front half does to one message: validate it, parse
/// every header the later layers parse, and build the reply it would send.
fn sip_message(m: &ivr12333::sip::wire::Message, sig: &mut Vec<u8>) {
    sig.push(m.is_request() as u8);
    if let Some(d) = m.defect {
        sig.extend_from_slice(d.as_bytes());
    }
    let _ = m.method();
    let _ = m.status();
    if let Some(uri) = m.request_uri() {
        let _ = uri_scheme(uri);
        let _ = uri_user(uri);
        let _ = uri_socket_addr(uri);
        let _ = uri_has_param(uri, "transport");
    }
    for v in m.header_all("Via") {
        if let Some(via) = Via::parse(v) {
            let _ = via.branch();
            let _ = via.has_rport();
            let _ = parse_hostport(&via.sent_by());
        }
    }
    for name in ["From", "To", "Contact", "Route", "Record-Route", "Refer-To"] {
        for v in m.header_all(name) {
            if let Some(na) = NameAddr::parse(v) {
                let _ = na.tag();
            }
        }
    }
    if let Some(c) = m.header("CSeq") {
        let _ = parse_cseq(c);
    }
    if m.method() == Some("INFO") {
        let ct = m.header("Content-Type").unwrap_or("");
        sig.push(parse_info_dtmf(ct, &m.body).is_ok() as u8);
    }
    match validate::check(m) {
        Ok(req) => {
            sig.push(1);
            let _ = req.tx_key();
            let _ = req.merge_key();
            let _ = req.cancelled_invite_key();
            let _ = req.to_tag();
            for registrar in [false, true] {
                match validate::semantic_with(m, &req, registrar) {
                    None => sig.push(2),
                    Some(r) => sig.extend_from_slice(format!("{:?}", r.code).as_bytes()),
                }
            }
            let extra = [("Allow", "INVITE, ACK".to_owned())];
            let _ = build_response(
                m,
                src_addr(),
                Some("fuzz"),
                &ResponseSpec {
                    code: 200,
                    to_tag: Some("t1"),
                    extra: &extra,
                    body: Some(("application/sdp", b"v=0\r\n")),
                    record_route: true,
                },
            );
        }
        Err(r) => {
            sig.extend_from_slice(format!("{:?}", r.code).as_bytes());
            // The stateless 400 is built from whatever the message has.
            let _ = build_response(
                m,
                src_addr(),
                Some("fuzz"),
                &ResponseSpec {
                    code: 400,
                    to_tag: None,
                    extra: &[],
                    body: None,
                    record_route: false,
                },
            );
        }
    }
}

fn sip(input: &[u8]) -> u64 {
    let limits = WireLimits::default();
    let mut sig = Vec::new();
    // As a datagram.
    match parse(input, &limits) {
        Ok(Parsed::KeepAlive) => sig.push(b'K'),
        Ok(Parsed::Message(m)) => {
            sig.push(b'M');
            sip_message(&m, &mut sig);
            // The normalised form must parse again, to the same normal form
            // (it is what the rest of the stack and the rsip oracle see).
            let normal = m.to_bytes();
            match parse(&normal, &limits) {
                Ok(Parsed::Message(m2)) => {
                    let again = m2.to_bytes();
                    assert!(
                        again == normal,
                        "normal form is not a fixpoint ({} vs {} bytes)",
                        normal.len(),
                        again.len()
                    );
                }
                Ok(Parsed::KeepAlive) => panic!("normal form of a message parsed as a keep-alive"),
                Err(e) => {
                    // A normal form longer than the limits is fine; anything
                    // else means to_bytes printed something parse refuses.
                    assert!(
                        normal.len() > limits.max_message_bytes
                            || m.headers.len() > limits.max_headers
                            || m.headers
                                .iter()
                                .any(|h| h.name.len() + h.value.len() + 2 > limits.max_line_len),
                        "normal form does not parse: {e:?}"
                    );
                }
            }
        }
        Err(e) => sig.extend_from_slice(format!("{e:?}").as_bytes()),
    }
    // As a TCP stream, cut in three at points derived from the input.
    let h = fnv(input);
    let c1 = (h as usize) % (input.len() + 1);
    let c2 = c1 + ((h >> 32) as usize) % (input.len() - c1 + 1);
    let mut framer = StreamFramer::new(limits);
    let mut frames = 0u8;
    'outer: for part in [&input[..c1], &input[c1..c2], &input[c2..]] {
        framer.push(part);
        let _ = framer.take_pong();
        loop {
            match framer.next_message() {
                Ok(Some(msg)) => {
                    frames = frames.saturating_add(1);
                    if let Ok(Parsed::Message(m)) = parse(&msg, &limits) {
                        let mut ignored = Vec::new();
                        sip_message(&m, &mut ignored);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    sig.extend_from_slice(format!("T{e:?}").as_bytes());
                    break 'outer;
                }
            }
        }
    }
    let _ = framer.buffered();
    sig.push(frames.min(4));
    fnv(&sig)
}

// ---------------------------------------------------------------- sdp

fn local() -> LocalMedia {
    LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 20_000,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
    }
}

fn sdp(input: &[u8]) -> u64 {
    let mut sig = Vec::new();
    // As an offer from a caller.
    let mut s = SdpSession::new(local(), 42);
    match s.answer(input) {
        Ok((n, answer)) => {
            sig.push(1);
            sig.extend_from_slice(format!("{:?}{:?}", n.direction, n.codec).as_bytes());
            sig.push(n.telephone_event_pt.is_some() as u8);
            sig.push(n.remote.is_some() as u8);
            // Our answer is an SDP another session must be able to read.
            let mut peer = SdpSession::new(local(), 7);
            let _ = peer.answer(&answer);
            // A re-offer in the same session (re-INVITE).
            let _ = s.answer(input);
            let _ = s.next_version();
        }
        Err(e) => sig.extend_from_slice(format!("{e:?}").as_bytes()),
    }
    // As the answer to our own offer (late offer, the ACK's body).
    let mut o = SdpSession::new(local(), 43);
    let _ = o.offer();
    sig.push(o.accept_answer(input).is_ok() as u8);
    fnv(&sig)
}

// ---------------------------------------------------------------- rtp-dtmf

/// Input format: records of `[step][len][len bytes of RTP packet]`.
/// `step` advances virtual time by `(step & 0x3f) * 10` ms; bit 6 also
/// delivers the last reported digit as a SIP INFO digit (to exercise the
/// merge); bit 7 checks `key_down`. A short final record is dropped.
fn rtp_dtmf(input: &[u8]) -> u64 {
    let start = Instant::now();
    let mut now = start;
    let mut rx = Rfc4733Receiver::new();
    let mut merge = DigitMerger::new();
    let mut rest = input;
    let mut packets = 0u32;
    let mut reported = 0u32;
    let mut last = None;
    let mut sig = Vec::new();
    while let [step, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let Some(pkt) = tail.get(..len) else { break };
        rest = &tail[len..];
        now += Duration::from_millis(u64::from(step & 0x3f) * 10);
        packets += 1;
        if let Some(p) = rtp::parse(pkt)
            && let Some(ev) = rtp::parse_event(p.payload)
        {
            if let Some(d) = rx.handle(now, p.ssrc, p.timestamp, p.marker, ev) {
                reported += 1;
                last = Some(d);
                if let Some(d) = merge.accept(now, Source::Media, d) {
                    sig.push(d as u8);
                }
            }
            let _ = rtp::encode_event(ev);
        }
        if step & 0x40 != 0
            && let Some(d) = last
            && let Some(d) = merge.accept(now, Source::Info, d)
        {
            sig.push(d as u8 | 0x80);
        }
        if step & 0x80 != 0 {
            sig.push(rx.key_down(now) as u8);
        }
    }
    // A packet reports at most one key press.
    assert!(
        reported <= packets,
        "{reported} digits from {packets} packets"
    );
    // Coarse on purpose: how many keys came out of each path, not which.
    let media = sig.iter().filter(|b| **b < 0x80 && **b > 1).count();
    let info = sig.iter().filter(|b| **b >= 0x80).count();
    let down = sig.iter().filter(|b| **b == 1).count();
    fnv(&[
        media.min(8) as u8,
        info.min(8) as u8,
        down.min(4) as u8,
        reported.min(8) as u8,
    ])
}

// ---------------------------------------------------------------- dialplan

fn dialplan(input: &[u8], known: &HashSet<&'static str>) -> u64 {
    let Ok(src) = std::str::from_utf8(input) else {
        return 0;
    };
    match parse_dialplan("fuzz.toml", src, known) {
        Ok(plan) => {
            let dot = ivr12333::flow::graph::to_dot(&plan);
            let mut n = 0usize;
            for s in &plan.states {
                n += successors(&s.kind).len();
                let _ = plan.state_id(&s.name);
            }
            let _ = plan.state(plan.initial);
            fnv(format!("ok{}{}", dot.is_empty(), n.min(64)).as_bytes())
        }
        Err(e) => {
            // The error must name a position inside the file (or 0:0).
            let lines = src.lines().count().max(1);
            assert!(
                e.line <= lines + 1,
                "error line {} past the end ({lines} lines)",
                e.line
            );
            // The message kind, without the names and numbers in it.
            let kind: String = e
                .message
                .chars()
                .take_while(|c| *c != '"' && *c != '`' && *c != '\'')
                .filter(|c| !c.is_ascii_digit())
                .take(40)
                .collect();
            fnv(kind.as_bytes())
        }
    }
}

// ---------------------------------------------------------------- csv-import

/// One in-memory SQLite ledger for the whole run; each input is written to
/// a scratch file and imported (the import reads files, not slices). Odd
/// length inputs import with `skip_bad`.
struct CsvImport {
    rt: tokio::runtime::Runtime,
    ledger: Ledger,
    path: PathBuf,
}

impl CsvImport {
    fn new() -> CsvImport {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let ledger = rt
            .block_on(Ledger::open("sqlite::memory:", LedgerConfig::demo()))
            .expect("in-memory ledger");
        let path = std::env::temp_dir().join(format!(
            "ivr12333-fuzz-{}-{:?}.csv",
            std::process::id(),
            std::thread::current().id()
        ));
        CsvImport { rt, ledger, path }
    }

    fn run(&mut self, input: &[u8]) -> u64 {
        std::fs::write(&self.path, input).expect("write scratch CSV");
        let opts = ImportOptions {
            skip_bad: input.len() % 2 == 1,
            progress: false,
            threads: 1,
        };
        match self.rt.block_on(self.ledger.import_csv(&self.path, &opts)) {
            Ok(r) => {
                assert!(r.valid <= r.rows, "more valid rows than rows");
                assert!(
                    r.persons_written <= r.valid,
                    "wrote more persons than valid rows"
                );
                let mut reasons: Vec<String> = r
                    .rejected
                    .iter()
                    .map(|x| {
                        // The kind of reason: up to its first ':' or '('.
                        x.reason
                            .split([':', '('])
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect();
                reasons.sort();
                reasons.dedup();
                fnv(format!("{}{}{reasons:?}", r.committed, r.rows.min(3)).as_bytes())
            }
            Err(e) => fnv(e
                .to_string()
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(40)
                .collect::<String>()
                .as_bytes()),
        }
    }
}

impl Drop for CsvImport {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

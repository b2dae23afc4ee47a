//! Parse + route throughput of the SIP layer (messages/s).
//!
//! `cargo bench --bench sip`. Groups:
//! - `parse_validate`: wire framing/normalising plus §8.2 syntax checks of a
//!   typical INVITE (with SDP) and an in-dialog BYE;
//! - `endpoint`: the whole `handle_input` path for a retransmitted INVITE
//!   and BYE (parse, validate, transaction match, resend), and a complete
//!   call (INVITE, answer, ACK, BYE, all transmits drained);
//! - `timers/{10,10000}`: the same endpoint holding 10 or 10,000 live
//!   transactions (half unanswered INVITEs, half OPTIONS waiting in Timer
//!   J): `poll_timeout`, one retransmitted INVITE through `handle_input`
//!   followed by `poll_timeout` (what the driver does per message). With
//!   the timer heap neither grows with the count.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivr12333::sip::wire::{Parsed, WireLimits, parse};
use ivr12333::sip::{Endpoint, EndpointConfig, SipEvent, Transport, validate};

const SDP: &str = "v=0\r\no=- 20518 0 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

fn invite(id: u64) -> Vec<u8> {
    format!(
        "INVITE sip:12333@10.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-{id}-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"13800138000\" <sip:13800138000@203.0.113.1>;tag=f{id}\r\n\
         To: <sip:12333@10.0.0.1>\r\n\
         Call-ID: bench-{id}@203.0.113.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:13800138000@203.0.113.1:5060>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n\
         Supported: replaces, timer\r\n\
         User-Agent: bench\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

fn in_dialog(method: &str, id: u64, to_tag: &str, cseq: u32) -> Vec<u8> {
    format!(
        "{method} sip:ivr@10.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-{id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"13800138000\" <sip:13800138000@203.0.113.1>;tag=f{id}\r\n\
         To: <sip:12333@10.0.0.1>;tag={to_tag}\r\n\
         Call-ID: bench-{id}@203.0.113.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn src() -> SocketAddr {
    "203.0.113.1:5060".parse().unwrap()
}

/// The To tag of a 200 response, if `bytes` is one.
fn to_tag_of(bytes: &[u8]) -> Option<String> {
    let Ok(Parsed::Message(m)) = parse(bytes, &WireLimits::default()) else {
        return None;
    };
    if m.status() != Some(200) {
        return None;
    }
    Some(m.header("To")?.split("tag=").nth(1)?.to_owned())
}

/// Sets up a confirmed call; returns the endpoint, its To tag and `now`.
fn confirmed(ep: &mut Endpoint, id: u64, now: Instant) -> String {
    ep.handle_input(now, Transport::Udp, src(), &invite(id));
    let call = loop {
        match ep.poll_event() {
            Some(SipEvent::IncomingCall { call, .. }) => break call,
            Some(_) => {}
            None => panic!("no call"),
        }
    };
    ep.answer(now, call, SDP.as_bytes().to_vec());
    let mut tag = String::new();
    while let Some(t) = ep.poll_transmit() {
        if let Some(t) = to_tag_of(&t.bytes) {
            tag = t;
        }
    }
    ep.handle_input(now, Transport::Udp, src(), &in_dialog("ACK", id, &tag, 1));
    while ep.poll_event().is_some() {}
    tag
}

/// An OPTIONS from caller `id` (a non-INVITE transaction kept 64·T1).
fn options(id: u64) -> Vec<u8> {
    format!(
        "OPTIONS sip:12333@10.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-o{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@203.0.113.1>;tag=o{id}\r\n\
         To: <sip:12333@10.0.0.1>\r\n\
         Call-ID: options-{id}@203.0.113.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// An endpoint with `n` live transactions at `now`.
fn loaded(n: u64, now: Instant) -> Endpoint {
    let mut ep = Endpoint::new(EndpointConfig {
        max_calls: 1_000_000,
        max_calls_per_second: 0,
        ..EndpointConfig::default()
    });
    for id in 0..n / 2 {
        ep.handle_input(now, Transport::Udp, src(), &invite(1_000_000 + id));
        ep.handle_input(now, Transport::Udp, src(), &options(id));
    }
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    assert_eq!(ep.transaction_count() as u64, n / 2 * 2);
    ep
}

fn bench_timers(c: &mut Criterion) {
    let now = Instant::now();
    for n in [10u64, 10_000] {
        let mut g = c.benchmark_group(format!("timers/{n}"));
        g.throughput(Throughput::Elements(1));
        let ep = loaded(n, now);
        g.bench_function("poll_timeout", |b| b.iter(|| black_box(ep.poll_timeout())));
        let mut ep = loaded(n, now);
        let inv = invite(1);
        ep.handle_input(now, Transport::Udp, src(), &inv);
        while ep.poll_event().is_some() {}
        g.bench_function("message_then_poll_timeout", |b| {
            b.iter(|| {
                ep.handle_input(now, Transport::Udp, src(), black_box(&inv));
                while let Some(t) = ep.poll_transmit() {
                    black_box(t);
                }
                black_box(ep.poll_timeout())
            })
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let limits = WireLimits::default();
    let inv = invite(1);
    let bye = in_dialog("BYE", 1, "abcdef0123456789", 2);

    let mut g = c.benchmark_group("parse_validate");
    g.throughput(Throughput::Elements(1));
    for (name, msg) in [("invite", &inv), ("bye", &bye)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let Ok(Parsed::Message(m)) = parse(black_box(msg), &limits) else {
                    panic!()
                };
                black_box(validate::check(&m).is_ok())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("endpoint");
    g.throughput(Throughput::Elements(1));
    let now = Instant::now();
    g.bench_function("invite_retransmit", |b| {
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.handle_input(now, Transport::Udp, src(), &inv);
        while ep.poll_event().is_some() {}
        b.iter(|| {
            ep.handle_input(now, Transport::Udp, src(), black_box(&inv));
            while let Some(t) = ep.poll_transmit() {
                black_box(t);
            }
        })
    });
    g.bench_function("bye_retransmit", |b| {
        let mut ep = Endpoint::new(EndpointConfig::default());
        let tag = confirmed(&mut ep, 1, now);
        let bye = in_dialog("BYE", 1, &tag, 2);
        ep.handle_input(now, Transport::Udp, src(), &bye);
        while ep.poll_event().is_some() {}
        b.iter(|| {
            ep.handle_input(now, Transport::Udp, src(), black_box(&bye));
            while let Some(t) = ep.poll_transmit() {
                black_box(t);
            }
        })
    });
    g.throughput(Throughput::Elements(3));
    g.bench_function("full_call_invite_ack_bye", |b| {
        let cfg = EndpointConfig {
            max_calls_per_second: 0,
            ..EndpointConfig::default()
        };
        let mut ep = Endpoint::new(cfg);
        let mut id = 10u64;
        let mut t = now;
        b.iter(|| {
            id += 1;
            t += Duration::from_millis(1);
            let tag = confirmed(&mut ep, id, t);
            ep.handle_input(t, Transport::Udp, src(), &in_dialog("BYE", id, &tag, 2));
            while ep.poll_transmit().is_some() {}
            while ep.poll_event().is_some() {}
            // keep the transaction table small, as the runtime's timer would
            if id.is_multiple_of(1024) {
                ep.handle_timeout(t + Duration::from_secs(40));
                t += Duration::from_secs(40);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_timers);
criterion_main!(benches);

//! What the caller hears under load: a probe that places a few calls of its
//! own next to a bulk load (SIPp in `benches/load.sh`) and measures, per
//! stream, how the service's RTP arrives.
//!
//! Each sampled call has its own RTP socket with kernel receive timestamps
//! (`SO_TIMESTAMPNS`), so the probe's own scheduling on a busy machine does
//! not colour the figures: a gap is the time between the kernel receiving
//! two consecutive packets of one stream. Reported:
//!
//! * inter-packet gaps over all sampled streams: p50 / p99 / max and the
//!   share of gaps over 40 ms (the service sends a frame every 20 ms,
//!   silence included, so a continuous stream is expected);
//! * loss: sequence numbers that never arrived;
//! * INVITE → 200 latency p50 / p99 and INVITE retransmissions;
//! * PIN `#` → first packet of the result for a few scripted callers who
//!   key a demo ID and PIN (RFC 4733) while the load runs.
//!
//! Loopback only; bounded by the number of calls and their hold time.
//!
//! ```text
//! cargo bench --bench load_probe -- --target 127.0.0.1:5080 \
//!     [--streams 30] [--scripted 5] [--spread-secs 10] [--hold-secs 20]
//! ```
//! Under `cargo test --benches` (no `--bench` flag) it only checks its own
//! statistics helpers.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEMO_ID: &str = "310104198507151239";
const DEMO_PIN: &str = "123456";

#[derive(Clone, Copy)]
struct Opts {
    target: SocketAddr,
    streams: u32,
    scripted: u32,
    spread: Duration,
    hold: Duration,
}

/// One received RTP packet: kernel arrival time (ns since the epoch),
/// sequence number, marker bit.
#[derive(Clone, Copy)]
struct Arrival {
    ns: i64,
    seq: u16,
    marker: bool,
}

#[derive(Default)]
struct Results {
    gaps_us: Vec<u64>,
    received: u64,
    lost: u64,
    invite_ms: Vec<f64>,
    retransmissions: u32,
    failed: u32,
    readout_ms: Vec<f64>,
    readout_failed: u32,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Turns on kernel receive timestamps for a UDP socket.
fn enable_timestamps(sock: &UdpSocket) {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a correctly sized option value.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
    // A large receive buffer: the probe must not lose what the service sent.
    let size: libc::c_int = 1 << 20;
    // SAFETY: as above.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Receives one datagram with its kernel timestamp (ns since the epoch);
/// `None` on timeout.
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, i64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return None;
    }
    let mut ns = now_ns();
    // SAFETY: walking the control buffer the kernel filled, with its macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ns = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, ns))
}

fn sip_request(
    method: &str,
    target: SocketAddr,
    local: SocketAddr,
    call: &str,
    cseq: u32,
    to_tag: &str,
    body: &str,
) -> String {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:12333@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call}{cseq}{m}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=p{call}\r\nTo: <sip:12333@{target}>{to_tag}\r\n\
         Call-ID: {call}@probe\r\nCSeq: {cseq} {method}\r\nContact: <sip:probe@{local}>\r\n{ctype}\
         Content-Length: {len}\r\n\r\n{body}",
        m = method.len(),
        len = body.len()
    )
}

fn to_tag(resp: &str) -> Option<String> {
    let to = resp
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))?;
    Some(
        to.split(";tag=")
            .nth(1)?
            .trim()
            .split(';')
            .next()?
            .to_owned(),
    )
}

/// A call set up: the dialog's To tag, the service's media address and
/// how long the 200 took.
struct Dialog {
    tag: String,
    media: SocketAddr,
    invite_ms: f64,
    retransmissions: u32,
}

/// INVITE with Timer A retransmission (500 ms doubling, 7 tries), ACK.
fn setup(sip: &UdpSocket, rtp: &UdpSocket, target: SocketAddr, call: &str) -> Option<Dialog> {
    let local = sip.local_addr().ok()?;
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
        rtp.local_addr().ok()?.port()
    );
    let invite = sip_request("INVITE", target, local, call, 1, "", &sdp);
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut retransmissions = 0;
    let mut interval = Duration::from_millis(500);
    let mut next_send = started;
    let ok = loop {
        if Instant::now() >= next_send {
            if retransmissions > 6 {
                return None;
            }
            if next_send > started {
                retransmissions += 1;
            }
            sip.send_to(invite.as_bytes(), target).ok()?;
            next_send += interval;
            interval = (interval * 2).min(Duration::from_secs(4));
        }
        sip.set_read_timeout(Some(
            next_send
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .ok()?;
        let Ok((len, _)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..len]).into_owned();
        if m.starts_with("SIP/2.0 1") {
            continue;
        }
        if !m.starts_with("SIP/2.0 200") {
            return None;
        }
        break m;
    };
    let invite_ms = started.elapsed().as_secs_f64() * 1e3;
    let port: u16 = ok
        .lines()
        .find(|l| l.starts_with("m=audio "))?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    let tag = to_tag(&ok)?;
    sip.send_to(
        sip_request("ACK", target, local, call, 1, &tag, "").as_bytes(),
        target,
    )
    .ok()?;
    Some(Dialog {
        tag,
        media: SocketAddr::from(([127, 0, 0, 1], port)),
        invite_ms,
        retransmissions,
    })
}

fn bye(sip: &UdpSocket, target: SocketAddr, call: &str, tag: &str) {
    let Ok(local) = sip.local_addr() else { return };
    let req = sip_request("BYE", target, local, call, 2, tag, "");
    let mut buf = [0u8; 4096];
    let _ = sip.set_read_timeout(Some(Duration::from_millis(500)));
    for _ in 0..4 {
        let _ = sip.send_to(req.as_bytes(), target);
        while let Ok((len, _)) = sip.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 200") && buf[..len].windows(3).any(|w| w == b"BYE")
            {
                return;
            }
        }
    }
}

/// One RFC 4733 key press: a start packet and three end packets.
fn send_digit(rtp: &UdpSocket, dest: SocketAddr, seq: &mut u16, ts: &mut u32, digit: char) {
    let event = match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        _ => 11,
    };
    let mut pkt = [0u8; 16];
    for (i, (end, dur)) in [(false, 160u16), (true, 800), (true, 800), (true, 800)]
        .into_iter()
        .enumerate()
    {
        pkt[0] = 0x80;
        pkt[1] = 101 | if i == 0 { 0x80 } else { 0 };
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&0x5052_4f42u32.to_be_bytes());
        pkt[12] = event;
        pkt[13] = if end { 0x80 | 10 } else { 10 };
        pkt[14..16].copy_from_slice(&dur.to_be_bytes());
        let _ = rtp.send_to(&pkt, dest);
        *seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(2));
    }
    *ts = ts.wrapping_add(1600);
}

/// Receives until `until` (ns since the epoch), appending to `arrivals`.
fn listen(rtp: &UdpSocket, until_ns: i64, arrivals: &mut Vec<Arrival>) {
    let mut buf = [0u8; 2048];
    let _ = rtp.set_read_timeout(Some(Duration::from_millis(20)));
    while now_ns() < until_ns {
        if let Some((n, ns)) = recv_stamped(rtp, &mut buf)
            && n >= 12
            && buf[0] >> 6 == 2
        {
            arrivals.push(Arrival {
                ns,
                seq: u16::from_be_bytes([buf[2], buf[3]]),
                marker: buf[1] & 0x80 != 0,
            });
        }
    }
}

/// Gaps (µs) between consecutive arrivals and the count of missing
/// sequence numbers (16-bit wrap handled; reordered packets count as
/// neither lost nor as a gap of their own).
fn stream_stats(arrivals: &[Arrival]) -> (Vec<u64>, u64) {
    let mut gaps = Vec::with_capacity(arrivals.len());
    let mut lost = 0u64;
    let mut highest: Option<u16> = None;
    for w in arrivals.windows(2) {
        gaps.push(((w[1].ns - w[0].ns).max(0) / 1000) as u64);
    }
    for a in arrivals {
        match highest {
            None => highest = Some(a.seq),
            Some(h) => {
                let ahead = a.seq.wrapping_sub(h);
                if ahead != 0 && ahead < 0x8000 {
                    lost += u64::from(ahead - 1);
                    highest = Some(a.seq);
                } else if ahead != 0 {
                    // A late packet filled a hole counted as lost.
                    lost = lost.saturating_sub(1);
                }
            }
        }
    }
    (gaps, lost)
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// A sampled caller that listens for the whole hold time.
fn stream_call(o: Opts, n: u32, results: &Mutex<Results>) {
    let (Ok(sip), Ok(rtp)) = (
        UdpSocket::bind("127.0.0.1:0"),
        UdpSocket::bind("127.0.0.1:0"),
    ) else {
        results.lock().unwrap().failed += 1;
        return;
    };
    enable_timestamps(&rtp);
    let call = format!("s{n}x{}", std::process::id());
    let Some(d) = setup(&sip, &rtp, o.target, &call) else {
        results.lock().unwrap().failed += 1;
        return;
    };
    let mut arrivals = Vec::with_capacity((o.hold.as_millis() / 20 + 64) as usize);
    listen(&rtp, now_ns() + o.hold.as_nanos() as i64, &mut arrivals);
    bye(&sip, o.target, &call, &d.tag);
    let (gaps, lost) = stream_stats(&arrivals);
    let mut r = results.lock().unwrap();
    r.received += arrivals.len() as u64;
    r.lost += lost;
    r.gaps_us.extend(gaps);
    r.invite_ms.push(d.invite_ms);
    r.retransmissions += d.retransmissions;
}

/// A scripted caller: menu 1, the demo ID and PIN, then the time from the
/// final `#` to the first packet of the next talkspurt (the result).
fn scripted_call(o: Opts, n: u32, results: &Mutex<Results>) {
    let (Ok(sip), Ok(rtp)) = (
        UdpSocket::bind("127.0.0.1:0"),
        UdpSocket::bind("127.0.0.1:0"),
    ) else {
        results.lock().unwrap().readout_failed += 1;
        return;
    };
    enable_timestamps(&rtp);
    let call = format!("k{n}x{}", std::process::id());
    let Some(d) = setup(&sip, &rtp, o.target, &call) else {
        results.lock().unwrap().readout_failed += 1;
        return;
    };
    let (mut seq, mut ts) = (1000u16, 8000u32);
    std::thread::sleep(Duration::from_millis(300));
    send_digit(&rtp, d.media, &mut seq, &mut ts, '1');
    std::thread::sleep(Duration::from_millis(200));
    for c in DEMO_ID.chars().chain(std::iter::once('#')) {
        send_digit(&rtp, d.media, &mut seq, &mut ts, c);
    }
    std::thread::sleep(Duration::from_millis(200));
    for c in DEMO_PIN.chars() {
        send_digit(&rtp, d.media, &mut seq, &mut ts, c);
    }
    let mut buf = [0u8; 2048];
    let _ = rtp.set_nonblocking(true);
    while rtp.recv_from(&mut buf).is_ok() {}
    let _ = rtp.set_nonblocking(false);
    let _ = rtp.set_read_timeout(Some(Duration::from_millis(20)));
    let t0 = now_ns();
    send_digit(&rtp, d.media, &mut seq, &mut ts, '#');
    let mut latency = None;
    while now_ns() - t0 < 3_000_000_000 {
        if let Some((len, ns)) = recv_stamped(&rtp, &mut buf)
            && len >= 12
            && buf[1] & 0x80 != 0
        {
            latency = Some((ns - t0) as f64 / 1e6);
            break;
        }
    }
    bye(&sip, o.target, &call, &d.tag);
    let mut r = results.lock().unwrap();
    match latency {
        Some(ms) => r.readout_ms.push(ms),
        None => r.readout_failed += 1,
    }
}

fn parse_args() -> Option<Opts> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs = |name: &str, default: u64| {
        Duration::from_secs(get(name).and_then(|v| v.parse().ok()).unwrap_or(default))
    };
    Some(Opts {
        target: get("--target")?.parse().ok()?,
        streams: get("--streams").and_then(|v| v.parse().ok()).unwrap_or(30),
        scripted: get("--scripted").and_then(|v| v.parse().ok()).unwrap_or(5),
        spread: secs("--spread-secs", 10),
        hold: secs("--hold-secs", 20),
    })
}

fn self_check() {
    let mk = |ns: i64, seq: u16| Arrival {
        ns,
        seq,
        marker: false,
    };
    let a = [
        mk(0, 65534),
        mk(20_000_000, 65535),
        mk(40_000_000, 1),
        mk(100_000_000, 2),
    ];
    let (gaps, lost) = stream_stats(&a);
    assert_eq!(gaps, vec![20_000, 20_000, 60_000]);
    assert_eq!(lost, 1, "seq 0 is missing across the wrap");
    let reordered = [mk(0, 1), mk(1, 3), mk(2, 2), mk(3, 4)];
    assert_eq!(stream_stats(&reordered).1, 0);
    assert!(!a[0].marker);
    assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.5), Some(3));
    println!("load_probe: statistics self-check passed (run with --bench for a probe)");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") || !std::env::args().any(|a| a == "--target") {
        self_check();
        return;
    }
    let Some(o) = parse_args() else {
        eprintln!(
            "usage: load_probe --target IP:PORT [--streams N] [--scripted N] [--spread-secs S] [--hold-secs S]"
        );
        std::process::exit(2);
    };
    let results = Arc::new(Mutex::new(Results::default()));
    let total = o.streams + o.scripted;
    let step = if total > 1 {
        o.spread / (total - 1)
    } else {
        Duration::ZERO
    };
    let started = Instant::now();
    let mut threads = Vec::new();
    for i in 0..total {
        let at = started + step * i;
        let r = results.clone();
        threads.push(std::thread::spawn(move || {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            // `scripted` of the calls, spread evenly among the streams.
            if (i * o.scripted) / total != ((i + 1) * o.scripted) / total {
                scripted_call(o, i, &r);
            } else {
                stream_call(o, i, &r);
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let mut r = results.lock().unwrap();
    r.gaps_us.sort_unstable();
    let over = r.gaps_us.iter().filter(|&&g| g > 40_000).count();
    let ms = |us: Option<u64>| us.map_or(f64::NAN, |u| u as f64 / 1e3);
    let owed = r.received + r.lost;
    println!(
        "probe: {} streams, {} packets received, {} lost ({:.3}%); gaps p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; gaps > 40 ms: {} ({:.3}%)",
        r.invite_ms.len(),
        r.received,
        r.lost,
        if owed > 0 {
            100.0 * r.lost as f64 / owed as f64
        } else {
            0.0
        },
        ms(percentile(&r.gaps_us, 0.5)),
        ms(percentile(&r.gaps_us, 0.99)),
        ms(r.gaps_us.last().copied()),
        over,
        if r.gaps_us.is_empty() {
            0.0
        } else {
            100.0 * over as f64 / r.gaps_us.len() as f64
        },
    );
    let mut inv: Vec<u64> = r.invite_ms.iter().map(|m| (m * 1000.0) as u64).collect();
    inv.sort_unstable();
    println!(
        "probe: INVITE->200 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; INVITE retransmissions {}; calls failed {}",
        ms(percentile(&inv, 0.5)),
        ms(percentile(&inv, 0.99)),
        ms(inv.last().copied()),
        r.retransmissions,
        r.failed
    );
    let mut ro: Vec<u64> = r.readout_ms.iter().map(|m| (m * 1000.0) as u64).collect();
    ro.sort_unstable();
    println!(
        "probe: PIN '#' -> first packet of the result, {} callers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; no result {}",
        ro.len(),
        ms(percentile(&ro, 0.5)),
        ms(percentile(&ro, 0.99)),
        ms(ro.last().copied()),
        r.readout_failed
    );
}

//! Time from the caller's final `#` of the PIN to the first RTP packet of
//! the result (the next talkspurt: marker bit set), through the real
//! release binary on loopback with an embedded SQLite ledger, PIN
//! verification included. A scripted caller sends RFC 4733 digits.
//!
//! `cargo bench --bench call_latency` (calls: `CALL_LATENCY_CALLS`, default 40).
//! Prints p50/p90/p99/max; it asserts nothing.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEMO_ID: &str = "310104198507151239";
const DEMO_PIN: &str = "123456";

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
         Max-Forwards: 70\r\nFrom: <sip:bench@{local}>;tag=b{call}\r\nTo: <sip:12333@{target}>{to_tag}\r\n\
         Call-ID: {call}@bench\r\nCSeq: {cseq} {method}\r\nContact: <sip:bench@{local}>\r\n{ctype}\
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
        pkt[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        pkt[12] = event;
        pkt[13] = if end { 0x80 | 10 } else { 10 };
        pkt[14..16].copy_from_slice(&dur.to_be_bytes());
        rtp.send_to(&pkt, dest).unwrap();
        *seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(2));
    }
    *ts = ts.wrapping_add(1600);
}

fn one_call(target: SocketAddr, n: u32) -> Option<Duration> {
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sip.local_addr().unwrap();
    let call = format!("lat{n}x{}", std::process::id());
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
        rtp.local_addr().unwrap().port()
    );
    sip.send_to(
        sip_request("INVITE", target, local, &call, 1, "", &sdp).as_bytes(),
        target,
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let (ok, media) = (0..100).find_map(|_| {
        let (len, _) = sip.recv_from(&mut buf).ok()?;
        let m = String::from_utf8_lossy(&buf[..len]).into_owned();
        if !m.starts_with("SIP/2.0 200") {
            return None;
        }
        let port: u16 = m
            .lines()
            .find(|l| l.starts_with("m=audio "))?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()?;
        Some((m, SocketAddr::from(([127, 0, 0, 1], port))))
    })?;
    let tag = to_tag(&ok)?;
    sip.send_to(
        sip_request("ACK", target, local, &call, 1, &tag, "").as_bytes(),
        target,
    )
    .unwrap();

    let (mut seq, mut ts) = (1000u16, 8000u32);
    std::thread::sleep(Duration::from_millis(300));
    send_digit(&rtp, media, &mut seq, &mut ts, '1');
    std::thread::sleep(Duration::from_millis(200));
    for d in DEMO_ID.chars().chain(std::iter::once('#')) {
        send_digit(&rtp, media, &mut seq, &mut ts, d);
    }
    std::thread::sleep(Duration::from_millis(200));
    for d in DEMO_PIN.chars() {
        send_digit(&rtp, media, &mut seq, &mut ts, d);
    }
    // Drain what came so far, then time the final '#'.
    rtp.set_nonblocking(true).unwrap();
    while rtp.recv_from(&mut buf).is_ok() {}
    rtp.set_nonblocking(false).unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let t0 = Instant::now();
    send_digit(&rtp, media, &mut seq, &mut ts, '#');
    let mut latency = None;
    while t0.elapsed() < Duration::from_secs(2) {
        if let Ok((len, _)) = rtp.recv_from(&mut buf)
            && len >= 12
            && buf[1] & 0x80 != 0
        {
            latency = Some(t0.elapsed());
            break;
        }
    }
    sip.send_to(
        sip_request("BYE", target, local, &call, 2, &tag, "").as_bytes(),
        target,
    )
    .unwrap();
    latency
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let calls: u32 = if quick {
        2
    } else {
        std::env::var("CALL_LATENCY_CALLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40)
    };
    let dir = std::env::temp_dir().join(format!("ivr-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_udp_port();
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.join("service.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args([
            "serve",
            "--sip-listen",
            &target.to_string(),
            "--rtp-ports",
            "42000-42999",
            "--admin-listen",
            "",
        ])
        .arg("--db")
        .arg(format!("sqlite://{}", dir.join("ledger.db").display()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("IVR12333_LOG__LEVEL", "warn")
        .env("IVR12333_LEDGER__MAX_FAILURES", "1000000")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ivr12333");
    let _service = Service(child);
    std::thread::sleep(Duration::from_millis(1500));

    let mut samples: Vec<Duration> = (0..calls).filter_map(|n| one_call(target, n)).collect();
    samples.sort();
    let _ = std::fs::remove_dir_all(&dir);
    if samples.is_empty() {
        println!("call_latency: no call produced a result (see the service log)");
        return;
    }
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "PIN '#' -> first RTP packet of the result, {} calls: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

//! Records over real sockets and real databases, with the real binary:
//!
//! - SIPp: many concurrent calls hanging up at 300/s each leave a CDR
//!   (the CI size; the 5,000-call run is in BENCHMARKS.md);
//! - PostgreSQL (a private cluster) stopped and started during 50 calls
//!   that authenticate and hear a balance: no CDR and no audit row is lost,
//!   no balance is read without its audit row, `/healthz` says degraded
//!   meanwhile, and `ivr12333 ledger verify-audit` passes afterwards;
//! - a restart with a non-empty spool (with a torn last record) replays
//!   it, logging the torn record with file and offset.
//!
//! Loopback only; every wait is bounded in count.

mod common;
mod records_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{free_port, free_port_range, options_request, require_program};
use records_support::PrivatePg;

const PEPPER: &str = "records-e2e-pepper-not-a-secret-0123";

/// The service binary with its own spool directory and an admin port.
struct Svc {
    child: Option<Child>,
    sip: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Svc {
    fn start(dir: &Path, db: &str, spool: &Path, extra_env: &[(&str, &str)]) -> Svc {
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (lo, hi) = free_port_range(1200);
        let log = dir.join(format!("service-{}.log", sip.port()));
        let f = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr12333"));
        cmd.arg("serve")
            .args(["--sip-listen", &sip.to_string()])
            .args(["--rtp-ports", &format!("{lo}-{hi}")])
            .args(["--db", db])
            .args(["--admin-listen", &admin.to_string()])
            .env("IVR12333_LOG__LEVEL", "info")
            .env("IVR12333_SHUTDOWN_GRACE_SECS", "5")
            .env("IVR12333_LEDGER__PIN_PEPPER", PEPPER)
            .env("IVR12333_RECORDS__SPOOL_DIR", spool)
            .env("IVR12333_RECORDS__RETRY_MAX_MS", "1000")
            .env("IVR12333_SIP__MAX_CALLS_PER_SECOND", "2000")
            // Loopback callers at load rates: not what admission is about here.
            .env("IVR12333_SIP__TRUSTED_SOURCES", r#"["127.0.0.0/8"]"#)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut s = Svc {
            child: Some(cmd.spawn().expect("spawn ivr12333")),
            sip,
            admin,
            log,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        for i in 0..600 {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ivr12333 exited early ({st}):\n{}", self.log_text());
            }
            let _ = sock.send_to(
                options_request(sock.local_addr().unwrap(), self.sip, i).as_bytes(),
                self.sip,
            );
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("no answer to OPTIONS:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn healthz(&self) -> String {
        let Ok(mut s) = TcpStream::connect_timeout(&self.admin, Duration::from_secs(2)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            for _ in 0..400 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// A minimal caller: INVITE/ACK/BYE over UDP and RFC 4733 keys over RTP.

struct Uac {
    sip: UdpSocket,
    rtp: UdpSocket,
    server: SocketAddr,
    media: Option<SocketAddr>,
    call_id: String,
    tag: String,
    to_tag: String,
    seq: u16,
    ts: u32,
    ssrc: u32,
    ended: bool,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

impl Uac {
    fn new(server: SocketAddr, call_id: String) -> Uac {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        Uac {
            sip,
            rtp,
            server,
            media: None,
            call_id,
            tag: format!("t{:x}", rand::random::<u32>()),
            to_tag: String::new(),
            seq: rand::random(),
            ts: rand::random(),
            ssrc: rand::random(),
            ended: false,
        }
    }

    fn local(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    fn request(&self, method: &str, cseq: u32, body: &str) -> String {
        let me = self.local();
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_owned()
        };
        format!(
            "{method} sip:12333@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{b:x}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:13812345678@{me}>;tag={tag}\r\nTo: <sip:12333@{srv}>{to_tag}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@{me}>\r\n{ctype}\
             Content-Length: {len}\r\n\r\n{body}",
            srv = self.server,
            b = rand::random::<u64>(),
            tag = self.tag,
            cid = self.call_id,
            len = body.len(),
        )
    }

    fn invite(&mut self) -> bool {
        let port = self.rtp.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        );
        let invite = self.request("INVITE", 1, &sdp);
        for attempt in 0..300 {
            if attempt % 5 == 0 {
                let _ = self.sip.send_to(invite.as_bytes(), self.server);
            }
            let mut buf = [0u8; 8192];
            let Ok((n, _)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.starts_with("SIP/2.0 1") {
                continue;
            }
            if !msg.starts_with("SIP/2.0 200") {
                return false;
            }
            let to = header(&msg, "To")
                .or_else(|| header(&msg, "t"))
                .unwrap_or("");
            self.to_tag = to
                .split(";tag=")
                .nth(1)
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned();
            let body = msg.split("\r\n\r\n").nth(1).unwrap_or("");
            let port = body
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|l| l.split(' ').next())
                .and_then(|p| p.parse::<u16>().ok());
            self.media = port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
            let ack = self.request("ACK", 1, "");
            let _ = self.sip.send_to(ack.as_bytes(), self.server);
            return self.media.is_some();
        }
        false
    }

    /// Answers what the service sends for `ms` milliseconds (its BYE).
    fn pump(&mut self, ms: u64) {
        let rounds = ms.div_ceil(100);
        for _ in 0..rounds {
            let mut buf = [0u8; 8192];
            let Ok((n, src)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.starts_with("BYE ") {
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    if let Some(v) = header(&msg, h) {
                        resp.push_str(&format!("{h}: {v}\r\n"));
                    }
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                let _ = self.sip.send_to(resp.as_bytes(), src);
                self.ended = true;
            }
        }
    }

    fn rtp_event(&mut self, digit: u8, marker: bool, end: bool, duration: u16) {
        let Some(media) = self.media else { return };
        let mut p = Vec::with_capacity(16);
        p.push(0x80);
        p.push(101 | if marker { 0x80 } else { 0 });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.push(digit);
        p.push(if end { 0x80 | 10 } else { 10 });
        p.extend_from_slice(&duration.to_be_bytes());
        let _ = self.rtp.send_to(&p, media);
        self.seq = self.seq.wrapping_add(1);
    }

    /// One key press: start, update, end ×3 (same sequence number).
    fn key(&mut self, c: char) {
        let digit = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            _ => return,
        };
        self.rtp_event(digit, true, false, 160);
        std::thread::sleep(Duration::from_millis(20));
        self.rtp_event(digit, false, false, 480);
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..3 {
            self.rtp_event(digit, false, true, 800);
            self.seq = self.seq.wrapping_sub(1);
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(1600);
        self.pump(100);
    }

    fn keys(&mut self, s: &str) {
        for c in s.chars() {
            self.key(c);
        }
    }

    fn bye(&mut self) {
        if self.ended {
            return;
        }
        let bye = self.request("BYE", 2, "");
        for attempt in 0..50 {
            if attempt % 5 == 0 {
                let _ = self.sip.send_to(bye.as_bytes(), self.server);
            }
            let mut buf = [0u8; 8192];
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if msg.starts_with("SIP/2.0 ") && msg.contains("BYE") {
                    return;
                }
            }
        }
    }
}

/// One caller: main menu 1, the demo ID and PIN, waits for `go` (if any),
/// then (if `ask`) 1 for the pension, listens a little and hangs up. (A
/// key typed while the login is checked would skip the next prompt, so a
/// caller who is not going to hear a balance keys nothing more.)
fn balance_call(
    server: SocketAddr,
    call_id: String,
    go: Option<Arc<AtomicBool>>,
    ask: bool,
) -> bool {
    let mut u = Uac::new(server, call_id);
    if !u.invite() {
        return false;
    }
    u.pump(300);
    u.keys("1");
    u.keys("310104198507151239#");
    u.keys("123456#");
    if let Some(go) = go {
        for _ in 0..600 {
            if go.load(Ordering::SeqCst) {
                break;
            }
            u.pump(100);
        }
    } else {
        u.pump(1500);
    }
    if ask {
        u.keys("1");
        // Long enough to reach the amount: the CDR lists only what was
        // played (a prompt cut by the hang-up is marked `~cut`).
        u.pump(8000);
    } else {
        u.pump(3000);
    }
    u.bye();
    true
}

async fn pg_rows<T>(url: &str, sql: &'static str) -> Vec<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let v = sqlx::query_scalar::<_, T>(sql)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    v
}

fn verify_audit(db: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["ledger", "verify-audit", "--db", db])
        .env("IVR12333_LEDGER__PIN_PEPPER", PEPPER)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn postgres_stop_and_start_during_50_calls_loses_nothing() {
    let mut pg = PrivatePg::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut svc = Svc::start(dir.path(), &pg.url(), &spool, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(svc.healthz().contains("\r\n\r\nok"), "{}", svc.healthz());

    // Wave 1: 15 callers authenticate while the database is up and ask
    // for their balance only once it is down.
    let go = Arc::new(AtomicBool::new(false));
    let wave1: Vec<_> = (0..15)
        .map(|i| {
            let (srv, go) = (svc.sip, go.clone());
            std::thread::spawn(move || balance_call(srv, format!("w1-{i}@records"), Some(go), true))
        })
        .collect();
    let mut authed = 0usize;
    for _ in 0..600 {
        authed = rt
            .block_on(pg_rows::<String>(
                &pg.url(),
                "SELECT call_id FROM audit_log WHERE action = 'authenticate'",
            ))
            .len();
        if authed >= 15 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(authed, 15, "{}", tail(&svc.log_text(), 30));

    pg.down();
    // Wave 2: 20 callers during the outage: their logins cannot be checked
    // (system busy) but must be audited through the spool.
    let wave2: Vec<_> = (0..20)
        .map(|i| {
            let srv = svc.sip;
            std::thread::spawn(move || balance_call(srv, format!("w2-{i}@records"), None, false))
        })
        .collect();
    go.store(true, Ordering::SeqCst);
    let mut degraded = String::new();
    for _ in 0..100 {
        degraded = svc.healthz();
        if degraded.contains("degraded") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(degraded.contains("degraded db=down"), "{degraded}");
    for t in wave1.into_iter().chain(wave2) {
        assert!(t.join().unwrap(), "a call was not answered");
    }

    pg.up();
    // Wave 3: 15 callers after the restart.
    let wave3: Vec<_> = (0..15)
        .map(|i| {
            let srv = svc.sip;
            std::thread::spawn(move || balance_call(srv, format!("w3-{i}@records"), None, true))
        })
        .collect();
    for t in wave3 {
        assert!(t.join().unwrap(), "a call was not answered");
    }
    let mut cdrs = 0usize;
    for _ in 0..600 {
        cdrs = rt
            .block_on(pg_rows::<String>(
                &pg.url(),
                "SELECT call_id FROM call_records",
            ))
            .len();
        if cdrs >= 50 && svc.healthz().contains("\r\n\r\nok") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    svc.stop();
    let log = svc.log_text();
    assert_eq!(cdrs, 50, "one CDR per call\n{}", tail(&log, 40));

    let rows: Vec<String> = rt.block_on(pg_rows(
        &pg.url(),
        "SELECT call_id || ' ' || action || ' ' || outcome FROM audit_log ORDER BY seq",
    ));
    let auth = |prefix: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r.starts_with(prefix) && r.ends_with(&format!("authenticate {outcome}")))
            .count()
    };
    assert_eq!(auth("w1-", "verified"), 15, "{rows:#?}");
    assert_eq!(auth("w2-", "unavailable"), 20, "{rows:#?}");
    assert_eq!(auth("w3-", "verified"), 15, "{rows:#?}");
    // Every amount heard has its audit row; the wave-1 balances were read
    // during the outage (their rows went through the spool).
    let heard: Vec<String> = rt.block_on(pg_rows(
        &pg.url(),
        "SELECT call_id FROM call_records WHERE prompts_json LIKE '%<amount>%'",
    ));
    for c in &heard {
        assert!(
            rows.iter().any(|r| r == &format!("{c} query played")),
            "{c} heard an amount without its audit row"
        );
    }
    let w1_heard = heard.iter().filter(|c| c.starts_with("w1-")).count();
    assert_eq!(
        w1_heard, 15,
        "wave 1 heard balances while the database was down"
    );
    assert_eq!(heard.iter().filter(|c| c.starts_with("w3-")).count(), 15);
    assert!(
        !heard.iter().any(|c| c.starts_with("w2-")),
        "no balance without a login"
    );
    let busy: Vec<String> = rt.block_on(pg_rows(
        &pg.url(),
        "SELECT call_id FROM call_records WHERE prompts_json LIKE '%system_busy%'",
    ));
    let w2: Vec<String> = rt.block_on(pg_rows(
        &pg.url(),
        "SELECT call_id || ' ' || end_reason || ' ' || prompts_json FROM call_records WHERE call_id LIKE 'w2-%'",
    ));
    assert_eq!(
        busy.iter().filter(|c| c.starts_with("w2-")).count(),
        20,
        "wave 2 heard system busy: {w2:#?}"
    );
    let (ok, out) = verify_audit(&pg.url());
    assert!(ok && out.contains("intact"), "{out}");
    let leftover = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ivrspool"))
        })
        .count();
    assert_eq!(leftover, 0, "spool replayed and removed");
}

#[test]
fn restart_with_a_spool_replays_it_and_skips_a_torn_record() {
    let mut pg = PrivatePg::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut svc = Svc::start(dir.path(), &pg.url(), &spool, &[]);
    pg.down();
    // Calls end while the database is down: their CDRs go to the spool.
    for i in 0..5 {
        let mut u = Uac::new(svc.sip, format!("spooled-{i}@records"));
        assert!(u.invite());
        u.pump(300);
        u.bye();
    }
    for _ in 0..100 {
        if svc.log_text().contains("records go to the spool") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    svc.stop();
    assert!(
        svc.log_text().contains("replayed at the next start"),
        "{}",
        tail(&svc.log_text(), 30)
    );
    // The process "died" while writing one more record.
    let file = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".ivrspool"))
        .expect("a spool file");
    let good_len = std::fs::metadata(&file).unwrap().len();
    let mut torn = Vec::new();
    ivr12333::records::frame::encode(br#"{"kind":"cdr"}"#, &mut torn).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&torn[..9]).unwrap();
    drop(f);

    pg.up();
    let svc2 = Svc::start(dir.path(), &pg.url(), &spool, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..300 {
        ids = rt.block_on(pg_rows(&pg.url(), "SELECT call_id FROM call_records"));
        if ids.len() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = svc2.log_text();
    assert_eq!(ids.len(), 5, "{}", tail(&log, 30));
    assert!(ids.iter().all(|c| c.starts_with("spooled-")));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let torn_line = log
        .lines()
        .find(|l| l.contains("incomplete record"))
        .unwrap_or_else(|| panic!("no torn-record error:\n{}", tail(&log, 30)));
    assert!(torn_line.contains(&name), "{torn_line}");
    assert!(
        torn_line.contains(&format!("offset={good_len}")),
        "{torn_line}"
    );
    assert!(!log.contains("panicked"));
}

#[test]
fn sipp_calls_hanging_up_at_300_per_second_all_leave_a_cdr() {
    require_program("sipp");
    const CALLS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let spool = dir.path().join("spool");
    let svc = Svc::start(dir.path(), &db, &spool, &[("IVR12333_LOG__LEVEL", "warn")]);
    let scenario = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sipp/uac_load.xml"
    ))
    .unwrap()
    .replace("HOLD_MS", "1000");
    let sf = dir.path().join("uac_load.xml");
    std::fs::write(&sf, scenario).unwrap();
    let (media, _) = free_port_range(4);
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(&sf)
        .args(["-s", "12333"])
        .arg(svc.sip.to_string())
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &free_port().to_string(), "-mp", &media.to_string()])
        .args(["-l", "400", "-r", "300", "-m", &CALLS.to_string()])
        .args(["-timeout", "180s", "-timeout_error", "-nostdin"])
        .current_dir(dir.path())
        .output()
        .expect("run sipp");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipp failed ({}):\n{}\n{}",
        out.status,
        tail(&screen, 40),
        tail(&svc.log_text(), 40)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (total, rows): (i64, i64) = rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        let mut total = 0;
        for _ in 0..300 {
            total = sqlx::query_scalar("SELECT COUNT(DISTINCT call_id) FROM call_records")
                .fetch_one(&pool)
                .await
                .unwrap();
            if total >= CALLS as i64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM call_records")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        (total, rows)
    });
    assert_eq!(total, CALLS as i64, "{}", tail(&svc.log_text(), 40));
    assert_eq!(rows, CALLS as i64, "one CDR per call, none twice");
}

//! Several ivr12333 nodes behind Kamailio (docs/cluster.md), all real
//! processes on loopback: two `ivr12333 serve` nodes sharing one fresh
//! PostgreSQL database, and Debian's `kamailio` running
//! `deploy/kamailio/kamailio.cfg` in front of them with a dispatcher list
//! written for the test. A small scripted UA calls through the proxy (ACK,
//! INFO digits and BYE follow the Record-Route), learns which node answered
//! from the 200's Contact, and checks what it hears against the prompt
//! library.
//!
//! Needs `kamailio` (Debian package, installed by `.ci/setup`) and
//! PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth). Every wait is a
//! bounded number of reads or polls on an outcome.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Service, free_port, options_request};
use ivr12333::media::g711::Codec;
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::queue::digest::{Algorithm, digest_response};

const KAMAILIO_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kamailio/kamailio.cfg");
const PEPPER: &str = "cluster-test-pepper";
/// A demo account (docs/ledger.md) and its PIN.
const ID: &str = "310104198507151239";
const PIN: &str = "123456";
const WRONG_PIN: &str = "654321";

fn require_kamailio() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("kamailio").is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin/kamailio").is_file();
    assert!(
        found,
        "`kamailio` is not installed: run `bash .ci/setup` first (it installs Debian's kamailio package)"
    );
}

fn kamailio_bin() -> &'static str {
    if Path::new("/usr/sbin/kamailio").is_file() {
        "/usr/sbin/kamailio"
    } else {
        "kamailio"
    }
}

// --- PostgreSQL: a fresh database per test, dropped at the end ------------

struct PgDb {
    name: String,
}

impl PgDb {
    fn create() -> PgDb {
        let name = format!("ivr_cluster_{:08x}", rand::random::<u32>());
        psql("postgres", &format!("CREATE DATABASE {name}"));
        PgDb { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    fn query(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qtAc",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qtAc", sql])
        .output()
        .expect("psql (run .ci/setup)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// --- Kamailio --------------------------------------------------------------

/// Kamailio in the foreground, in its own process group: Drop stops the
/// whole group (the main process and every child it forked).
struct Kamailio {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Kamailio {
    fn start(nodes: &[SocketAddr]) -> Kamailio {
        require_kamailio();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let list = dir.path().join("dispatcher.list");
        let text: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, text).unwrap();
        let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        let child = Command::new(kamailio_bin())
            .arg("-f")
            .arg(KAMAILIO_CFG)
            .args(["-DD", "-E", "-m", "32", "-M", "4"])
            .arg("-w")
            .arg(dir.path())
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-A")
            .arg(format!("LISTEN=udp:{addr}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .arg("-A")
            .arg(format!(
                "CTL_SOCKET=\"unix:{}\"",
                dir.path().join("ctl").display()
            ))
            .arg("-A")
            .arg("DS_PING_INTERVAL=1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn kamailio");
        let mut k = Kamailio {
            child: Some(child),
            addr,
            dir,
        };
        k.wait_ready();
        k
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    /// Kamailio answers OPTIONS addressed to itself once it is up.
    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let me = sock.local_addr().unwrap();
        for i in 0..300 {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("kamailio exited early ({status}):\n{}", self.log_text());
            }
            let msg = options_request(me, self.addr, i).replace("sip:12333@", "sip:");
            let _ = sock.send_to(msg.as_bytes(), self.addr);
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("kamailio did not answer OPTIONS:\n{}", self.log_text());
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pgid = c.id() as i32;
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let mut exited = false;
            for _ in 0..50 {
                if let Ok(Some(_)) = c.try_wait() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Whatever of the group is left (children still exiting, or a
            // main process that ignored SIGTERM) goes now.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            if !exited {
                let _ = c.wait();
            }
        }
    }
}

// --- The cluster -----------------------------------------------------------

const NODE_CONFIG: &str = "[agent_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
     open = \"00:00\"\nclose = \"23:59\"\n\n\
     [[agent]]\nid = \"agent1\"\npassword = \"s3cret-pw\"\n\n\
     [[agent]]\nid = \"agent2\"\npassword = \"s3cret-pw\"\n\n\
     [[agent]]\nid = \"agent3\"\npassword = \"s3cret-pw\"\n\n\
     [[queue]]\nname = \"agents\"\nagents = [\"agent1\", \"agent2\", \"agent3\"]\nwrap_up_secs = 0\nmax_wait_secs = 300\n";

/// Two nodes on one database with Kamailio in front. Fields drop in order:
/// the proxy, the nodes, then the database (dropped once nobody uses it).
struct Cluster {
    kam: Kamailio,
    nodes: Vec<Service>,
    db: PgDb,
}

impl Cluster {
    fn start() -> Cluster {
        require_kamailio();
        let db = PgDb::create();
        let mut nodes = Vec::new();
        // One after the other: the first creates the schema and seeds the
        // demo accounts, the second finds them.
        for _ in 0..2 {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = dir.path().join("node.toml");
            std::fs::write(&cfg, NODE_CONFIG).unwrap();
            let spool = dir.path().join("spool");
            let cfg_arg = cfg.to_str().unwrap().to_owned();
            let spool_env = spool.to_str().unwrap().to_owned();
            nodes.push(Service::start_db(
                dir,
                db.url(),
                &["--config", &cfg_arg],
                &[
                    ("IVR12333_LEDGER__PIN_PEPPER", PEPPER),
                    ("IVR12333_RECORDS__SPOOL_DIR", &spool_env),
                    ("IVR12333_SHUTDOWN_GRACE_SECS", "60"),
                    ("IVR12333_SIP__TRUSTED_SOURCES", "[\"127.0.0.0/8\"]"),
                    ("IVR12333_LOG__LEVEL", "info"),
                    // Callers wait in the queue for a while in these tests.
                    ("IVR12333_RTP__INACTIVITY_TIMEOUT_SECS", "600"),
                ],
            ));
        }
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.sip).collect();
        let kam = Kamailio::start(&addrs);
        Cluster { kam, nodes, db }
    }

    fn logs(&self) -> String {
        let mut s = format!("--- kamailio ---\n{}", tail(&self.kam.log_text(), 60));
        for (i, n) in self.nodes.iter().enumerate() {
            s += &format!(
                "\n--- node {i} ({}) ---\n{}",
                n.sip,
                tail(&n.log_text(), 40)
            );
        }
        s
    }

    fn node_index(&self, addr: SocketAddr) -> usize {
        self.nodes
            .iter()
            .position(|n| n.sip == addr)
            .unwrap_or_else(|| panic!("answered by {addr}, not a node"))
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// --- A scripted UA ---------------------------------------------------------

fn prompts() -> PromptLibrary {
    PromptLibrary::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))).unwrap()
}

/// A PCMU frame from the middle of prompt `id`: receiving it means the
/// prompt was played to us.
fn prompt_frame(lib: &PromptLibrary, id: &str) -> Vec<u8> {
    let clip = lib.get(id).unwrap_or_else(|| panic!("prompt {id}"));
    let frames = clip.frames(Codec::Pcmu);
    frames[frames.len() / 2].to_vec()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn uri_in(v: &str) -> String {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_owned(),
        _ => v.split(';').next().unwrap_or(v).to_owned(),
    }
}

fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split([';', '>']).next()?.parse().ok()
}

/// Replies 200 to a request (BYE, INFO from the far side), echoing what
/// RFC 3261 §8.2.6 asks for.
fn ok_for(req: &str) -> String {
    let mut s = "SIP/2.0 200 OK\r\n".to_owned();
    for v in headers(req, "Via") {
        s += &format!("Via: {v}\r\n");
    }
    for v in headers(req, "Record-Route") {
        s += &format!("Record-Route: {v}\r\n");
    }
    let to = header(req, "To").unwrap_or_default();
    let to = if to.contains("tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=ua{}", rand::random::<u32>())
    };
    s += &format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(req, "From").unwrap_or_default(),
        header(req, "Call-ID").unwrap_or_default(),
        header(req, "CSeq").unwrap_or_default()
    );
    s
}

/// A caller: INVITE through the proxy, then in-dialog requests along the
/// recorded route.
struct Caller {
    sip: UdpSocket,
    rtp: UdpSocket,
    proxy: SocketAddr,
    call_id: String,
    from: String,
    to: String,
    routes: Vec<String>,
    target: String,
    cseq: u32,
    /// The node that answered (the 200's Contact).
    node: Option<SocketAddr>,
    /// The far side sent BYE.
    got_bye: bool,
    /// Where our RTP goes (the IVR's port from the 200's SDP).
    remote_rtp: Option<SocketAddr>,
    rtp_seq: u16,
    /// The byte every RTP payload we send is made of (0xFF: silence).
    rtp_fill: u8,
}

impl Caller {
    fn new(proxy: SocketAddr) -> Caller {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let tag = rand::random::<u32>();
        Caller {
            sip,
            rtp,
            proxy,
            call_id: format!("cl-{:016x}@test", rand::random::<u64>()),
            from: format!("<sip:13800138000@127.0.0.1>;tag=c{tag}"),
            to: "<sip:12333@127.0.0.1>".to_owned(),
            routes: Vec::new(),
            target: String::new(),
            cseq: 1,
            node: None,
            got_bye: false,
            remote_rtp: None,
            rtp_seq: 0,
            rtp_fill: 0xFF,
        }
    }

    fn me(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    fn sdp(&self) -> String {
        let port = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        )
    }

    /// One 20 ms PCMU packet of silence to the IVR: a caller that sends no
    /// RTP is hung up after the inactivity timeout.
    fn send_rtp(&mut self) {
        let Some(dest) = self.remote_rtp else { return };
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        let ts = u32::from(self.rtp_seq).wrapping_mul(160);
        let mut pkt = vec![0x80, 0x00];
        pkt.extend_from_slice(&self.rtp_seq.to_be_bytes());
        pkt.extend_from_slice(&ts.to_be_bytes());
        pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        pkt.extend_from_slice(&[self.rtp_fill; 160]);
        let _ = self.rtp.send_to(&pkt, dest);
    }

    /// Answers a request from the far side; true if it was one.
    fn serve_request(&mut self, text: &str, src: SocketAddr) -> bool {
        if text.starts_with("SIP/2.0") {
            return false;
        }
        if text.starts_with("BYE ") {
            self.got_bye = true;
        }
        if !text.starts_with("ACK ") {
            let _ = self.sip.send_to(ok_for(text).as_bytes(), src);
        }
        true
    }

    /// INVITE sip:12333 through the proxy: the final status (ACKed).
    fn invite(&mut self) -> u16 {
        let me = self.me();
        let branch = format!("z9hG4bKinv{:x}", rand::random::<u64>());
        let sdp = self.sdp();
        let msg = format!(
            "INVITE sip:12333@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            proxy = self.proxy,
            from = self.from,
            to = self.to,
            cid = self.call_id,
            len = sdp.len()
        );
        let mut provisional = false;
        let mut buf = vec![0u8; 65536];
        for i in 0..300 {
            // Timer A until a provisional arrives.
            if !provisional && i % 5 == 0 {
                self.sip.send_to(msg.as_bytes(), self.proxy).unwrap();
            }
            let Ok((n, src)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if self.serve_request(&text, src) {
                continue;
            }
            if !header(&text, "CSeq").is_some_and(|c| c.ends_with("INVITE"))
                || header(&text, "Call-ID") != Some(self.call_id.as_str())
            {
                continue;
            }
            let Some(code) = status(&text) else { continue };
            if code < 200 {
                provisional = true;
                continue;
            }
            self.to = header(&text, "To").unwrap_or_default().to_owned();
            if code >= 300 {
                // The ACK of a non-2xx: same branch, hop by hop.
                let ack = format!(
                    "ACK sip:12333@{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
                     From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    proxy = self.proxy,
                    from = self.from,
                    to = self.to,
                    cid = self.call_id,
                );
                let _ = self.sip.send_to(ack.as_bytes(), self.proxy);
                return code;
            }
            let mut rr: Vec<String> = headers(&text, "Record-Route")
                .iter()
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_owned())
                .collect();
            rr.reverse();
            self.routes = rr;
            let contact = header(&text, "Contact").map(uri_in).unwrap_or_default();
            self.node = uri_addr(&contact);
            self.target = contact;
            if let Some(body) = text.split("\r\n\r\n").nth(1) {
                let port = body
                    .lines()
                    .find_map(|l| l.strip_prefix("m=audio "))
                    .and_then(|l| l.split(' ').next())
                    .and_then(|p| p.parse::<u16>().ok());
                self.remote_rtp = port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
            }
            let ack = self.in_dialog("ACK", 1, "", "");
            let dest = self.next_hop();
            self.sip.send_to(ack.as_bytes(), dest).unwrap();
            return code;
        }
        panic!("no final response to INVITE {}", self.call_id);
    }

    fn next_hop(&self) -> SocketAddr {
        match self.routes.first() {
            Some(r) => uri_addr(&uri_in(r)).expect("route address"),
            None => uri_addr(&self.target).expect("target address"),
        }
    }

    fn in_dialog(&self, method: &str, cseq: u32, extra: &str, body: &str) -> String {
        let me = self.me();
        let routes: String = self
            .routes
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{r:x};rport\r\nMax-Forwards: 70\r\n\
             {routes}From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            target = self.target,
            r = rand::random::<u64>(),
            from = self.from,
            to = self.to,
            cid = self.call_id,
            len = body.len()
        )
    }

    /// An in-dialog request along the route set: its final status.
    fn request(&mut self, method: &str, extra: &str, body: &str) -> u16 {
        self.cseq += 1;
        let msg = self.in_dialog(method, self.cseq, extra, body);
        let dest = self.next_hop();
        let want = format!("{} {method}", self.cseq);
        let mut buf = vec![0u8; 65536];
        for i in 0..200 {
            if i % 5 == 0 {
                self.sip.send_to(msg.as_bytes(), dest).unwrap();
            }
            self.send_rtp();
            let Ok((n, src)) = self.sip.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if self.serve_request(&text, src) {
                continue;
            }
            if header(&text, "CSeq") == Some(want.as_str())
                && let Some(code) = status(&text)
                && code >= 200
            {
                return code;
            }
        }
        panic!("no final response to {method} in {}", self.call_id);
    }

    fn digits(&mut self, keys: &str) {
        for k in keys.chars() {
            let code = self.request(
                "INFO",
                "Content-Type: application/dtmf-relay\r\n",
                &format!("Signal={k}\r\nDuration=160\r\n"),
            );
            assert_eq!(code, 200, "INFO {} in {}", '#', self.call_id);
        }
    }

    fn bye(&mut self) -> u16 {
        self.request("BYE", "", "")
    }

    /// Reads RTP (bounded) until a packet carries `frame`; answers SIP
    /// requests meanwhile.
    fn hears(&mut self, frame: &[u8], max_reads: u32) -> bool {
        let mut buf = [0u8; 2048];
        let mut sbuf = vec![0u8; 65536];
        for _ in 0..max_reads {
            self.send_rtp();
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf)
                && n > 12
                && &buf[12..n] == frame
            {
                return true;
            }
            self.sip.set_nonblocking(true).unwrap();
            while let Ok((n, src)) = self.sip.recv_from(&mut sbuf) {
                let text = String::from_utf8_lossy(&sbuf[..n]).into_owned();
                self.serve_request(&text, src);
            }
            self.sip.set_nonblocking(false).unwrap();
        }
        false
    }
}

/// One call: answered, the welcome prompt heard, BYE answered 200 via the
/// proxy. Returns the node that took it.
fn welcome_call(proxy: SocketAddr, welcome: &[u8]) -> Result<SocketAddr, String> {
    let mut c = Caller::new(proxy);
    let code = c.invite();
    if code != 200 {
        return Err(format!("INVITE answered {code}"));
    }
    if c.routes.is_empty() {
        return Err("the 200 carried no Record-Route of the proxy".into());
    }
    if !c.hears(welcome, 400) {
        return Err(format!("welcome prompt not heard in {}", c.call_id));
    }
    let bye = c.bye();
    if bye != 200 {
        return Err(format!("BYE answered {bye}"));
    }
    c.node.ok_or_else(|| "no Contact in the 200".into())
}

// --- (a) spread ------------------------------------------------------------

#[test]
fn calls_through_kamailio_are_spread_over_both_nodes() {
    let cluster = Cluster::start();
    let welcome = prompt_frame(&prompts(), "welcome");
    let proxy = cluster.kam.addr;
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let w = welcome.clone();
            std::thread::spawn(move || welcome_call(proxy, &w))
        })
        .collect();
    let mut per_node: HashMap<usize, usize> = HashMap::new();
    for h in handles {
        match h.join().unwrap() {
            Ok(node) => *per_node.entry(cluster.node_index(node)).or_default() += 1,
            Err(e) => panic!("{e}\n{}", cluster.logs()),
        }
    }
    assert_eq!(per_node.values().sum::<usize>(), 20);
    // Round robin: both nodes took a fair share.
    for i in 0..2 {
        let n = per_node.get(&i).copied().unwrap_or(0);
        assert!(n >= 5, "node {i} took {n} of 20 calls: {per_node:?}");
    }
    // Both nodes write their CDRs to the shared database.
    let mut cdrs = 0;
    for _ in 0..100 {
        cdrs = cluster
            .db
            .query("SELECT count(*) FROM call_records")
            .parse::<u32>()
            .unwrap_or(0);
        if cdrs >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cdrs, 20, "one CDR per call in the shared database");
}

// --- (b) a node killed -----------------------------------------------------

#[test]
fn a_killed_node_loses_no_new_calls() {
    let cluster = Cluster::start();
    let welcome = prompt_frame(&prompts(), "welcome");
    let proxy = cluster.kam.addr;
    let dead = cluster.nodes[1].sip;
    cluster.nodes[1].signal(libc::SIGKILL);
    // Every new call is answered by the survivor: the first ones after
    // the kill wait out Kamailio's fr_timer on the dead node and fail over.
    for i in 0..6 {
        match welcome_call(proxy, &welcome) {
            Ok(node) => assert_ne!(node, dead, "call {i} answered by the killed node"),
            Err(e) => panic!("call {i}: {e}\n{}", cluster.logs()),
        }
    }
}

// --- (c) a node draining -----------------------------------------------------

#[test]
fn a_draining_node_gets_no_new_calls_and_keeps_its_own() {
    let cluster = Cluster::start();
    let lib = prompts();
    let welcome = prompt_frame(&lib, "welcome");
    let proxy = cluster.kam.addr;
    // A call in progress on node 1 (round robin: at most a few tries).
    let mut on_node1 = None;
    let mut others = Vec::new();
    for _ in 0..6 {
        let mut c = Caller::new(proxy);
        assert_eq!(c.invite(), 200, "{}", cluster.logs());
        if c.node == Some(cluster.nodes[1].sip) {
            on_node1 = Some(c);
            break;
        }
        others.push(c);
    }
    for mut c in others {
        assert_eq!(c.bye(), 200);
    }
    let mut kept = on_node1.expect("no call reached node 1");
    assert!(kept.hears(&welcome, 400), "welcome on node 1");
    cluster.nodes[1].signal(libc::SIGTERM);
    assert!(
        cluster.nodes[1].wait_log("refusing new calls", 100),
        "node 1 did not start draining:\n{}",
        cluster.logs()
    );
    // The draining node refuses OPTIONS with 503: the balancer's probe.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut refused = false;
    let mut buf = [0u8; 4096];
    for i in 0..50 {
        let msg = options_request(probe.local_addr().unwrap(), cluster.nodes[1].sip, i);
        probe.send_to(msg.as_bytes(), cluster.nodes[1].sip).unwrap();
        if let Ok((n, _)) = probe.recv_from(&mut buf)
            && buf[..n].starts_with(b"SIP/2.0 503")
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "a draining node answers OPTIONS 503");
    // New calls all go to node 0.
    for i in 0..6 {
        match welcome_call(proxy, &welcome) {
            Ok(node) => assert_eq!(
                node,
                cluster.nodes[0].sip,
                "call {i} reached the draining node\n{}",
                cluster.logs()
            ),
            Err(e) => panic!("call {i}: {e}\n{}", cluster.logs()),
        }
    }
    // The call in progress on the draining node still works, through the
    // proxy, until the caller hangs up.
    assert!(!kept.got_bye, "the draining node ended its call");
    kept.digits("5");
    assert_eq!(kept.bye(), 200);
}

// --- (d) PIN lockout shared through PostgreSQL ------------------------------

/// Keys the menu choice, the ID and `pins` one after another (each PIN
/// answered by `auth_failed` before the next ID is keyed). Returns the node.
fn pin_call(proxy: SocketAddr, lib: &PromptLibrary, pins: &[&str], last: &str) -> SocketAddr {
    let enter_id = prompt_frame(lib, "enter_id");
    let enter_pin = prompt_frame(lib, "enter_pin");
    let mut c = Caller::new(proxy);
    assert_eq!(c.invite(), 200);
    c.digits("1");
    for (i, pin) in pins.iter().enumerate() {
        assert!(c.hears(&enter_id, 1500), "enter_id ({i}) in {}", c.call_id);
        c.digits(&format!("{ID}#"));
        assert!(
            c.hears(&enter_pin, 1500),
            "enter_pin ({i}) in {}",
            c.call_id
        );
        c.digits(&format!("{pin}#"));
        let expect = if i + 1 == pins.len() {
            last
        } else {
            "auth_failed"
        };
        assert!(
            c.hears(&prompt_frame(lib, expect), 1500),
            "{expect} after PIN {i} in {}",
            c.call_id
        );
    }
    if !c.got_bye {
        c.bye();
    }
    c.node.expect("node")
}

#[test]
fn wrong_pins_on_both_nodes_lock_the_account() {
    let cluster = Cluster::start();
    let lib = prompts();
    let proxy = cluster.kam.addr;
    // Two wrong PINs on one node, three on the other: the fifth locks.
    let first = pin_call(proxy, &lib, &[WRONG_PIN, WRONG_PIN], "auth_failed");
    // Round robin: the next call goes to the other node.
    let second = pin_call(
        proxy,
        &lib,
        &[WRONG_PIN, WRONG_PIN, WRONG_PIN],
        "account_locked",
    );
    let outcomes = cluster.db.query(
        "SELECT string_agg(outcome, ',' ORDER BY seq) FROM audit_log WHERE action = 'authenticate'",
    );
    assert_eq!(
        outcomes,
        "rejected,rejected,rejected,rejected,lockout",
        "{}",
        cluster.logs()
    );
    // The right PIN is now refused as locked, on whichever node.
    let third = pin_call(proxy, &lib, &[PIN], "account_locked");
    let outcomes = cluster.db.query(
        "SELECT outcome FROM audit_log WHERE action = 'authenticate' ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(outcomes, "locked");
    let used: std::collections::HashSet<SocketAddr> = [first, second, third].into();
    assert_eq!(used.len(), 2, "the calls did not reach both nodes");
}

// --- (e) an agent registered through Kamailio ---------------------------------

/// An agent phone: REGISTERs through the proxy with digest auth and
/// answers the INVITE that comes back through it.
struct AgentPhone {
    sip: UdpSocket,
    rtp: UdpSocket,
    proxy: SocketAddr,
    n: u32,
    user: String,
}

impl AgentPhone {
    fn new(proxy: SocketAddr) -> AgentPhone {
        AgentPhone::named(proxy, "agent1")
    }

    fn named(proxy: SocketAddr, user: &str) -> AgentPhone {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_nonblocking(true).unwrap();
        AgentPhone {
            sip,
            rtp,
            proxy,
            n: 0,
            user: user.to_owned(),
        }
    }

    fn me(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    fn register_once(&mut self, auth: Option<String>) -> String {
        self.n += 1;
        let me = self.me();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "REGISTER sip:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{n}x{r};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@127.0.0.1>;tag=r{n}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}-cluster@test\r\n\
             CSeq: {n} REGISTER\r\nContact: <sip:{user}@{me}>\r\nSupported: path\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
            proxy = self.proxy,
            user = self.user,
            n = self.n,
            r = rand::random::<u32>(),
        );
        let mut buf = vec![0u8; 65536];
        for i in 0..100 {
            if i % 5 == 0 {
                self.sip.send_to(msg.as_bytes(), self.proxy).unwrap();
            }
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if status(&text).is_some_and(|c| c >= 200) {
                    return text;
                }
            }
        }
        panic!("no final response to REGISTER");
    }

    /// REGISTER, answer the 401 with the password: the final response.
    fn register(&mut self, password: &str) -> String {
        let challenge = self.register_once(None);
        assert_eq!(status(&challenge), Some(401), "{challenge}");
        let line = headers(&challenge, "WWW-Authenticate")
            .into_iter()
            .find(|l| l.contains("MD5"))
            .expect("an MD5 challenge")
            .to_owned();
        let nonce = line
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("nonce");
        let uri = format!("sip:{}", self.proxy);
        let response = digest_response(
            Algorithm::Md5,
            &self.user,
            "ivr12333",
            password,
            "REGISTER",
            &uri,
            nonce,
            "00000001",
            "c0ffee",
        );
        let auth = format!(
            "Digest username=\"{}\", realm=\"ivr12333\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
            self.user
        );
        self.register_once(Some(auth))
    }

    /// The next request of `method` (bounded reads): its text and source.
    fn next_request(&mut self, method: &str, reads: u32) -> Option<(String, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        for _ in 0..reads {
            if let Ok((n, src)) = self.sip.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with(&format!("{method} ")) {
                    return Some((text, src));
                }
            }
        }
        None
    }

    /// 200 with an SDP answer (PCMU) to `invite`.
    fn answer(&self, invite: &str, src: SocketAddr) {
        let port = self.rtp.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        );
        let ok = ok_for(invite).replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Contact: <sip:{}@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                self.user,
                self.me(),
                sdp.len()
            ),
        );
        self.sip.send_to(ok.as_bytes(), src).unwrap();
    }
}

fn sdp_audio(msg: &str) -> Option<SocketAddr> {
    let body = msg.split("\r\n\r\n").nth(1)?;
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse::<u16>()
        .ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn rtp_packet(seq: u16, fill: u8) -> Vec<u8> {
    let mut pkt = vec![0x80, 0x00];
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    pkt.extend_from_slice(&0x0A0B_0C0Du32.to_be_bytes());
    pkt.extend_from_slice(&[fill; 160]);
    pkt
}

/// Whether a packet whose payload is all `fill` is waiting on `sock`
/// (non-blocking; drains what is there).
fn got_fill(sock: &UdpSocket, fill: u8) -> bool {
    let mut buf = [0u8; 2048];
    let mut seen = false;
    for _ in 0..64 {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n > 12 => seen |= buf[12..n].iter().all(|&b| b == fill),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn agent_registered_on_one_node_is_bridged_to_a_caller_on_the_other() {
    let cluster = Cluster::start();
    let proxy = cluster.kam.addr;
    let mut agent = AgentPhone::new(proxy);
    let ok = agent.register("s3cret-pw");
    assert_eq!(status(&ok), Some(200), "{ok}\n{}", cluster.logs());
    // The proxy's Path (RFC 3327) is echoed: the UA said Supported: path.
    let path = header(&ok, "Path").unwrap_or_else(|| panic!("no Path in {ok}"));
    assert!(path.contains(&format!("sip:{proxy}")), "{path}");
    assert!(path.contains("received="), "{path}");
    // The binding holds the Path on the node the REGISTER reached.
    let node = (0..2)
        .find(|&i| cluster.nodes[i].wait_log("agent registered: logged in", 20))
        .unwrap_or_else(|| panic!("no node logged the agent in\n{}", cluster.logs()));
    assert!(
        cluster.nodes[node].log_text().contains("path_hops=1"),
        "{}",
        cluster.logs()
    );

    // A caller on the other node (round robin: at most a few tries)
    // presses 0: the agent's binding and state are in the shared database.
    let mut caller = None;
    for _ in 0..4 {
        let mut c = Caller::new(proxy);
        assert_eq!(c.invite(), 200, "{}", cluster.logs());
        if c.node.is_some() && c.node != Some(cluster.nodes[node].sip) {
            caller = Some(c);
            break;
        }
        assert_eq!(c.bye(), 200);
    }
    let mut caller = caller.expect("no call reached the other node");
    caller.digits("0");

    // The agent's INVITE comes through the proxy, record-routed, with the
    // node's hop below the proxy's.
    let mut invite = None;
    for _ in 0..100 {
        caller.send_rtp();
        if let Some(r) = agent.next_request("INVITE", 3) {
            invite = Some(r);
            break;
        }
    }
    let (inv, src) = invite.unwrap_or_else(|| panic!("agent not rung\n{}", cluster.logs()));
    assert_eq!(src, proxy, "the INVITE did not come through the proxy");
    assert_eq!(headers(&inv, "Via").len(), 2, "{inv}");
    assert!(
        headers(&inv, "Record-Route")
            .iter()
            .any(|r| r.contains(&proxy.to_string())),
        "{inv}"
    );
    assert_eq!(
        header(&inv, "Route"),
        None,
        "the proxy consumed its Route: {inv}"
    );
    let leg_rtp = sdp_audio(&inv).expect("SDP offer");
    agent.answer(&inv, src);
    let (_ack, ack_src) = agent
        .next_request("ACK", 50)
        .unwrap_or_else(|| panic!("no ACK\n{}", cluster.logs()));
    assert_eq!(ack_src, proxy, "the ACK did not come through the proxy");

    // Audio both ways through the bridge.
    caller.rtp_fill = 0x2A;
    caller.rtp.set_nonblocking(true).unwrap();
    let (mut heard_agent, mut heard_caller) = (false, false);
    for seq in 0..500u16 {
        agent.rtp.send_to(&rtp_packet(seq, 0x55), leg_rtp).unwrap();
        caller.send_rtp();
        heard_agent |= got_fill(&caller.rtp, 0x55);
        heard_caller |= got_fill(&agent.rtp, 0x2A);
        if heard_agent && heard_caller {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    caller.rtp.set_nonblocking(false).unwrap();
    assert!(
        heard_agent,
        "the caller did not hear the agent\n{}",
        cluster.logs()
    );
    assert!(
        heard_caller,
        "the agent did not hear the caller\n{}",
        cluster.logs()
    );

    // The caller hangs up: the node's BYE reaches the agent via the proxy.
    assert_eq!(caller.bye(), 200);
    let (bye, bye_src) = agent
        .next_request("BYE", 50)
        .unwrap_or_else(|| panic!("no BYE to the agent\n{}", cluster.logs()));
    assert_eq!(bye_src, proxy);
    agent.sip.send_to(ok_for(&bye).as_bytes(), bye_src).unwrap();
}

// --- (e) the shared agent queue ----------------------------------------------

impl Caller {
    /// Keeps a waiting call alive: one RTP packet (with this caller's fill
    /// byte), answers to whatever the far side asked, hold audio drained.
    fn pump(&mut self) {
        self.send_rtp();
        let mut buf = vec![0u8; 65536];
        self.sip.set_nonblocking(true).unwrap();
        while let Ok((n, src)) = self.sip.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.serve_request(&text, src);
        }
        self.sip.set_nonblocking(false).unwrap();
        self.rtp.set_nonblocking(true).unwrap();
        while self.rtp.recv_from(&mut buf).is_ok() {}
        self.rtp.set_nonblocking(false).unwrap();
    }
}

/// The test's agents: which caller (by fill byte) each one talks to.
struct Desk {
    phones: Vec<AgentPhone>,
    talking: Vec<Option<usize>>,
    /// (agent, caller) in the order the agents were rung.
    served: Vec<(usize, usize)>,
}

/// Caller `i` sends RTP made of this byte: the agent learns who it talks to
/// from the audio it hears.
fn fill_of(i: usize) -> u8 {
    0x10 + i as u8
}

impl Desk {
    fn new(proxy: SocketAddr, n: usize) -> Desk {
        Desk {
            phones: (1..=n)
                .map(|i| AgentPhone::named(proxy, &format!("agent{i}")))
                .collect(),
            talking: vec![None; n],
            served: Vec::new(),
        }
    }

    /// Reads every phone once (non-blocking): BYEs are answered and free
    /// the agent; an INVITE to a busy agent fails the test. Returns the
    /// agent that got an INVITE, with it.
    fn poll(&mut self, logs: &dyn Fn() -> String) -> Option<(usize, String, SocketAddr)> {
        let mut got = None;
        let mut buf = vec![0u8; 65536];
        for (i, p) in self.phones.iter().enumerate() {
            p.sip.set_nonblocking(true).unwrap();
            while let Ok((n, src)) = p.sip.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with("BYE ") {
                    p.sip.send_to(ok_for(&text).as_bytes(), src).unwrap();
                    self.talking[i] = None;
                } else if text.starts_with("INVITE ") {
                    assert!(
                        self.talking[i].is_none() && got.is_none(),
                        "agent{} offered a second call\n{}",
                        i + 1,
                        logs()
                    );
                    got = Some((i, text, src));
                } else if text.starts_with("CANCEL ") {
                    panic!("agent{} ring cancelled (rang out?)\n{}", i + 1, logs());
                }
            }
            p.sip.set_nonblocking(false).unwrap();
        }
        got
    }

    /// Answers `invite` on agent `a` and returns the caller whose audio it
    /// hears through the bridge.
    fn take(
        &mut self,
        a: usize,
        invite: &str,
        src: SocketAddr,
        callers: &mut [Caller],
        logs: &dyn Fn() -> String,
    ) -> usize {
        // Audio of the agent's previous call may still wait on its socket.
        let mut buf = [0u8; 2048];
        while self.phones[a].rtp.recv_from(&mut buf).is_ok() {}
        self.phones[a].answer(invite, src);
        for _ in 0..300 {
            callers.iter_mut().for_each(Caller::pump);
            while let Ok((n, _)) = self.phones[a].rtp.recv_from(&mut buf) {
                if n <= 12 {
                    continue;
                }
                let p = &buf[12..n];
                if p.iter().all(|&b| b == p[0])
                    && let Some(i) = (0..callers.len()).find(|&i| fill_of(i) == p[0])
                {
                    self.talking[a] = Some(i);
                    self.served.push((a, i));
                    return i;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent{} hears no caller\n{}", a + 1, logs());
    }

    /// Waits (bounded) for the next INVITE to any agent, keeping the
    /// callers alive meanwhile.
    fn next_ring(
        &mut self,
        callers: &mut [Caller],
        logs: &dyn Fn() -> String,
    ) -> (usize, String, SocketAddr) {
        for _ in 0..500 {
            callers.iter_mut().for_each(Caller::pump);
            if let Some(r) = self.poll(logs) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no agent rung\n{}", logs());
    }
}

/// Callers through the proxy; each sends RTP made of its own byte.
fn callers_in_queue(cluster: &Cluster, n: usize) -> Vec<Caller> {
    let mut callers: Vec<Caller> = (0..n)
        .map(|i| {
            let mut c = Caller::new(cluster.kam.addr);
            c.rtp_fill = fill_of(i);
            assert_eq!(c.invite(), 200, "caller {i}\n{}", cluster.logs());
            c
        })
        .collect();
    // Key 0, one caller after the other: that is the join order.
    for i in 0..n {
        callers[i].digits("0");
        for _ in 0..8 {
            callers.iter_mut().for_each(Caller::pump);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut joined = String::new();
    for _ in 0..300 {
        joined = cluster.db.query("SELECT count(*) FROM queue_entries");
        if joined == n.to_string() {
            return callers;
        }
        callers.iter_mut().for_each(Caller::pump);
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{joined} of {n} callers in the shared queue\n{}",
        cluster.logs()
    );
}

#[test]
fn twenty_callers_on_both_nodes_are_served_in_join_order_by_three_agents() {
    let cluster = Cluster::start();
    let logs = || cluster.logs();
    let mut callers = callers_in_queue(&cluster, 20);
    for n in &cluster.nodes {
        let here = callers.iter().filter(|c| c.node == Some(n.sip)).count();
        assert!(here >= 5, "only {here} of 20 callers on {}", n.sip);
    }
    let mut desk = Desk::new(cluster.kam.addr, 3);
    // The agents log in one after the other: each takes the caller who
    // waited longest.
    for a in 0..3 {
        let ok = desk.phones[a].register("s3cret-pw");
        assert_eq!(status(&ok), Some(200), "{ok}\n{}", logs());
        let (rung, inv, src) = desk.next_ring(&mut callers, &logs);
        assert_eq!(rung, a, "agent{} rung before logging in", rung + 1);
        let who = desk.take(a, &inv, src, &mut callers, &logs);
        assert_eq!(who, a, "agent{} got caller {who}, not caller {a}", a + 1);
    }
    // One agent at a time hangs up; the next caller in join order, whatever
    // its node, rings that agent and no other.
    for k in 3..20 {
        let a = k % 3;
        let talking = desk.talking[a].expect("agent on a call");
        assert_eq!(callers[talking].bye(), 200);
        let (rung, inv, src) = desk.next_ring(&mut callers, &logs);
        assert_eq!(rung, a, "caller {k}: agent{} rung while busy", rung + 1);
        let who = desk.take(a, &inv, src, &mut callers, &logs);
        assert_eq!(
            who,
            k,
            "served caller {who} when caller {k} waited longest\n{}",
            logs()
        );
    }
    let order: Vec<usize> = desk.served.iter().map(|&(_, c)| c).collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    for a in 0..3 {
        let c = desk.talking[a].expect("agent on a call");
        assert_eq!(callers[c].bye(), 200);
    }
    assert_eq!(cluster.db.query("SELECT count(*) FROM queue_entries"), "0");
}

#[test]
fn a_killed_nodes_callers_leave_the_queue_within_the_lease_and_the_rest_keep_order() {
    let cluster = Cluster::start();
    let logs = || cluster.logs();
    let mut callers = callers_in_queue(&cluster, 8);
    let dead = cluster.nodes[1].sip;
    let survivors: Vec<usize> = (0..8).filter(|&i| callers[i].node != Some(dead)).collect();
    assert!(
        (1..8).contains(&survivors.len()),
        "callers on one node only: {survivors:?}"
    );
    let dead_name = dead.to_string();
    let on_dead = |db: &PgDb| {
        db.query(&format!(
            "SELECT count(*) FROM queue_entries WHERE node = '{dead_name}'"
        ))
    };
    assert_eq!(on_dead(&cluster.db), (8 - survivors.len()).to_string());
    cluster.nodes[1].signal(libc::SIGKILL);
    let killed = std::time::Instant::now();
    let mut gone = false;
    for _ in 0..300 {
        if on_dead(&cluster.db) == "0" {
            gone = true;
            break;
        }
        callers.iter_mut().for_each(Caller::pump);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "the dead node's callers are still queued\n{}", logs());
    // For the record (the lease is 3 s, renewed every second).
    eprintln!(
        "dead node's entries gone {} ms after SIGKILL",
        killed.elapsed().as_millis()
    );
    assert_eq!(
        cluster.db.query("SELECT count(*) FROM queue_entries"),
        survivors.len().to_string()
    );
    // The survivors are served in their join order by one agent.
    let mut desk = Desk::new(cluster.kam.addr, 1);
    let ok = desk.phones[0].register("s3cret-pw");
    assert_eq!(status(&ok), Some(200), "{ok}\n{}", logs());
    for &want in &survivors {
        let (_, inv, src) = desk.next_ring(&mut callers, &logs);
        let who = desk.take(0, &inv, src, &mut callers, &logs);
        assert_eq!(who, want, "survivors served out of order\n{}", logs());
        assert_eq!(callers[who].bye(), 200);
    }
}

/// The queue figures of BENCHMARKS.md (not a pass/fail test; run with
/// `cargo test --release --test cluster_kamailio -- --ignored --nocapture
/// shared_queue_figures`): `QUEUE_FIGURE_CALLS` callers (default 100)
/// through Kamailio over both nodes, one after the other, each rung by one
/// of three free agents, answered and hung up. Prints join → ring latency
/// (measured in the node from the caller's join to the agent's INVITE
/// being handed to its call) and the database load per queued call.
#[test]
#[ignore]
fn shared_queue_figures() {
    let n: usize = std::env::var("QUEUE_FIGURE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut cluster = Cluster::start();
    let logs = || cluster.logs();
    let mut desk = Desk::new(cluster.kam.addr, 3);
    for a in 0..3 {
        let ok = desk.phones[a].register("s3cret-pw");
        assert_eq!(status(&ok), Some(200), "{ok}");
    }
    let stat = |db: &PgDb| -> Vec<i64> {
        db.query(&format!(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, tup_fetched \
             FROM pg_stat_database WHERE datname = '{}'",
            db.name
        ))
        .split('|')
        .map(|v| v.parse().unwrap_or(0))
        .collect()
    };
    let before = stat(&cluster.db);
    let started = std::time::Instant::now();
    for i in 0..n {
        if i % 30 == 29 {
            // Refresh the registrations (Expires: 300) on long runs.
            for p in &mut desk.phones {
                assert_eq!(status(&p.register("s3cret-pw")), Some(200));
            }
        }
        let mut c = Caller::new(cluster.kam.addr);
        c.rtp_fill = 0x10;
        assert_eq!(c.invite(), 200, "caller {i}");
        c.digits("0");
        let mut callers = [c];
        let (a, inv, src) = desk.next_ring(&mut callers, &|| format!("call {i}\n{}", logs()));
        desk.take(a, &inv, src, &mut callers, &logs);
        assert_eq!(callers[0].bye(), 200);
        for _ in 0..50 {
            desk.poll(&logs);
            if desk.talking[a].is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let elapsed = started.elapsed();
    // Let the last CDRs land before reading the database's counters.
    std::thread::sleep(Duration::from_millis(1500));
    let after = stat(&cluster.db);
    let mut lat: Vec<u64> = Vec::new();
    let (mut trips, mut ticks) = (0u64, 0u64);
    let field = |l: &str, name: &str| -> u64 {
        l.split(&format!(" {name}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for node in &mut cluster.nodes {
        node.stop();
        let text = node.log_text();
        for l in text.lines() {
            if let Some(v) = l.split("join_to_ring_us=").nth(1) {
                lat.extend(
                    v.split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok()),
                );
            }
            if l.contains("database round trips of this node") {
                trips += field(l, "round_trips");
                ticks += field(l, "tick_round_trips");
            }
        }
    }
    lat.sort_unstable();
    assert_eq!(lat.len(), n, "one ring per call");
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let d: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let per = |v: i64| v as f64 / n as f64;
    println!(
        "shared queue, 2 nodes, {n} queued calls in {:.1} s: join->ring p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat[lat.len() - 1] as f64 / 1000.0
    );
    println!(
        "database per queued call (whole service: queue, ledger, CDR, leases): {:.1} commits, {:.1} rows inserted, {:.1} updated, {:.1} deleted, {:.0} fetched",
        per(d[0]),
        per(d[1]),
        per(d[2]),
        per(d[3]),
        per(d[4])
    );
    println!(
        "shared queue's own round trips (both nodes): {trips}, of which lease ticks {ticks} ({:.1} per node-second); the rest {:.1} per queued call",
        ticks as f64 / 2.0 / elapsed.as_secs_f64(),
        (trips - ticks) as f64 / n as f64
    );
}

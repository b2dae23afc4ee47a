//! Guessing resistance of agent digest logins, against the real binary over
//! UDP on loopback: 5,000 wrong digest answers from one source (127.0.0.2)
//! lock the agent; the right password is then refused from another source
//! (127.0.0.3) with the very same 401 as a wrong one; the log holds a few
//! summary lines (never the password or a response); once the (short,
//! configured) lock is over the right password logs the agent in.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::Service;
use ivr12333::queue::digest::{Algorithm, digest_response};

const PASSWORD: &str = "c0rrect-h0rse";

/// A REGISTERing phone bound to one loopback source address.
struct Phone {
    sock: UdpSocket,
    to: SocketAddr,
    n: u32,
    nonce: String,
    nc: u32,
}

impl Phone {
    fn new(src: &str, to: SocketAddr) -> Phone {
        let sock = UdpSocket::bind((src, 0)).expect("bind loopback source");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Phone {
            sock,
            to,
            n: 0,
            nonce: String::new(),
            nc: 0,
        }
    }

    fn uri(&self) -> String {
        format!("sip:{}", self.to)
    }

    /// One REGISTER, the final response (resent on the same branch after
    /// 500 ms without an answer; at most 4 s).
    fn register(&mut self, auth: Option<&str>) -> String {
        self.n += 1;
        let me = self.sock.local_addr().unwrap();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKg{n}x{r}\r\nMax-Forwards: 70\r\n\
             From: <sip:agent1@127.0.0.1>;tag=g{n}\r\nTo: <sip:agent1@127.0.0.1>\r\nCall-ID: guess-{port}@test\r\n\
             CSeq: {n} REGISTER\r\nContact: <sip:agent1@{me}>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
            uri = self.uri(),
            n = self.n,
            r = rand::random::<u32>(),
            port = me.port(),
        );
        let mut buf = [0u8; 8192];
        for _ in 0..8 {
            self.sock.send_to(msg.as_bytes(), self.to).unwrap();
            for _ in 0..5 {
                if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.contains(&format!("CSeq: {} REGISTER", self.n))
                        && !text.starts_with("SIP/2.0 1")
                    {
                        return text;
                    }
                }
            }
        }
        panic!("no final response to REGISTER {}", self.n);
    }

    /// Gets a fresh challenge and keeps its nonce.
    fn challenge(&mut self) {
        let c = self.register(None);
        assert!(c.starts_with("SIP/2.0 401"), "{c}");
        self.nonce = c
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
            .and_then(|l| l.split("nonce=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .expect("an MD5 challenge with a nonce")
            .to_owned();
        self.nc = 0;
    }

    /// Answers the current nonce (next nc) with `password`; returns the
    /// response and the digest sent.
    fn answer(&mut self, password: &str) -> (String, String) {
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let uri = self.uri();
        let digest = digest_response(
            Algorithm::Md5,
            "agent1",
            "ivr12333",
            password,
            "REGISTER",
            &uri,
            &self.nonce,
            &nc,
            "deadbeef",
        );
        let auth = format!(
            "Digest username=\"agent1\", realm=\"ivr12333\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{digest}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"deadbeef\"",
            self.nonce
        );
        (self.register(Some(&auth)), digest)
    }
}

/// Status line and header names, in order: the "shape" of a response.
fn shape(resp: &str) -> Vec<String> {
    let mut lines = resp.lines();
    let mut out = vec![lines.next().unwrap_or("").to_owned()];
    for l in lines.take_while(|l| !l.is_empty()) {
        let name = l.split(':').next().unwrap_or("").to_owned();
        // The challenge's parameters, minus the nonce value itself.
        if name == "WWW-Authenticate" {
            let params: Vec<&str> = l
                .split(',')
                .map(|p| p.split('=').next().unwrap_or("").trim())
                .collect();
            out.push(format!("{name} {params:?}"));
        } else {
            out.push(name);
        }
    }
    out
}

#[test]
fn five_thousand_wrong_answers_lock_the_agent_and_are_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agents.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[agent]]\nid = \"agent1\"\npassword = \"{PASSWORD}\"\n\n\
             [[queue]]\nname = \"agents\"\nagents = [\"agent1\"]\n\n\
             [agent_auth]\nmax_failures = 5\nsource_max_failures = 20\nwindow_secs = 300\n\
             lock_secs = 2\nmax_lock_secs = 3\nlog_interval_secs = 2\n"
        ),
    )
    .unwrap();
    let svc = Service::start_with(
        &["--config", cfg.to_str().unwrap()],
        &[("IVR12333_LOG__LEVEL", "info")],
    );

    // 5,000 wrong answers on one nonce from 127.0.0.2: every one a 401.
    let mut attacker = Phone::new("127.0.0.2", svc.sip);
    attacker.challenge();
    let (first_wrong, sample_digest) = attacker.answer("guess-0");
    let wrong_shape = shape(&first_wrong);
    let mut unauthorized = 1;
    let flood_started = std::time::Instant::now();
    for i in 1..5_000 {
        let (r, _) = attacker.answer(&format!("guess-{i}"));
        assert!(r.starts_with("SIP/2.0 401"), "answer {i}: {r}");
        unauthorized += 1;
    }
    assert_eq!(unauthorized, 5_000);
    let flood_secs = flood_started.elapsed().as_secs_f64();

    // Let any lock from the flood run out (at most 3 s), then five wrong
    // answers from a fresh source lock the agent anew: the next step
    // happens well inside that lock (at least 2 s).
    std::thread::sleep(Duration::from_millis(4_000));
    let mut other = Phone::new("127.0.0.4", svc.sip);
    other.challenge();
    for i in 0..5 {
        let (r, _) = other.answer(&format!("other-{i}"));
        assert!(r.starts_with("SIP/2.0 401"), "{r}");
    }

    // The right password from a third source: refused, same 401 shape.
    let mut owner = Phone::new("127.0.0.3", svc.sip);
    owner.challenge();
    let (refused, _) = owner.answer(PASSWORD);
    assert!(refused.starts_with("SIP/2.0 401"), "{refused}");
    assert_eq!(
        shape(&refused),
        wrong_shape,
        "{refused}\n---\n{first_wrong}"
    );
    assert!(!refused.contains("stale"), "{refused}");
    assert!(!svc.log_text().contains("agent registered"));

    // A bounded summary in the log, never a password or a digest.
    assert!(
        svc.wait_log("agent digest login failures", 100),
        "{}",
        svc.log_text()
    );
    let log = svc.log_text();
    let summary_lines = log
        .lines()
        .filter(|l| {
            l.contains("agent digest login failures")
                || l.contains("agent login locked")
                || l.contains("source blocked from agent login")
        })
        .count();
    let locks = log
        .lines()
        .filter(|l| l.contains("agent login locked"))
        .count();
    println!(
        "5000 wrong answers from 127.0.0.2 in {flood_secs:.1} s: {summary_lines} summary/lock lines, \
         {locks} agent locks, {} log lines in all",
        log.lines().count()
    );
    assert!(locks >= 1, "{log}");
    // The lines follow time, not attempts: with 2 s locks and 2 s
    // summaries, at most a lock, a block and a summary every 2 s, plus a
    // few (the slower the machine, the longer the flood, the more lines).
    let bound = 10 + (2.0 * flood_secs) as usize;
    assert!(
        summary_lines <= bound.min(250),
        "{summary_lines} lines (bound {bound}):\n{log}"
    );
    assert!(
        log.lines().count() < 100 + bound,
        "log grows with the flood:\n{log}"
    );
    assert!(!log.contains(PASSWORD));
    assert!(!log.contains("guess-"));
    assert!(!log.contains(&sample_digest));

    // After the lock (at most 3 s here) the right password logs in.
    std::thread::sleep(Duration::from_millis(4_000));
    owner.challenge();
    let (ok, _) = owner.answer(PASSWORD);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", svc.log_text());
    assert!(svc.wait_log("agent registered: logged in", 50));
}

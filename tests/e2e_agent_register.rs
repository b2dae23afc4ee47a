//! Agents that REGISTER (digest auth, RFC 7616) to the real binary: a
//! wrong password and an unknown agent get the same 401; the right
//! credentials log the agent in at its Contact, and a caller pressing 0 is
//! then bridged to that Contact (a baresip that auto-answers); `Expires: 0`
//! logs it out again.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{Baresip, Service, tone_frames, write_source_wav};
use ivr12333::queue::digest::{Algorithm, digest_response};

struct Registrar {
    sock: UdpSocket,
    to: SocketAddr,
    n: u32,
}

impl Registrar {
    fn new(to: SocketAddr) -> Registrar {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Registrar { sock, to, n: 0 }
    }

    fn uri(&self) -> String {
        format!("sip:{}", self.to)
    }

    /// Sends one REGISTER and returns the final response (bounded wait).
    fn register(
        &mut self,
        user: &str,
        contact: &str,
        expires: u32,
        auth: Option<String>,
    ) -> String {
        self.n += 1;
        let me = self.sock.local_addr().unwrap();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{n}x{r}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@127.0.0.1>;tag=r{n}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{r}@test\r\n\
             CSeq: {n} REGISTER\r\nContact: <{contact}>\r\nExpires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n",
            uri = self.uri(),
            n = self.n,
            r = rand::random::<u32>(),
        );
        self.sock.send_to(msg.as_bytes(), self.to).unwrap();
        let mut buf = [0u8; 8192];
        for _ in 0..50 {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !text.starts_with("SIP/2.0 1") {
                    return text;
                }
            }
        }
        panic!("no final response to REGISTER");
    }

    /// Challenge, then answer it with `password`.
    fn register_with(&mut self, user: &str, password: &str, contact: &str, expires: u32) -> String {
        let challenge = self.register(user, contact, expires, None);
        assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
        let line = challenge
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
            .expect("an MD5 challenge");
        let nonce = line
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("nonce");
        let uri = self.uri();
        let response = digest_response(
            Algorithm::Md5,
            user,
            "ivr12333",
            password,
            "REGISTER",
            &uri,
            nonce,
            "00000001",
            "c0ffee",
        );
        let auth = format!(
            "Digest username=\"{user}\", realm=\"ivr12333\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
        );
        self.register(user, contact, expires, Some(auth))
    }
}

fn status(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn registered_agent_is_rung_and_bridged() {
    let dir = tempfile::tempdir().unwrap();
    let caller_wav = dir.path().join("caller.wav");
    let agent_wav = dir.path().join("agent.wav");
    write_source_wav(&caller_wav, 90, 550.0, 0.3);
    write_source_wav(&agent_wav, 90, 1250.0, 0.3);
    let mut phone = Baresip::start("agent", &agent_wav, true);
    let cfg = dir.path().join("q.toml");
    std::fs::write(
        &cfg,
        "[agent_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         open = \"00:00\"\nclose = \"23:59\"\n\n\
         [[agent]]\nid = \"agent1\"\npassword = \"s3cret-pw\"\n\n\
         [[queue]]\nname = \"agents\"\nagents = [\"agent1\"]\nwrap_up_secs = 0\nmax_wait_secs = 60\n",
    )
    .unwrap();
    let svc = Service::start_with(&["--config", cfg.to_str().unwrap()], &[]);
    let mut reg = Registrar::new(svc.sip);
    let contact = phone.sip_uri();

    // Wrong password and unknown agent: the same 401, no login.
    let wrong = reg.register_with("agent1", "nope", &contact, 300);
    let unknown = reg.register_with("agent9", "s3cret-pw", &contact, 300);
    assert_eq!(status(&wrong), "SIP/2.0 401 Unauthorized", "{wrong}");
    assert_eq!(status(&wrong), status(&unknown));
    assert!(!svc.log_text().contains("agent registered"));

    let ok = reg.register_with("agent1", "s3cret-pw", &contact, 300);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(svc.log_text().contains("agent registered: logged in"));

    let mut caller = Baresip::start("caller", &caller_wav, false);
    caller.command("dial", &format!("sip:12333@{}", svc.sip));
    assert!(caller.wait_event("CALL_ESTABLISHED", 100));
    caller.idle(20);
    caller.command("sndcode", "0");
    assert!(
        phone.wait_event("CALL_ESTABLISHED", 300),
        "registered agent not rung:\n{}",
        svc.log_text()
    );
    caller.idle(40);
    caller.command("hangup", "");
    assert!(phone.wait_event("CALL_CLOSED", 100));
    caller.quit();
    phone.quit();
    assert!(tone_frames(&caller.received_audio(), 1250.0) >= 50);

    // Expires: 0 logs the agent out.
    let bye = reg.register_with("agent1", "s3cret-pw", &contact, 0);
    assert!(bye.starts_with("SIP/2.0 200"), "{bye}");
    assert!(svc.log_text().contains("agent unregistered: logged out"));
    // The password never reaches the log.
    assert!(!svc.log_text().contains("s3cret-pw"));
}

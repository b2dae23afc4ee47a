//! The console in a real browser: Debian's headless Chromium driven over
//! the WebDriver protocol (chromedriver) with a tiny HTTP client. The
//! service runs as the real binary with the admin listener on; SIPp places
//! calls while the wallboard is open and the counters must move; an agent
//! signs in through the page, pauses and resumes, a baresip caller verifies
//! and keys 0, and the screen pop must show the masked ID. Screenshots of
//! every page go to `target/console-screenshots/` (the CI artefact).
//!
//! Needs `chromium`, `chromium-driver`, `sipp`, `baresip` (`.ci/setup`).
//! Loopback only; every wait is bounded in count.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use common::{Baresip, free_port, free_port_range, require_program, write_source_wav};

const SUP_PW: &str = "supervisor-pw-1";
const AGENT_PW: &str = "agent-pw-12345";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

// ------------------------------------------------------------ tiny HTTP

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code: u16 = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
            break;
        }
        let l = h.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
    } else if let Some(n) = len {
        out.resize(n, 0);
        r.read_exact(&mut out).unwrap();
    } else {
        r.read_to_end(&mut out).unwrap();
    }
    (code, String::from_utf8_lossy(&out).into_owned())
}

// ------------------------------------------------------------ WebDriver

/// chromedriver plus one headless Chromium session; both killed in Drop.
struct Browser {
    driver: Option<Child>,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        require_program("chromedriver");
        require_program("chromium");
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: Drop ends chromedriver and the Chromium it
        // started, and nothing else.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("spawn chromedriver");
        let mut b = Browser {
            driver: Some(driver),
            port,
            session: String::new(),
            _profile: profile,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1400,1100".to_owned(),
            "--lang=zh-CN".to_owned(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let (code, body) = http(port, "POST", "/session", Some(&caps));
        assert_eq!(code, 200, "new WebDriver session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        b.session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, text) = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(code, 200, "WebDriver {method} {path}: {text}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        );
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Text of the first element matching `css` ("" if none).
    fn text(&self, css: &str) -> String {
        let s = format!(
            "const e = document.querySelector({}); return e ? e.textContent : '';",
            json!(css)
        );
        self.js(&s).as_str().unwrap_or("").to_owned()
    }

    /// Polls (bounded) until `f` holds; returns whether it did.
    fn wait(&self, tenths: u32, mut f: impl FnMut(&Browser) -> bool) -> bool {
        for _ in 0..tenths {
            if f(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    fn sign_in(&self, base: &str, user: &str, pw: &str) {
        self.goto(&format!("{base}/login"));
        assert!(self.wait(100, |b| !b.text("#login-title").is_empty()));
        self.type_into("#user", user);
        self.type_into("#password", pw);
        self.click("#login-submit");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                http(
                    self.port,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    None,
                )
            });
        }
        if let Some(mut c) = self.driver.take() {
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------ the service

struct Svc {
    child: Option<Child>,
    sip: u16,
    admin: u16,
    dir: tempfile::TempDir,
}

impl Svc {
    fn start(agent_contact: &str) -> Svc {
        let dir = tempfile::tempdir().unwrap();
        let sip = free_port();
        let admin = free_port();
        let (lo, hi) = free_port_range(200);
        let sup = ivr12333::console::auth::hash_password(SUP_PW);
        let ann = ivr12333::console::auth::hash_password(AGENT_PW);
        let cfg = format!(
            "[agent_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
             open = \"00:00\"\nclose = \"23:59\"\n\n\
             [[agent]]\nid = \"agent1\"\ncontact = \"{agent_contact}\"\n\n\
             [[queue]]\nname = \"agents\"\nagents = [\"agent1\"]\nring_timeout_secs = 20\n\n\
             [[console_user]]\nname = \"sup\"\nrole = \"supervisor\"\npassword_hash = \"{sup}\"\n\n\
             [[console_user]]\nname = \"ann\"\nrole = \"agent\"\nagent = \"agent1\"\npassword_hash = \"{ann}\"\n"
        );
        let cfg_path = dir.path().join("ivr.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("service.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .args(["--sip-listen", &format!("127.0.0.1:{sip}")])
            .args(["--rtp-ports", &format!("{lo}-{hi}")])
            .args([
                "--db",
                &format!("sqlite://{}", dir.path().join("ledger.db").display()),
            ])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("IVR12333_LOG__LEVEL", "debug")
            .env("IVR12333_SHUTDOWN_GRACE_SECS", "2")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn ivr12333");
        let mut s = Svc {
            child: Some(child),
            sip,
            admin,
            dir,
        };
        let up = (0..300).any(|_| {
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("ivr12333 exited ({st}):\n{}", s.log());
            }
            let ok = TcpStream::connect(("127.0.0.1", admin)).is_ok()
                && http(admin, "GET", "/healthz", None).0 == 200;
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        assert!(up, "admin listener did not come up:\n{}", s.log());
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
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

/// The number in a zh-CN formatted counter ("1,234" → 1234).
fn count(s: &str) -> u64 {
    s.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[test]
fn wallboard_counts_calls_and_the_agent_desk_pops_the_masked_id() {
    require_program("sipp");
    require_program("baresip");
    let work = tempfile::tempdir().unwrap();
    let agent_wav = work.path().join("agent.wav");
    let caller_wav = work.path().join("caller.wav");
    write_source_wav(&agent_wav, 120, 1250.0, 0.3);
    write_source_wav(&caller_wav, 120, 550.0, 0.3);
    let mut agent_phone = Baresip::start("agent", &agent_wav, true);
    let svc = Svc::start(&agent_phone.sip_uri());
    let base = svc.base();
    let browser = Browser::start();

    // --- The wallboard, while SIPp places three calls.
    browser.sign_in(&base, "sup", SUP_PW);
    assert!(
        browser.wait(200, |b| b.text("#updated").starts_with("更新于")),
        "wallboard did not load:\n{}",
        svc.log()
    );
    let before = count(&browser.text("#kpi-offered"));
    let stats = work.path().join("sipp.csv");
    let sipp = Command::new("sipp")
        .args(["-sf", "tests/sipp/uac_pcmu_dtmf.xml", "-s", "12333"])
        .arg(format!("127.0.0.1:{}", svc.sip))
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port_range(20).0.to_string(),
        ])
        .args(["-l", "3", "-r", "3", "-m", "3"])
        .args([
            "-timeout",
            "120s",
            "-timeout_error",
            "-nostdin",
            "-trace_stat",
            "-stf",
        ])
        .arg(&stats)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run sipp");
    assert!(
        sipp.status.success(),
        "sipp failed: {}\n{}",
        String::from_utf8_lossy(&sipp.stdout)
            .chars()
            .rev()
            .take(2000)
            .collect::<String>(),
        svc.log()
    );
    let moved = browser.wait(300, |b| count(&b.text("#kpi-offered")) >= before + 3);
    assert!(
        moved,
        "calls in the last hour stayed at {} (was {before})",
        browser.text("#kpi-offered")
    );
    // The RFC 4733 digits and the finished calls reach the charts.
    assert!(
        browser.wait(300, |b| {
            let dtmf =
                b.js("return document.getElementById('chart-dtmf').getAttribute('aria-label')");
            let funnel =
                b.js("return document.getElementById('chart-funnel').getAttribute('aria-label')");
            let d = dtmf.as_str().unwrap_or("");
            let f = funnel.as_str().unwrap_or("");
            !d.contains("RFC 4733 0，") && !f.contains("接通 0，")
        }),
        "DTMF/funnel charts did not move: {} / {}",
        browser.js("return document.getElementById('chart-dtmf').getAttribute('aria-label')"),
        browser.js("return document.getElementById('chart-funnel').getAttribute('aria-label')")
    );
    assert_eq!(browser.text("#agents th"), "agent1");
    let shot = browser.screenshot("wallboard.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // --- Call records: the SIPp calls are there, one transcript opens.
    browser.goto(&format!("{base}/cdr"));
    assert!(
        browser.wait(100, |b| {
            b.js("return document.querySelectorAll('#cdr-rows tr').length")
                .as_u64()
                >= Some(3)
        }),
        "CDR rows did not show"
    );
    browser.click("#cdr-rows tr button");
    assert!(browser.wait(100, |b| !b.text("#t-prompts").is_empty()));
    assert!(
        browser.text("#t-prompts").contains("welcome"),
        "{}",
        browser.text("#t-prompts")
    );
    browser.screenshot("cdr.png");

    // --- The agent desk: sign out, sign in as the agent, pause, resume.
    browser.goto(&format!("{base}/"));
    assert!(browser.wait(100, |b| b.text("#who").contains("sup")));
    browser.click("#signout");
    assert!(browser.wait(100, |b| !b.text("#login-title").is_empty()));
    browser.sign_in(&base, "ann", AGENT_PW);
    assert!(
        browser.wait(100, |b| b.text("#agent-state") == "空闲"),
        "agent state: {}",
        browser.text("#agent-state")
    );
    browser.click("#btn-pause");
    assert!(browser.wait(100, |b| b.text("#agent-state") == "暂停"));
    browser.click("#btn-unpause");
    assert!(browser.wait(100, |b| b.text("#agent-state") == "空闲"));
    assert_eq!(browser.text("#pop-empty"), "当前没有通话");

    // A caller verifies (demo ID and PIN), hears the pension, keys 0.
    let mut caller = Baresip::start("caller", &caller_wav, false);
    caller.command("dial", &format!("sip:12333@127.0.0.1:{}", svc.sip));
    assert!(
        caller.wait_event("CALL_ESTABLISHED", 100),
        "caller not connected"
    );
    caller.idle(20);
    let keys = "1310104198507151239#123456#1";
    caller.command("sndcode", keys);
    let verified = (0..600).any(|_| {
        let done = svc.log().contains("ledger authenticate");
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(
        verified,
        "the caller's ID and PIN never reached the ledger:\n{}",
        svc.log()
    );
    // Let the pension readout start (a 0 during it barges in and is kept
    // for the menu after it, which offers the agent).
    caller.idle(120);
    // Key 0 until the call reaches the agent: a key that lands in a prompt
    // that cannot be skipped (the readout may still be playing on a loaded
    // machine) is discarded, and a 0 while already waiting changes nothing.
    let popped = (0..8).any(|_| {
        caller.command("sndcode", "0");
        browser.wait(50, |b| b.text("#pop-id") == "310104********1239")
    });
    assert!(
        popped || browser.wait(200, |b| b.text("#pop-id") == "310104********1239"),
        "screen pop: id={:?} state={:?}\n{}",
        browser.text("#pop-id"),
        browser.text("#agent-state"),
        svc.log()
    );
    assert_eq!(browser.text("#pop-verified"), "已通过");
    assert!(browser.text("#pop-heard").contains("养老保险"));
    let page = browser.js("return document.body.innerText");
    let page = page.as_str().unwrap_or("");
    assert!(!page.contains("310104198507151239") && !page.contains("123456#"));
    browser.screenshot("agent.png");
    let _ = agent_phone.wait_event("CALL_ESTABLISHED", 100);
    caller.command("hangup", "");
    caller.quit();
    agent_phone.quit();
}

//! Test support for the end-to-end tests: the real `ivr12333` binary, a real
//! baresip softphone, and audio matching. Loopback only; every wait is
//! bounded in count.

#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ivr12333::media::g711::Codec;

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A run of `n` consecutive even ports that nothing is bound to (best effort).
pub fn free_port_range(n: u16) -> (u16, u16) {
    for _ in 0..200 {
        let base = (30000 + (rand::random::<u16>() % 15000)) & !1;
        let ok = (base..base + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if ok {
            return (base, base + n - 1);
        }
    }
    panic!("no free port range");
}

/// A running `ivr12333 serve` on loopback.
pub struct Service {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub db_url: String,
}

impl Service {
    /// Starts the service on a fresh SQLite ledger (seeded with the demo accounts).
    pub fn start() -> Service {
        Service::start_with(&[], &[])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        Service::start_db(dir, db_url, args, env)
    }

    pub fn start_db(
        dir: tempfile::TempDir,
        db_url: String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let port = free_port();
        let (lo, hi) = free_port_range(200);
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = dir.path().join("service.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr12333"));
        cmd.arg("serve")
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--rtp-ports")
            .arg(format!("{lo}-{hi}"))
            .arg("--db")
            .arg(&db_url)
            .arg("--admin-listen")
            .arg("")
            .args(args)
            .env("IVR12333_LOG__LEVEL", "debug")
            .env("IVR12333_SHUTDOWN_GRACE_SECS", "5")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn ivr12333");
        let mut s = Service {
            child: Some(child),
            sip,
            dir,
            log,
            db_url,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        for i in 0..300 {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("ivr12333 exited early ({status}):\n{}", self.log_text());
            }
            let msg = options_request(sock.local_addr().unwrap(), self.sip, i);
            let _ = sock.send_to(msg.as_bytes(), self.sip);
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("ivr12333 did not answer OPTIONS:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (e.g. SIGHUP) to the running service.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = self.child.as_ref() {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Waits (at most `tenths` × 100 ms) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, tenths: u32) -> bool {
        for _ in 0..tenths {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn options_request(from: SocketAddr, to: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:12333@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKopt{n}x{r}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag=p{n}\r\nTo: <sip:12333@{to}>\r\nCall-ID: probe-{r}-{n}@test\r\nCSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        r = rand::random::<u32>()
    )
}

/// Whether a program is on PATH; the interop tests need baresip and sipp
/// (installed by `.ci/setup`).
pub fn require_program(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: run `bash .ci/setup` first (it installs baresip, sipp, sox)"
    );
}

/// A headless baresip softphone driven over its ctrl_tcp interface.
pub struct Baresip {
    child: Option<Child>,
    ctrl: TcpStream,
    pub dir: tempfile::TempDir,
    events: Vec<String>,
    pending: Vec<u8>,
}

impl Baresip {
    /// Starts a caller whose microphone plays `source_wav` (8 kHz mono s16),
    /// or an answering instance (`answer = true`, SIP user `user`).
    pub fn start(user: &str, source_wav: &Path, answer: bool) -> Baresip {
        require_program("baresip");
        let dir = tempfile::tempdir().expect("tempdir");
        let sip_port = free_port();
        let ctrl_port = free_port();
        let (lo, hi) = free_port_range(20);
        let rec = dir.path().join("rec");
        std::fs::create_dir_all(&rec).unwrap();
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
             audio_player aufile,/dev/null\naudio_alert aufile,/dev/null\naudio_source aufile,{src}\n\
             rtp_ports {lo}-{hi}\nstatmode_default off\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule ctrl_tcp.so\n\
             module_tmp account.so\nmodule_app menu.so\nctrl_tcp_listen 127.0.0.1:{ctrl_port}\nsnd_path {rec}\n",
            src = source_wav.display(),
            rec = rec.display()
        );
        std::fs::write(dir.path().join("config"), config).unwrap();
        let answermode = if answer { ";answermode=auto" } else { "" };
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "<sip:{user}@127.0.0.1:{sip_port}>;regint=0;audio_codecs=pcmu,pcma{answermode}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-4")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn baresip");
        let mut ctrl = None;
        for _ in 0..100 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                ctrl = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let ctrl = ctrl.expect("baresip ctrl_tcp did not open");
        ctrl.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Baresip {
            child: Some(child),
            ctrl,
            dir,
            events: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn command(&mut self, command: &str, params: &str) {
        let body =
            serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        let msg = format!("{}:{},", body.len(), body);
        self.ctrl.write_all(msg.as_bytes()).expect("ctrl write");
    }

    fn read_events(&mut self) {
        let mut buf = [0u8; 8192];
        match self.ctrl.read(&mut buf) {
            Ok(n) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
            _ => {}
        }
        // Netstrings: LEN:JSON,
        while let Some(colon) = self.pending.iter().position(|&b| b == b':') {
            let Ok(len) = std::str::from_utf8(&self.pending[..colon])
                .unwrap_or("x")
                .parse::<usize>()
            else {
                self.pending.clear();
                break;
            };
            if self.pending.len() < colon + 1 + len + 1 {
                break;
            }
            let body =
                String::from_utf8_lossy(&self.pending[colon + 1..colon + 1 + len]).into_owned();
            self.pending.drain(..colon + 1 + len + 1);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && let Some(t) = v.get("type").and_then(|t| t.as_str())
            {
                self.events.push(t.to_owned());
            }
        }
    }

    /// Waits (at most `tenths` × 100 ms) for an event type; true if seen.
    pub fn wait_event(&mut self, kind: &str, tenths: u32) -> bool {
        for _ in 0..tenths {
            if let Some(i) = self.events.iter().position(|e| e == kind) {
                self.events.drain(..=i);
                return true;
            }
            self.read_events();
        }
        self.events.iter().any(|e| e == kind)
    }

    /// Sleeps while draining events (so the control socket never fills).
    pub fn idle(&mut self, tenths: u32) {
        for _ in 0..tenths {
            self.read_events();
        }
    }

    /// The decoded audio baresip received (`dump-*-dec.wav`), as samples.
    pub fn received_audio(&self) -> Vec<i16> {
        let rec = self.dir.path().join("rec");
        let mut files: Vec<_> = std::fs::read_dir(&rec)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.to_string_lossy().ends_with("-dec.wav"));
        files.sort();
        let mut out = Vec::new();
        for f in files {
            if let Ok(r) = hound::WavReader::open(&f) {
                out.extend(r.into_samples::<i16>().filter_map(Result::ok));
            }
        }
        out
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    pub fn quit(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.command("quit", "");
            for _ in 0..30 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Writes `secs` of a quiet 8 kHz tone (so baresip has a source and the
/// service sees RTP) to `path`.
pub fn write_source_wav(path: &Path, secs: u32, freq: f32, amplitude: f32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..secs * 8000 {
        let s = (2.0 * std::f32::consts::PI * freq * i as f32 / 8000.0).sin() * amplitude * 32767.0;
        w.write_sample(s as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// What a caller hears of `pcm`: encoded to PCMU and decoded again.
pub fn through_pcmu(pcm: &[i16]) -> Vec<i16> {
    pcm.iter()
        .map(|&s| Codec::Pcmu.decode(Codec::Pcmu.encode(s)))
        .collect()
}

/// Fraction (0..=1) of the non-silent 20 ms frames of `expected` found in
/// `recording`, allowing for the receiver's jitter buffer to shift frames.
/// A frame matches where every sample is within `tol` of the recording.
pub fn match_fraction(recording: &[i16], expected: &[i16], tol: i32) -> f64 {
    const F: usize = 160;
    let frames: Vec<&[i16]> = expected.chunks_exact(F).collect();
    let loud: Vec<usize> = (0..frames.len())
        .filter(|&k| frames[k].iter().map(|&s| (s as i64).abs()).sum::<i64>() / F as i64 > 200)
        .collect();
    if loud.is_empty() || recording.len() < F {
        return 0.0;
    }
    let matches_at = |frame: &[i16], o: usize| -> bool {
        o + F <= recording.len()
            && frame
                .iter()
                .zip(&recording[o..o + F])
                .all(|(a, b)| (*a as i32 - *b as i32).abs() <= tol)
    };
    // Find where the first loud frame lands, then follow frame by frame.
    let first = loud[0];
    let Some(anchor) = (0..=recording.len() - F).find(|&o| matches_at(frames[first], o)) else {
        return 0.0;
    };
    let mut hit = 0usize;
    let mut offset = anchor as i64 - (first * F) as i64;
    for &k in &loud {
        let want = offset + (k * F) as i64;
        let mut found = None;
        for d in 0..=6i64 {
            for cand in [want + d * F as i64, want - d * F as i64] {
                if cand >= 0 && matches_at(frames[k], cand as usize) {
                    found = Some(cand);
                    break;
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(c) = found {
            hit += 1;
            offset = c - (k * F) as i64;
        }
    }
    hit as f64 / loud.len() as f64
}

/// Lines of a log file.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::File::open(path)
        .map(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .collect()
        })
        .unwrap_or_default()
}

impl Baresip {
    /// `sip:<user>@127.0.0.1:<port>` of this instance (from its accounts file).
    pub fn sip_uri(&self) -> String {
        let accounts =
            std::fs::read_to_string(self.dir.path().join("accounts")).expect("accounts file");
        let start = accounts.find('<').expect("account URI") + 1;
        let end = accounts.find('>').expect("account URI");
        accounts[start..end].to_owned()
    }
}

/// Fraction of 20 ms frames of `pcm` whose energy is mostly (≥ 80 %) at
/// `freq` Hz (Goertzel): a pure tone scores near 1, speech and music near 0.
pub fn tone_frames(pcm: &[i16], freq: f32) -> usize {
    const N: usize = 160;
    let k = 2.0 * (2.0 * std::f32::consts::PI * freq / 8000.0).cos();
    pcm.chunks_exact(N)
        .filter(|frame| {
            let (mut s1, mut s2) = (0f32, 0f32);
            let mut total = 0f32;
            for &x in frame.iter() {
                let x = x as f32;
                total += x * x;
                let s0 = x + k * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - k * s1 * s2;
            // A pure tone of amplitude A gives power ≈ (A·N/2)² and total
            // energy ≈ A²·N/2, so power/total ≈ N/2 for a pure tone.
            total > 1e5 && power / total > 0.8 * (N as f32 / 2.0)
        })
        .count()
}

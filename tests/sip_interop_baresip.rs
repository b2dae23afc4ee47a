//! Interop with a real softphone: baresip (Debian `baresip-core`) dials the
//! endpoint over UDP on 127.0.0.1; the endpoint answers, then hangs up with
//! its own BYE, which baresip must accept (200). This checks our 200 OK
//! (Contact, tags, SDP framing) and our in-dialog request building (remote
//! target from baresip's Contact) against an independent stack.
//!
//! Runs in CI (`.ci/setup` installs `baresip-core`); without the `baresip`
//! binary it fails with a message saying so. Bounded: one call, a 40 s
//! wall-clock cap on the loop (baresip itself quits after `-t 30`), and the
//! child is killed and reaped on every exit path (a guard's `Drop`).

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivr12333::sip::wire::{Parsed, WireLimits, parse};
use ivr12333::sip::{EndReason, Endpoint, EndpointConfig, SipEvent, Transport};

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

/// Kills and reaps the child however the test ends (panic included).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails with a clear message when `bin` is not installed.
fn require(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(
        found,
        "`{bin}` not found in PATH: this interop test needs it; run .ci/setup as root (Debian package {package})"
    );
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn baresip_call_answered_then_our_bye() {
    require("baresip", "baresip-core");
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for _ in 0..8000 * 30 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let local = udp.local_addr().unwrap();
    let bare_port = free_port();
    let config = format!(
        "sip_listen\t\t127.0.0.1:{bare_port}\n\
         net_interface\t\t127.0.0.1\n\
         audio_player\t\talsa,null\n\
         audio_alert\t\talsa,null\n\
         audio_source\t\taufile,{}\n\
         rtp_ports\t\t42000-42100\n\
         statmode_default\toff\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n",
        wav.display()
    );
    std::fs::write(dir.path().join("config"), config).unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!("<sip:caller@127.0.0.1:{bare_port}>;regint=0;audio_codecs=pcmu,pcma\n"),
    )
    .unwrap();
    let child = Command::new("baresip")
        .args([
            "-4",
            "-f",
            dir.path().to_str().unwrap(),
            "-e",
            &format!("/dial sip:12333@{local}"),
            "-t",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip must be installed");
    let child = Reaped(child);

    let mut ep = Endpoint::new(EndpointConfig {
        local_addr: local,
        ..EndpointConfig::default()
    });
    let mut buf = vec![0u8; 65_536];
    let mut answered_at = None;
    let mut hung_up = false;
    let mut bye_ok = false;
    let mut incoming = 0;
    let mut ended = Vec::new();
    // Bounded in count and in wall-clock time (a loaded machine makes each
    // pass slower, never the loop endless).
    let cap = Instant::now() + Duration::from_secs(40);
    for _ in 0..1_000_000 {
        let now = Instant::now();
        if now > cap {
            break;
        }
        if let Ok((n, src)) = udp.recv_from(&mut buf) {
            if let Ok(Parsed::Message(m)) = parse(&buf[..n], &WireLimits::default())
                && m.status() == Some(200)
                && m.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
            {
                bye_ok = true;
            }
            ep.handle_input(now, Transport::Udp, src, &buf[..n]);
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(e) = ep.poll_event() {
            match e {
                SipEvent::IncomingCall { call, .. } => {
                    incoming += 1;
                    ep.ringing(now, call);
                    ep.answer(now, call, SDP.to_vec());
                }
                SipEvent::CallConfirmed { call, .. } => answered_at = Some((now, call)),
                SipEvent::CallEnded { reason, .. } => ended.push(reason),
                _ => {}
            }
        }
        if let Some((t, call)) = answered_at
            && !hung_up
            && now.duration_since(t) > Duration::from_secs(1)
        {
            ep.hangup(now, call);
            hung_up = true;
        }
        while let Some(t) = ep.poll_transmit() {
            udp.send_to(&t.bytes, t.dest).unwrap();
        }
        if !ended.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(child);
    assert_eq!(incoming, 1, "baresip's INVITE arrived");
    assert!(answered_at.is_some(), "baresip ACKed our 200");
    assert!(bye_ok, "baresip answered our BYE with 200");
    assert_eq!(ended, [EndReason::LocalBye]);
    assert_eq!(ep.active_calls(), 0);
}

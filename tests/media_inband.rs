//! In-band DTMF through `MediaSession::handle_rtp` with synthesised tones,
//! for PCMU and PCMA, when no telephone-event was negotiated.

use std::f32::consts::PI;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ivr12333::media::g711::Codec;
use ivr12333::media::inband::{InbandDetector, key_frequencies};
use ivr12333::media::rtp::{self, RtpOut};
use ivr12333::media::session::{DigitSource, MediaConfig, MediaEvent, MediaSession};

const ALL: &str = "123A456B789C*0#D";

/// Deterministic noise (xorshift32), uniform in [-1, 1).
struct Noise(u32);
impl Noise {
    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

struct Signal {
    samples: Vec<f32>,
}

impl Signal {
    fn new(offset: usize) -> Self {
        Signal {
            samples: vec![0.0; offset],
        }
    }
    fn tone_pair(&mut self, f1: f32, a1: f32, f2: f32, a2: f32, ms: usize) {
        let start = self.samples.len();
        for n in 0..ms * 8 {
            let t = (start + n) as f32 / 8000.0;
            self.samples
                .push(a1 * (2.0 * PI * f1 * t).sin() + a2 * (2.0 * PI * f2 * t).sin());
        }
    }
    fn key(&mut self, key: char, amp: f32, ms: usize) {
        let (r, c) = key_frequencies(key).unwrap();
        self.tone_pair(r, amp, c, amp, ms);
    }
    fn silence(&mut self, ms: usize, noise: &mut Noise, level: f32) {
        for _ in 0..ms * 8 {
            self.samples.push(level * noise.next());
        }
    }
    fn pcm(&self) -> Vec<i16> {
        self.samples
            .iter()
            .map(|&v| (v * 32767.0).clamp(-32768.0, 32767.0) as i16)
            .collect()
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:9000".parse().unwrap()
}

/// Encodes `pcm` with `codec`, sends it as 20 ms RTP packets through a
/// session without telephone-event, returns the detected digits.
fn detect(codec: Codec, pcm: &[i16]) -> String {
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        MediaConfig {
            codec,
            telephone_event_pt: None,
            remote: Some(peer()),
            ssrc: 1,
            initial_seq: 0,
            initial_timestamp: 0,
            inactivity_timeout: Duration::from_secs(30),
        },
        t0,
    );
    let mut payload = [0u8; 160];
    let mut buf = [0u8; 200];
    let mut out = String::new();
    for (k, chunk) in pcm.chunks(160).enumerate() {
        let p = &mut payload[..chunk.len()];
        codec.encode_into(chunk, p);
        let h = RtpOut {
            payload_type: codec.payload_type(),
            marker: false,
            sequence: k as u16,
            timestamp: (k * 160) as u32,
            ssrc: 77,
        };
        let n = rtp::write(h, p, &mut buf).unwrap();
        s.handle_rtp(t0 + Duration::from_millis(k as u64 * 20), peer(), &buf[..n]);
        while let Some(e) = s.poll_event() {
            if let MediaEvent::Digit { digit, source } = e {
                assert_eq!(source, DigitSource::Inband);
                out.push(digit);
            }
        }
    }
    out
}

fn both(pcm: &[i16]) -> [String; 2] {
    [detect(Codec::Pcmu, pcm), detect(Codec::Pcma, pcm)]
}

#[test]
fn all_sixteen_keys_at_several_levels_and_offsets() {
    for (amp, offset) in [(0.3, 0), (0.1, 37), (0.04, 113)] {
        let mut noise = Noise(0x1234_5678);
        let mut sig = Signal::new(offset);
        for key in ALL.chars() {
            sig.key(key, amp, 70);
            sig.silence(60, &mut noise, 0.002);
        }
        assert_eq!(both(&sig.pcm()), [ALL, ALL], "amp {amp} offset {offset}");
    }
}

#[test]
fn keys_in_background_noise() {
    let mut noise = Noise(99);
    let mut sig = Signal::new(0);
    for key in "0123456789".chars() {
        sig.silence(100, &mut noise, 0.01);
        let start = sig.samples.len();
        sig.key(key, 0.2, 80);
        for v in &mut sig.samples[start..] {
            *v += 0.01 * noise.next();
        }
    }
    sig.silence(100, &mut noise, 0.01);
    assert_eq!(both(&sig.pcm()), ["0123456789", "0123456789"]);
}

#[test]
fn repeated_key_needs_a_gap_and_long_key_is_one_digit() {
    let mut noise = Noise(7);
    let mut sig = Signal::new(11);
    sig.key('5', 0.2, 1500); // held 1.5 s
    sig.silence(50, &mut noise, 0.001);
    sig.key('5', 0.2, 60);
    sig.silence(50, &mut noise, 0.001);
    sig.key('5', 0.2, 60);
    sig.silence(50, &mut noise, 0.001);
    assert_eq!(both(&sig.pcm()), ["555", "555"]);
}

#[test]
fn forty_ms_is_accepted_twenty_ms_rejected() {
    for offset in 0..160 {
        let mut noise = Noise(5);
        let mut ok = Signal::new(offset);
        ok.key('9', 0.2, 40);
        ok.silence(100, &mut noise, 0.001);
        assert_eq!(both(&ok.pcm()), ["9", "9"], "40 ms at offset {offset}");

        let mut short = Signal::new(offset);
        short.key('9', 0.2, 20);
        short.silence(100, &mut noise, 0.001);
        assert_eq!(both(&short.pcm()), ["", ""], "20 ms at offset {offset}");
    }
}

#[test]
fn twist_limits() {
    let (r, c) = key_frequencies('6').unwrap();
    let db = |d: f32| 10f32.powf(d / 20.0);
    for (row_db, col_db, want) in [
        (0.0, -6.0, "6"), // normal twist 6 dB: fine
        (-6.0, 0.0, "6"), // reverse twist 6 dB: fine
        (0.0, -12.0, ""), // 12 dB: rejected
        (-12.0, 0.0, ""),
    ] {
        let mut noise = Noise(3);
        let mut sig = Signal::new(0);
        sig.tone_pair(r, 0.3 * db(row_db), c, 0.3 * db(col_db), 100);
        sig.silence(100, &mut noise, 0.001);
        assert_eq!(
            both(&sig.pcm()),
            [want, want],
            "row {row_db} dB col {col_db} dB"
        );
    }
}

#[test]
fn single_tones_are_not_keys() {
    let mut noise = Noise(11);
    let mut sig = Signal::new(0);
    // 1 kHz test tone, then each DTMF frequency alone
    sig.tone_pair(1000.0, 0.5, 1000.0, 0.0, 2000);
    for f in [697.0, 941.0, 1209.0, 1633.0] {
        sig.silence(50, &mut noise, 0.001);
        sig.tone_pair(f, 0.4, f, 0.0, 300);
    }
    assert_eq!(both(&sig.pcm()), ["", ""]);
}

/// Crude voiced speech: a gliding pitch (90–260 Hz) with 30 harmonics
/// shaped by moving formants, syllable envelopes, and fricative noise.
fn speech_like(seconds: usize, seed: u32) -> Vec<i16> {
    let mut noise = Noise(seed);
    let mut out = Vec::with_capacity(seconds * 8000);
    let mut phase = 0.0f32;
    for n in 0..seconds * 8000 {
        let t = n as f32 / 8000.0;
        // each seed is another voice: pitch centre, pitch and formant motion
        let v0 = seed as f32;
        let f0 = 110.0
            + 17.0 * v0
            + 80.0 * (2.0 * PI * (0.5 + 0.11 * v0) * t).sin() * (2.0 * PI * 0.23 * t).cos();
        phase += 2.0 * PI * f0 / 8000.0;
        let f1 = 550.0 + 20.0 * v0 + 300.0 * (2.0 * PI * (1.7 + 0.13 * v0) * t).sin();
        let f2 = 1400.0 + 25.0 * v0 + 600.0 * (2.0 * PI * (1.1 + 0.07 * v0) * t).cos();
        let mut v = 0.0;
        for h in 1..=30 {
            let fh = f0 * h as f32;
            if fh > 3800.0 {
                break;
            }
            let g = 1.0 / (1.0 + ((fh - f1) / 150.0).powi(2))
                + 0.6 / (1.0 + ((fh - f2) / 200.0).powi(2))
                + 0.05;
            v += g * (phase * h as f32).sin();
        }
        let syllable = (2.0 * PI * 4.0 * t).sin().max(0.0);
        let fricative = if (t * 3.0).fract() > 0.8 { 0.3 } else { 0.02 };
        out.push(((0.2 * syllable * v + fricative * 0.2 * noise.next()) * 32767.0) as i16);
    }
    out
}

#[test]
fn speech_like_audio_is_not_a_key() {
    for seed in 1..=16 {
        let pcm = speech_like(8, seed);
        // it is loud enough to matter (RMS well above the tone minimum)
        let rms =
            (pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
        assert!(rms > 2000.0, "rms {rms}");
        assert_eq!(both(&pcm), ["", ""], "seed {seed}");
    }
}

#[test]
fn white_noise_is_not_a_key() {
    let mut noise = Noise(42);
    let pcm: Vec<i16> = (0..80_000)
        .map(|_| (noise.next() * 12000.0) as i16)
        .collect();
    assert_eq!(both(&pcm), ["", ""]);
}

#[test]
fn detector_alone_accepts_odd_chunk_sizes() {
    let mut sig = Signal::new(0);
    sig.key('#', 0.3, 100);
    sig.silence(100, &mut Noise(1), 0.0);
    let pcm = sig.pcm();
    let mut d = InbandDetector::new();
    let mut got = String::new();
    // 30 ms packets, then odd sizes
    for chunk in pcm.chunks(240).flat_map(|c| c.chunks(77)) {
        d.feed(chunk, &mut |k| got.push(k));
    }
    assert_eq!(got, "#");
}

#[test]
fn no_inband_detection_when_telephone_event_negotiated() {
    let mut sig = Signal::new(0);
    sig.key('1', 0.3, 200);
    let pcm = sig.pcm();
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        MediaConfig {
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            remote: Some(peer()),
            ssrc: 1,
            initial_seq: 0,
            initial_timestamp: 0,
            inactivity_timeout: Duration::from_secs(30),
        },
        t0,
    );
    let mut buf = [0u8; 200];
    let mut payload = [0u8; 160];
    for (k, chunk) in pcm.chunks(160).enumerate() {
        Codec::Pcmu.encode_into(chunk, &mut payload);
        let h = RtpOut {
            payload_type: 0,
            marker: false,
            sequence: k as u16,
            timestamp: 0,
            ssrc: 5,
        };
        let n = rtp::write(h, &payload, &mut buf).unwrap();
        s.handle_rtp(t0, peer(), &buf[..n]);
    }
    assert_eq!(s.stats().packets_received, 10);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn frequency_deviation_within_q24_tolerance_is_accepted() {
    // Q.24: accept deviations up to ±1.5 %.
    for dev in [0.985f32, 0.9925, 1.0, 1.0075, 1.015] {
        let mut got = [String::new(), String::new()];
        let mut noise = Noise(17);
        let mut sig = Signal::new(29);
        for key in ALL.chars() {
            let (r, c) = key_frequencies(key).unwrap();
            sig.tone_pair(r * dev, 0.2, c * dev, 0.2, 70);
            sig.silence(60, &mut noise, 0.002);
        }
        let pcm = sig.pcm();
        got[0] = detect(Codec::Pcmu, &pcm);
        got[1] = detect(Codec::Pcma, &pcm);
        assert_eq!(got, [ALL, ALL], "deviation {dev}");
    }
}

#[test]
fn frequency_deviation_beyond_q24_tolerance_is_rejected() {
    // Q.24: reject deviations of 3.5 % and more.
    for dev in [0.965f32, 1.035, 0.95, 1.05] {
        let mut noise = Noise(23);
        let mut sig = Signal::new(0);
        for key in ALL.chars() {
            let (r, c) = key_frequencies(key).unwrap();
            sig.tone_pair(r * dev, 0.2, c * dev, 0.2, 100);
            sig.silence(60, &mut noise, 0.002);
        }
        assert_eq!(both(&sig.pcm()), ["", ""], "deviation {dev}");
    }
}

//! Loudness matching of the prompt library and `ivr12333 prompts check`.
//!
//! After loading, every prompt's active speech level (ITU-T P.56 method B,
//! `media::prompts::active_level`) is within ±1 dB of the target; a silent
//! file, a clipped file and a missing id are reported, and the check exits
//! non-zero when the set cannot serve the dial plan.

use std::path::{Path, PathBuf};
use std::process::Command;

use ivr12333::media::prompts::{
    DEFAULT_TARGET_DBOV, Loudness, PromptLibrary, RATE, active_level, load_normalised,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn level_of(pcm: &[i16]) -> Option<f32> {
    let f: Vec<f32> = pcm.iter().map(|&x| f32::from(x) / 32768.0).collect();
    active_level(&f, RATE)
}

#[test]
fn p56_level_of_known_signals() {
    // A full-scale sine is −3.01 dBov; 20 dB down is −23.01 dBov.
    let sine = |amp: f32, secs: f32| -> Vec<f32> {
        (0..(8000.0 * secs) as usize)
            .map(|n| amp * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 8000.0).sin())
            .collect()
    };
    let l = active_level(&sine(1.0, 1.0), 8000).unwrap();
    assert!((l + 3.01).abs() < 0.2, "{l}");
    let l = active_level(&sine(0.1, 1.0), 8000).unwrap();
    assert!((l + 23.01).abs() < 0.2, "{l}");
    // Half a second of tone then 1.5 s of silence: the pause does not count
    // (only P.56's 200 ms hangover after the tone does: 0.5 s of tone over
    // 0.7 s active is 1.46 dB below the tone), unlike the whole-file RMS,
    // which is 6 dB below the tone.
    let mut v = sine(0.1, 0.5);
    v.extend(std::iter::repeat_n(0.0f32, 12_000));
    let l = active_level(&v, 8000).unwrap();
    assert!((l + 24.47).abs() < 0.5, "{l}");
    assert!(active_level(&[0.0; 8000], 8000).is_none());
}

#[test]
fn every_loaded_prompt_is_within_one_db_of_the_target() {
    let lib = PromptLibrary::load(&root().join("prompts")).unwrap();
    let mut worst = (String::new(), 0.0f32);
    for id in lib.ids() {
        let clip = lib.get(id).unwrap();
        let level = level_of(clip.pcm()).unwrap_or_else(|| panic!("{id}: silent"));
        let off = (level - DEFAULT_TARGET_DBOV).abs();
        assert!(
            off <= 1.0,
            "{id}: active level {level:.2} dBov, target {DEFAULT_TARGET_DBOV}"
        );
        // no clipping: the gain stops below full scale
        assert!(
            clip.pcm().iter().all(|&x| x != i16::MAX && x != i16::MIN),
            "{id} clips"
        );
        let r = lib.report(id).unwrap();
        assert!(
            r.peak_after_dbfs <= -0.9,
            "{id}: peak {}",
            r.peak_after_dbfs
        );
        if off > worst.1 {
            worst = (id.to_owned(), off);
        }
    }
    eprintln!("largest deviation: {} {:.2} dB", worst.0, worst.1);
}

#[test]
fn configurable_target_and_no_normalisation() {
    let dir = root().join("prompts");
    let l = Loudness {
        target_dbov: Some(-30.0),
        ..Loudness::default()
    };
    let (pcm, r) = load_normalised(&dir.join("insurance_menu.wav"), &l).unwrap();
    let level = level_of(&pcm).unwrap();
    assert!((level + 30.0).abs() <= 1.0, "{level}");
    assert!((r.level_after.unwrap() + 30.0).abs() <= 0.5);
    let off = Loudness {
        target_dbov: None,
        ..Loudness::default()
    };
    let (_, r) = load_normalised(&dir.join("n_yao.wav"), &off).unwrap();
    assert_eq!(r.gain_db, 0.0);
    assert_eq!(
        r.level_before,
        r.level_after.map(|_| r.level_before.unwrap())
    );
}

/// A loud square wave that can only be lifted to the ceiling: the gain is
/// limited and the peak stays below full scale.
#[test]
fn gain_is_limited_by_the_peak_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("spiky.wav");
    // quiet speech-like body with one loud click: the click limits the gain
    let mut v: Vec<i16> = (0..8000)
        .map(|n| (300.0 * (n as f32 * 0.3).sin()) as i16)
        .collect();
    v[4000] = 30_000;
    write_wav(&p, &v);
    let (pcm, r) = load_normalised(&p, &Loudness::default()).unwrap();
    assert!(r.gain_limited);
    assert!(r.peak_after_dbfs <= -0.99, "{}", r.peak_after_dbfs);
    assert!(pcm.iter().all(|&x| x.unsigned_abs() < 32_767));
}

fn write_wav(path: &Path, pcm: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in pcm {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn check(dir: &Path, dialplan: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr12333"));
    cmd.arg("prompts").arg("check").arg(dir);
    if let Some(d) = dialplan {
        cmd.arg("--dialplan").arg(d);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn copy_library(to: &Path) {
    for e in std::fs::read_dir(root().join("prompts")).unwrap() {
        let p: PathBuf = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn check_passes_the_committed_set_against_the_dial_plan() {
    let (code, text) = check(
        &root().join("prompts"),
        Some(&root().join("dialplans/12333.toml")),
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("missing: none"), "{text}");
    assert!(text.contains("unexpected: none"), "{text}");
    assert!(text.contains("insurance_menu"), "{text}");
}

#[test]
fn check_reports_silent_clipped_missing_and_unexpected_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_library(dir.path());
    // silent, clipped, missing, unexpected
    write_wav(&dir.path().join("goodbye.wav"), &[0; 8000]);
    let clipped: Vec<i16> = (0..8000)
        .map(|n| {
            let x = 3.0 * (n as f32 * 0.2).sin();
            (x.clamp(-1.0, 1.0) * 32767.0) as i16
        })
        .collect();
    write_wav(&dir.path().join("welcome.wav"), &clipped);
    std::fs::remove_file(dir.path().join("enter_pin.wav")).unwrap();
    write_wav(&dir.path().join("stray_take2.wav"), &clipped);
    let (code, text) = check(dir.path(), Some(&root().join("dialplans/12333.toml")));
    assert_eq!(code, 1, "{text}");
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no line for {id}: {text}"))
            .to_owned()
    };
    assert!(line("goodbye").contains("ERROR"), "{text}");
    assert!(line("goodbye").contains("no audio"), "{text}");
    assert!(line("welcome").contains("CLIPPED"), "{text}");
    assert!(line("enter_pin").contains("no file"), "{text}");
    let missing = text.lines().find(|l| l.starts_with("missing:")).unwrap();
    assert!(
        missing.contains("enter_pin") && missing.contains("goodbye"),
        "{missing}"
    );
    let unexpected = text.lines().find(|l| l.starts_with("unexpected:")).unwrap();
    assert!(unexpected.contains("stray_take2.wav"), "{unexpected}");
}

#[test]
fn check_fails_on_an_id_the_dial_plan_needs_but_the_manifest_lacks() {
    let dir = tempfile::tempdir().unwrap();
    copy_library(dir.path());
    let manifest = std::fs::read_to_string(dir.path().join("manifest.toml")).unwrap();
    let cut = manifest.replace("id = \"callback_done\"", "id = \"callback_done_old\"");
    std::fs::write(dir.path().join("manifest.toml"), cut).unwrap();
    std::fs::rename(
        dir.path().join("callback_done.wav"),
        dir.path().join("callback_done_old.wav"),
    )
    .unwrap();
    // without the dial plan the set is self-consistent ...
    let (code, text) = check(dir.path(), None);
    assert_eq!(code, 0, "{text}");
    // ... but it cannot serve the 12333 plan
    let (code, text) = check(dir.path(), Some(&root().join("dialplans/12333.toml")));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("missing:") && l.contains("callback_done")),
        "{text}"
    );
}

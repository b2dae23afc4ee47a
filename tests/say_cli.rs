//! `ivr12333 say` as a user runs it: the built binary, the committed prompt
//! library, bad input, and the WAV it writes (length and joins).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ivr12333::domain::{Fen, YearMonth};
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::say::{self, SayOptions, Seg};

fn prompts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")
}

fn say(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .arg("say")
        .args(args)
        .arg("--prompts")
        .arg(prompts_dir())
        .output()
        .expect("run ivr12333")
}

fn read_wav(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    r.samples::<i16>().map(Result::unwrap).collect()
}

/// Sample offsets where one segment ends and the next begins.
fn joins(lib: &PromptLibrary, segs: &[Seg]) -> (usize, Vec<usize>) {
    let clips = lib.render(segs).unwrap();
    let mut at = 0;
    let mut js = Vec::new();
    for c in &clips {
        if at > 0 {
            js.push(at);
        }
        at += c.frame_count() * 160;
    }
    (at, js)
}

/// No click: the step across a join is no larger than the largest step
/// between neighbouring samples within 10 ms on either side of it.
fn assert_no_clicks(pcm: &[i16], js: &[usize], what: &str) {
    for &j in js {
        let step = |i: usize| (i32::from(pcm[i]) - i32::from(pcm[i - 1])).abs();
        let lo = j.saturating_sub(80).max(1);
        let hi = (j + 80).min(pcm.len() - 1);
        let neighbours = (lo..=hi).filter(|&i| i != j).map(step).max().unwrap_or(0);
        assert!(
            step(j) <= neighbours,
            "{what}: step {} at join {j} > {neighbours} nearby",
            step(j)
        );
    }
}

#[test]
fn writes_the_readout_with_exact_length_and_clean_joins() {
    let lib = PromptLibrary::load(&prompts_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = SayOptions::default();
    let cases: Vec<(Vec<&str>, Vec<Seg>)> = vec![
        (vec!["12345.67"], say::amount(Fen(1_234_567), &o).unwrap()),
        (vec!["-35.20"], say::amount(Fen(-3520), &o).unwrap()),
        (
            vec!["100010001.01"],
            say::amount(Fen(10_001_000_101), &o).unwrap(),
        ),
        (
            vec!["--kind", "date", "2026-09-15"],
            say::date(YearMonth::new(2026, 9).unwrap(), 15),
        ),
        (vec!["--kind", "count", "2"], say::count(2)),
        (
            vec!["--kind", "id", "11010519491231002X"],
            say::id_readback("11010519491231002X"),
        ),
    ];
    for (i, (args, segs)) in cases.iter().enumerate() {
        for codec in ["pcmu", "pcma", "linear"] {
            let out = dir.path().join(format!("{i}-{codec}.wav"));
            let mut a = args.clone();
            a.extend(["--codec", codec, "-o", out.to_str().unwrap()]);
            let r = say(&a);
            assert!(
                r.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            assert_eq!(
                String::from_utf8(r.stdout).unwrap().trim_end(),
                say::to_text(segs)
            );
            let pcm = read_wav(&out);
            let (total, js) = joins(&lib, segs);
            // every segment's frames plus the pauses, nothing else
            let pauses: usize = segs
                .iter()
                .map(|s| match s {
                    Seg::Pause(ms) => (*ms as usize * 8).div_ceil(160) * 160,
                    Seg::Prompt(id) => lib.get(id).unwrap().frame_count() * 160,
                })
                .sum();
            assert_eq!(pcm.len(), total, "{args:?}");
            assert_eq!(pcm.len(), pauses, "{args:?}");
            assert_no_clicks(&pcm, &js, &format!("{args:?} {codec}"));
        }
    }
}

#[test]
fn text_only_needs_no_prompt_library() {
    let r = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["say", "--text", "--prompts", "/nonexistent", "2000.08"])
        .output()
        .unwrap();
    assert!(r.status.success());
    assert_eq!(String::from_utf8(r.stdout).unwrap(), "两千元零八分\n");
    let r = say(&["--text", "--liang-bai", "200"]);
    assert_eq!(String::from_utf8(r.stdout).unwrap(), "两百元整\n");
    let r = say(&["--text", "--kind", "digits", "12333"]);
    assert_eq!(String::from_utf8(r.stdout).unwrap(), "幺二三三三\n");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    for args in [
        vec!["abc"],
        vec!["1.234"],
        vec!["10000000000000"],
        vec!["-10000000000000.00"],
        vec!["1e5"],
        vec!["--kind", "date", "2026-13"],
        vec!["--kind", "date", "2026-02-30"],
        vec!["--kind", "date", "yesterday"],
        vec!["--kind", "count", "-3"],
        vec!["--kind", "digits", "12a4"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.wav");
        let mut a = args.clone();
        a.extend(["-o", out.to_str().unwrap()]);
        let r = say(&a);
        assert_eq!(r.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(r.stderr).unwrap();
        assert!(err.starts_with("ivr12333 say: "), "{args:?}: {err}");
        assert!(
            err.contains("not a") || err.contains("out of range"),
            "{err}"
        );
        assert!(r.stdout.is_empty());
        assert!(!out.exists(), "no output file on bad input");
    }
}

#[test]
fn missing_prompt_directory_is_a_failure_naming_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.wav");
    let r = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["say", "5", "--prompts"])
        .arg(dir.path())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(
        String::from_utf8(r.stderr)
            .unwrap()
            .contains("manifest.toml")
    );
}

#[test]
#[should_panic(expected = "step")]
fn the_click_check_catches_a_hard_cut() {
    // a 440 Hz tone cut at its peak, then silence: the kind of join the
    // 5 ms fades exist to prevent
    let mut pcm: Vec<i16> = (0..800)
        .map(|i| {
            (10_000.0 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 8000.0 + 1.2).sin()) as i16
        })
        .collect();
    let cut = (700..800).find(|&i| pcm[i - 1].abs() > 9_000).unwrap();
    pcm.truncate(cut);
    pcm.extend(std::iter::repeat_n(0, 800));
    assert_no_clicks(&pcm, &[cut], "hard cut");
}

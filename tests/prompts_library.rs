//! The committed prompt library is complete and sane: every manifest id has
//! a file that loads to 8 kHz mono, is audible and not clipped; every prompt
//! id the code or a dialplan names exists; the speller's segments exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ivr12333::media::clip::FRAME_SAMPLES;
use ivr12333::media::prompts::{PromptLibrary, manifest_ids, prompt_file};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn prompts_dir() -> PathBuf {
    root().join("prompts")
}

/// The ids the call flow is written against; they must all exist.
use ivr12333::flow::dialplan::BUILTIN_PROMPT_IDS as CALL_FLOW_IDS;

#[test]
fn every_manifest_id_has_a_file_that_loads() {
    let dir = prompts_dir();
    let ids = manifest_ids(&dir).unwrap();
    for id in &ids {
        assert!(prompt_file(&dir, id).is_some(), "no file for {id}");
    }
    let lib = PromptLibrary::load(&dir).unwrap();
    assert_eq!(lib.ids().count(), ids.len());
    for id in lib.ids() {
        let clip = lib.get(id).unwrap();
        let pcm = clip.pcm();
        // 8 kHz mono after loading: whole 20 ms frames of 160 samples, and
        // the committed file itself is 8 kHz mono 16-bit
        assert_eq!(pcm.len(), clip.frame_count() * FRAME_SAMPLES);
        if let Some(path) =
            prompt_file(&dir, id).filter(|p| p.extension().is_some_and(|e| e == "wav"))
        {
            let spec = hound::WavReader::open(&path).unwrap().spec();
            assert_eq!(
                (spec.channels, spec.sample_rate, spec.bits_per_sample),
                (1, 8000, 16),
                "{id}"
            );
        }
        let rms =
            (pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt();
        assert!(rms > 500.0, "{id}: too quiet (rms {rms:.0})");
        let clipped = pcm
            .iter()
            .filter(|&&x| x == i16::MAX || x == i16::MIN)
            .count();
        assert_eq!(clipped, 0, "{id}: {clipped} clipped samples");
        assert!(clip.duration_ms() >= 60, "{id}: {} ms", clip.duration_ms());
    }
    let hold = lib.get("hold_music").unwrap();
    assert!(hold.duration_ms() >= 15_000, "hold music loops about 20 s");
}

#[test]
fn number_segments_are_short_and_even() {
    let lib = PromptLibrary::load(&prompts_dir()).unwrap();
    assert!(
        lib.missing_speller_ids().is_empty(),
        "{:?}",
        lib.missing_speller_ids()
    );
    let mut levels = Vec::new();
    for id in ivr12333::say::SPELLER_IDS {
        let c = lib.get(id).unwrap();
        assert!(c.duration_ms() <= 800, "{id}: {} ms", c.duration_ms());
        let pcm = c.pcm();
        // loudest 50 ms window, the level a listener compares
        let loudest = pcm
            .windows(400)
            .step_by(80)
            .map(|w| (w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 400.0).sqrt())
            .fold(0.0f64, f64::max);
        levels.push((id, 20.0 * (loudest / 32768.0).log10()));
    }
    let digits: Vec<f64> = levels
        .iter()
        .filter(|(id, _)| id.starts_with("n_"))
        .map(|(_, db)| *db)
        .collect();
    let (min, max) = digits
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(
        max - min <= 6.0,
        "digit loudness spread {:.1} dB: {levels:?}",
        max - min
    );
    // the three 一 recordings differ (yī, yí, yì)
    let one = lib.get("n_1").unwrap().pcm();
    let yi2 = lib.get("n_1_yi2").unwrap().pcm();
    let yi4 = lib.get("n_1_yi4").unwrap().pcm();
    assert!(one != yi2 && one != yi4 && yi2 != yi4);
}

#[test]
fn call_flow_ids_exist() {
    let ids: BTreeSet<String> = manifest_ids(&prompts_dir()).unwrap().into_iter().collect();
    for id in CALL_FLOW_IDS {
        assert!(ids.contains(*id), "manifest lacks {id}");
    }
}

/// String literals in Rust source that name a prompt: the argument of
/// `Prompt("…")`, `prompt("…")`, `play("…")`, and any literal shaped like a
/// number-segment id (`n_…`, `u_…`, `m_…`, `d_…`, `c_…`, `l_…`, short).
fn referenced_in_source(src: &str) -> Vec<String> {
    // keep literal pairing simple: escaped quotes and the char '"' are not
    // string delimiters
    let src = &src.replace("\\\"", "  ").replace("'\"'", "' '");
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = src[i..].find('"') {
        let start = i + off + 1;
        let Some(len) = src[start..].find('"') else {
            break;
        };
        let lit = &src[start..start + len];
        let before = src[..start - 1].trim_end();
        let call = ["Prompt(", "prompt(", "play("]
            .iter()
            .any(|p| before.ends_with(p));
        let is_id = !lit.is_empty()
            && lit
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let numberish = {
            let parts: Vec<&str> = lit.split('_').collect();
            parts.len() >= 2
                && parts.len() <= 3
                && ["n", "u", "m", "d", "c", "l"].contains(&parts[0])
                && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 6)
        };
        if is_id && (call || numberish) {
            out.push(lit.to_owned());
        }
        i = start + len + 1;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_prompt_named_in_source_exists() {
    let ids: BTreeSet<String> = manifest_ids(&prompts_dir()).unwrap().into_iter().collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut checked = 0;
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for id in referenced_in_source(&src) {
            assert!(
                ids.contains(&id),
                "{}: prompt {id:?} is not in the manifest",
                f.display()
            );
            checked += 1;
        }
    }
    // the speller alone names every number segment
    assert!(checked >= 30, "only {checked} references found");
    assert_eq!(
        referenced_in_source(r#"x(Seg::Prompt("welcome")); y("n_1_yi2"); z("hello")"#),
        ["welcome", "n_1_yi2"]
    );
}

/// Strings under a key containing `prompt`, `play` or `say` in a dialplan.
fn dialplan_prompts(v: &toml::Value, key_matches: bool, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) if key_matches => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|x| dialplan_prompts(x, key_matches, out)),
        toml::Value::Table(t) => {
            for (k, x) in t {
                let k = k.to_ascii_lowercase();
                let m = k.contains("prompt") || k == "play" || k == "then_play";
                dialplan_prompts(x, m, out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_prompt_named_in_dialplans_exists() {
    let ids: BTreeSet<String> = manifest_ids(&prompts_dir()).unwrap().into_iter().collect();
    let Ok(entries) = std::fs::read_dir(root().join("dialplans")) else {
        // no dialplans in this tree yet: the check below runs on a sample
        let sample: toml::Value =
            toml::from_str("[state.a]\nprompts = [\"welcome\"]\nplay = \"goodbye\"\n").unwrap();
        let mut found = Vec::new();
        dialplan_prompts(&sample, false, &mut found);
        assert_eq!(found, ["goodbye", "welcome"]);
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let v: toml::Value = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let mut found = Vec::new();
        dialplan_prompts(&v, false, &mut found);
        for id in found {
            // values with a placeholder such as "<amount>" are not prompt ids
            if id.starts_with('<') || id.starts_with('$') || id.contains('{') {
                continue;
            }
            assert!(
                ids.contains(&id),
                "{}: prompt {id:?} is not in the manifest",
                p.display()
            );
        }
    }
}

//! `ivr12333 prompts check DIR [--dialplan FILE] [--target DBOV]`: can this
//! prompt set (a studio recording, or the synthetic one) serve the dial plan?
//!
//! For every id of `DIR/manifest.toml` it loads the file through the same
//! pipeline as `serve` (decode, 8 kHz, trim, loudness, fades) and prints one
//! line: duration, active speech level before and after matching (ITU-T
//! P.56, dBov), the gain, the peak after it, clipped runs in the source, and
//! the silence at each end of the file. Then it lists ids that are needed but
//! missing (not in the manifest, no file, or a file that does not load, e.g.
//! silent) and audio files in `DIR` that no manifest entry names.
//!
//! Needed ids: the manifest's own, every number segment of the speller, the
//! call's queue prompts, and with `--dialplan` every prompt the dial plan
//! names. Exit status 0 when every needed id loads (warnings do not fail),
//! 1 when the set cannot serve the dial plan, 2 when the manifest or the dial
//! plan cannot be read.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::flow::dialplan::{BUILTIN_PROMPT_IDS, load_file};
use crate::media::prompts::{
    DEFAULT_CEILING_DBFS, DEFAULT_TARGET_DBOV, EXTENSIONS, LevelReport, Loudness, load_normalised,
    manifest_ids, prompt_file,
};

/// Prompts the call itself plays while a caller waits in a queue.
pub const CALL_PROMPT_IDS: [&str; 5] = [
    "hold_music",
    "queue_ahead",
    "queue_wait",
    "c_wei",
    "agents_busy",
];

/// A prompt's level may differ from the target by this much (dB) before it
/// is flagged.
pub const TOLERANCE_DB: f32 = 1.0;

/// Leading or trailing silence longer than this is flagged (it delays
/// every prompt it starts, or every prompt after it).
pub const MAX_EDGE_SILENCE_MS: u32 = 300;

/// Arguments of `ivr12333 prompts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Check a prompt directory: levels, clipping, silence, missing and
    /// unexpected ids. Exit 1 when it cannot serve the dial plan.
    Check {
        dir: PathBuf,
        /// Also require every prompt this dial plan names.
        #[arg(long)]
        dialplan: Option<PathBuf>,
        /// Target active speech level in dBov.
        #[arg(long, default_value_t = DEFAULT_TARGET_DBOV, allow_negative_numbers = true)]
        target: f32,
    },
}

pub fn run(args: Args) -> ExitCode {
    match args.action {
        Action::Check {
            dir,
            dialplan,
            target,
        } => check(&dir, dialplan.as_deref(), target),
    }
}

fn fmt_db(v: Option<f32>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"))
}

/// One checked prompt: its report, or why it does not load.
type Checked = (String, Result<LevelReport, String>);

fn check(dir: &std::path::Path, dialplan: Option<&std::path::Path>, target: f32) -> ExitCode {
    let manifest = match manifest_ids(dir) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut needed: BTreeSet<String> = manifest.iter().cloned().collect();
    needed.extend(crate::say::SPELLER_IDS.iter().map(|s| (*s).to_owned()));
    needed.extend(CALL_PROMPT_IDS.iter().map(|s| (*s).to_owned()));
    if let Some(path) = dialplan {
        // Parse against every id anybody could record, then take the ids
        // this plan really names.
        let known: HashSet<&str> = BUILTIN_PROMPT_IDS
            .iter()
            .copied()
            .chain(manifest.iter().map(String::as_str))
            .collect();
        match load_file(path, &known) {
            Ok(plan) => needed.extend(plan.prompt_ids()),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    let loudness = Loudness {
        target_dbov: Some(target),
        ceiling_dbfs: DEFAULT_CEILING_DBFS,
    };
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>6} {:>7} {:>5} {:>6} {:>6}  notes",
        "id", "ms", "before", "after", "gain", "peak", "clip", "lead", "trail"
    );
    let mut checked: Vec<Checked> = Vec::new();
    for id in &manifest {
        let result = match prompt_file(dir, id) {
            None => Err("no file".to_owned()),
            Some(path) => load_normalised(&path, &loudness)
                .map(|(_, report)| report)
                .map_err(|e| e.to_string()),
        };
        checked.push((id.clone(), result));
    }
    let mut warnings = 0usize;
    for (id, result) in &checked {
        match result {
            Ok(r) => {
                let mut notes = Vec::new();
                if r.clipped_runs > 0 {
                    notes.push(format!("CLIPPED ({} runs)", r.clipped_runs));
                }
                if r.gain_limited {
                    notes.push("gain limited by the peak ceiling".to_owned());
                }
                if r.level_after
                    .is_none_or(|l| (l - target).abs() > TOLERANCE_DB)
                {
                    notes.push(format!("level off target by more than {TOLERANCE_DB} dB"));
                }
                if r.leading_silence_ms > MAX_EDGE_SILENCE_MS {
                    notes.push("long leading silence".to_owned());
                }
                if r.trailing_silence_ms > MAX_EDGE_SILENCE_MS {
                    notes.push("long trailing silence".to_owned());
                }
                warnings += usize::from(!notes.is_empty());
                println!(
                    "{:<22} {:>7} {:>8} {:>8} {:>6.1} {:>7.1} {:>5} {:>6} {:>6}  {}",
                    id,
                    r.duration_ms,
                    fmt_db(r.level_before),
                    fmt_db(r.level_after),
                    r.gain_db,
                    r.peak_after_dbfs,
                    r.clipped_runs,
                    r.leading_silence_ms,
                    r.trailing_silence_ms,
                    notes.join("; ")
                );
            }
            Err(e) => println!("{id:<22} ERROR {e}"),
        }
    }
    let loaded: HashSet<&str> = checked
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| id.as_str())
        .collect();
    let missing: Vec<&String> = needed
        .iter()
        .filter(|id| !loaded.contains(id.as_str()))
        .collect();
    let listed: HashSet<&str> = manifest.iter().map(String::as_str).collect();
    let mut unexpected: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let p = e.path();
                    let ext = p.extension()?.to_str()?.to_ascii_lowercase();
                    let stem = p.file_stem()?.to_str()?.to_owned();
                    (EXTENSIONS.contains(&ext.as_str()) && !listed.contains(stem.as_str()))
                        .then(|| p.file_name()?.to_str().map(str::to_owned))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default();
    unexpected.sort();
    let levels: Vec<f32> = checked
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.level_after)
        .collect();
    if let (Some(lo), Some(hi)) = (
        levels.iter().copied().reduce(f32::min),
        levels.iter().copied().reduce(f32::max),
    ) {
        println!(
            "levels after matching: {lo:.1} … {hi:.1} dBov (target {target:.1} ± {TOLERANCE_DB})"
        );
    }
    println!(
        "missing: {}",
        if missing.is_empty() {
            "none".to_owned()
        } else {
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }
    );
    println!(
        "unexpected: {}",
        if unexpected.is_empty() {
            "none".to_owned()
        } else {
            unexpected.join(" ")
        }
    );
    println!(
        "{} prompts, {} with warnings, {} missing",
        manifest.len(),
        warnings,
        missing.len()
    );
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "this prompt set cannot serve the dial plan: {} ids missing",
            missing.len()
        );
        ExitCode::from(1)
    }
}

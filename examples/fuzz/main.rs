//! Mutation fuzzer for the parsers that see peer and operator input.
//!
//! ```text
//! cargo run --release --example fuzz -- <target|all> [--iterations N] [--seed S]
//!     [--corpus DIR] [--crashes DIR] [--max-crashes N]
//! cargo run --release --example fuzz -- <target> --reproduce FILE
//! cargo run --release --example fuzz -- --list
//! ```
//!
//! Targets: `sip`, `sdp`, `rtp-dtmf`, `dialplan`, `csv-import` (see
//! `targets.rs`). Seeds come from `tests/fuzz/corpus/<target>/`; crashing
//! inputs go to `tests/fuzz/crashes/` with a `.txt` note holding the panic
//! message and the reproduction command. The exit status is 1 when a run
//! found a crash. See docs/fuzzing.md.

mod engine;
mod targets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use engine::{Mutator, RunConfig};

struct Args {
    targets: Vec<String>,
    iterations: u64,
    seed: u64,
    corpus: PathBuf,
    crashes: PathBuf,
    max_crashes: usize,
    reproduce: Option<PathBuf>,
}

const USAGE: &str = "usage: fuzz <target|all> [--iterations N] [--seed S] [--corpus DIR] \
                     [--crashes DIR] [--max-crashes N] [--reproduce FILE] | --list";

fn parse_args() -> Result<Args, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        targets: Vec::new(),
        iterations: 100_000,
        seed: 1,
        corpus: root.join("tests/fuzz/corpus"),
        crashes: root.join("tests/fuzz/crashes"),
        max_crashes: 10,
        reproduce: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--iterations" | "-n" => {
                a.iterations = value("--iterations")?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--iterations: {e}"))?
            }
            "--seed" => {
                a.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--corpus" => a.corpus = value("--corpus")?.into(),
            "--crashes" => a.crashes = value("--crashes")?.into(),
            "--max-crashes" => {
                a.max_crashes = value("--max-crashes")?
                    .parse()
                    .map_err(|e| format!("--max-crashes: {e}"))?
            }
            "--reproduce" => a.reproduce = Some(value("--reproduce")?.into()),
            "--list" => {
                for t in targets::NAMES {
                    println!("{t}");
                }
                std::process::exit(0);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "all" => a.targets = targets::NAMES.iter().map(|s| (*s).to_owned()).collect(),
            t if !t.starts_with('-') => {
                if !targets::NAMES.contains(&t) {
                    return Err(format!(
                        "unknown target {t:?} (one of: {}, all)",
                        targets::NAMES.join(", ")
                    ));
                }
                a.targets.push(t.to_owned());
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.targets.is_empty() {
        return Err("no target given".into());
    }
    Ok(a)
}

/// Replays one input without catching the panic, so the message and a
/// backtrace (RUST_BACKTRACE=1) show.
fn reproduce(target: &str, file: &Path) -> ExitCode {
    let input = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut t = targets::make(target).expect("target checked by parse_args");
    let sig = t(&input);
    println!(
        "{target}: {} bytes from {} ran without a panic (outcome {sig:016x})",
        input.len(),
        file.display()
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &args.reproduce {
        return reproduce(&args.targets[0], file);
    }
    let mut found = false;
    for name in &args.targets {
        let dir = args.corpus.join(name);
        let seeds: Vec<Vec<u8>> = match engine::load_corpus(&dir) {
            Ok(c) => c.into_iter().map(|(_, b)| b).collect(),
            Err(e) => {
                eprintln!(
                    "{name}: no corpus at {} ({e}); starting empty",
                    dir.display()
                );
                Vec::new()
            }
        };
        let mutator = Mutator {
            dictionary: targets::dictionary(name),
            max_len: targets::max_len(name),
        };
        let cfg = RunConfig {
            target: name,
            iterations: args.iterations,
            seed: args.seed,
            crash_dir: Some(&args.crashes),
            max_crashes: args.max_crashes,
            progress_every: (args.iterations / 10).max(1),
        };
        let started = Instant::now();
        let make = || targets::make(name).expect("target checked by parse_args");
        let report = engine::run(&cfg, &make, &seeds, &mutator, |r| {
            eprintln!(
                "{name}: {} iterations, {} outcomes, pool {}, {} crashes, {:.1} s",
                r.iterations,
                r.outcomes,
                r.pool,
                r.crashes.len(),
                started.elapsed().as_secs_f64()
            );
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: seed {} · {} seeds · {} iterations in {secs:.1} s ({:.0}/s) · {} distinct outcomes · {} crashes",
            args.seed,
            seeds.len(),
            report.iterations,
            report.iterations as f64 / secs.max(1e-9),
            report.outcomes,
            report.crashes.len()
        );
        for c in &report.crashes {
            found = true;
            println!("  crash at iteration {}: {}", c.iteration, c.message);
            match &c.saved {
                Some(p) => println!("    reproduce: {}", engine::repro_command(name, p)),
                None => println!("    (input not saved: {} bytes)", c.input.len()),
            }
        }
    }
    if found {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

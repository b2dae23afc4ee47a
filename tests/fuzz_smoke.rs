//! A bounded run of the fuzzer (`examples/fuzz`, docs/fuzzing.md): every
//! target replays its whole seed corpus, then a few thousand mutations from
//! a fixed seed, and must not panic. Bounded by count, not time; the same
//! inputs every run. The long runs are `cargo run --release --example fuzz`.

#[path = "../examples/fuzz/engine.rs"]
#[allow(dead_code)]
mod engine;
#[path = "../examples/fuzz/targets.rs"]
mod targets;

use std::path::PathBuf;

use engine::{Mutator, RunConfig};

/// Mutations per target on top of the seeds (the debug build runs a few
/// thousand SIP inputs a second).
const ITERATIONS: u64 = 3_000;
const SEED: u64 = 12333;

fn smoke(name: &str, iterations: u64) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let seeds: Vec<Vec<u8>> = engine::load_corpus(&dir.join(name))
        .expect("seed corpus")
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert!(!seeds.is_empty(), "{name}: empty seed corpus");
    let mutator = Mutator {
        dictionary: targets::dictionary(name),
        max_len: targets::max_len(name),
    };
    let total = seeds.len() as u64 + iterations;
    let cfg = RunConfig {
        target: name,
        iterations: total,
        seed: SEED,
        crash_dir: None,
        max_crashes: 5,
        progress_every: 0,
    };
    let make = || targets::make(name).expect("known target");
    let report = engine::run(&cfg, &make, &seeds, &mutator, |_| {});
    let crashes: Vec<String> = report
        .crashes
        .iter()
        .map(|c| {
            format!(
                "iteration {}: {} (input {} bytes, first 200 escaped: {})",
                c.iteration,
                c.message,
                c.input.len(),
                c.input
                    .iter()
                    .take(200)
                    .flat_map(|b| std::ascii::escape_default(*b))
                    .map(char::from)
                    .collect::<String>()
            )
        })
        .collect();
    assert!(
        crashes.is_empty(),
        "{name}: {} panics; rerun `cargo run --release --example fuzz -- {name} --iterations {total} --seed {SEED}` to save the inputs:\n{}",
        crashes.len(),
        crashes.join("\n")
    );
    assert_eq!(report.iterations, total, "{name}: stopped early");
    // The mutations reach more than one verdict of the parser.
    assert!(
        report.outcomes > 1,
        "{name}: every input had the same outcome"
    );
}

#[test]
fn sip_wire_front_end_survives_mutations() {
    smoke("sip", ITERATIONS);
}

#[test]
fn sdp_survives_mutations() {
    smoke("sdp", ITERATIONS);
}

#[test]
fn rfc4733_receiver_survives_mutations() {
    smoke("rtp-dtmf", ITERATIONS);
}

#[test]
fn dialplan_loader_survives_mutations() {
    smoke("dialplan", ITERATIONS);
}

#[test]
fn csv_import_survives_mutations() {
    // Each input is a real import into in-memory SQLite: fewer of them.
    smoke("csv-import", 1_000);
}

#[test]
fn every_target_has_seeds_and_a_smoke_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    for name in targets::NAMES {
        assert!(targets::make(name).is_some(), "{name}");
        let seeds = engine::load_corpus(&dir.join(name)).expect("seed corpus");
        assert!(!seeds.is_empty(), "{name}: empty seed corpus");
    }
    // Each name above has its own #[test] in this file.
    assert_eq!(targets::NAMES.len(), 5);
}

#[test]
fn the_same_seed_replays_the_same_inputs() {
    let mutator = Mutator {
        dictionary: targets::dictionary("sip"),
        max_len: 4096,
    };
    let base = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n".to_vec();
    let run = |seed| {
        let mut rng = engine::Rng::new(seed);
        (0..200)
            .map(|_| mutator.mutate(&mut rng, &base, &base))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn a_panic_is_caught_saved_and_reported_once_per_site() {
    let dir = tempfile::tempdir().unwrap();
    let mutator = Mutator {
        dictionary: &["!"],
        max_len: 64,
    };
    let cfg = RunConfig {
        target: "selftest",
        iterations: 5_000,
        seed: 3,
        crash_dir: Some(dir.path()),
        max_crashes: 5,
        progress_every: 0,
    };
    // Panics on any input holding a '!', from one site.
    let make = || -> engine::TargetFn {
        Box::new(|b: &[u8]| {
            assert!(!b.contains(&b'!'), "bang");
            b.len() as u64
        })
    };
    let report = engine::run(&cfg, &make, &[b"hello".to_vec()], &mutator, |_| {});
    assert_eq!(report.iterations, 5_000, "the run goes on after a panic");
    assert_eq!(report.crashes.len(), 1, "one report per panic site");
    let c = &report.crashes[0];
    assert!(c.input.contains(&b'!'));
    assert!(c.message.starts_with("bang at "), "{}", c.message);
    let saved = c.saved.as_ref().expect("saved");
    assert_eq!(std::fs::read(saved).unwrap(), c.input);
    let note = std::fs::read_to_string(saved.with_extension("txt")).unwrap();
    assert!(
        note.contains("--example fuzz -- selftest --reproduce"),
        "{note}"
    );
}

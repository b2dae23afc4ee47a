//! The mutation engine behind `cargo run --release --example fuzz` and
//! `tests/fuzz_smoke.rs` (which includes this file with `#[path]`).
//!
//! No compiler instrumentation (it runs on the stable toolchain): inputs come
//! from a seed corpus mutated by a deterministic generator, and the only
//! feedback is an *outcome signature* each target returns (which branch of
//! the parser's verdict the input reached: a status code, an error kind).
//! An input that yields a signature not seen before joins the in-memory
//! pool, so inputs that get past one check are mutated further. Everything
//! derives from the seed: the same seed, corpus and iteration count replay
//! the same inputs.
//!
//! A panic in a target is caught with `catch_unwind`; the input is written
//! to the crash directory with the command that reproduces it.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

/// A fuzz target: takes one input, returns its outcome signature. Must not
/// panic on any input; that is what the fuzzer looks for.
pub type TargetFn = Box<dyn FnMut(&[u8]) -> u64>;

/// SplitMix64: tiny, fast, the same sequence on every platform and version
/// (a `rand` upgrade cannot change which inputs a seed replays).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c908)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// FNV-1a, for outcome signatures and crash file names.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Bytes that tend to matter to text parsers.
const INTERESTING_BYTES: &[u8] = b"\0\r\n\t :;,=<>\"'\\/@?&%#*-+.0129AXZaz[]{}\x7f\x80\xff";

/// Numbers at the edges of the integer types parsers use.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "00000000000000000000",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e10",
    "0x10",
    "-0",
    "+5",
    "0.001",
    "1.",
    ".5",
];

/// How inputs are mutated for one target.
pub struct Mutator<'a> {
    /// Tokens of the target's language (header names, keys, separators).
    pub dictionary: &'a [&'a str],
    /// Inputs are cut to this length.
    pub max_len: usize,
}

impl Mutator<'_> {
    /// One to four stacked mutations of `base`, possibly spliced with `other`.
    pub fn mutate(&self, rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        let rounds = 1 + rng.below(4);
        for _ in 0..rounds {
            self.one(rng, &mut v, other);
        }
        v.truncate(self.max_len);
        v
    }

    fn one(&self, rng: &mut Rng, v: &mut Vec<u8>, other: &[u8]) {
        let len = v.len();
        match rng.below(14) {
            // Bit flip.
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            // Overwrite a byte with an interesting or random one.
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = if rng.chance(2) {
                    INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                } else {
                    rng.next_u64() as u8
                };
            }
            // Insert 1-8 bytes.
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let ins: Vec<u8> = (0..n)
                    .map(|_| INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())])
                    .collect();
                v.splice(at..at, ins);
            }
            // Delete a range.
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                v.drain(at..at + n);
            }
            // Duplicate a range in place (repeated headers, lines, values).
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = v[at..at + n].to_vec();
                let to = rng.below(len + 1);
                v.splice(to..to, chunk);
            }
            // Splice: our head, the other input's tail.
            5 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            // Insert a chunk of the other input.
            6 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = 1 + rng.below((other.len() - from).min(128));
                let at = rng.below(len + 1);
                v.splice(at..at, other[from..from + n].iter().copied());
            }
            // Insert a dictionary token, at a line start half of the time.
            7 | 8 if !self.dictionary.is_empty() => {
                let tok = self.dictionary[rng.below(self.dictionary.len())].as_bytes();
                let at = if rng.chance(2) {
                    pick_line_start(rng, v)
                } else {
                    rng.below(len + 1)
                };
                v.splice(at..at, tok.iter().copied());
            }
            // Replace the rest of a line after a separator (a header value,
            // a TOML value, a CSV field) with a token or a number.
            9 => {
                let seps = [b':', b'=', b',', b' ', b';'];
                let positions: Vec<usize> = v
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| seps.contains(b))
                    .map(|(i, _)| i + 1)
                    .collect();
                if positions.is_empty() {
                    return;
                }
                let at = positions[rng.below(positions.len())];
                let end = v[at..]
                    .iter()
                    .position(|b| matches!(b, b'\r' | b'\n' | b',' | b';'))
                    .map_or(v.len(), |p| at + p);
                let rep: Vec<u8> = if rng.chance(2) || self.dictionary.is_empty() {
                    INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())]
                        .as_bytes()
                        .to_vec()
                } else {
                    self.dictionary[rng.below(self.dictionary.len())]
                        .as_bytes()
                        .to_vec()
                };
                v.splice(at..end, rep);
            }
            // Replace a run of digits with an edge number.
            10 => {
                let starts: Vec<usize> = (0..len)
                    .filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit()))
                    .collect();
                if starts.is_empty() {
                    return;
                }
                let at = starts[rng.below(starts.len())];
                let end = v[at..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(v.len(), |p| at + p);
                let num = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
                v.splice(at..end, num.bytes());
            }
            // Line operations: duplicate, delete or swap whole lines.
            11 | 12 => {
                let lines = split_lines(v);
                if lines.len() < 2 {
                    return;
                }
                let a = rng.below(lines.len());
                let b = rng.below(lines.len());
                let mut out: Vec<&[u8]> = lines.clone();
                match rng.below(3) {
                    0 => out.insert(b, lines[a]),
                    1 => {
                        out.remove(a);
                    }
                    _ => out.swap(a, b),
                }
                *v = out.concat();
            }
            // Line-end games: CRLF ↔ LF, or a folded continuation.
            13 => {
                let nl: Vec<usize> = (0..len).filter(|&i| v[i] == b'\n').collect();
                if nl.is_empty() {
                    return;
                }
                let i = nl[rng.below(nl.len())];
                match rng.below(3) {
                    0 if i > 0 && v[i - 1] == b'\r' => {
                        v.remove(i - 1);
                    }
                    1 => v.insert(i, b'\r'),
                    _ => v.insert(i + 1, if rng.chance(2) { b' ' } else { b'\t' }),
                }
            }
            // The guard of the chosen arm failed (empty input): grow it.
            _ => v.push(INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]),
        }
    }
}

fn pick_line_start(rng: &mut Rng, v: &[u8]) -> usize {
    let starts: Vec<usize> = std::iter::once(0)
        .chain((0..v.len()).filter(|&i| v[i] == b'\n').map(|i| i + 1))
        .collect();
    starts[rng.below(starts.len())]
}

/// Lines with their line ends kept (so concatenation restores the input).
fn split_lines(v: &[u8]) -> Vec<&[u8]> {
    v.split_inclusive(|b| *b == b'\n').collect()
}

/// Reads every regular file of `dir`, sorted by name (a stable order keeps
/// runs reproducible).
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::read(&p).map(|b| (name, b))
        })
        .collect()
}

std::thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static FUZZING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that, while a target runs on this thread, records
/// the message and location instead of printing them (thousands of caught
/// panics would flood the terminal). Any other panic (a failing test
/// assertion, a bug in the driver) goes to the previous hook as usual.
/// Idempotent.
pub fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !FUZZING.with(|f| f.get()) {
                return previous(info);
            }
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            let loc = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg} at {loc}")));
        }));
    });
}

/// Runs one input through the target with the quiet hook on.
fn run_one(target: &mut TargetFn, input: &[u8]) -> std::thread::Result<u64> {
    FUZZING.with(|f| f.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
    FUZZING.with(|f| f.set(false));
    r
}

/// One crash: which input, what the panic said, where it was saved.
#[derive(Debug, Clone)]
pub struct Crash {
    pub iteration: u64,
    pub message: String,
    pub input: Vec<u8>,
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub iterations: u64,
    pub outcomes: usize,
    pub pool: usize,
    pub crashes: Vec<Crash>,
}

/// Settings of one run.
pub struct RunConfig<'a> {
    pub target: &'a str,
    pub iterations: u64,
    pub seed: u64,
    /// Where crashing inputs are written (None: kept in the report only).
    pub crash_dir: Option<&'a Path>,
    /// Stop after this many distinct crashes.
    pub max_crashes: usize,
    /// Called every `progress_every` iterations with the report so far.
    pub progress_every: u64,
}

/// Largest in-memory pool of inputs (seeds plus inputs with new outcomes).
const MAX_POOL: usize = 4096;

/// Runs `make()`'s target over mutations of `seeds`. A target that panicked
/// is rebuilt with `make` (its state may be half-updated).
pub fn run(
    cfg: &RunConfig<'_>,
    make: &dyn Fn() -> TargetFn,
    seeds: &[Vec<u8>],
    mutator: &Mutator<'_>,
    mut progress: impl FnMut(&Report),
) -> Report {
    quiet_panics();
    let mut rng = Rng::new(cfg.seed);
    let mut target = make();
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut seen: HashSet<u64> = HashSet::new();
    let mut crash_sites: HashSet<String> = HashSet::new();
    let mut report = Report::default();
    // The seeds themselves first, unmutated.
    let seed_count = pool.len() as u64;
    for i in 0..cfg.iterations {
        let input = if i < seed_count {
            pool[i as usize].clone()
        } else {
            let a = rng.below(pool.len());
            let b = rng.below(pool.len());
            mutator.mutate(&mut rng, &pool[a], &pool[b])
        };
        let result = run_one(&mut target, &input);
        report.iterations = i + 1;
        match result {
            Ok(sig) => {
                if seen.insert(sig) && pool.len() < MAX_POOL && i >= seed_count {
                    pool.push(input);
                }
            }
            Err(_) => {
                let message = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "panic".into());
                // One report per panic site, not per input reaching it.
                if crash_sites.insert(message.clone()) {
                    let saved = cfg
                        .crash_dir
                        .and_then(|d| save_crash(d, cfg.target, &input, &message));
                    report.crashes.push(Crash {
                        iteration: i,
                        message,
                        input,
                        saved,
                    });
                }
                target = make();
                if report.crashes.len() >= cfg.max_crashes {
                    break;
                }
            }
        }
        if cfg.progress_every > 0 && (i + 1) % cfg.progress_every == 0 {
            report.outcomes = seen.len();
            report.pool = pool.len();
            progress(&report);
        }
    }
    report.outcomes = seen.len();
    report.pool = pool.len();
    report
}

/// Writes the input as `<dir>/<target>-<hash>.bin` and the panic message
/// beside it (`.txt`, with the reproduction command).
fn save_crash(dir: &Path, target: &str, input: &[u8], message: &str) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{target}-{:016x}.bin", fnv(input)));
    std::fs::write(&path, input).ok()?;
    let note = format!(
        "target: {target}\npanic: {message}\nreproduce: {}\n",
        repro_command(target, &path)
    );
    std::fs::write(path.with_extension("txt"), note).ok()?;
    Some(path)
}

/// The command that replays one saved input with the panic message shown.
pub fn repro_command(target: &str, path: &Path) -> String {
    format!(
        "cargo run --release --example fuzz -- {target} --reproduce {}",
        path.display()
    )
}

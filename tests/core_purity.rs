//! Every sans-IO core stays sans-IO, and the module graph has no circle.
//!
//! One list of cores (`sip`, `media`, `flow`, `queue`, `say`, `call`,
//! `core`): a core file's code (up to its `#[cfg(test)]` module, whose unit
//! tests may take a virtual t0 from the clock) never mentions tokio, a
//! socket type, a thread or a clock read. Some cores promise more, and
//! keep those promises here: the SIP core never unwraps; the media and
//! flow cores never log; the flow and queue cores never touch `std::net`;
//! the queue's admin routes (axum) take the clock as a parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CORES: &[&str] = &["sip", "media", "flow", "queue", "say", "call", "core"];

const EVERY_CORE: &[&str] = &[
    "tokio",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "Instant::now(",
    "SystemTime::now(",
    "std::thread",
    "thread::sleep",
];

/// Extra words per core (or per file), and whether comment lines are
/// exempt (they may name what the module does not use).
fn extra(rel: &str) -> (&'static [&'static str], bool) {
    match rel {
        r if r.starts_with("sip/") => (&[".unwrap()", ".expect("], false),
        "media/sdp.rs" | "media/rtp.rs" | "media/dtmf.rs" | "media/inband.rs"
        | "media/player.rs" | "media/session.rs" | "media/bridge.rs" => (
            &["println!", "tracing::", "Instant::now", "SystemTime::now"],
            false,
        ),
        r if r.starts_with("media/") => (&[], false),
        r if r.starts_with("flow/") => (
            &[
                "Instant::now",
                "SystemTime",
                "std::net",
                "today_utc",
                "tracing::",
            ],
            true,
        ),
        "queue/admin.rs" => (&["Instant::now", "SystemTime", "std::net"], true),
        r if r.starts_with("queue/") => (&["Instant::now", "SystemTime", "std::net"], true),
        _ => (&[], true),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of `src/`, as (path relative to `src/`, text).
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn top_module(rel: &str) -> &str {
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

/// The code of a file up to its unit tests, without comment lines when
/// `skip_comments`.
fn code(text: &str, skip_comments: bool) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap();
    code.lines()
        .filter(|l| !(skip_comments && l.trim_start().starts_with("//")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_core_file_is_sans_io() {
    let mut checked = BTreeMap::<&str, usize>::new();
    for (rel, text) in sources() {
        let top = top_module(&rel);
        let Some(core) = CORES.iter().find(|c| **c == top) else {
            continue;
        };
        let (words, skip_comments) = extra(&rel);
        let all = code(&text, false);
        let without_comments = code(&text, true);
        for word in EVERY_CORE {
            assert!(
                !without_comments.contains(word),
                "src/{rel} mentions {word}"
            );
        }
        let body = if skip_comments {
            &without_comments
        } else {
            &all
        };
        for word in words {
            assert!(!body.contains(word), "src/{rel} mentions {word}");
        }
        *checked.entry(core).or_default() += 1;
    }
    // Every core was found, with at least as many files as it has today.
    for (core, min) in [
        ("sip", 10),
        ("media", 11),
        ("flow", 4),
        ("queue", 8),
        ("say", 1),
        ("call", 3),
        ("core", 1),
    ] {
        let n = checked.get(core).copied().unwrap_or(0);
        assert!(
            n >= min,
            "{core}: {n} files checked, expected at least {min}"
        );
    }
}

/// `crate::x` and `super::x` references of a file's code, as top-level
/// modules (`crate::`) or sibling files (`super::`).
fn references(text: &str, prefix: &str) -> BTreeSet<String> {
    let code = code(text, true);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
        // `use crate::{a, b}` / `use super::{a, b}`
        if rest.starts_with('{') {
            let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for part in group.split(',') {
                let n: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !n.is_empty() {
                    out.insert(n);
                }
            }
        }
    }
    out
}

fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>, what: &str) {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        what: &str,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == n) {
            panic!("{what}: import circle {:?} -> {n}", &path[i..]);
        }
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            visit(m, graph, path, done, what);
        }
        path.pop();
        done.insert(n.to_owned());
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        visit(n, graph, &mut Vec::new(), &mut done, what);
    }
}

#[test]
fn module_graph_has_no_circle_and_no_core_imports_the_runtime() {
    let files = sources();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut runtime: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let m = top_module(rel).to_owned();
        if m == "lib" || m == "main" {
            continue;
        }
        let refs = references(text, "crate::");
        if CORES.contains(&m.as_str()) {
            for bad in ["runtime", "cli"] {
                assert!(
                    !refs.contains(bad),
                    "core file src/{rel} imports crate::{bad}"
                );
            }
        }
        let entry = top.entry(m.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != m));
        // Inside the runtime: sibling files must not import each other in
        // a circle (mod.rs is their parent and may use them all).
        if let Some(file) = rel.strip_prefix("runtime/")
            && file != "mod.rs"
            && !file.contains('/')
        {
            let me = file.trim_end_matches(".rs").to_owned();
            let sibs = references(text, "super::");
            runtime
                .entry(me.clone())
                .or_default()
                .extend(sibs.into_iter().filter(|s| *s != me));
        }
    }
    assert!(top.contains_key("call") && top.contains_key("runtime"));
    assert!(runtime.contains_key("call_task") && runtime.contains_key("sip"));
    assert_acyclic(&top, "top-level modules");
    assert_acyclic(&runtime, "src/runtime/");
}

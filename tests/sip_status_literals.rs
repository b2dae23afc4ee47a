//! Status codes live in `src/sip/status.rs`: no bare 3xx–6xx number may
//! appear in the code of the SIP core, the call or the SIP driver (comments,
//! string literals and `#[cfg(test)]` modules excepted). A number in that
//! range that is not a status (a size limit) is listed below with its file.

use std::path::{Path, PathBuf};

/// (file suffix, line fragment) pairs that hold a 3xx–6xx number which is
/// not a status code.
const NOT_STATUS: &[(&str, &str)] = &[
    ("src/sip/endpoint/mod.rs", "max_message_bytes < 512"),
    ("src/sip/endpoint/mod.rs", "from_millis(500)"),
    ("src/sip/timers.rs", "from_millis(500)"),
    ("src/sip/message.rs", "with_capacity(512)"),
];

/// Owned by the admission work (per-source limits); its `Refusal::status`
/// is superseded by `status::Reply::from(Refusal)`, which the endpoint uses.
const EXEMPT_FILES: &[&str] = &["src/sip/status.rs", "src/sip/admission.rs"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The line without string literals and a trailing `//` comment.
fn code_part(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = '\0';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            if c == '"' && prev != '\\' {
                in_str = false;
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
            continue;
        }
        if c == '"' {
            in_str = true;
            prev = '\0';
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            break;
        }
        out.push(c);
    }
    out
}

fn status_literals(code: &str) -> Vec<u32> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let before = start.checked_sub(1).map(|j| b[j]);
            let word = &code[start..i];
            let after = b.get(i).copied();
            let glued = before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
                || after == Some(b'.');
            if !glued
                && word.len() == 3
                && let Ok(n) = word.parse::<u32>()
                && (300..=699).contains(&n)
            {
                found.push(n);
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn no_bare_status_numbers_outside_status_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    files(&root.join("src/sip"), &mut all);
    files(&root.join("src/call"), &mut all);
    for f in [
        "sip.rs",
        "call_task.rs",
        "call_core.rs",
        "jobs.rs",
        "types.rs",
        "driver.rs",
    ] {
        all.push(root.join("src/runtime").join(f));
    }
    let mut stray = Vec::new();
    for path in all {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if EXEMPT_FILES.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = code_part(line);
            if code.trim_start().starts_with("//") {
                continue;
            }
            let nums = status_literals(&code);
            if nums.is_empty() {
                continue;
            }
            if NOT_STATUS
                .iter()
                .any(|(f, frag)| rel.ends_with(f) && line.contains(frag))
            {
                continue;
            }
            stray.push(format!("{rel}:{}: {nums:?}: {}", n + 1, line.trim()));
        }
    }
    assert!(
        stray.is_empty(),
        "status numbers outside src/sip/status.rs (use StatusCode / status::Reply):\n{}",
        stray.join("\n")
    );
}

#[test]
fn the_scanner_sees_what_it_must() {
    assert_eq!(status_literals("reject(now, call, 486)"), vec![486]);
    assert_eq!(status_literals("Err(488)"), vec![488]);
    assert!(status_literals(r#"x("SIP/2.0 503")"#.split('"').next().unwrap()).is_empty());
    assert!(status_literals(&code_part(r#"f("503 x", 1) // 481"#)).is_empty());
    assert!(status_literals("t: Duration::from_millis(500) + x_503 + 5.500").len() == 1);
}

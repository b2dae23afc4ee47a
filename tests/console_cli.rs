//! `ivr12333 console hash-password | new-token`: the secrets the console
//! configuration holds, checked against the code that verifies them.

use std::io::Write;
use std::process::{Command, Stdio};

use ivr12333::console::auth;

#[test]
fn hash_password_reads_stdin_and_prints_a_verifiable_hash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["console", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(auth::verify_password("a long password", hash));
    assert!(!auth::verify_password("a long passwor", hash));
    assert!(!hash.contains("a long password"));

    // Too short: refused, nothing printed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["console", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn new_token_prints_the_token_and_its_sha256() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["console", "new-token"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token  = "))
        .unwrap();
    let sha = text
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(token.len(), 64);
    assert_eq!(sha, auth::token_hash(token));
}

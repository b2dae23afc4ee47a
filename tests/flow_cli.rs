//! `ivr12333 dialplan check|graph` as an operator runs them.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ivr12333"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn check_ok_prints_state_count() {
    let out = bin()
        .args(["dialplan", "check", "dialplans/12333.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: ") && stdout.trim_end().ends_with(" states"),
        "{stdout}"
    );
}

#[test]
fn check_error_prints_position_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[dialplan]\ninitial = \"x\"\n").unwrap();
    let out = bin().args(["dialplan", "check"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2:11: unknown state `x`"),
        "{stderr}"
    );
}

#[test]
fn check_with_prompts_dir_reads_the_manifest_or_says_it_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["dialplan", "check", "dialplans/12333.toml", "--prompts"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("manifest.toml"), "{stderr}");

    // A manifest lacking `goodbye`: the plan names it, so check fails on it.
    let mut m = String::new();
    for id in ivr12333::flow::dialplan::BUILTIN_PROMPT_IDS {
        if *id != "goodbye" {
            m.push_str(&format!(
                "[[prompt]]\nid = \"{id}\"\ntext = \"x\"\ncategory = \"phrase\"\n\n"
            ));
        }
    }
    std::fs::write(dir.path().join("manifest.toml"), &m).unwrap();
    let out = bin()
        .args(["dialplan", "check", "dialplans/12333.toml", "--prompts"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown prompt id `goodbye`"), "{stderr}");
}

#[test]
fn graph_prints_dot() {
    let out = bin()
        .args(["dialplan", "graph", "dialplans/12333.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph \"12333\" {"));
    assert!(dot.contains("\"main_menu\" -> \"agent\" [label=\"0\"]"));
}

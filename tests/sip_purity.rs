//! The SIP core is sans-IO: its non-test code never reads the clock, never
//! touches tokio or sockets (STYLE.md). Scans src/sip/**.rs up to each
//! file's `#[cfg(test)]` module.

use std::path::{Path, PathBuf};

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

#[test]
fn sip_core_is_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sip");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() >= 10, "found {} files", files.len());
    let forbidden = [
        "Instant::now(",
        "SystemTime::now(",
        "tokio",
        "UdpSocket",
        "TcpStream",
        "TcpListener",
        "std::thread",
        ".unwrap()",
        ".expect(",
    ];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for word in forbidden {
            assert!(
                !code.contains(word),
                "{} mentions {word} outside its tests",
                f.display()
            );
        }
    }
}

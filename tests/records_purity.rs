//! The records writer's decisions and its spool framing are sans-IO: their
//! non-test code never reads the clock, never touches tokio, files or
//! sockets. (The file I/O is `spool.rs`, the task is `writer.rs`.)

#[test]
fn records_policy_and_framing_are_sans_io() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/records");
    let forbidden = [
        "Instant::now(",
        "SystemTime::now(",
        "tokio",
        "std::fs",
        "File",
        "UdpSocket",
        "TcpStream",
        "std::thread",
        ".unwrap()",
        ".expect(",
    ];
    for name in ["policy.rs", "frame.rs"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for word in forbidden {
            assert!(
                !code.contains(word),
                "src/records/{name} mentions {word} outside its tests"
            );
        }
    }
}

//! The media core is sans-IO: no clock reads, no sockets, no tokio, no
//! threads in the files this crate's media core is made of.

use std::path::Path;

const CORE: [&str; 6] = [
    "sdp.rs",
    "rtp.rs",
    "dtmf.rs",
    "inband.rs",
    "player.rs",
    "session.rs",
];
const FORBIDDEN: [&str; 8] = [
    "Instant::now",
    "SystemTime::now",
    "tokio",
    "UdpSocket",
    "TcpStream",
    "std::thread",
    "println!",
    "tracing::",
];

#[test]
fn media_core_files_do_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media");
    let mut checked = 0;
    for file in CORE {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        // unit tests may take a virtual t0 from the clock
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for word in FORBIDDEN {
            assert!(!code.contains(word), "{file} mentions {word}");
        }
        checked += 1;
    }
    assert_eq!(checked, CORE.len());
}

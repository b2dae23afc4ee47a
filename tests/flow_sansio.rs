//! The flow core stays sans-IO (STYLE.md): no clock, sockets or tokio in
//! `src/flow/`. The interpreter gets `now` and the wall clock from its caller.

#[test]
fn flow_core_never_reads_the_clock_or_touches_the_network() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/flow");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        // Code only: the module docs may name what the module does not use.
        let src: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for banned in [
            "Instant::now",
            "SystemTime",
            "tokio",
            "std::net",
            "today_utc",
            "tracing::",
        ] {
            assert!(
                !src.contains(banned),
                "{} mentions {banned}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 4);
}

//! The queue core is sans-IO: no clock, no sockets, no tokio. The admin
//! routes (axum) are the only edge in `src/queue/`, and even they take the
//! clock as an injected function.

const CORE: &[(&str, &str)] = &[
    ("mod.rs", include_str!("../src/queue/mod.rs")),
    ("state.rs", include_str!("../src/queue/state.rs")),
    ("order.rs", include_str!("../src/queue/order.rs")),
    ("strategy.rs", include_str!("../src/queue/strategy.rs")),
    ("snapshot.rs", include_str!("../src/queue/snapshot.rs")),
    ("digest.rs", include_str!("../src/queue/digest.rs")),
    ("config.rs", include_str!("../src/queue/config.rs")),
];

const ADMIN: &str = include_str!("../src/queue/admin.rs");

fn code_lines(src: &str) -> impl Iterator<Item = &str> {
    // Unit tests drive virtual time from a real `Instant::now()` origin;
    // they start at `#[cfg(test)]` and are not part of the core.
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    // Doc and ordinary comments may mention the forbidden names to explain
    // why they are absent.
    src.lines().filter(|l| {
        let t = l.trim_start();
        !(t.starts_with("//") || t.starts_with("//!") || t.starts_with("///"))
    })
}

#[test]
fn core_files_use_no_clock_sockets_or_tokio() {
    for (name, src) in CORE {
        for line in code_lines(src) {
            for bad in [
                "Instant::now",
                "SystemTime",
                "tokio",
                "std::net",
                "thread::sleep",
            ] {
                assert!(!line.contains(bad), "{name} uses {bad}: {line}");
            }
        }
    }
}

#[test]
fn admin_takes_the_clock_as_a_parameter() {
    for line in code_lines(ADMIN) {
        for bad in ["Instant::now", "SystemTime", "std::net"] {
            assert!(!line.contains(bad), "admin.rs uses {bad}: {line}");
        }
    }
}

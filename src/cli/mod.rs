//! Command-line subcommands; `main.rs` only dispatches to these.

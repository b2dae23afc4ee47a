//! Command-line subcommands; `main.rs` only dispatches to these.

pub mod dialplan;
pub mod ledger;
pub mod prompts;
pub mod say;
pub mod serve;

//! `ivr12333 ledger`.

use std::process::ExitCode;

/// Arguments of `ivr12333 ledger`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!("ivr12333 ledger: not implemented yet");
    ExitCode::from(2)
}

//! `ivr12333 serve`.

use std::process::ExitCode;

/// Arguments of `ivr12333 serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!("ivr12333 serve: not implemented yet");
    ExitCode::from(2)
}

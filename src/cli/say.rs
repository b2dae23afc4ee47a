//! `ivr12333 say`.

use std::process::ExitCode;

/// Arguments of `ivr12333 say`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!("ivr12333 say: not implemented yet");
    ExitCode::from(2)
}

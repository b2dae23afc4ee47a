//! `ivr12333 dialplan`.

use std::process::ExitCode;

/// Arguments of `ivr12333 dialplan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!("ivr12333 dialplan: not implemented yet");
    ExitCode::from(2)
}

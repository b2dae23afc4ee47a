use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ivr12333: the 12333 social-security self-service voice line.
#[derive(Parser)]
#[command(name = "ivr12333", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ivr12333::cli;

/// ivr12333: the 12333 social-security self-service voice line.
#[derive(Parser)]
#[command(name = "ivr12333", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer calls (SIP over UDP and TCP, RTP media).
    Serve(cli::serve::Args),
    /// Render the Mandarin readout of an amount, date, count or digit string.
    Say(cli::say::Args),
    /// Manage the account ledger: migrate, seed, import, unlock, set PINs, verify the audit chain.
    #[command(subcommand_value_name = "ACTION")]
    Ledger(cli::ledger::Args),
    /// Check a dialplan file or draw it as a Graphviz graph.
    Dialplan(cli::dialplan::Args),
    /// Check a prompt set: levels, clipping, silence, missing and unexpected ids.
    Prompts(cli::prompts::Args),
    /// Operators' console secrets: hash a password, make an API token.
    Console(ivr12333::console::cli::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => cli::serve::run(a),
        Command::Say(a) => cli::say::run(a),
        Command::Ledger(a) => cli::ledger::run(a),
        Command::Dialplan(a) => cli::dialplan::run(a),
        Command::Prompts(a) => cli::prompts::run(a),
        Command::Console(a) => ivr12333::console::cli::run(a),
    }
}

//! `ivr12333 console`: make the secrets the console configuration holds.
//!
//! - `hash-password` reads a password from standard input (one line) and
//!   prints its argon2id hash for `[[console_user]] password_hash`.
//! - `new-token` prints a new random API token (give it to the client) and
//!   its SHA-256 for `[[console.token]] sha256` (put that in the config).

use std::io::BufRead;
use std::process::ExitCode;

use super::auth;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Read a password from stdin, print its argon2id hash.
    HashPassword,
    /// Print a new API token and the SHA-256 to configure.
    NewToken,
}

pub fn run(a: Args) -> ExitCode {
    match a.action {
        Action::HashPassword => {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() {
                eprintln!("error: cannot read the password from standard input");
                return ExitCode::from(2);
            }
            let pw = line.trim_end_matches(['\r', '\n']);
            if pw.len() < 8 {
                eprintln!("error: a console password has at least 8 characters");
                return ExitCode::from(2);
            }
            println!("{}", auth::hash_password(pw));
            ExitCode::SUCCESS
        }
        Action::NewToken => {
            let t = auth::new_token();
            println!("token  = {t}");
            println!("sha256 = \"{}\"", auth::token_hash(&t));
            ExitCode::SUCCESS
        }
    }
}

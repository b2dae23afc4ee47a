//! `ivr12333 dialplan check FILE [--prompts DIR]` and `ivr12333 dialplan graph FILE`.
//!
//! `check` validates a dialplan against the recorded prompt ids of
//! `DIR/manifest.toml` and prints `ok: N states` or `file:line:col: reason`
//! (exit 2). `graph` prints the tree as Graphviz dot.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::flow::dialplan::{builtin_prompts, manifest_prompt_ids, parse_dialplan};
use crate::flow::graph::to_dot;

/// Arguments of `ivr12333 dialplan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Validate a dialplan file; prints `ok: N states` or `file:line:col: reason`.
    Check {
        file: PathBuf,
        /// Prompt directory holding `manifest.toml` (default `prompts`; without
        /// this flag and without `prompts/manifest.toml` the built-in id list is used).
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
    /// Print the call tree as a Graphviz dot graph.
    Graph {
        file: PathBuf,
        /// Prompt directory holding `manifest.toml` (default: the built-in id list).
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> ExitCode {
    match args.action {
        Action::Check { file, prompts } => match load(&file, prompts.as_deref(), true) {
            Ok(n) => {
                println!("ok: {} states", n.states.len());
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::from(2)
            }
        },
        Action::Graph { file, prompts } => match load(&file, prompts.as_deref(), false) {
            Ok(plan) => {
                print!("{}", to_dot(&plan));
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::from(2)
            }
        },
    }
}

/// Reads the manifest's prompt ids. An explicit `--prompts` directory must
/// hold a manifest; otherwise `prompts/manifest.toml` is tried and the
/// built-in list is the fallback (said on stderr).
fn known_prompts(dir: Option<&Path>, verbose: bool) -> Result<Vec<String>, String> {
    let explicit = dir.is_some();
    let path = dir.unwrap_or(Path::new("prompts")).join("manifest.toml");
    match std::fs::read_to_string(&path) {
        Ok(src) => manifest_prompt_ids(&src).map_err(|e| format!("{}:{e}", path.display())),
        Err(e) if explicit => Err(format!(
            "{}: cannot read the prompt manifest: {e}",
            path.display()
        )),
        Err(_) => {
            if verbose {
                eprintln!(
                    "note: {} not found; checking prompt ids against the built-in list",
                    path.display()
                );
            }
            Ok(builtin_prompts().into_iter().map(str::to_owned).collect())
        }
    }
}

/// Loads and validates a dialplan file; errors are ready to print.
pub fn load(
    file: &Path,
    prompts: Option<&Path>,
    verbose: bool,
) -> Result<crate::flow::Dialplan, String> {
    let ids = known_prompts(prompts, verbose)?;
    let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let src = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    parse_dialplan(&file.display().to_string(), &src, &known).map_err(|e| e.to_string())
}

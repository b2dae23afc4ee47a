//! `ivr12333 ledger`: migrate, seed the demo accounts, import CSV, unlock,
//! set a PIN, verify the audit chain.
//!
//! Exit status: 0 success, 1 failure (with a message), 2 usage error
//! (including an invalid ID number or PIN). Never prints a PIN; IDs only
//! masked. The PIN pepper comes from `IVR12333_LEDGER__PIN_PEPPER`; without it a SQLite
//! ledger uses the public demo pepper (with a warning) and a PostgreSQL
//! ledger refuses to open.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::domain::{IdNumber, Pin};
use crate::ledger::{
    AuditReport, ImportOptions, Ledger, LedgerConfig, LedgerError, import::write_rejects,
};

/// Arguments of `ivr12333 ledger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// The database to work on.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArg {
    /// Database URL: sqlite://PATH, sqlite::memory: or postgres://...
    #[arg(long, default_value = "sqlite://var/ivr12333.db")]
    pub db: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create or upgrade the schema.
    Migrate(DbArg),
    /// Load the demo accounts (idempotent; see docs/ledger.md).
    SeedDemo(DbArg),
    /// Import accounts from a CSV file (all-or-nothing unless --skip-bad).
    Import {
        #[command(flatten)]
        db: DbArg,
        /// The CSV file (header row with named columns).
        file: PathBuf,
        /// Import the good rows and write the rejected ones, with reasons, to this file.
        #[arg(long, value_name = "REJECTS.csv")]
        skip_bad: Option<PathBuf>,
    },
    /// Clear the PIN failure counter and lock of an account.
    Unlock {
        #[command(flatten)]
        db: DbArg,
        /// The 18-character ID number.
        id: String,
    },
    /// Set an account's PIN, read from stdin (never from the command line).
    SetPin {
        #[command(flatten)]
        db: DbArg,
        /// The 18-character ID number.
        id: String,
    },
    /// Check the audit log's hash chain.
    VerifyAudit(DbArg),
}

/// A failure: exit status and message.
struct Fail(u8, String);

impl From<LedgerError> for Fail {
    fn from(e: LedgerError) -> Self {
        Fail(1, e.to_string())
    }
}

fn config_for(url: &str) -> LedgerConfig {
    match LedgerConfig::from_env() {
        Some(c) => c,
        None => {
            if !crate::ledger::db::is_postgres_url(url) {
                eprintln!(
                    "warning: IVR12333_LEDGER__PIN_PEPPER is not set; using the public demo pepper (demo data only)"
                );
            }
            LedgerConfig::demo()
        }
    }
}

async fn open(db: &DbArg) -> Result<Ledger, Fail> {
    Ok(Ledger::open(&db.db, config_for(&db.db)).await?)
}

fn parse_id(s: &str) -> Result<IdNumber, Fail> {
    IdNumber::parse_now(s).map_err(|e| Fail(2, format!("invalid ID number: {e}")))
}

async fn run_action(action: Action) -> Result<(), Fail> {
    match action {
        Action::Migrate(db) => {
            let l = open(&db).await?;
            l.close().await;
            println!("ledger schema is up to date");
        }
        Action::SeedDemo(db) => {
            let l = open(&db).await?;
            let n = l.seed_demo().await;
            l.close().await;
            println!("demo ledger: {} accounts", n?);
        }
        Action::Import { db, file, skip_bad } => {
            let l = open(&db).await?;
            let opts = ImportOptions {
                skip_bad: skip_bad.is_some(),
                progress: true,
                threads: 0,
            };
            let r = l.import_csv(&file, &opts).await;
            l.close().await;
            let r = r?;
            if !r.committed {
                for rej in &r.rejected {
                    eprintln!("line {} ({}): {}", rej.line, rej.id_masked, rej.reason);
                }
                return Err(Fail(
                    1,
                    format!(
                        "{} of {} rows rejected; nothing imported (use --skip-bad FILE to import the good rows)",
                        r.rejected.len(),
                        r.rows
                    ),
                ));
            }
            if let Some(path) = skip_bad {
                write_rejects(&path, &r.rejected)?;
                println!(
                    "{} rows rejected, written to {}",
                    r.rejected.len(),
                    path.display()
                );
            }
            println!(
                "imported {} of {} rows ({} persons and {} accounts inserted or changed)",
                r.valid, r.rows, r.persons_written, r.accounts_written
            );
        }
        Action::Unlock { db, id } => {
            let id = parse_id(&id)?;
            let l = open(&db).await?;
            let r = l.unlock(&id).await;
            l.close().await;
            r?;
            println!("unlocked {id}");
        }
        Action::SetPin { db, id } => {
            let id = parse_id(&id)?;
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Fail(1, format!("cannot read the PIN from stdin: {e}")))?;
            let pin = Pin::new(line.trim_end_matches(['\r', '\n']))
                .ok_or_else(|| Fail(2, "a PIN is 6–8 digits (read from stdin)".into()))?;
            let l = open(&db).await?;
            let r = l.set_pin(&id, &pin).await;
            l.close().await;
            match r {
                Err(LedgerError::Invalid(m)) => return Err(Fail(2, m)),
                other => other?,
            }
            println!("PIN set for {id}");
        }
        Action::VerifyAudit(db) => {
            let l = open(&db).await?;
            let r = l.verify_audit().await;
            l.close().await;
            match r? {
                AuditReport::Intact { rows } => println!("audit chain intact: {rows} rows"),
                AuditReport::Broken { seq, reason } => {
                    return Err(Fail(
                        1,
                        format!("audit chain broken at row {seq}: {reason}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

pub fn run(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ivr12333 ledger: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run_action(args.action)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("ivr12333 ledger: {msg}");
            ExitCode::from(code)
        }
    }
}

//! The two database backends behind one enum (docs/interop.md#crates, sqlx 0.9): shared
//! SQL with `$1` placeholders, one `migrate!` folder per dialect.
//!
//! SQLite files run in WAL mode with a busy timeout (concurrent readers, one
//! writer waiting instead of failing); in-memory SQLite is one connection,
//! kept forever, since each connection would otherwise see its own empty
//! database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::LedgerError;

/// A pool of either backend.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl Db {
    pub async fn connect(url: &str, timeout: Duration) -> Result<Db, LedgerError> {
        if is_postgres_url(url) {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| LedgerError::Config(format!("bad PostgreSQL URL: {e}")))?;
            let pool = tokio::time::timeout(
                timeout,
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(timeout)
                    .connect_with(opts),
            )
            .await
            .map_err(|_| LedgerError::Unavailable("PostgreSQL connect timed out".into()))??;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let mut opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| LedgerError::Config(format!("bad SQLite URL: {e}")))?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(timeout);
            if !memory {
                if let Some(parent) = opts.get_filename().parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        LedgerError::Config(format!("cannot create database directory: {e}"))
                    })?;
                }
                opts = opts
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
            }
            let pool_opts = if memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(4)
            };
            let pool = pool_opts
                .acquire_timeout(timeout)
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            Err(LedgerError::Config(
                "database URL must start with sqlite: or postgres://".into(),
            ))
        }
    }

    pub async fn migrate(&self, timeout: Duration) -> Result<(), LedgerError> {
        let fut = async {
            match self {
                Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
                Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(sqlx::migrate::MigrateError::Execute(e))) => Err(LedgerError::from(e)),
            Ok(Err(e)) => Err(LedgerError::Migration(e.to_string())),
            Err(_) => Err(LedgerError::Unavailable("migration timed out".into())),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

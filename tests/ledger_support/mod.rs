//! Shared helpers for the ledger tests: every test body runs on SQLite (a
//! temp file) and on PostgreSQL (a fresh database per test, dropped at the
//! end; server from `IVR_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use ivr12333::domain::IdNumber;
use ivr12333::ledger::{AuditContext, Ledger, LedgerConfig};
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test.
#[derive(Clone)]
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: Arc<tempfile::TempDir>,
    pg_name: Option<String>,
}

pub const PEPPER: &[u8] = b"test-pepper-not-the-demo-one-0123";

pub fn pg_base() -> String {
    std::env::var("IVR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn pg_url_for(db: &str) -> String {
    let base = pg_base();
    match base.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db}"),
        None => format!("{base}/{db}"),
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        match backend {
            Backend::Sqlite => TestDb {
                backend,
                url: format!("sqlite://{}", dir.path().join("ledger.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("ivr_test_{:016x}", rand::random::<u64>());
                let mut c = sqlx::PgConnection::connect(&pg_base())
                    .await
                    .expect("PostgreSQL reachable (IVR_TEST_PG_URL)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await
                    .expect("create test database");
                let _ = c.close().await;
                TestDb {
                    backend,
                    url: pg_url_for(&name),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn cfg() -> LedgerConfig {
        LedgerConfig::with_pepper(PEPPER.to_vec())
    }

    pub async fn open(&self) -> Ledger {
        self.open_with(Self::cfg()).await
    }

    pub async fn open_with(&self, cfg: LedgerConfig) -> Ledger {
        Ledger::open(&self.url, cfg).await.expect("open ledger")
    }

    /// Runs raw SQL on a separate connection (tampering, inspection).
    pub async fn exec(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
            }
        }
    }

    /// A single BIGINT/COUNT value.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
                v
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let v: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
                v
            }
        }
    }

    /// A single nullable TEXT value.
    pub async fn text(&self, sql: &str) -> Option<String> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
                v
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
                v
            }
        }
    }

    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut c) = sqlx::PgConnection::connect(&pg_base()).await
        {
            {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
                let _ = c.close().await;
            }
        }
    }
}

/// Runs one test body on a fresh database of the given backend. The body
/// runs in its own task so that the database is dropped even when it
/// panics; the panic is then re-raised.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::new(backend).await;
    let r = tokio::spawn(body(db.clone())).await;
    db.cleanup().await;
    if let Err(e) = r {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// `both!(name)` turns `async fn name(db: TestDb)` into two tests,
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::ledger_support::run($crate::ledger_support::Backend::Sqlite, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::ledger_support::run($crate::ledger_support::Backend::Postgres, super::$name).await
            }
        }
    )*};
}

pub fn id(s: &str) -> IdNumber {
    IdNumber::parse(s, (2026, 11, 27)).expect("valid test ID")
}

pub fn ctx(call: &str) -> AuditContext {
    AuditContext {
        call_id: call.to_owned(),
        caller: "13812345678".to_owned(),
    }
}

/// The demo accounts' IDs and PINs (docs/ledger.md).
pub const NORMAL: (&str, &str) = ("310104198507151239", "123456");
pub const RETIREE: (&str, &str) = ("11010519491231002X", "654321");
/// Valid check digit, not in the demo ledger.
pub const UNKNOWN: &str = "440106199203150049";

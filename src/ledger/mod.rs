//! The account ledger: SQLite (embedded default) and PostgreSQL.

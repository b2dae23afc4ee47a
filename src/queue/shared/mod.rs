//! The agent queue shared by several nodes through PostgreSQL (issue 13,
//! `docs/cluster.md#the-shared-queue`).
//!
//! With a PostgreSQL ledger, waiting callers, agent state and agent
//! registrations live in the database; each node keeps only what belongs to
//! the calls it holds:
//!
//! - [`node::QueueNode`]: the sans-IO core of one node's callers (their
//!   timers, the agent legs it rings), producing the same
//!   [`crate::queue::QueueAction`]s as the single-node
//!   [`crate::queue::QueueSet`], plus [`node::StoreCmd`]s for the database.
//! - [`plan::plan`]: who rings whom, a pure function run inside the
//!   dispatch transaction over every node's callers.
//! - `runtime::queue_store::PgQueueStore` (the I/O side, outside the
//!   sans-IO cores): the statements (dispatch under an advisory lock,
//!   offers by `pg_notify`, node leases, bindings).

pub mod node;
pub mod plan;

pub use node::{QueueNode, StoreCmd};

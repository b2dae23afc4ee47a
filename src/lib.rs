//! ivr12333: the 24-hour self-service voice line of the 12333 social-security
//! hotline.
//!
//! Layers (see README.md): the sans-IO cores (`sip`, `media`, `flow`,
//! `say`, `queue`, `call`) are plain state machines that take `now` as an argument and never
//! touch sockets, threads or the clock; `runtime` is the only place that
//! knows about tokio.

pub mod call;
pub mod cli;
pub mod config;
pub mod console;
pub mod core;
pub mod domain;
pub mod flow;
pub mod ledger;
pub mod media;
pub mod queue;
pub mod records;
pub mod runtime;
pub mod say;
pub mod sip;

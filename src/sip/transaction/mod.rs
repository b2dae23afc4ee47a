//! RFC 3261 §17 transactions as sans-IO state machines.
//!
//! Each machine stores the bytes it may have to retransmit, takes `now` as
//! input, keeps its timers in a [`TimerTable`](super::timers::TimerTable)
//! and reports through [`TxOutput`]. The endpoint owns addressing (transport
//! and destination) and the mapping from transactions to calls.
//!
//! Matching (§17.2.3): a server transaction is keyed by the top Via branch,
//! sent-by and method (ACK counts as INVITE); requests whose branch lacks
//! the `z9hG4bK` cookie fall back to RFC 2543-style matching on Call-ID,
//! From tag, CSeq number and the top Via.

pub mod invite_client;
pub mod invite_server;
pub mod non_invite_client;
pub mod non_invite_server;

pub use invite_client::{InviteClient, InviteClientState};
pub use invite_server::{InviteServer, InviteServerState};
pub use non_invite_client::{NonInviteClient, NonInviteClientState};
pub use non_invite_server::{NonInviteServer, NonInviteServerState};

/// What a transaction asks its owner to do or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send these bytes to the transaction's peer.
    Send(Vec<u8>),
    /// Client: a provisional response arrived.
    Provisional(u16),
    /// Client: the first final response arrived (retransmissions are
    /// absorbed and not reported again, except 2xx to INVITE, see
    /// [`InviteClient`]).
    Final(u16),
    /// Timer B/F/H fired: the peer never answered (or never ACKed).
    TimedOut,
}

/// The RFC 3261 magic cookie that marks a §8.1.1.7 branch.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

//! SIP (RFC 3261) as sans-IO state machines: wire framing, transactions,
//! dialogs and the user-agent endpoint.
//!
//! Layers, bottom up: [`wire`] (framing, normalising: compact names,
//! folding, Content-Length, size caps) → [`message`] (typed header views,
//! response builder) → [`validate`] (§8.2 checks) → [`transaction`] (§17) →
//! [`dialog`] (§12) → [`endpoint`] (the UAS core the runtime drives). See
//! docs/sip.md for what is answered to what.

pub mod admission;
pub mod bindings;
pub mod dialog;
pub mod dtmf_info;
pub mod endpoint;
pub mod message;
pub mod registrar;
pub mod status;
pub mod timers;
pub mod transaction;
pub mod transfer;
pub mod validate;
pub mod wire;

pub use endpoint::{
    CallHandle, ConnId, EndReason, Endpoint, EndpointConfig, OutboundCall, SipEvent, Transmit,
    Transport,
};
pub use registrar::{RegisterId, RegisterReply};
pub use status::{Reply, StatusCode};
pub use transfer::SipError;
pub use wire::{FrameError, StreamFramer, WireLimits};

//! Media: G.711, RTP, DTMF detection, SDP offer/answer and prompt playback.

pub mod bridge;
pub mod clip;
pub mod dtmf;
pub mod g711;
pub mod inband;
pub mod player;
pub mod prompts;
pub mod rtp;
pub mod sdp;
pub mod session;

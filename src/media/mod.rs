//! Media: G.711, RTP, DTMF detection, SDP offer/answer and prompt playback.

pub mod clip;
pub mod g711;
pub mod prompts;

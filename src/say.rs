//! The Mandarin speller: amounts, dates, counts and digit strings → prompt ids
//! (DOMAIN.md rules R1–R11). Pure, no I/O.
//!
//! The output names prompts and so encodes the value spoken: never log it.

/// One element of a readout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    /// A prompt id from `prompts/manifest.toml`.
    Prompt(&'static str),
    /// Silence of this many milliseconds.
    Pause(u32),
}

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

/// Speller options.
#[derive(Debug, Clone, Default)]
pub struct SayOptions {
    /// Read a leading 2 before 百 as 两百 instead of the default 二百 (R4).
    pub liang_bai: bool,
}

/// Why an amount cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SayError {
    #[error("amount out of range")]
    OutOfRange,
}

// The functions below are the speller's interface; their bodies are filled in
// by the prompts/speller work (issue 3).

/// Money in fen → segments (R1–R9), e.g. 一万二千三百四十五元六角七分.
pub fn amount(fen: crate::domain::Fen, opts: &SayOptions) -> Result<Vec<Seg>, SayError> {
    let _ = (fen, opts);
    unimplemented!("speller")
}

/// A cardinal count before a measure word (months, queue position): 两 for a lone 2.
pub fn count(n: u64) -> Vec<Seg> {
    let _ = n;
    unimplemented!("speller")
}

/// 二零二六年九月 (R10).
pub fn year_month(ym: crate::domain::YearMonth) -> Vec<Seg> {
    let _ = ym;
    unimplemented!("speller")
}

/// Digit by digit, 1 as 幺, X as 艾克斯 (R11).
pub fn digits(s: &str) -> Vec<Seg> {
    let _ = s;
    unimplemented!("speller")
}

/// An ID number read back digit by digit in 6-4-4-4 groups with short pauses (R11).
pub fn id_readback(id: &str) -> Vec<Seg> {
    let _ = id;
    unimplemented!("speller")
}

/// The Chinese text of a readout (pauses as nothing), for `say --text` and tests.
pub fn to_text(segs: &[Seg]) -> String {
    let _ = segs;
    unimplemented!("speller")
}

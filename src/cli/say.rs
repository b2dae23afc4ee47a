//! `ivr12333 say`: the Mandarin readout of an amount, date, count or digit
//! string, as text and as the 8 kHz WAV a caller would hear.
//!
//! The WAV is built exactly as the call path plays it: the speller's
//! segments are rendered by [`PromptLibrary::render`] into the shared clips,
//! and their pre-encoded 20 ms G.711 frames are concatenated frame after
//! frame with no gap (pauses are shared silence clips). By default the PCMU
//! frames are decoded back to 16-bit PCM, so the file holds what a PCMU
//! caller hears, quantisation included; `--codec pcma` or `--codec linear`
//! (the clips' own PCM) are the alternatives.
//!
//! Exit status: 0 on success, 2 for bad input (not a number, more than two
//! decimals, out of range, bad date, bad digit string), 1 when the prompt
//! library or the output file fails.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::domain::{AmountError, Fen, YearMonth};
use crate::media::clip::SharedClip;
use crate::media::g711::Codec;
use crate::media::prompts::PromptLibrary;
use crate::say::{self, SayOptions, Seg};

/// What kind of value to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Money in yuan with up to two decimals: 12345.67, -35.2, 0.5.
    Amount,
    /// A date: 2026-09 or 2026-09-15.
    Date,
    /// A cardinal count before a measure word (两 for 2): 2, 156.
    Count,
    /// A digit string read digit by digit (1 as 幺, X as 艾克斯).
    Digits,
    /// An 18-character ID number read back in 6-4-4-4 groups with pauses.
    Id,
}

/// Which audio the WAV holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutCodec {
    /// The PCMU frames a caller receives, decoded.
    Pcmu,
    /// The PCMA frames, decoded.
    Pcma,
    /// The clips' 16-bit PCM before G.711 encoding.
    Linear,
}

/// Arguments of `ivr12333 say`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The value to read (see --kind).
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// What the value is.
    #[arg(long, value_enum, default_value_t = Kind::Amount)]
    pub kind: Kind,
    /// Write the readout as an 8 kHz mono 16-bit WAV here.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Print only the Chinese text (no prompt library needed).
    #[arg(long)]
    pub text: bool,
    /// Prompt directory holding manifest.toml and the audio files.
    #[arg(long, default_value = "prompts")]
    pub prompts: PathBuf,
    /// Read a leading 2 before 百 as 两百 (default 二百).
    #[arg(long)]
    pub liang_bai: bool,
    /// Audio written to the WAV.
    #[arg(long, value_enum, default_value_t = OutCodec::Pcmu)]
    pub codec: OutCodec,
}

/// Input the speller cannot read. Messages never repeat the value.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("not an amount: {0} (expected yuan such as 12345.67)")]
    Amount(AmountError),
    #[error("amount out of range (|amount| must be below 10^13 yuan)")]
    OutOfRange,
    #[error("not a date (expected YYYY-MM or YYYY-MM-DD, a real calendar date)")]
    Date,
    #[error("not a count (expected a whole number 0 or more)")]
    Count,
    #[error("not a digit string (digits, and X only as the last character)")]
    Digits,
}

/// The segments for a value of a kind.
pub fn segments(kind: Kind, value: &str, opts: &SayOptions) -> Result<Vec<Seg>, InputError> {
    let v = value.trim();
    match kind {
        Kind::Amount => {
            let fen = Fen::parse_yuan(v).map_err(|e| match e {
                AmountError::OutOfRange => InputError::OutOfRange,
                e => InputError::Amount(e),
            })?;
            say::amount(fen, opts).map_err(|_| InputError::OutOfRange)
        }
        Kind::Date => parse_date(v).ok_or(InputError::Date),
        Kind::Count => {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InputError::Count);
            }
            v.parse::<u64>()
                .map(say::count)
                .map_err(|_| InputError::Count)
        }
        Kind::Digits | Kind::Id => {
            let n = v.len();
            let ok = n > 0
                && v.bytes()
                    .enumerate()
                    .all(|(i, b)| b.is_ascii_digit() || (i + 1 == n && matches!(b, b'X' | b'x')));
            if !ok {
                return Err(InputError::Digits);
            }
            Ok(if kind == Kind::Id {
                say::id_readback(v)
            } else {
                say::digits(v)
            })
        }
    }
}

fn parse_date(v: &str) -> Option<Vec<Seg>> {
    match v.len() {
        7 => YearMonth::parse(v).map(say::year_month),
        10 => {
            let (ym, day) = v.rsplit_once('-')?;
            let ym = YearMonth::parse(ym)?;
            if day.len() != 2 || !day.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let d: u8 = day.parse().ok()?;
            let max = crate::domain::days_in_month(u32::from(ym.year), u32::from(ym.month));
            (1..=max).contains(&u32::from(d)).then(|| say::date(ym, d))
        }
        _ => None,
    }
}

/// The samples of a readout as the call path sends them: every clip's
/// frames in order.
pub fn render_samples(clips: &[SharedClip], codec: OutCodec) -> Vec<i16> {
    let total: usize = clips.iter().map(|c| c.pcm().len()).sum();
    let mut out = Vec::with_capacity(total);
    for clip in clips {
        match codec {
            OutCodec::Linear => out.extend_from_slice(clip.pcm()),
            OutCodec::Pcmu | OutCodec::Pcma => {
                let c = if codec == OutCodec::Pcmu {
                    Codec::Pcmu
                } else {
                    Codec::Pcma
                };
                for frame in clip.frames(c) {
                    out.extend(frame.iter().map(|&b| c.decode(b)));
                }
            }
        }
    }
    out
}

fn write_wav(path: &std::path::Path, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()
}

pub fn run(args: Args) -> ExitCode {
    let opts = SayOptions {
        liang_bai: args.liang_bai,
    };
    let segs = match segments(args.kind, &args.value, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ivr12333 say: {e}");
            return ExitCode::from(2);
        }
    };
    let text = say::to_text(&segs);
    println!("{text}");
    if args.text {
        return ExitCode::SUCCESS;
    }
    let Some(out) = args.output else {
        return ExitCode::SUCCESS;
    };
    let lib = match PromptLibrary::load(&args.prompts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ivr12333 say: {e}");
            return ExitCode::from(1);
        }
    };
    let clips = match lib.render(&segs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ivr12333 say: {e}");
            return ExitCode::from(1);
        }
    };
    let samples = render_samples(&clips, args.codec);
    if let Err(e) = write_wav(&out, &samples) {
        eprintln!("ivr12333 say: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "ivr12333 say: wrote {} ({} segments, {} ms)",
        out.display(),
        clips.len(),
        samples.len() / 8
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: Kind, v: &str) -> Result<String, String> {
        segments(kind, v, &SayOptions::default())
            .map(|s| say::to_text(&s))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn kinds() {
        assert_eq!(
            text(Kind::Amount, "12345.67").unwrap(),
            "一万二千三百四十五元六角七分"
        );
        assert_eq!(text(Kind::Amount, "-35.20").unwrap(), "负三十五元二角");
        assert_eq!(text(Kind::Date, "2026-09").unwrap(), "二零二六年九月");
        assert_eq!(
            text(Kind::Date, "2026-09-15").unwrap(),
            "二零二六年九月十五日"
        );
        assert_eq!(text(Kind::Count, "2").unwrap(), "两");
        assert_eq!(text(Kind::Digits, "12333").unwrap(), "幺二三三三");
        assert_eq!(
            text(Kind::Id, "11010519491231002X").unwrap(),
            "幺幺零幺零五幺九四九幺二三幺零零二艾克斯"
        );
    }

    #[test]
    fn bad_input_never_echoes_the_value() {
        for (kind, v) in [
            (Kind::Amount, "abc"),
            (Kind::Amount, "1.234"),
            (Kind::Amount, "10000000000000"),
            (Kind::Amount, "99999999999999999999999999"),
            (Kind::Date, "2026-13"),
            (Kind::Date, "2026-02-30"),
            (Kind::Date, "2026-9-1"),
            (Kind::Count, "-1"),
            (Kind::Count, "1.5"),
            (Kind::Digits, "12a"),
            (Kind::Digits, "1X2"),
            (Kind::Digits, ""),
        ] {
            let e = text(kind, v).unwrap_err();
            assert!(v.is_empty() || !e.contains(v), "{e}");
        }
        assert!(text(Kind::Date, "2024-02-29").is_ok());
        assert!(text(Kind::Date, "2023-02-29").is_err());
    }
}

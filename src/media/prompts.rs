//! The prompt library: `prompts/manifest.toml` plus one audio file per id,
//! decoded once at start-up into shared 8 kHz [`Clip`]s whose PCMU and PCMA
//! 20 ms frames are pre-encoded (G.711, ITU-T G.711 §A/§μ via `media::g711`).
//!
//! Any common format is accepted so that operators can drop in recordings:
//! PCM WAV through `hound`; μ-law/A-law WAV (format tags 7/6, which hound
//! rejects), FLAC, OGG/Vorbis and MP3 through `symphonia` 0.6. Encoder
//! padding: symphonia trims what OGG granule positions signal, but its MP3
//! output still starts with the encoder delay (1105 near-silent samples from
//! LAME); step 3 removes that, as it removes any padding a container does not
//! signal. Every file then goes through the same steps:
//!
//! 1. downmix to mono (mean of the channels);
//! 2. resample to 8 kHz (`rubato` FFT resampler, exact output length
//!    ⌈n·8000/rate⌉, startup delay removed);
//! 3. trim leading and trailing silence (below [`TRIM_THRESHOLD`], keeping
//!    [`TRIM_KEEP_MS`] before the first and after the last loud sample);
//! 4. loudness (library loads only, [`PromptLibrary::load_with`]): measure
//!    the active speech level ([`active_level`], ITU-T P.56 method B) and
//!    apply one gain so that it sits at the configured target (default
//!    [`DEFAULT_TARGET_DBOV`]), limited so that the peak stays at or below
//!    [`DEFAULT_CEILING_DBFS`]: a prompt that cannot reach the target without
//!    clipping stays quieter and is reported by `ivr12333 prompts check`;
//! 5. raised-cosine fades of [`FADE_MS`] at both edges, so that joining
//!    segments (a readout is many of them) never clicks;
//! 6. [`Clip::from_pcm`]: pad to whole 20 ms frames and encode both codecs.
//!
//! Files are hostile input: every failure is a [`PromptError`] naming the id
//! and file, never a panic, and a file longer than [`MAX_SECONDS`] is refused
//! before its samples are read.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::clip::{Clip, FRAME_SAMPLES, SharedClip};
use crate::say::Seg;

/// The output rate of every prompt.
pub const RATE: u32 = 8000;
/// Fade-in/fade-out length at every clip edge.
pub const FADE_MS: u32 = 5;
/// Samples below this absolute level (≈ −50 dBFS) count as silence when
/// trimming.
pub const TRIM_THRESHOLD: f32 = 0.003;
/// Audio kept before the first and after the last sample above the
/// threshold, so that soft onsets and decays are not cut.
pub const TRIM_KEEP_MS: u32 = 10;
/// Longest accepted prompt (hold music included).
pub const MAX_SECONDS: u64 = 600;
/// Longest pause [`PromptLibrary::silence`] builds; longer requests are
/// clamped (pauses come from the speller and dialplans, never callers).
pub const MAX_SILENCE_MS: u32 = 60_000;
/// Source sample rates accepted (a corrupt header claiming 4 GHz must not
/// size the resampler).
pub const SOURCE_RATES: std::ops::RangeInclusive<u32> = 4000..=192_000;
/// File extensions looked up for an id, in this order.
pub const EXTENSIONS: [&str; 4] = ["wav", "flac", "ogg", "mp3"];

/// Why the library, or one prompt, could not be loaded or rendered.
///
/// Messages name files and prompt ids but never spoken values: a missing
/// number segment is reported without its id because the id (`n_5`) would
/// reveal a digit of a balance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    #[error("prompt manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("prompt {id:?}: no file {dir}/{id}.{{wav,flac,ogg,mp3}}")]
    MissingFile { id: String, dir: PathBuf },
    #[error("prompt {id:?}: cannot load {path}: {reason}")]
    Audio {
        id: String,
        path: PathBuf,
        reason: AudioError,
    },
    #[error("unknown prompt id {0:?}")]
    UnknownId(String),
    #[error("a number prompt needed by the speller is missing from the library")]
    MissingNumberPrompt,
}

/// Why one audio file could not be turned into a clip.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("cannot open: {0}")]
    Io(#[from] std::io::Error),
    #[error("WAV: {0}")]
    Wav(String),
    #[error("decoder: {0}")]
    Decode(String),
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("longer than {MAX_SECONDS} s")]
    TooLong,
    #[error("no audio above the silence threshold")]
    Silent,
    #[error("resampler: {0}")]
    Resample(String),
}

/// One manifest entry as written in `prompts/manifest.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ManifestEntry {
    pub id: String,
    /// The Mandarin spoken.
    pub text: String,
    /// `number`, `phrase` or `hold`.
    pub category: String,
    /// Generator hints, ignored by the loader.
    #[serde(default)]
    pub pinyin: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Manifest {
    #[serde(default)]
    prompt: Vec<ManifestEntry>,
}

fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>, PromptError> {
    let path = dir.join("manifest.toml");
    let err = |reason: String| PromptError::Manifest {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    let m: Manifest = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    for e in &m.prompt {
        let valid = !e.id.is_empty()
            && e.id.len() <= 64
            && e.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(err(format!(
                "invalid prompt id {:?} (use a-z, 0-9, _)",
                e.id
            )));
        }
        if !seen.insert(e.id.as_str()) {
            return Err(err(format!("prompt id {:?} listed twice", e.id)));
        }
    }
    Ok(m.prompt)
}

/// The ids listed in `dir/manifest.toml`, without decoding any audio (for
/// dialplan checks).
pub fn manifest_ids(dir: &Path) -> Result<Vec<String>, PromptError> {
    Ok(read_manifest(dir)?.into_iter().map(|e| e.id).collect())
}

/// The first existing `dir/<id>.<ext>` in [`EXTENSIONS`] order.
pub fn prompt_file(dir: &Path, id: &str) -> Option<PathBuf> {
    EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{id}.{ext}")))
        .find(|p| p.is_file())
}

struct Prompt {
    entry: ManifestEntry,
    clip: SharedClip,
    report: LevelReport,
}

/// Default active speech level of every prompt (dBov: 0 dBov is the RMS of
/// a full-scale square wave, so a full-scale sine is −3 dBov).
pub const DEFAULT_TARGET_DBOV: f32 = -26.0;
/// Default peak limit after the gain (dB relative to full scale).
pub const DEFAULT_CEILING_DBFS: f32 = -1.0;

/// How the library matches loudness (config `[prompts]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loudness {
    /// Active speech level every prompt is brought to; `None` leaves the
    /// files' own levels.
    pub target_dbov: Option<f32>,
    /// The gain never lifts a peak above this.
    pub ceiling_dbfs: f32,
}

impl Default for Loudness {
    fn default() -> Self {
        Loudness {
            target_dbov: Some(DEFAULT_TARGET_DBOV),
            ceiling_dbfs: DEFAULT_CEILING_DBFS,
        }
    }
}

/// What loading one file found and did (for `ivr12333 prompts check`).
/// Levels are dBov ([`active_level`]); `None` for no active speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelReport {
    /// After trimming, at 8 kHz.
    pub duration_ms: u32,
    pub level_before: Option<f32>,
    pub level_after: Option<f32>,
    /// Gain applied (dB).
    pub gain_db: f32,
    /// Whether the ceiling held the gain below the target.
    pub gain_limited: bool,
    /// Peak after the gain (dBFS).
    pub peak_after_dbfs: f32,
    /// Runs of 3+ consecutive samples at full scale in the source file: a
    /// recording that clipped.
    pub clipped_runs: u32,
    /// Silence (below the trim threshold) at each end of the file, before
    /// trimming.
    pub leading_silence_ms: u32,
    pub trailing_silence_ms: u32,
}

/// Every prompt of a deployment, decoded once and shared by all calls.
pub struct PromptLibrary {
    prompts: HashMap<String, Prompt>,
    /// Manifest order, for [`PromptLibrary::ids`].
    order: Vec<String>,
    /// Silences by frame count, built on first use.
    silences: Mutex<HashMap<usize, SharedClip>>,
}

impl fmt::Debug for PromptLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptLibrary")
            .field("prompts", &self.order.len())
            .finish()
    }
}

impl PromptLibrary {
    /// Reads `dir/manifest.toml` and decodes `dir/<id>.{wav,flac,ogg,mp3}`
    /// for every id. Any missing or unreadable file is an error naming the
    /// file and the id.
    pub fn load(dir: &Path) -> Result<PromptLibrary, PromptError> {
        Self::load_with(dir, &Loudness::default())
    }

    /// As [`PromptLibrary::load`], with the loudness settings of the config.
    pub fn load_with(dir: &Path, loudness: &Loudness) -> Result<PromptLibrary, PromptError> {
        let entries = read_manifest(dir)?;
        let mut prompts = HashMap::with_capacity(entries.len());
        let mut order = Vec::with_capacity(entries.len());
        for entry in entries {
            let path = prompt_file(dir, &entry.id).ok_or_else(|| PromptError::MissingFile {
                id: entry.id.clone(),
                dir: dir.to_path_buf(),
            })?;
            let (pcm, report) =
                load_normalised(&path, loudness).map_err(|reason| PromptError::Audio {
                    id: entry.id.clone(),
                    path: path.clone(),
                    reason,
                })?;
            order.push(entry.id.clone());
            prompts.insert(
                entry.id.clone(),
                Prompt {
                    entry,
                    clip: Arc::new(Clip::from_pcm(&pcm)),
                    report,
                },
            );
        }
        Ok(PromptLibrary {
            prompts,
            order,
            silences: Mutex::new(HashMap::new()),
        })
    }

    pub fn get(&self, id: &str) -> Option<&SharedClip> {
        self.prompts.get(id).map(|p| &p.clip)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.prompts.contains_key(id)
    }

    /// Ids in manifest order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// The manifest entry (text, category) of a prompt.
    pub fn entry(&self, id: &str) -> Option<&ManifestEntry> {
        self.prompts.get(id).map(|p| &p.entry)
    }

    /// Levels, gain, clipping and silence found when loading a prompt.
    pub fn report(&self, id: &str) -> Option<&LevelReport> {
        self.prompts.get(id).map(|p| &p.report)
    }

    /// Playing time of every prompt in ms (whole 20 ms frames), for the
    /// flow's record of cut-off prompts.
    pub fn durations_ms(&self) -> HashMap<String, u32> {
        self.prompts
            .iter()
            .map(|(id, p)| {
                let ms = p.clip.frame_count().saturating_mul(20);
                (id.clone(), u32::try_from(ms).unwrap_or(u32::MAX))
            })
            .collect()
    }

    /// Number segments the speller can produce that this library lacks
    /// (empty for a complete library; `serve` should refuse to start
    /// otherwise).
    pub fn missing_speller_ids(&self) -> Vec<&'static str> {
        crate::say::SPELLER_IDS
            .iter()
            .copied()
            .filter(|id| !self.contains(id))
            .collect()
    }

    /// `ms` of silence, rounded up to whole 20 ms frames (at most
    /// [`MAX_SILENCE_MS`]); one shared clip per length.
    pub fn silence(&self, ms: u32) -> SharedClip {
        let frames =
            (ms.min(MAX_SILENCE_MS) as usize * RATE as usize / 1000).div_ceil(FRAME_SAMPLES);
        // A poisoned lock only means another thread panicked while
        // inserting; the map is still valid.
        let mut cache = self.silences.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(frames)
            .or_insert_with(|| Arc::new(Clip::from_pcm(&vec![0; frames * FRAME_SAMPLES])))
            .clone()
    }

    /// The clips of a readout, in order: prompts by id, pauses as silence.
    pub fn render(&self, segs: &[Seg]) -> Result<Vec<SharedClip>, PromptError> {
        let mut out = Vec::with_capacity(segs.len());
        for seg in segs {
            match *seg {
                Seg::Prompt(id) => match self.get(id) {
                    Some(c) => out.push(c.clone()),
                    None if crate::say::SPELLER_IDS.contains(&id) => {
                        return Err(PromptError::MissingNumberPrompt);
                    }
                    None => return Err(PromptError::UnknownId(id.to_owned())),
                },
                Seg::Pause(ms) => out.push(self.silence(ms)),
            }
        }
        Ok(out)
    }

    /// Bytes held by the prompts' PCM and pre-encoded frames (plus cached
    /// silences).
    pub fn memory_bytes(&self) -> usize {
        let prompts: usize = self.prompts.values().map(|p| p.clip.memory_bytes()).sum();
        let cache = self.silences.lock().unwrap_or_else(|e| e.into_inner());
        prompts + cache.values().map(|c| c.memory_bytes()).sum::<usize>()
    }
}

/// Decodes any supported file and runs the whole pipeline (module docs):
/// 8 kHz mono, trimmed, faded, framed.
pub fn load_clip(path: &Path) -> Result<Clip, AudioError> {
    let pcm = load_pcm(path)?;
    Ok(Clip::from_pcm(&pcm))
}

/// As [`load_clip`], without the frame padding: the 8 kHz mono samples.
pub fn load_pcm(path: &Path) -> Result<Vec<i16>, AudioError> {
    let (mono, rate) = decode_mono(path)?;
    let resampled = resample_to_8k(&mono, rate)?;
    let trimmed = trim_silence(&resampled).ok_or(AudioError::Silent)?;
    let mut v = trimmed.to_vec();
    apply_fades(&mut v);
    Ok(v.iter().map(|&x| to_i16(x)).collect())
}

/// The whole pipeline with loudness matching: 8 kHz mono samples, trimmed,
/// brought to `loudness` (gain limited by the ceiling), faded; and what was
/// measured. A file without anything above the trim threshold is
/// [`AudioError::Silent`].
pub fn load_normalised(
    path: &Path,
    loudness: &Loudness,
) -> Result<(Vec<i16>, LevelReport), AudioError> {
    let (mono, rate) = decode_mono(path)?;
    let clipped_runs = clipped_runs(&mono);
    let resampled = resample_to_8k(&mono, rate)?;
    let loud = |x: &f32| x.abs() > TRIM_THRESHOLD;
    let to_ms = |n: usize| u32::try_from(n as u64 * 1000 / u64::from(RATE)).unwrap_or(u32::MAX);
    let leading = resampled.iter().position(loud).unwrap_or(resampled.len());
    let trailing = resampled
        .iter()
        .rposition(loud)
        .map_or(resampled.len(), |i| resampled.len() - 1 - i);
    let trimmed = trim_silence(&resampled).ok_or(AudioError::Silent)?;
    let mut v = trimmed.to_vec();
    let before = active_level(&v, RATE);
    let peak = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let mut gain_db = 0.0f32;
    let mut limited = false;
    if let (Some(target), Some(level)) = (loudness.target_dbov, before) {
        gain_db = target - level;
        if peak > 0.0 {
            let headroom = loudness.ceiling_dbfs - 20.0 * peak.log10();
            if gain_db > headroom {
                gain_db = headroom;
                limited = true;
            }
        }
        let g = 10f32.powf(gain_db / 20.0);
        for x in &mut v {
            *x *= g;
        }
    }
    apply_fades(&mut v);
    let after = active_level(&v, RATE);
    let peak_after = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let report = LevelReport {
        duration_ms: to_ms(v.len()),
        level_before: before,
        level_after: after,
        gain_db,
        gain_limited: limited,
        peak_after_dbfs: if peak_after > 0.0 {
            20.0 * peak_after.log10()
        } else {
            f32::NEG_INFINITY
        },
        clipped_runs,
        leading_silence_ms: to_ms(leading),
        trailing_silence_ms: to_ms(trailing),
    };
    Ok((v.iter().map(|&x| to_i16(x)).collect(), report))
}

/// Runs of 3 or more consecutive samples at (or within 0.1 % of) full scale:
/// the flat tops a clipped recording leaves.
pub fn clipped_runs(pcm: &[f32]) -> u32 {
    let mut runs = 0u32;
    let mut len = 0usize;
    for x in pcm {
        if x.abs() >= 0.999 {
            len += 1;
            if len == 3 {
                runs = runs.saturating_add(1);
            }
        } else {
            len = 0;
        }
    }
    runs
}

/// Active speech level in dBov of `pcm` (full scale ±1.0) at `rate`,
/// ITU-T P.56 method B: the envelope (two cascaded first-order smoothers
/// of |x| with a 30 ms time constant) is compared with 15 thresholds
/// 2⁻¹⁵ … 2⁻¹ of full scale, each with a 200 ms hangover; for each
/// threshold the mean power over the samples it counts as active is taken,
/// and the level is where that active power lies 15.9 dB above the
/// threshold (linear interpolation in dB between neighbouring thresholds).
/// `None` when no sample is active (silence).
pub fn active_level(pcm: &[f32], rate: u32) -> Option<f32> {
    const THRESHOLDS: usize = 15;
    const MARGIN_DB: f64 = 15.9;
    if pcm.is_empty() || rate == 0 {
        return None;
    }
    let fs = f64::from(rate);
    let g = (-1.0 / (fs * 0.03)).exp();
    let hang_max = (fs * 0.2).ceil() as u64;
    let c: Vec<f64> = (0..THRESHOLDS).map(|j| 2f64.powi(j as i32 - 15)).collect();
    let mut active = [0u64; THRESHOLDS];
    let mut hang = [hang_max; THRESHOLDS];
    let (mut p, mut q, mut energy) = (0f64, 0f64, 0f64);
    for &x in pcm {
        let x = f64::from(x);
        energy += x * x;
        p = g * p + (1.0 - g) * x.abs();
        q = g * q + (1.0 - g) * p;
        for j in 0..THRESHOLDS {
            if q >= c[j] {
                active[j] += 1;
                hang[j] = 0;
            } else if hang[j] < hang_max {
                active[j] += 1;
                hang[j] += 1;
            }
        }
    }
    if energy <= 0.0 {
        return None;
    }
    let db = |x: f64| 10.0 * x.log10();
    // A_j − C_j: active power over threshold j, in dB.
    let delta = |j: usize| -> Option<(f64, f64)> {
        let n = *active.get(j)?;
        if n == 0 {
            return None;
        }
        let a = db(energy / n as f64);
        let cj = 20.0 * c[j].log10();
        Some((a, a - cj))
    };
    let (mut prev_a, mut prev_d) = delta(0)?;
    if prev_d <= MARGIN_DB {
        return Some(prev_a as f32);
    }
    for j in 1..THRESHOLDS {
        let Some((a, d)) = delta(j) else {
            break;
        };
        if d <= MARGIN_DB {
            // Interpolate the active level where A − C crosses the margin.
            let t = (prev_d - MARGIN_DB) / (prev_d - d);
            return Some((prev_a + t * (a - prev_a)) as f32);
        }
        prev_a = a;
        prev_d = d;
    }
    // Even the highest threshold leaves more than the margin: very loud
    // material; its active level is the last one computed.
    Some(prev_a as f32)
}

fn to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

fn too_long(frames: u64, rate: u32) -> bool {
    frames > MAX_SECONDS.saturating_mul(u64::from(rate.max(1)))
}

/// Decodes to mono f32 in [-1, 1] at the file's own rate.
pub fn decode_mono(path: &Path) -> Result<(Vec<f32>, u32), AudioError> {
    // The decoders are third-party code reading operator-supplied files: a
    // panic inside one (on a corrupt file) becomes an error naming the file,
    // never a crashed start-up.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_any(path))).unwrap_or(Err(
        AudioError::Decode("decoder panicked on this file".to_owned()),
    ))
}

fn decode_any(path: &Path) -> Result<(Vec<f32>, u32), AudioError> {
    let is_wav = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if is_wav {
        match hound::WavReader::open(path) {
            Ok(reader) => return decode_hound(reader),
            // μ-law/A-law and other non-PCM WAVs: symphonia's RIFF reader.
            Err(hound::Error::Unsupported) => {}
            Err(hound::Error::IoError(e)) => return Err(AudioError::Io(e)),
            Err(e) => return Err(AudioError::Wav(e.to_string())),
        }
    }
    // The decoders are third-party code reading operator-supplied files: a
    // panic inside one (on a corrupt file) becomes an error naming the file,
    // never a crashed start-up.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_symphonia(path))).unwrap_or(
        Err(AudioError::Decode(
            "decoder panicked on this file".to_owned(),
        )),
    )
}

fn decode_hound<R: std::io::Read>(
    mut reader: hound::WavReader<R>,
) -> Result<(Vec<f32>, u32), AudioError> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(AudioError::Unsupported("zero channels or sample rate"));
    }
    if too_long(u64::from(reader.duration()), spec.sample_rate) {
        return Err(AudioError::TooLong);
    }
    let wav_err = |e: hound::Error| AudioError::Wav(e.to_string());
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_err)?,
        hound::SampleFormat::Int => {
            let bits = u32::from(spec.bits_per_sample);
            if !(1..=32).contains(&bits) {
                return Err(AudioError::Unsupported("bits per sample"));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav_err)?
        }
    };
    Ok((downmix(&interleaved, channels), spec.sample_rate))
}

fn decode_symphonia(path: &Path) -> Result<(Vec<f32>, u32), AudioError> {
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::errors::Error as SymError;
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;

    let dec_err = |e: SymError| AudioError::Decode(e.to_string());
    let file = std::fs::File::open(path)?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(dec_err)?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(AudioError::Unsupported("no audio track"))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or(AudioError::Unsupported("not an audio codec"))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(dec_err)?;

    let mut rate = params.sample_rate.unwrap_or(0);
    let mut mono: Vec<f32> = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A chained OGG stream changing tracks: stop at the first one.
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(dec_err(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            // One corrupt packet in a long file: skip it, as players do.
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(dec_err(e)),
        };
        let spec = buf.spec();
        let channels = spec.channels().count();
        if channels == 0 || spec.rate() == 0 {
            return Err(AudioError::Unsupported("zero channels or sample rate"));
        }
        if rate == 0 {
            rate = spec.rate();
        } else if rate != spec.rate() {
            return Err(AudioError::Unsupported("sample rate changes mid-stream"));
        }
        buf.copy_to_vec_interleaved(&mut scratch);
        mono.extend(
            scratch
                .chunks_exact(channels)
                .map(|f| f.iter().sum::<f32>() / channels as f32),
        );
        if too_long(mono.len() as u64, rate) {
            return Err(AudioError::TooLong);
        }
    }
    if rate == 0 {
        return Err(AudioError::Unsupported("unknown sample rate"));
    }
    Ok((mono, rate))
}

/// Mean of the channels of interleaved frames.
fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Resamples mono audio to 8 kHz; the output has exactly
/// ⌈len·8000/rate⌉ samples.
pub fn resample_to_8k(mono: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};

    if rate == RATE || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    if !SOURCE_RATES.contains(&rate) {
        return Err(AudioError::Unsupported(
            "sample rate outside 4000–192000 Hz",
        ));
    }
    let rs_err = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
    let mut fft = Fft::<f32>::new(rate as usize, RATE as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| rs_err(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| rs_err(&e))?;
    let out = fft
        .process_all(&input, mono.len(), None)
        .map_err(|e| rs_err(&e))?;
    let mut v = out.take_data();
    let expected = (mono.len() as u64 * u64::from(RATE)).div_ceil(u64::from(rate)) as usize;
    v.resize(expected, 0.0);
    Ok(v)
}

/// The part between the first and last sample above [`TRIM_THRESHOLD`],
/// widened by [`TRIM_KEEP_MS`]; `None` when everything is silent.
pub fn trim_silence(pcm: &[f32]) -> Option<&[f32]> {
    let keep = (TRIM_KEEP_MS * RATE / 1000) as usize;
    let loud = |x: &f32| x.abs() > TRIM_THRESHOLD;
    let first = pcm.iter().position(loud)?;
    let last = pcm.iter().rposition(loud)?;
    let start = first.saturating_sub(keep);
    let end = last.saturating_add(keep + 1).min(pcm.len());
    pcm.get(start..end)
}

/// Raised-cosine fade-in and fade-out of [`FADE_MS`] (shorter for a clip
/// shorter than two fades).
pub fn apply_fades(pcm: &mut [f32]) {
    let n = ((FADE_MS * RATE / 1000) as usize).min(pcm.len() / 2);
    let len = pcm.len();
    for i in 0..n {
        // gain 0 at the very edge, approaching 1 after n samples
        let g = 0.5 - 0.5 * (std::f32::consts::PI * i as f32 / n as f32).cos();
        pcm[i] *= g;
        pcm[len - 1 - i] *= g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_keeps_margin_and_detects_silence() {
        let mut v = vec![0.0f32; 1000];
        v[500] = 0.5;
        let t = trim_silence(&v).unwrap();
        assert_eq!(t.len(), 80 + 1 + 80);
        assert!(trim_silence(&[0.0; 100]).is_none());
        assert!(trim_silence(&[]).is_none());
    }

    #[test]
    fn fades_reach_zero_at_the_edges() {
        let mut v = vec![1.0f32; 400];
        apply_fades(&mut v);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[399], 0.0);
        assert!(v[39] > 0.9 && v[39] < 1.0);
        assert_eq!(v[200], 1.0);
        let mut short = vec![1.0f32; 3];
        apply_fades(&mut short);
        assert_eq!(short[0], 0.0);
    }

    #[test]
    fn resample_lengths_are_exact() {
        for (rate, n) in [
            (44_100u32, 44_100usize),
            (16_000, 16_000),
            (16_000, 12_345),
            (44_100, 999),
            (48_000, 7),
        ] {
            let x = vec![0.1f32; n];
            let y = resample_to_8k(&x, rate).unwrap();
            assert_eq!(
                y.len() as u64,
                (n as u64 * 8000).div_ceil(u64::from(rate)),
                "{rate} {n}"
            );
        }
    }

    #[test]
    fn absurd_source_rates_are_refused() {
        assert!(resample_to_8k(&[0.1; 10], 1).is_err());
        assert!(resample_to_8k(&[0.1; 10], 4_000_000_000).is_err());
        assert_eq!(resample_to_8k(&[0.1; 10], 4_000).unwrap().len(), 20);
    }

    #[test]
    fn to_i16_saturates() {
        assert_eq!(to_i16(2.0), 32767);
        assert_eq!(to_i16(-2.0), -32768);
        assert_eq!(to_i16(f32::NAN), 0);
    }
}

//! In-band DTMF detection (ITU-T Q.23/Q.24 tones) on decoded G.711 audio,
//! used only when the peer did not negotiate RFC 4733 telephone-event.
//!
//! Method: the Goertzel algorithm evaluates the eight DTMF frequencies over
//! 160-sample (20 ms) windows that hop by 80 samples, so every 10 ms of
//! audio starts a new window. A window holds a key when
//!
//! * the strongest row tone and the strongest column tone each exceed a
//!   minimum level ([`MIN_TONE_AMPLITUDE`]),
//! * each is at least [`PEAK_RATIO`] above the other tones of its group,
//! * their ratio (twist) is within ±[`MAX_TWIST_DB`],
//! * together they carry at least [`MIN_TONE_FRACTION`] of the window's
//!   energy (speech and music spread energy elsewhere),
//! * both halves of the window carry similar energy, i.e. the tone fills the
//!   whole window (this is what makes the duration check precise).
//!
//! For the energy share each tone is also measured at ±0.75 % and ±1.5 % of
//! its nominal frequency (Q.24 tolerance): a 20 ms bin alone would lose
//! ≈4 dB on a tone 1.5 % off, and lowering the threshold instead lets
//! voiced speech through. A window that the tone fills holds ≥95 % of its
//! energy in the two tones; windows the tone only partly covers fall below
//! the threshold, which also sharpens the duration check.
//!
//! A key is reported after two consecutive windows agree: a tone of 40 ms
//! always contains two whole hop-aligned windows, one of 23 ms never does
//! (Q.24 asks for acceptance at ≥40 ms and rejection below ≈23 ms). A new
//! key (or the same key again) needs a gap of two windows without a tone
//! first, so a glitch inside a long tone does not double a digit.
//!
//! Cost: each sample goes through the eight Goertzel filters once; a
//! window's DFT is the first half's plus the second half's rotated by
//! `e^{-jω·80}`, so overlapping windows cost no extra filtering. All state
//! is fixed-size; [`InbandDetector::feed`] never allocates.

/// Window length in samples (20 ms at 8 kHz).
const WINDOW: usize = 160;
/// Hop between windows.
const HALF: usize = WINDOW / 2;

/// DTMF row frequencies then column frequencies (Hz).
const FREQS: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Minimum amplitude of each tone, relative to full scale (≈ -34 dBFS).
pub const MIN_TONE_AMPLITUDE: f32 = 0.02;
/// Each peak must exceed the other tones of its group by this power factor
/// (6 dB).
pub const PEAK_RATIO: f32 = 4.0;
/// Maximum level difference between the row and column tone.
pub const MAX_TWIST_DB: f32 = 8.0;
/// Share of the window energy the two tones must hold.
pub const MIN_TONE_FRACTION: f32 = 0.9;
/// Frequency offsets probed for the energy share (Q.24: accept ±1.5 %);
/// with the nominal frequency, every tone within tolerance is at most
/// 0.375 % from a probe (≤0.2 dB loss).
const DEVIATION_PROBES: [f32; 4] = [-0.015, -0.0075, 0.0075, 0.015];
/// Minimum ratio between the energies of the two window halves.
const MIN_HALF_RATIO: f32 = 0.5;
/// Consecutive agreeing windows needed to report a key.
const HITS_TO_REPORT: u8 = 2;
/// Consecutive empty windows needed before the next key.
const GAP_TO_REARM: u8 = 2;

/// Streaming DTMF detector for one call. `Debug` shows no state (the
/// candidate key is a caller's key).
#[derive(Clone)]
pub struct InbandDetector {
    coeffs: [f32; 8],
    /// `e^{-jω·HALF}` per frequency: shifts the second half's DFT onto the
    /// first half's time origin.
    shift: [(f32, f32); 8],
    /// `e^{-jω}` per frequency (Goertzel output stage).
    step_back: [(f32, f32); 8],
    /// The previous half window (already complete).
    prev: [f32; HALF],
    /// Its partial DFT per frequency and its energy.
    prev_dft: [(f32, f32); 8],
    prev_energy: f32,
    have_prev: bool,
    /// The half window being filled.
    cur: [f32; HALF],
    cur_len: usize,
    candidate: Option<char>,
    hits: u8,
    gap: u8,
    armed: bool,
}

impl std::fmt::Debug for InbandDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InbandDetector").finish_non_exhaustive()
    }
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    pub fn new() -> Self {
        let mut coeffs = [0.0f32; 8];
        let mut shift = [(0.0f32, 0.0f32); 8];
        let mut step_back = [(0.0f32, 0.0f32); 8];
        for k in 0..8 {
            let w = 2.0 * std::f32::consts::PI * FREQS[k] / 8000.0;
            coeffs[k] = 2.0 * w.cos();
            let h = w * HALF as f32;
            shift[k] = (h.cos(), -h.sin());
            step_back[k] = (w.cos(), -w.sin());
        }
        InbandDetector {
            coeffs,
            shift,
            step_back,
            prev: [0.0; HALF],
            prev_dft: [(0.0, 0.0); 8],
            prev_energy: 0.0,
            have_prev: false,
            cur: [0.0; HALF],
            cur_len: 0,
            candidate: None,
            hits: 0,
            gap: GAP_TO_REARM,
            armed: true,
        }
    }

    /// Feeds decoded 8 kHz samples (any length); `on_digit` is called for
    /// each key detected.
    pub fn feed(&mut self, samples: &[i16], on_digit: &mut impl FnMut(char)) {
        for &s in samples {
            if let Some(slot) = self.cur.get_mut(self.cur_len) {
                *slot = f32::from(s) / 32768.0;
            }
            self.cur_len += 1;
            if self.cur_len == HALF {
                self.cur_len = 0;
                let (dft, energy) = self.half_dft();
                if self.have_prev {
                    let key = self.analyse(&dft, energy);
                    if let Some(d) = self.step(key) {
                        on_digit(d);
                    }
                }
                self.prev = self.cur;
                self.prev_dft = dft;
                self.prev_energy = energy;
                self.have_prev = true;
            }
        }
    }

    /// Debounce: two agreeing windows report, two empty windows re-arm.
    fn step(&mut self, key: Option<char>) -> Option<char> {
        match key {
            Some(k) => {
                self.gap = 0;
                if self.candidate == Some(k) {
                    self.hits = self.hits.saturating_add(1);
                } else {
                    self.candidate = Some(k);
                    self.hits = 1;
                }
                if self.armed && self.hits >= HITS_TO_REPORT {
                    self.armed = false;
                    return Some(k);
                }
                None
            }
            None => {
                self.candidate = None;
                self.hits = 0;
                self.gap = self.gap.saturating_add(1);
                if self.gap >= GAP_TO_REARM {
                    self.armed = true;
                }
                None
            }
        }
    }

    /// Goertzel over the half just completed: its DFT at the 8 frequencies
    /// (relative to the half's first sample, up to a common phase factor)
    /// and its energy. Each sample is filtered once; windows combine halves.
    fn half_dft(&self) -> ([(f32, f32); 8], f32) {
        let mut s1 = [0.0f32; 8];
        let mut s2 = [0.0f32; 8];
        let mut e = 0.0f32;
        for &x in self.cur.iter() {
            e += x * x;
            for k in 0..8 {
                let s0 = x + self.coeffs[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        // y = s1 - e^{-jω}·s2 = e^{jω(N-1)} · Σ x[n] e^{-jωn}; the factor
        // e^{jω(N-1)} is the same for both halves, so it cancels in |·|².
        let mut dft = [(0.0f32, 0.0f32); 8];
        for k in 0..8 {
            let (c, si) = self.step_back[k];
            dft[k] = (s1[k] - c * s2[k], -si * s2[k]);
        }
        (dft, e)
    }

    /// Tone energies of the window `prev ++ cur` from the two halves' DFTs:
    /// X = A + e^{-jω·HALF}·B, the exact 160-sample Goertzel value.
    fn window_powers(&self, cur_dft: &[(f32, f32); 8]) -> [f32; 8] {
        let mut power = [0.0f32; 8];
        for k in 0..8 {
            let (ar, ai) = self.prev_dft[k];
            let (br, bi) = cur_dft[k];
            let (cr, ci) = self.shift[k];
            let re = ar + cr * br - ci * bi;
            let im = ai + cr * bi + ci * br;
            power[k] = (re * re + im * im) * 2.0 / WINDOW as f32;
        }
        power
    }

    /// Classifies the window `prev ++ cur`.
    fn analyse(&self, cur_dft: &[(f32, f32); 8], cur_energy: f32) -> Option<char> {
        let half_energy = [self.prev_energy, cur_energy];
        let total = half_energy[0] + half_energy[1];
        // Energy of each tone, scaled so that a sinusoid of amplitude A
        // gives A²·N/2, its energy in the window.
        let power = self.window_powers(cur_dft);
        let (row, row_p) = peak(&power[..4])?;
        let (col, col_p) = peak(&power[4..])?;
        let min_energy = MIN_TONE_AMPLITUDE * MIN_TONE_AMPLITUDE * WINDOW as f32 / 2.0;
        if row_p < min_energy || col_p < min_energy {
            return None;
        }
        let dominant = |group: &[f32], idx: usize, p: f32| {
            group
                .iter()
                .enumerate()
                .all(|(i, &q)| i == idx || p >= PEAK_RATIO * q)
        };
        if !dominant(&power[..4], row, row_p) || !dominant(&power[4..], col, col_p) {
            return None;
        }
        let twist = 10f32.powf(MAX_TWIST_DB / 10.0);
        if row_p > twist * col_p || col_p > twist * row_p {
            return None;
        }
        // A tone up to 1.5 % off frequency (Q.24 says accept) loses ≈4 dB
        // in a 20 ms bin; for the energy share, also look 1.5 % either side
        // (only for the rare window that got this far).
        let best = |f: f32, p: f32| {
            DEVIATION_PROBES
                .iter()
                .fold(p, |best, d| best.max(self.power_at(f * (1.0 + d))))
        };
        // On-frequency tones pass without probing.
        if row_p + col_p < MIN_TONE_FRACTION * total {
            let row_best = best(FREQS.get(row).copied().unwrap_or(0.0), row_p);
            let col_best = best(FREQS.get(4 + col).copied().unwrap_or(0.0), col_p);
            if row_best + col_best < MIN_TONE_FRACTION * total {
                return None;
            }
        }
        let (lo, hi) = if half_energy[0] < half_energy[1] {
            (half_energy[0], half_energy[1])
        } else {
            (half_energy[1], half_energy[0])
        };
        if lo < MIN_HALF_RATIO * hi {
            return None;
        }
        KEYS.get(row).and_then(|r| r.get(col)).copied()
    }

    /// Tone energy at `freq` over the current window (same scale as the
    /// DTMF tones).
    fn power_at(&self, freq: f32) -> f32 {
        let coeff = 2.0 * (2.0 * std::f32::consts::PI * freq / 8000.0).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &x in self.prev.iter().chain(self.cur.iter()) {
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2.0 / WINDOW as f32
    }
}

/// Index and value of the largest element.
fn peak(group: &[f32]) -> Option<(usize, f32)> {
    group
        .iter()
        .copied()
        .enumerate()
        .fold(None, |best, (i, p)| match best {
            Some((_, bp)) if bp >= p => best,
            _ => Some((i, p)),
        })
}

/// The row and column frequency of a key (for tests and tone generators).
pub fn key_frequencies(key: char) -> Option<(f32, f32)> {
    let key = key.to_ascii_uppercase();
    for (r, row) in KEYS.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k == key {
                return Some((FREQS[r], FREQS[4 + c]));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(key: char, ms: usize, amp: f32, out: &mut Vec<i16>) {
        let (r, c) = key_frequencies(key).unwrap();
        let start = out.len();
        for n in 0..ms * 8 {
            let t = (start + n) as f32 / 8000.0;
            let v = amp
                * ((2.0 * std::f32::consts::PI * r * t).sin()
                    + (2.0 * std::f32::consts::PI * c * t).sin());
            out.push((v * 32767.0) as i16);
        }
    }

    fn run(samples: &[i16]) -> String {
        let mut d = InbandDetector::new();
        let mut got = String::new();
        for chunk in samples.chunks(160) {
            d.feed(chunk, &mut |c| got.push(c));
        }
        got
    }

    #[test]
    fn detects_clean_keys() {
        let mut s = vec![0i16; 37];
        for k in "159#*0D".chars() {
            tone(k, 60, 0.3, &mut s);
            s.extend(std::iter::repeat_n(0, 400));
        }
        assert_eq!(run(&s), "159#*0D");
    }

    #[test]
    fn long_tone_is_one_digit_and_short_tone_none() {
        let mut s = Vec::new();
        tone('8', 2000, 0.3, &mut s);
        assert_eq!(run(&s), "8");
        let mut s = vec![0i16; 50];
        tone('8', 20, 0.3, &mut s);
        s.extend(std::iter::repeat_n(0, 400));
        assert_eq!(run(&s), "");
    }

    #[test]
    fn split_goertzel_equals_direct_goertzel() {
        let mut d = InbandDetector::new();
        let mut x = 12345u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) - 0.5
        };
        for v in d.cur.iter_mut() {
            *v = rnd();
        }
        let (first, e1) = d.half_dft();
        d.prev = d.cur;
        d.prev_dft = first;
        d.prev_energy = e1;
        for v in d.cur.iter_mut() {
            *v = rnd();
        }
        let (second, _) = d.half_dft();
        let split = d.window_powers(&second);
        for (k, f) in FREQS.iter().enumerate() {
            let direct = d.power_at(*f);
            assert!(
                (split[k] - direct).abs() <= 1e-3 * direct.max(1e-3),
                "{f} Hz: {} vs {direct}",
                split[k]
            );
        }
    }

    #[test]
    fn peak_picks_largest() {
        assert_eq!(peak(&[1.0, 3.0, 2.0]), Some((1, 3.0)));
        assert_eq!(peak(&[]), None);
        assert_eq!(key_frequencies('x'), None);
    }
}

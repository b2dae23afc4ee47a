//! ITU-T G.711 μ-law (PCMU) and A-law (PCMA), after the public-domain Sun
//! Microsystems reference (`g711.c`), which is what most SIP stacks use.
//!
//! Implementations in the wild differ by one quantisation step on a few
//! hundred input values; this one is pinned by golden vectors taken from the
//! reference (see the tests). Encoding and decoding are table lookups built at
//! compile time, so the per-packet cost is one load per sample.

const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const BIAS: i32 = 0x84;
const CLIP: i32 = 8159;

const fn search(val: i32, table: &[i32; 8]) -> usize {
    let mut i = 0;
    while i < 8 {
        if val <= table[i] {
            return i;
        }
        i += 1;
    }
    8
}

/// Reference μ-law encoder on a 16-bit sample.
pub const fn linear_to_ulaw_ref(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 2;
    let mask;
    if pcm < 0 {
        pcm = -pcm;
        mask = 0x7F;
    } else {
        mask = 0xFF;
    }
    if pcm > CLIP {
        pcm = CLIP;
    }
    pcm += BIAS >> 2;
    let seg = search(pcm, &SEG_UEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let uval = ((seg as i32) << 4) | ((pcm >> (seg + 1)) & 0xF);
    (uval ^ mask) as u8
}

/// Reference μ-law decoder.
pub const fn ulaw_to_linear_ref(code: u8) -> i16 {
    let u = !code as i32;
    let mut t = ((u & 0x0F) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Reference A-law encoder on a 16-bit sample.
pub const fn linear_to_alaw_ref(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask;
    if pcm >= 0 {
        mask = 0xD5;
    } else {
        mask = 0x55;
        pcm = -pcm - 1;
    }
    let seg = search(pcm, &SEG_AEND);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut aval = (seg as i32) << 4;
    if seg < 2 {
        aval |= (pcm >> 1) & 0x0F;
    } else {
        aval |= (pcm >> seg) & 0x0F;
    }
    (aval ^ mask) as u8
}

/// Reference A-law decoder.
pub const fn alaw_to_linear_ref(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_decode(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_to_linear_ref(i as u8)
        } else {
            ulaw_to_linear_ref(i as u8)
        };
        i += 1;
    }
    t
}

// μ-law ignores the two low bits of a sample, A-law the three low bits, so
// a table indexed by the sample's top 14 (13) bits is exact.
const fn build_ulaw_encode() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = linear_to_ulaw_ref(((i as i32 - 8192) << 2) as i16);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = linear_to_alaw_ref(((i as i32 - 4096) << 3) as i16);
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = build_decode(false);
static ALAW_DECODE: [i16; 256] = build_decode(true);
static ULAW_ENCODE: [u8; 16384] = build_ulaw_encode();
static ALAW_ENCODE: [u8; 8192] = build_alaw_encode();

#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[((sample as i32 >> 2) + 8192) as usize]
}

#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[((sample as i32 >> 3) + 4096) as usize]
}

#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// The two codecs this service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    /// The code for digital silence.
    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(code),
            Codec::Pcma => alaw_decode(code),
        }
    }
    /// Encodes `pcm` into `out` (same length).
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = self.encode(s);
        }
    }
    /// Decodes `payload` into `out` (same length).
    pub fn decode_into(self, payload: &[u8], out: &mut [i16]) {
        for (o, &c) in out.iter_mut().zip(payload) {
            *o = self.decode(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from the Sun reference implementation.
    #[test]
    fn golden_vectors() {
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_decode(0x70), -120);
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7E);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_encode(-1000), 0x4E);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_encode(1000), 0xFA);
        assert_eq!(alaw_encode(-1000), 0x7A);
    }

    #[test]
    fn tables_equal_reference_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(s), linear_to_ulaw_ref(s), "ulaw {s}");
            assert_eq!(alaw_encode(s), linear_to_alaw_ref(s), "alaw {s}");
        }
    }

    #[test]
    fn decode_encode_is_identity_on_codes() {
        for c in 0..=255u8 {
            let u = ulaw_encode(ulaw_decode(c));
            // 0x7F (-0) encodes back as 0xFF (+0).
            assert!(u == c || (c == 0x7F && u == 0xFF), "ulaw {c:#x} -> {u:#x}");
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut prev = i32::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let v = ulaw_decode(ulaw_encode(s)) as i32;
            assert!(v >= prev);
            prev = v;
        }
    }
}

//! A prompt segment decoded once at start-up and shared by every call.
//!
//! The call path never touches PCM: a player walks the pre-encoded 20 ms
//! frames of the codec the call negotiated, so playing a prompt costs one
//! copy of 160 bytes per packet and no allocation.

use std::sync::Arc;

use super::g711::Codec;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// One 20 ms G.711 payload.
pub type Frame = [u8; FRAME_SAMPLES];

/// An audio clip at 8 kHz mono, with its G.711 frames precomputed.
pub struct Clip {
    /// 8 kHz mono samples, length a multiple of [`FRAME_SAMPLES`] (the last
    /// frame is padded with silence).
    pcm: Box<[i16]>,
    pcmu: Box<[Frame]>,
    pcma: Box<[Frame]>,
}

/// Only the length: the samples are large, and a sequence of clips can
/// spell out a balance being read.
impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clip({} frames)", self.frame_count())
    }
}

/// Shared handle to a clip.
pub type SharedClip = Arc<Clip>;

impl Clip {
    /// Builds a clip from 8 kHz mono samples, padding the last frame with
    /// zeros and encoding both codecs once.
    pub fn from_pcm(samples: &[i16]) -> Clip {
        let frames = samples.len().div_ceil(FRAME_SAMPLES);
        let mut pcm = samples.to_vec();
        pcm.resize(frames * FRAME_SAMPLES, 0);
        let encode = |codec: Codec| -> Box<[Frame]> {
            pcm.chunks_exact(FRAME_SAMPLES)
                .map(|chunk| {
                    let mut f = [0u8; FRAME_SAMPLES];
                    codec.encode_into(chunk, &mut f);
                    f
                })
                .collect()
        };
        let pcmu = encode(Codec::Pcmu);
        let pcma = encode(Codec::Pcma);
        Clip {
            pcm: pcm.into_boxed_slice(),
            pcmu,
            pcma,
        }
    }

    /// `ms` milliseconds of silence (rounded up to whole frames).
    pub fn silence(ms: u32) -> Clip {
        Clip::from_pcm(&vec![
            0i16;
            (ms as usize * 8).div_ceil(FRAME_SAMPLES)
                * FRAME_SAMPLES
        ])
    }

    pub fn pcm(&self) -> &[i16] {
        &self.pcm
    }

    pub fn frames(&self, codec: Codec) -> &[Frame] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    pub fn frame_count(&self) -> usize {
        self.pcmu.len()
    }

    pub fn duration_ms(&self) -> u64 {
        self.frame_count() as u64 * 20
    }

    /// Bytes held by this clip (PCM plus both encodings).
    pub fn memory_bytes(&self) -> usize {
        self.pcm.len() * 2 + (self.pcmu.len() + self.pcma.len()) * FRAME_SAMPLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_encodes() {
        let c = Clip::from_pcm(&[1000; 200]);
        assert_eq!(c.frame_count(), 2);
        assert_eq!(c.pcm().len(), 320);
        assert_eq!(c.frames(Codec::Pcmu)[0][0], 0xCE);
        assert_eq!(c.frames(Codec::Pcmu)[1][39], 0xCE);
        assert_eq!(c.frames(Codec::Pcmu)[1][40], 0xFF);
        assert_eq!(c.frames(Codec::Pcma)[1][40], 0xD5);
        assert_eq!(Clip::silence(30).frame_count(), 2);
        assert_eq!(c.duration_ms(), 40);
    }
}

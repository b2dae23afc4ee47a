//! Prompt playback queue: hands out one pre-encoded 20 ms G.711 frame per
//! packet slot.
//!
//! Clips are shared (`Arc<Clip>`) and already encoded for both codecs, so a
//! frame is a borrow of 160 bytes: nothing is decoded, encoded or allocated
//! per packet. Queueing a play command clones the `Arc`s (the only
//! allocation, once per command, and only when the queue has to grow).
//!
//! Talkspurts (RFC 3551 §4.1): the first frame of a clip that follows
//! silence (an idle queue or a `Silence` item) is flagged so the sender sets
//! the RTP marker bit; clips played back to back are one talkspurt.

use std::collections::VecDeque;

use super::clip::{FRAME_SAMPLES, Frame, SharedClip};
use super::g711::Codec;

const PCMU_SILENCE: Frame = [0xFF; FRAME_SAMPLES];
const PCMA_SILENCE: Frame = [0xD5; FRAME_SAMPLES];

/// A digital-silence frame for `codec`.
pub fn silence_frame(codec: Codec) -> &'static Frame {
    match codec {
        Codec::Pcmu => &PCMU_SILENCE,
        Codec::Pcma => &PCMA_SILENCE,
    }
}

/// One thing to play.
#[derive(Debug, Clone)]
pub enum PlayItem {
    Clip(SharedClip),
    /// Silence, rounded up to whole 20 ms frames.
    Silence {
        ms: u32,
    },
}

#[derive(Debug)]
enum Source {
    Clip(SharedClip),
    Silence,
}

#[derive(Debug)]
struct Entry {
    source: Source,
    /// Next frame index.
    pos: usize,
    frames: usize,
    /// Set on the last item of a play command.
    token: Option<u64>,
}

/// What the player produced for one packet slot.
#[derive(Debug, Clone, Copy)]
pub struct Produced<'a> {
    pub frame: &'a Frame,
    /// First frame of a talkspurt.
    pub talkspurt_start: bool,
    /// A play command finished with this frame.
    pub finished: Option<u64>,
}

/// The queue of a call's prompts.
#[derive(Debug)]
pub struct Player {
    queue: VecDeque<Entry>,
    /// The previous slot carried silence (idle or a Silence item).
    after_silence: bool,
    /// The entry that finished last, kept so the frame handed out for its
    /// final slot can borrow from its clip.
    last: Option<Entry>,
}

impl Default for Player {
    fn default() -> Self {
        Self::new()
    }
}

impl Player {
    pub fn new() -> Self {
        Player {
            queue: VecDeque::with_capacity(8),
            after_silence: true,
            last: None,
        }
    }

    /// Appends `items`; `token` is reported when the last of them has been
    /// sent. Returns false when nothing was queued (an empty list, or only
    /// empty clips): the command is complete at once.
    pub fn play(&mut self, items: &[PlayItem], token: u64) -> bool {
        let before = self.queue.len();
        for item in items {
            let (source, frames) = match item {
                PlayItem::Clip(c) => (Source::Clip(c.clone()), c.frame_count()),
                PlayItem::Silence { ms } => (Source::Silence, (*ms as usize).div_ceil(20)),
            };
            if frames == 0 {
                continue;
            }
            self.queue.push_back(Entry {
                source,
                pos: 0,
                frames,
                token: None,
            });
        }
        let queued = self.queue.len() > before;
        match self.queue.back_mut() {
            Some(last) if queued => {
                last.token = Some(token);
                true
            }
            _ => false,
        }
    }

    /// Clears the queue; returns the tokens of the commands that were cut
    /// short, in queue order.
    pub fn stop(&mut self, mut on_token: impl FnMut(u64)) {
        // Whatever plays next starts a new talkspurt.
        self.after_silence = true;
        for e in self.queue.drain(..) {
            if let Some(t) = e.token {
                on_token(t);
            }
        }
    }

    pub fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The frame for the next packet slot (silence when idle).
    pub fn next_frame(&mut self, codec: Codec) -> Produced<'_> {
        if self.queue.is_empty() {
            self.after_silence = true;
            return Produced {
                frame: silence_frame(codec),
                talkspurt_start: false,
                finished: None,
            };
        }
        let Some(entry) = self.queue.front_mut() else {
            return Produced {
                frame: silence_frame(codec),
                talkspurt_start: false,
                finished: None,
            };
        };
        let index = entry.pos;
        entry.pos += 1;
        let done = entry.pos >= entry.frames;
        let is_clip = matches!(entry.source, Source::Clip(_));
        let talkspurt_start = is_clip && index == 0 && self.after_silence;
        self.after_silence = !is_clip;
        let finished = if done {
            // Pop now; the frame is borrowed below from the popped entry's
            // clip, so keep the Arc alive in `last` for this call.
            let e = self.queue.pop_front();
            let token = e.as_ref().and_then(|e| e.token);
            self.last = e;
            token
        } else {
            None
        };
        let source = if done {
            self.last.as_ref().map(|e| &e.source)
        } else {
            self.queue.front().map(|e| &e.source)
        };
        let frame = match source {
            Some(Source::Clip(c)) => c.frames(codec).get(index).unwrap_or(silence_frame(codec)),
            _ => silence_frame(codec),
        };
        Produced {
            frame,
            talkspurt_start,
            finished,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::clip::Clip;
    use std::sync::Arc;

    fn clip(frames: usize) -> SharedClip {
        Arc::new(Clip::from_pcm(&vec![3000i16; frames * FRAME_SAMPLES]))
    }

    /// (is silence, talkspurt start, finished token) for `n` slots.
    fn run(p: &mut Player, n: usize) -> Vec<(bool, bool, Option<u64>)> {
        (0..n)
            .map(|_| {
                let f = p.next_frame(Codec::Pcmu);
                (f.frame == &PCMU_SILENCE, f.talkspurt_start, f.finished)
            })
            .collect()
    }

    #[test]
    fn idle_player_sends_silence() {
        let mut p = Player::new();
        assert!(!p.is_playing());
        assert_eq!(run(&mut p, 2), vec![(true, false, None); 2]);
        assert_eq!(silence_frame(Codec::Pcma)[0], 0xD5);
    }

    #[test]
    fn tokens_and_talkspurts() {
        let mut p = Player::new();
        assert!(p.play(&[PlayItem::Clip(clip(2)), PlayItem::Silence { ms: 30 }], 1));
        assert!(p.play(&[PlayItem::Clip(clip(1))], 2));
        assert!(!p.play(&[], 3));
        assert!(!p.play(&[PlayItem::Clip(clip(0))], 4));
        assert_eq!(
            run(&mut p, 6),
            vec![
                (false, true, None),
                (false, false, None),
                (true, false, None),    // 30 ms → 2 frames of silence
                (true, false, Some(1)), // the command ends with its silence
                (false, true, Some(2)), // clip after silence: new talkspurt
                (true, false, None),
            ]
        );
        assert!(!p.is_playing());
    }

    #[test]
    fn stop_reports_each_queued_token_once() {
        let mut p = Player::new();
        p.play(&[PlayItem::Clip(clip(5)), PlayItem::Clip(clip(5))], 7);
        p.play(&[PlayItem::Silence { ms: 100 }], 8);
        run(&mut p, 1);
        let mut cut = Vec::new();
        p.stop(|t| cut.push(t));
        assert_eq!(cut, vec![7, 8]);
        p.stop(|t| cut.push(t));
        assert_eq!(cut, vec![7, 8]);
        // after a stop the next clip opens a talkspurt
        p.play(&[PlayItem::Clip(clip(1))], 9);
        assert_eq!(run(&mut p, 1), vec![(false, true, Some(9))]);
    }
}

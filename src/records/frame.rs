//! Spool framing, sans-IO: bytes in, records or errors out.
//!
//! One spool record on disk is
//!
//! ```text
//! magic  2 bytes  0xA5 0x5A
//! len    4 bytes  payload length, little endian (at most MAX_PAYLOAD)
//! check  8 bytes  the first 8 bytes of SHA-256(payload)
//! payload len bytes (one JSON row)
//! ```
//!
//! [`Decoder`] walks a file's bytes in order. A record cut short at the end
//! (the process died while writing it) is reported as [`Damage::Torn`]; a
//! record whose checksum or length is wrong as [`Damage::Corrupt`], after
//! which the decoder looks for the next magic that starts a record with a
//! correct checksum. Neither panics; both name the byte offset.

use sha2::{Digest, Sha256};

/// The two bytes every record starts with.
pub const MAGIC: [u8; 2] = [0xA5, 0x5A];
/// magic + len + check.
pub const HEADER_LEN: usize = 2 + 4 + 8;
/// Largest payload accepted (a CDR of a very long call is a few KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

fn check(payload: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Appends one framed record to `out`. `None` if the payload is too large.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let len = u32::try_from(payload.len()).ok()?;
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&check(payload));
    out.extend_from_slice(payload);
    Some(())
}

/// A damaged stretch of a spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside a record (a crash mid-write): `offset` is where
    /// that record starts; everything after it is skipped.
    Torn { offset: u64 },
    /// Bytes that are not a valid record, from `offset` up to `resumed_at`
    /// (the next valid record, or the end of the file).
    Corrupt { offset: u64, resumed_at: u64 },
}

/// One item of a decoded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    /// A good record: its start offset and payload.
    Record {
        offset: u64,
        payload: &'a [u8],
    },
    Damaged(Damage),
}

/// Iterates over the records of one file's bytes.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Parse<'a> {
    Ok(&'a [u8], usize),
    /// Not enough bytes for the record the header announces.
    Short,
    Bad,
}

fn parse_at(buf: &[u8], pos: usize) -> Parse<'_> {
    let rest = &buf[pos..];
    if rest.len() < 2 {
        return Parse::Short;
    }
    if rest[..2] != MAGIC {
        return Parse::Bad;
    }
    if rest.len() < HEADER_LEN {
        return Parse::Short;
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&rest[2..6]);
    let len = u32::from_le_bytes(len4) as usize;
    if len > MAX_PAYLOAD {
        return Parse::Bad;
    }
    let end = HEADER_LEN + len;
    if rest.len() < end {
        return Parse::Short;
    }
    let payload = &rest[HEADER_LEN..end];
    if rest[6..14] != check(payload) {
        return Parse::Bad;
    }
    Parse::Ok(payload, end)
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }

    /// Offset of the next byte not yet consumed.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// Finds the next offset after `from` where a valid record starts.
    fn resync(&self, from: usize) -> Option<usize> {
        let mut i = from;
        while i + 1 < self.buf.len() {
            if self.buf[i] == MAGIC[0]
                && self.buf[i + 1] == MAGIC[1]
                && matches!(parse_at(self.buf, i), Parse::Ok(..))
            {
                return Some(i);
            }
            i += 1;
        }
        None
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        match parse_at(self.buf, start) {
            Parse::Ok(payload, used) => {
                self.pos = start + used;
                Some(Item::Record {
                    offset: start as u64,
                    payload,
                })
            }
            Parse::Short => match self.resync(start + 1) {
                // A short record followed by good ones is corruption, not
                // a torn tail.
                Some(next) => {
                    self.pos = next;
                    Some(Item::Damaged(Damage::Corrupt {
                        offset: start as u64,
                        resumed_at: next as u64,
                    }))
                }
                None => {
                    self.pos = self.buf.len();
                    Some(Item::Damaged(Damage::Torn {
                        offset: start as u64,
                    }))
                }
            },
            Parse::Bad => {
                let next = self.resync(start + 1).unwrap_or(self.buf.len());
                self.pos = next;
                Some(Item::Damaged(Damage::Corrupt {
                    offset: start as u64,
                    resumed_at: next as u64,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in payloads {
            encode(p, &mut v).unwrap();
        }
        v
    }

    fn records(buf: &[u8]) -> (Vec<Vec<u8>>, Vec<Damage>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for it in Decoder::new(buf) {
            match it {
                Item::Record { payload, .. } => good.push(payload.to_vec()),
                Item::Damaged(d) => bad.push(d),
            }
        }
        (good, bad)
    }

    #[test]
    fn round_trip_in_order() {
        let buf = file(&[b"one", b"", b"three"]);
        let (good, bad) = records(&buf);
        assert_eq!(good, vec![b"one".to_vec(), vec![], b"three".to_vec()]);
        assert!(bad.is_empty());
    }

    #[test]
    fn every_truncation_is_a_torn_tail_after_the_whole_records() {
        let buf = file(&[b"alpha", b"beta-beta"]);
        let first_len = HEADER_LEN + 5;
        for cut in 0..buf.len() {
            let (good, bad) = records(&buf[..cut]);
            let whole = usize::from(cut >= first_len);
            assert_eq!(good.len(), whole, "cut {cut}");
            if cut == 0 || cut == first_len {
                assert!(bad.is_empty(), "cut {cut}: {bad:?}");
            } else {
                let at = if cut > first_len { first_len } else { 0 } as u64;
                assert_eq!(bad, vec![Damage::Torn { offset: at }], "cut {cut}");
            }
        }
    }

    #[test]
    fn a_flipped_byte_skips_one_record_and_resumes() {
        let mut buf = file(&[b"first", b"second", b"third"]);
        let second = HEADER_LEN + 5;
        buf[second + HEADER_LEN + 2] ^= 0xFF; // inside "second"'s payload
        let (good, bad) = records(&buf);
        assert_eq!(good, vec![b"first".to_vec(), b"third".to_vec()]);
        assert_eq!(
            bad,
            vec![Damage::Corrupt {
                offset: second as u64,
                resumed_at: (second + HEADER_LEN + 6) as u64
            }]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for n in 0..300usize {
            let mut v = file(&[b"x", b"yy"]);
            for _ in 0..(n % 17) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let at = (seed >> 33) as usize % (v.len() + 1);
                v.insert(at, (seed >> 13) as u8);
            }
            let _ = records(&v);
        }
        let (good, bad) = records(&[0xA5, 0x5A, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
    }
}

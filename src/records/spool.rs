//! The durable spool: append-only files of framed rows ([`super::frame`])
//! in one directory, oldest first. Blocking `std::fs` I/O: the writer task
//! calls it through `spawn_blocking`.
//!
//! - Appends go to the *active* file (a new one per process start, and a
//!   new one past [`ROTATE_BYTES`]); each append is written whole and
//!   `fsync`ed before it returns, so an acknowledged row survives a crash or
//!   a power cut. A failed append is cut back off the file.
//! - Replay reads the oldest file from the front; a file fully written to
//!   the database is deleted.
//! - Files left by an earlier process are scanned at [`Spool::open`]: their
//!   good records count as pending, damaged stretches (a torn tail from a
//!   crash mid-write, flipped bytes) are logged once with file and offset
//!   and skipped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::frame::{self, Damage, Decoder, Item};

/// The active file is closed and a new one started beyond this size.
pub const ROTATE_BYTES: u64 = 16 << 20;

const PREFIX: &str = "spool-";
const SUFFIX: &str = ".ivrspool";

#[derive(Debug)]
struct SpoolFile {
    index: u64,
    path: PathBuf,
    /// Good records not yet replayed.
    pending: u64,
}

/// One batch read from the front of the spool.
#[derive(Debug)]
pub struct Batch {
    /// Payloads with a printable location (`file@offset`) for error logs.
    pub rows: Vec<(String, Vec<u8>)>,
    /// Where the next batch starts.
    end: u64,
    index: u64,
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    files: VecDeque<SpoolFile>,
    /// The file appends go to, with its length.
    active: Option<(u64, File, u64)>,
    next_index: u64,
    /// Read position in the oldest file.
    offset: u64,
    /// Cached bytes of the oldest file.
    cache: Option<(u64, Vec<u8>)>,
    /// Held for the spool's lifetime: one process per directory.
    _lock: File,
}

/// Takes an exclusive lock on `dir/lock`, or says who holds it.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    if let Err(e) = f.try_lock() {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "spool directory {} is in use by another process ({e})",
                dir.display()
            ),
        ));
    }
    Ok(f)
}

fn file_name(index: u64) -> String {
    format!("{PREFIX}{index:020}{SUFFIX}")
}

fn parse_index(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

/// Logs a damaged stretch of a spool file (never its content).
fn report(path: &Path, d: &Damage) {
    match d {
        Damage::Torn { offset } => tracing::error!(
            file = %path.display(),
            offset,
            "spool: incomplete record at the end of the file (crash while writing?); skipped"
        ),
        Damage::Corrupt { offset, resumed_at } => tracing::error!(
            file = %path.display(),
            offset,
            resumed_at,
            "spool: damaged bytes (checksum or length wrong); skipped"
        ),
    }
}

fn sync_dir(dir: &Path) {
    // Makes a new file's directory entry durable; not possible everywhere.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Spool {
    /// Opens (creating) the spool directory and scans what an earlier run
    /// left there.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let mut indexes: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_index(&e.file_name().to_string_lossy()))
            .collect();
        indexes.sort_unstable();
        let mut files = VecDeque::new();
        for index in &indexes {
            let path = dir.join(file_name(*index));
            let bytes = std::fs::read(&path)?;
            let mut pending = 0u64;
            for it in Decoder::new(&bytes) {
                match it {
                    Item::Record { .. } => pending += 1,
                    Item::Damaged(d) => report(&path, &d),
                }
            }
            if pending == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            tracing::info!(file = %path.display(), rows = pending, "spool: rows left by an earlier run; replaying them first");
            files.push_back(SpoolFile {
                index: *index,
                path,
                pending,
            });
        }
        Ok(Spool {
            dir: dir.to_owned(),
            files,
            active: None,
            next_index: indexes.last().map_or(1, |i| i + 1),
            offset: 0,
            cache: None,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows in the spool not yet in the database.
    pub fn pending(&self) -> u64 {
        self.files.iter().map(|f| f.pending).sum()
    }

    /// Appends the payloads as framed records and fsyncs. On error the file
    /// is cut back to its previous length (or abandoned) and nothing of the
    /// batch counts as spooled.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> io::Result<()> {
        let mut buf = Vec::new();
        for p in payloads {
            frame::encode(p, &mut buf).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "spool row too large")
            })?;
        }
        if self.active.as_ref().is_none_or(|a| a.2 >= ROTATE_BYTES) {
            let index = self.next_index;
            let path = self.dir.join(file_name(index));
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            sync_dir(&self.dir);
            self.next_index += 1;
            self.active = Some((index, f, 0));
            self.files.push_back(SpoolFile {
                index,
                path,
                pending: 0,
            });
        }
        let Some((index, f, len)) = self.active.as_mut() else {
            return Err(io::Error::other("no active spool file"));
        };
        let r = f.write_all(&buf).and_then(|()| f.sync_data());
        match r {
            Ok(()) => {
                *len += buf.len() as u64;
                let index = *index;
                if let Some(sf) = self.files.iter_mut().find(|sf| sf.index == index) {
                    sf.pending += payloads.len() as u64;
                }
                Ok(())
            }
            Err(e) => {
                // Cut the partial write off; if even that fails, start a
                // new file next time (the decoder skips the damage).
                if f.set_len(*len).and_then(|()| f.sync_data()).is_err() {
                    self.active = None;
                }
                Err(e)
            }
        }
    }

    /// Reads up to `max` records from the front of the spool (without
    /// consuming them: see [`Spool::consume`]).
    pub fn peek(&mut self, max: usize) -> io::Result<Batch> {
        loop {
            let Some(front) = self.files.front() else {
                return Ok(Batch {
                    rows: Vec::new(),
                    end: 0,
                    index: 0,
                });
            };
            let (index, path) = (front.index, front.path.clone());
            let active_len = self.active.as_ref().filter(|a| a.0 == index).map(|a| a.2);
            let stale = match &self.cache {
                Some((i, bytes)) => {
                    *i != index || active_len.is_some_and(|l| l > bytes.len() as u64)
                }
                None => true,
            };
            if stale {
                self.cache = Some((index, std::fs::read(&path)?));
            }
            let bytes = match &self.cache {
                Some((_, b)) => b,
                None => return Err(io::Error::other("spool cache missing")),
            };
            let start = usize::try_from(self.offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let mut dec = Decoder::new(&bytes[start..]);
            let mut rows = Vec::new();
            while rows.len() < max {
                match dec.next() {
                    Some(Item::Record { offset, payload }) => rows.push((
                        format!("{}@{}", path.display(), start as u64 + offset),
                        payload.to_vec(),
                    )),
                    // Damage was reported when the file was scanned (old
                    // files) or cannot occur (appends are cut back).
                    Some(Item::Damaged(_)) => {}
                    None => break,
                }
            }
            let end = start as u64 + dec.position();
            if rows.is_empty() && active_len.is_none() {
                // This old file is done: drop it and look at the next.
                let _ = std::fs::remove_file(&path);
                self.files.pop_front();
                self.offset = 0;
                self.cache = None;
                continue;
            }
            return Ok(Batch { rows, end, index });
        }
    }

    /// Marks a batch from [`Spool::peek`] as written to the database.
    pub fn consume(&mut self, batch: &Batch) {
        let Some(front) = self.files.front_mut() else {
            return;
        };
        if front.index != batch.index {
            return;
        }
        front.pending = front.pending.saturating_sub(batch.rows.len() as u64);
        self.offset = batch.end;
        if front.pending == 0 {
            // Everything of this file is in the database.
            let path = front.path.clone();
            if self.active.as_ref().is_some_and(|a| a.0 == front.index) {
                self.active = None;
            }
            let _ = std::fs::remove_file(&path);
            self.files.pop_front();
            self.offset = 0;
            self.cache = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, tag: &str) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("{tag}{i}").into_bytes()).collect()
    }

    fn spool_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| parse_index(&e.as_ref().unwrap().file_name().to_string_lossy()).is_some())
            .count()
    }

    #[test]
    fn one_process_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _a = Spool::open(dir.path()).unwrap();
        let e = Spool::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
    }

    fn drain(s: &mut Spool, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let b = s.peek(max).unwrap();
            if b.rows.is_empty() {
                break;
            }
            out.extend(
                b.rows
                    .iter()
                    .map(|(_, p)| String::from_utf8(p.clone()).unwrap()),
            );
            s.consume(&b);
        }
        out
    }

    #[test]
    fn appends_replay_in_order_and_files_go_away() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        s.append(&rows(3, "a")).unwrap();
        s.append(&rows(2, "b")).unwrap();
        assert_eq!(s.pending(), 5);
        let b = s.peek(4).unwrap();
        assert_eq!(b.rows.len(), 4);
        s.consume(&b);
        s.append(&rows(1, "c")).unwrap();
        assert_eq!(s.pending(), 2);
        assert_eq!(drain(&mut s, 10), vec!["b1", "c0"]);
        assert_eq!(s.pending(), 0);
        assert_eq!(spool_files(dir.path()), 0);
    }

    #[test]
    fn a_new_process_finds_the_rows_and_appends_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path()).unwrap();
            s.append(&rows(3, "old")).unwrap();
        }
        let mut s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.pending(), 3);
        s.append(&rows(2, "new")).unwrap();
        assert_eq!(spool_files(dir.path()), 2);
        assert_eq!(
            drain(&mut s, 2),
            vec!["old0", "old1", "old2", "new0", "new1"]
        );
    }

    #[test]
    fn a_torn_tail_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path()).unwrap();
            s.append(&rows(2, "ok")).unwrap();
        }
        let path = dir.path().join(file_name(1));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let mut torn = Vec::new();
        frame::encode(b"never finished", &mut torn).unwrap();
        f.write_all(&torn[..torn.len() - 3]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.pending(), 2);
        assert_eq!(drain(&mut s, 10), vec!["ok0", "ok1"]);
    }
}

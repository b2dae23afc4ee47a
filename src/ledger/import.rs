//! CSV import of accounts (`ivr12333 ledger import FILE.csv`).
//!
//! Format (header row with named columns, any order, extra columns ignored):
//! required `id_number,name,pin,pension_balance,pension_months,
//! pension_last_paid,medical_balance,data_as_of`; optional
//! `unemployment_status,unemployment_last_paid,work_injury_status,
//! work_injury_last_paid,maternity_status,maternity_last_paid`. Balances are
//! decimal yuan with at most two decimals (empty: no record for that
//! insurance), months `YYYY-MM`, statuses `active|suspended|none`. An empty
//! `pin` imports the account without a PIN (it cannot authenticate until
//! `ledger set-pin`) and keeps any PIN already set.
//!
//! Negative balances are refused unless the optional `allow_negative`
//! column says the account may be negative (`true`, `yes` or `1`; anything
//! else but empty is a bad row): a minus sign is far more often a typo or
//! an export bug than a real overdrawn personal account. The column only
//! authorises the row; it is not stored.
//!
//! Hostile files are bounded: a field longer than [`MAX_FIELD`] bytes is a
//! bad row, and a record (a line, or several when a quoted field holds line
//! breaks) longer than [`MAX_RECORD`] bytes stops the import with an error
//! naming the line. The limit is enforced by a byte-counting reader under
//! the CSV parser ([`CappedRead`]), so a 10 MB line is never buffered whole.
//!
//! Two streaming passes over the file: the first validates every row (line
//! number + reason, the ID only masked, never the PIN), the second hashes
//! PINs in parallel on all cores (`std::thread::scope`) and upserts batches
//! of [`BATCH`] rows, one transaction each. All-or-nothing by default: with
//! any bad row nothing is written. `skip_bad` imports the good rows and
//! reports the rest. Upserts only touch rows whose content differs, so
//! re-importing a file changes nothing (PIN hashes use a salt derived from
//! pepper, ID and PIN: see [`super::pin::PinHasher::hash_for_import`]).

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use sqlx::QueryBuilder;

use super::{Ledger, LedgerError, status_str};
use crate::domain::{Fen, IdNumber, InsuranceStatus, YearMonth};

/// Longest field accepted, in bytes (names are the longest real fields).
pub const MAX_FIELD: usize = 256;
/// Longest record accepted, in bytes (a real row is about 150).
pub const MAX_RECORD: usize = 4096;

/// Rows per transaction.
pub const BATCH: usize = 5_000;
/// Rows per multi-row INSERT statement (well under both parameter limits).
const CHUNK: usize = 500;

/// Import settings.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Import the good rows and skip the bad ones (otherwise all-or-nothing).
    pub skip_bad: bool,
    /// Show an `indicatif` progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Hashing threads (0: all cores).
    pub threads: usize,
}

/// One rejected row: line number (1 = header) and reason. The ID only
/// masked; the PIN never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub id_masked: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Data rows read (excluding the header).
    pub rows: u64,
    /// Rows that passed validation.
    pub valid: u64,
    /// Person rows inserted or changed.
    pub persons_written: u64,
    /// Account rows inserted or changed.
    pub accounts_written: u64,
    pub rejected: Vec<RejectedRow>,
    /// False when bad rows stopped an all-or-nothing import (nothing written).
    pub committed: bool,
}

/// A validated row, ready to write.
#[derive(Clone)]
pub(crate) struct ImportRow {
    pub id: String,
    pub name: String,
    pub pin: Option<String>,
    pub data_as_of: YearMonth,
    pub pension: Option<(Fen, i64, Option<YearMonth>)>,
    pub medical: Option<Fen>,
    pub others: [(InsuranceStatus, Option<YearMonth>); 3],
}

/// A row with its PIN hashed (the PIN itself dropped).
pub(crate) struct Prepared {
    row: ImportRow,
    pin_hash: Option<String>,
}

const REQUIRED: [&str; 8] = [
    "id_number",
    "name",
    "pin",
    "pension_balance",
    "pension_months",
    "pension_last_paid",
    "medical_balance",
    "data_as_of",
];

/// Column name → index.
struct Columns(HashMap<String, usize>);

impl Columns {
    fn from_header(h: &csv::StringRecord) -> Result<Columns, LedgerError> {
        let map: HashMap<String, usize> = h
            .iter()
            .enumerate()
            .map(|(i, n)| (n.trim().trim_start_matches('\u{feff}').to_owned(), i))
            .collect();
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| !map.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            return Err(LedgerError::Invalid(format!(
                "line 1: missing column(s): {}",
                missing.join(", ")
            )));
        }
        Ok(Columns(map))
    }

    /// The field, trimmed; `Err` if the row is too short for a column the
    /// header has.
    fn get<'r>(&self, rec: &'r csv::StringRecord, name: &str) -> Result<&'r str, String> {
        match self.0.get(name) {
            None => Ok(""),
            Some(&i) => rec
                .get(i)
                .map(str::trim)
                .ok_or_else(|| format!("missing field {name}")),
        }
    }
}

/// `110105********002X` for an 18-character field, stars otherwise: a bad
/// row's ID is never echoed in clear.
pub fn mask_raw_id(s: &str) -> String {
    let s = s.trim();
    if s.len() == 18 && s.is_ascii() {
        format!("{}********{}", &s[..6], &s[14..])
    } else {
        "*".repeat(s.chars().count().min(18))
    }
}

fn parse_month(rec_val: &str, col: &str, required: bool) -> Result<Option<YearMonth>, String> {
    if rec_val.is_empty() {
        return if required {
            Err(format!("missing field {col}"))
        } else {
            Ok(None)
        };
    }
    YearMonth::parse(rec_val)
        .map(Some)
        .ok_or_else(|| format!("bad month in {col} (want YYYY-MM)"))
}

fn parse_amount(v: &str, col: &str) -> Result<Option<Fen>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    Fen::parse_yuan(v)
        .map(Some)
        .map_err(|e| format!("bad amount in {col}: {e}"))
}

fn parse_status(v: &str, col: &str) -> Result<InsuranceStatus, String> {
    match v {
        "" | "none" => Ok(InsuranceStatus::None),
        "active" => Ok(InsuranceStatus::Active),
        "suspended" => Ok(InsuranceStatus::Suspended),
        _ => Err(format!("bad status in {col} (want active|suspended|none)")),
    }
}

/// Validates one record. The error says why, never what the value was.
fn validate(
    cols: &Columns,
    rec: &csv::StringRecord,
    today: (u32, u32, u32),
    pin_len: (usize, usize),
) -> Result<ImportRow, String> {
    if let Some(i) = rec.iter().position(|f| f.len() > MAX_FIELD) {
        let name = cols
            .0
            .iter()
            .find(|(_, c)| **c == i)
            .map_or_else(|| format!("column {}", i + 1), |(n, _)| n.clone());
        return Err(format!("field {name} longer than {MAX_FIELD} bytes"));
    }
    let id_raw = cols.get(rec, "id_number")?;
    if id_raw.is_empty() {
        return Err("missing field id_number".into());
    }
    let id = IdNumber::parse(id_raw, today).map_err(|e| format!("bad ID number: {e}"))?;
    let name = cols.get(rec, "name")?;
    if name.is_empty() {
        return Err("missing field name".into());
    }
    let pin_raw = cols.get(rec, "pin")?;
    let pin = if pin_raw.is_empty() {
        None
    } else if pin_raw.len() < pin_len.0
        || pin_raw.len() > pin_len.1
        || !pin_raw.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "bad PIN: must be {}–{} digits",
            pin_len.0, pin_len.1
        ));
    } else {
        Some(pin_raw.to_owned())
    };
    let data_as_of = parse_month(cols.get(rec, "data_as_of")?, "data_as_of", true)?
        .ok_or_else(|| "missing field data_as_of".to_string())?;
    let pension_balance = parse_amount(cols.get(rec, "pension_balance")?, "pension_balance")?;
    let months_raw = cols.get(rec, "pension_months")?;
    let months: i64 = if months_raw.is_empty() {
        0
    } else {
        months_raw
            .parse::<u32>()
            .ok()
            .filter(|m| *m <= 1200)
            .map(i64::from)
            .ok_or_else(|| "bad pension_months (want 0–1200)".to_string())?
    };
    let pension_last = parse_month(
        cols.get(rec, "pension_last_paid")?,
        "pension_last_paid",
        false,
    )?;
    let medical = parse_amount(cols.get(rec, "medical_balance")?, "medical_balance")?;
    let allow_negative = match cols
        .get(rec, "allow_negative")?
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "false" | "no" | "0" => false,
        "true" | "yes" | "1" => true,
        _ => return Err("bad allow_negative (want true|false)".into()),
    };
    for (col, amount) in [
        ("pension_balance", pension_balance),
        ("medical_balance", medical),
    ] {
        if amount.is_some_and(|f| f.0 < 0) && !allow_negative {
            return Err(format!(
                "negative amount in {col} (set allow_negative=true if this account may be negative)"
            ));
        }
    }
    let mut others = [(InsuranceStatus::None, None); 3];
    for (slot, ins) in others
        .iter_mut()
        .zip(["unemployment", "work_injury", "maternity"])
    {
        let sc = format!("{ins}_status");
        let lc = format!("{ins}_last_paid");
        *slot = (
            parse_status(cols.get(rec, &sc)?, &sc)?,
            parse_month(cols.get(rec, &lc)?, &lc, false)?,
        );
    }
    Ok(ImportRow {
        id: id.expose().to_owned(),
        name: name.to_owned(),
        pin,
        data_as_of,
        pension: pension_balance.map(|b| (b, months, pension_last)),
        medical,
        others,
    })
}

/// A record longer than [`MAX_RECORD`] bytes, starting on `line`.
#[derive(Debug)]
struct RecordTooLong {
    line: u64,
}

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: record longer than {MAX_RECORD} bytes",
            self.line
        )
    }
}

impl std::error::Error for RecordTooLong {}

/// Counts the bytes of each CSV record as they are read and fails with
/// [`RecordTooLong`] once one passes [`MAX_RECORD`], before the CSV parser
/// can buffer it. Records end at a line break outside double quotes
/// (RFC 4180: `""` inside quotes toggles twice, so parity tracking works).
pub struct CappedRead<R> {
    inner: R,
    line: u64,
    record_start: u64,
    record_len: usize,
    in_quotes: bool,
}

impl<R> CappedRead<R> {
    pub fn new(inner: R) -> CappedRead<R> {
        CappedRead {
            inner,
            line: 1,
            record_start: 1,
            record_len: 0,
            in_quotes: false,
        }
    }
}

impl<R: std::io::Read> std::io::Read for CappedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' => {
                    self.line += 1;
                    if !self.in_quotes {
                        self.record_len = 0;
                        self.record_start = self.line;
                        continue;
                    }
                }
                _ => {}
            }
            self.record_len += 1;
            if self.record_len > MAX_RECORD {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    RecordTooLong {
                        line: self.record_start,
                    },
                ));
            }
        }
        Ok(n)
    }
}

type CsvReader = csv::Reader<CappedRead<std::fs::File>>;

fn open_reader(path: &Path) -> Result<CsvReader, LedgerError> {
    let file = std::fs::File::open(path)
        .map_err(|e| LedgerError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(CappedRead::new(file)))
}

/// The [`RecordTooLong`] inside a CSV error, as a fatal import error.
fn too_long(path: &Path, e: &csv::Error) -> Option<LedgerError> {
    match e.kind() {
        csv::ErrorKind::Io(io) => io
            .get_ref()
            .and_then(|x| x.downcast_ref::<RecordTooLong>())
            .map(|t| LedgerError::Invalid(format!("{}: {t}", path.display()))),
        _ => None,
    }
}

fn read_header(path: &Path, rdr: &mut CsvReader) -> Result<csv::StringRecord, LedgerError> {
    rdr.headers().cloned().map_err(|e| {
        too_long(path, &e)
            .unwrap_or_else(|| LedgerError::Invalid(format!("line 1: bad header: {e}")))
    })
}

fn record_line(rec: &csv::StringRecord, fallback: u64) -> u64 {
    rec.position().map(|p| p.line()).unwrap_or(fallback)
}

/// Pass 1: validate every row. Returns the rejects and the row count.
fn validate_file(
    path: &Path,
    today: (u32, u32, u32),
    pin_len: (usize, usize),
) -> Result<(u64, Vec<RejectedRow>), LedgerError> {
    let mut rdr = open_reader(path)?;
    let header = read_header(path, &mut rdr)?;
    let cols = Columns::from_header(&header)?;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut rejects = Vec::new();
    let mut rows = 0u64;
    let mut rec = csv::StringRecord::new();
    loop {
        let line_guess = rows + 2;
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // A record over the cap: the reader cannot resync; stop.
                if let Some(fatal) = too_long(path, &e) {
                    return Err(fatal);
                }
                // Invalid UTF-8 or similar: report the line, keep going.
                let line = e.position().map(|p| p.line()).unwrap_or(line_guess);
                rows += 1;
                rejects.push(RejectedRow {
                    line,
                    id_masked: String::new(),
                    reason: "unreadable row (not UTF-8 CSV)".into(),
                });
                continue;
            }
        }
        rows += 1;
        let line = record_line(&rec, line_guess);
        let id_raw = cols.get(&rec, "id_number").unwrap_or("");
        match validate(&cols, &rec, today, pin_len) {
            Ok(row) => {
                if let Some(first) = seen.get(&row.id) {
                    rejects.push(RejectedRow {
                        line,
                        id_masked: mask_raw_id(id_raw),
                        reason: format!("duplicate ID number (first on line {first})"),
                    });
                } else {
                    seen.insert(row.id, line);
                }
            }
            Err(reason) => rejects.push(RejectedRow {
                line,
                id_masked: mask_raw_id(id_raw),
                reason,
            }),
        }
    }
    Ok((rows, rejects))
}

/// Hashes a batch's PINs on `threads` threads.
pub(crate) fn hash_batch(
    hasher: &super::pin::PinHasher,
    rows: Vec<ImportRow>,
    threads: usize,
) -> Result<Vec<Prepared>, LedgerError> {
    let threads = threads.max(1);
    let chunk = rows.len().div_ceil(threads).max(1);
    let mut out: Vec<Prepared> = Vec::with_capacity(rows.len());
    let mut failed = false;
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| Prepared {
                            pin_hash: r.pin.as_deref().map(|p| hasher.hash_for_import(&r.id, p)),
                            row: ImportRow {
                                pin: None,
                                ..r.clone()
                            },
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(_) => failed = true,
            }
        }
    });
    if failed {
        return Err(LedgerError::Invalid("a PIN hashing thread failed".into()));
    }
    Ok(out)
}

fn ym_s(y: Option<YearMonth>) -> Option<String> {
    y.map(|m| m.to_string())
}

const PERSON_UPSERT_TAIL: &str = " ON CONFLICT (id_number) DO UPDATE SET \
     name = excluded.name, pin_hash = COALESCE(excluded.pin_hash, person.pin_hash) \
     WHERE person.name IS DISTINCT FROM excluded.name \
        OR (excluded.pin_hash IS NOT NULL AND person.pin_hash IS DISTINCT FROM excluded.pin_hash)";

const ACCOUNT_UPSERT_TAIL: &str = " ON CONFLICT (id_number) DO UPDATE SET \
     data_as_of = excluded.data_as_of, pension_balance_fen = excluded.pension_balance_fen, \
     pension_months = excluded.pension_months, pension_last_paid = excluded.pension_last_paid, \
     medical_balance_fen = excluded.medical_balance_fen, \
     unemployment_status = excluded.unemployment_status, \
     unemployment_last_paid = excluded.unemployment_last_paid, \
     work_injury_status = excluded.work_injury_status, \
     work_injury_last_paid = excluded.work_injury_last_paid, \
     maternity_status = excluded.maternity_status, maternity_last_paid = excluded.maternity_last_paid \
     WHERE account.data_as_of IS DISTINCT FROM excluded.data_as_of \
        OR account.pension_balance_fen IS DISTINCT FROM excluded.pension_balance_fen \
        OR account.pension_months IS DISTINCT FROM excluded.pension_months \
        OR account.pension_last_paid IS DISTINCT FROM excluded.pension_last_paid \
        OR account.medical_balance_fen IS DISTINCT FROM excluded.medical_balance_fen \
        OR account.unemployment_status IS DISTINCT FROM excluded.unemployment_status \
        OR account.unemployment_last_paid IS DISTINCT FROM excluded.unemployment_last_paid \
        OR account.work_injury_status IS DISTINCT FROM excluded.work_injury_status \
        OR account.work_injury_last_paid IS DISTINCT FROM excluded.work_injury_last_paid \
        OR account.maternity_status IS DISTINCT FROM excluded.maternity_status \
        OR account.maternity_last_paid IS DISTINCT FROM excluded.maternity_last_paid";

/// Writes one batch in one transaction; returns (persons, accounts)
/// inserted or changed.
macro_rules! write_batch_body {
    ($pool:expr, $db:ty, $rows:expr) => {{
        let mut tx = $pool.begin().await?;
        let (mut persons, mut accounts) = (0u64, 0u64);
        for chunk in $rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<$db>::new("INSERT INTO person (id_number, name, pin_hash) ");
            q.push_values(chunk, |mut b, p: &Prepared| {
                b.push_bind(p.row.id.clone())
                    .push_bind(p.row.name.clone())
                    .push_bind(p.pin_hash.clone());
            });
            q.push(PERSON_UPSERT_TAIL);
            persons += q.build().execute(&mut *tx).await?.rows_affected();

            let mut q = QueryBuilder::<$db>::new(
                "INSERT INTO account (id_number, data_as_of, pension_balance_fen, pension_months, \
                 pension_last_paid, medical_balance_fen, unemployment_status, unemployment_last_paid, \
                 work_injury_status, work_injury_last_paid, maternity_status, maternity_last_paid) ",
            );
            q.push_values(chunk, |mut b, p: &Prepared| {
                let r = &p.row;
                b.push_bind(r.id.clone())
                    .push_bind(r.data_as_of.to_string())
                    .push_bind(r.pension.map(|x| x.0.0))
                    .push_bind(r.pension.map(|x| x.1))
                    .push_bind(r.pension.and_then(|x| ym_s(x.2)))
                    .push_bind(r.medical.map(|f| f.0))
                    .push_bind(status_str(r.others[0].0))
                    .push_bind(ym_s(r.others[0].1))
                    .push_bind(status_str(r.others[1].0))
                    .push_bind(ym_s(r.others[1].1))
                    .push_bind(status_str(r.others[2].0))
                    .push_bind(ym_s(r.others[2].1));
            });
            q.push(ACCOUNT_UPSERT_TAIL);
            accounts += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>((persons, accounts))
    }};
}

pub(crate) async fn write_batch(l: &Ledger, rows: &[Prepared]) -> Result<(u64, u64), LedgerError> {
    // A whole batch gets more time than a single call-path query.
    let limit = l
        .config()
        .query_timeout
        .max(std::time::Duration::from_secs(60));
    let fut = async {
        match l.db() {
            super::db::Db::Sqlite(p) => write_batch_body!(p, sqlx::Sqlite, rows),
            super::db::Db::Postgres(p) => write_batch_body!(p, sqlx::Postgres, rows),
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(LedgerError::from),
        Err(_) => Err(LedgerError::Unavailable("import batch timed out".into())),
    }
}

/// Pass 2 producer: reads, validates, skips bad lines, hashes, and sends
/// batches to the writer.
fn produce(
    path: PathBuf,
    bad_lines: HashSet<u64>,
    today: (u32, u32, u32),
    pin_len: (usize, usize),
    hasher: super::pin::PinHasher,
    threads: usize,
    tx: tokio::sync::mpsc::Sender<Vec<Prepared>>,
) -> Result<(), LedgerError> {
    let mut rdr = open_reader(&path)?;
    let header = read_header(&path, &mut rdr)?;
    let cols = Columns::from_header(&header)?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut rec = csv::StringRecord::new();
    let mut n = 0u64;
    loop {
        let line_guess = n + 2;
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let Some(fatal) = too_long(&path, &e) {
                    return Err(fatal);
                }
                n += 1;
                continue; // reported in pass 1
            }
        }
        n += 1;
        if bad_lines.contains(&record_line(&rec, line_guess)) {
            continue;
        }
        // The file may have changed between the passes: re-validate.
        let Ok(row) = validate(&cols, &rec, today, pin_len) else {
            return Err(LedgerError::Invalid(
                "file changed during import (a row valid in pass 1 is now invalid)".into(),
            ));
        };
        batch.push(row);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx
                .blocking_send(hash_batch(&hasher, full, threads)?)
                .is_err()
            {
                return Ok(()); // writer gave up; its error wins
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(hash_batch(&hasher, batch, threads)?);
    }
    Ok(())
}

impl Ledger {
    /// Imports accounts from a CSV file (see the module docs).
    pub async fn import_csv(
        &self,
        path: &Path,
        opts: &ImportOptions,
    ) -> Result<ImportReport, LedgerError> {
        let today = crate::domain::today_utc();
        let pin_len = (self.config().pin_min_len, self.config().pin_max_len);
        let p1 = path.to_owned();
        let (rows, rejected) =
            tokio::task::spawn_blocking(move || validate_file(&p1, today, pin_len))
                .await
                .map_err(|e| LedgerError::Invalid(format!("import task failed: {e}")))??;
        let mut report = ImportReport {
            rows,
            valid: rows - rejected.len() as u64,
            rejected,
            ..ImportReport::default()
        };
        if !report.rejected.is_empty() && !opts.skip_bad {
            return Ok(report);
        }
        let bad: HashSet<u64> = report.rejected.iter().map(|r| r.line).collect();
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(report.valid);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} rows {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Prepared>>(2);
        let hasher = self.hasher().clone();
        let p2 = path.to_owned();
        let producer = tokio::task::spawn_blocking(move || {
            produce(p2, bad, today, pin_len, hasher, threads, tx)
        });
        let mut write_err = None;
        while let Some(batch) = rx.recv().await {
            match write_batch(self, &batch).await {
                Ok((p, a)) => {
                    report.persons_written += p;
                    report.accounts_written += a;
                    if let Some(b) = &bar {
                        b.inc(batch.len() as u64);
                    }
                }
                Err(e) => {
                    write_err = Some(e);
                    break;
                }
            }
        }
        drop(rx);
        let produced = producer
            .await
            .map_err(|e| LedgerError::Invalid(format!("import task failed: {e}")))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Some(e) = write_err {
            return Err(e);
        }
        produced?;
        report.committed = true;
        Ok(report)
    }
}

/// Writes the rejects as CSV `line,id_masked,reason`.
pub fn write_rejects(path: &Path, rejects: &[RejectedRow]) -> Result<(), LedgerError> {
    let mut w = csv::Writer::from_path(path)
        .map_err(|e| LedgerError::Invalid(format!("cannot write {}: {e}", path.display())))?;
    let io = |e: csv::Error| LedgerError::Invalid(format!("cannot write rejects: {e}"));
    w.write_record(["line", "id_masked", "reason"])
        .map_err(io)?;
    for r in rejects {
        w.write_record([r.line.to_string().as_str(), &r.id_masked, &r.reason])
            .map_err(io)?;
    }
    w.flush()
        .map_err(|e| LedgerError::Invalid(format!("cannot write rejects: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_ids_without_echoing() {
        assert_eq!(mask_raw_id("110105194912310021"), "110105********0021");
        assert_eq!(mask_raw_id("12345"), "*****");
        assert_eq!(mask_raw_id("身份证"), "***");
    }

    fn read_all(data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut CappedRead::new(data), &mut out)?;
        Ok(out)
    }

    #[test]
    fn capped_reader_counts_records_not_bytes() {
        let line = format!("{}\n", "x".repeat(MAX_RECORD));
        // Many lines at the cap: fine.
        assert!(read_all(line.repeat(50).as_bytes()).is_ok());
        // One byte over, on line 3.
        let over = format!("a\nb\n{}y\nc\n", "x".repeat(MAX_RECORD));
        let e = read_all(over.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("line 3: record longer than {MAX_RECORD} bytes")
        );
        // A quoted field with line breaks is one record, named by its first line.
        let quoted = format!("h\n\"{}\"\n", "x\n".repeat(MAX_RECORD));
        let e = read_all(quoted.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        // Escaped quotes keep the parity right.
        let esc = format!("\"a\"\"b\"\n{}", line.repeat(3));
        assert!(read_all(esc.as_bytes()).is_ok());
    }
}

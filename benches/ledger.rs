//! Ledger figures: PIN verification cost, CSV import rate (with and without
//! argon2), lookup and authentication latency at 1M rows, and how many
//! verifications per second `hash_concurrency = 1` affords.
//!
//! `cargo bench --bench ledger` (release). Environment knobs:
//! `LEDGER_BENCH_ROWS` (default 1000000), `LEDGER_BENCH_HASHED_ROWS`
//! (default 10000), `LEDGER_BENCH_PG` (`0` skips PostgreSQL; the server
//! URL comes from `IVR_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Prints plain figures;
//! asserts nothing about time.

use std::io::Write;
use std::time::{Duration, Instant};

use ivr12333::domain::{IdNumber, Pin, civil_from_days, id_check_char};
use ivr12333::ledger::pin::PinHasher;
use ivr12333::ledger::{AuditContext, ImportOptions, Ledger, LedgerConfig};
use sqlx::Connection;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The i-th generated ID: valid birth date and check digit, unique for
/// i < 20·10⁹. `offset` separates the hashed-import set.
fn gen_id(i: usize, offset: usize) -> String {
    let i = i + offset;
    let day = (i % 20_000) as i64 - 7_305; // from 1950-01-01
    let (y, m, d) = civil_from_days(day);
    let seq = (i / 20_000) % 1000;
    let region = 110_101 + i / 20_000_000;
    let first17 = format!("{region:06}{y:04}{m:02}{d:02}{seq:03}");
    let c = id_check_char(first17.as_bytes()).unwrap_or(b'0') as char;
    format!("{first17}{c}")
}

fn write_csv(path: &std::path::Path, n: usize, offset: usize, with_pins: bool) {
    let f = std::fs::File::create(path).expect("create csv");
    let mut w = std::io::BufWriter::new(f);
    writeln!(
        w,
        "id_number,name,pin,pension_balance,pension_months,pension_last_paid,medical_balance,data_as_of,unemployment_status,unemployment_last_paid"
    )
    .unwrap();
    for i in 0..n {
        let pin = if with_pins {
            format!("{:06}", (i * 7919) % 1_000_000)
        } else {
            String::new()
        };
        writeln!(
            w,
            "{},测试{i},{pin},{}.{:02},{},2026-09,{}.{:02},2026-10,active,2026-09",
            gen_id(i, offset),
            i % 200_000,
            i % 100,
            i % 480,
            i % 9_000,
            (i * 7) % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(idx).copied().unwrap_or_default()
}

fn fmt_d(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn pin_cost() {
    let h = PinHasher::new(b"bench-pepper-0123456789abcdef");
    let stored = h.hash_random("123456");
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::hint::black_box(h.verify("123457", &stored));
        v.push(t.elapsed());
    }
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "PIN verify (argon2id m={} KiB t={} p={}), one thread: mean {} p50 {} p99 {} => {:.0} verifications/s per core",
        ivr12333::ledger::pin::M_COST_KIB,
        ivr12333::ledger::pin::T_COST,
        ivr12333::ledger::pin::P_COST,
        fmt_d(mean),
        fmt_d(pct(&mut v, 0.5)),
        fmt_d(pct(&mut v, 0.99)),
        1.0 / mean.as_secs_f64()
    );
}

async fn bench_backend(name: &str, url: &str, dir: &std::path::Path, rows: usize, hashed: usize) {
    println!("--- {name} ---");
    let cfg = LedgerConfig::with_pepper(b"bench-pepper-0123456789abcdef".to_vec());
    let l = Ledger::open(url, cfg.clone()).await.expect("open");
    let plain = dir.join("plain.csv");
    if !plain.exists() {
        write_csv(&plain, rows, 0, false);
    }
    let t = Instant::now();
    let r = l
        .import_csv(&plain, &ImportOptions::default())
        .await
        .expect("import");
    let e = t.elapsed();
    println!(
        "import {} rows without PINs: {:.1} s = {:.0} rows/s (committed {}, {} rejected)",
        r.rows,
        e.as_secs_f64(),
        r.rows as f64 / e.as_secs_f64(),
        r.committed,
        r.rejected.len()
    );
    let t = Instant::now();
    let r2 = l
        .import_csv(&plain, &ImportOptions::default())
        .await
        .expect("re-import");
    println!(
        "re-import of the same file (idempotent, {} rows changed): {:.1} s",
        r2.persons_written + r2.accounts_written,
        t.elapsed().as_secs_f64()
    );
    let hashed_csv = dir.join("hashed.csv");
    if !hashed_csv.exists() {
        write_csv(&hashed_csv, hashed, 50_000_000, true);
    }
    let t = Instant::now();
    let r = l
        .import_csv(&hashed_csv, &ImportOptions::default())
        .await
        .expect("import hashed");
    let e = t.elapsed();
    let rate = r.rows as f64 / e.as_secs_f64();
    println!(
        "import {} rows with PINs (argon2 on all cores): {:.1} s = {:.0} rows/s => 1M rows would take ≈ {:.0} s",
        r.rows,
        e.as_secs_f64(),
        rate,
        1e6 / rate
    );
    l.seed_demo().await.expect("seed");

    // Lookups at full size: the two reads authenticate does.
    let mut v = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let today = (2026, 11, 27);
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = IdNumber::parse(&gen_id((seed % rows as u64) as usize, 0), today).expect("id");
        let t = Instant::now();
        let found = l.bench_lookup(&id).await.expect("lookup");
        v.push(t.elapsed());
        assert!(found);
    }
    println!(
        "lookup (lock state + account row) at {} rows, 10000 random IDs: p50 {} p99 {}",
        rows,
        fmt_d(pct(&mut v, 0.5)),
        fmt_d(pct(&mut v, 0.99))
    );

    // Whole authenticate (lookup + argon2 + counter reset + audit append).
    let who = IdNumber::parse("310104198507151239", today).unwrap();
    let pin = Pin::new("123456").unwrap();
    let ctx = AuditContext {
        call_id: "bench".into(),
        caller: "13800000000".into(),
    };
    let mut v = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let _ = l.authenticate(&who, &pin, &ctx).await.expect("auth");
        v.push(t.elapsed());
    }
    println!(
        "authenticate (correct PIN, sequential): p50 {} p99 {}",
        fmt_d(pct(&mut v, 0.5)),
        fmt_d(pct(&mut v, 0.99))
    );

    // Throughput with hash_concurrency = 1: 400 concurrent attempts on
    // unknown IDs (dummy verification, no lockout involved).
    let l1 = Ledger::open(
        url,
        LedgerConfig {
            hash_concurrency: 1,
            ..cfg
        },
    )
    .await
    .expect("open");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let l1 = l1.clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let id = IdNumber::parse(&gen_id(i, 90_000_000), (2026, 11, 27)).expect("id");
            let t = Instant::now();
            let _ = l1
                .authenticate(&id, &Pin::new("999999").unwrap(), &ctx)
                .await;
            t.elapsed()
        }));
    }
    let mut v = Vec::new();
    for x in tasks {
        v.push(x.await.expect("task"));
    }
    let e = t.elapsed();
    println!(
        "hash_concurrency=1, 400 concurrent authentications: {:.0}/s; latency under that burst p50 {} p99 {}",
        400.0 / e.as_secs_f64(),
        fmt_d(pct(&mut v, 0.5)),
        fmt_d(pct(&mut v, 0.99))
    );
    l1.close().await;
    l.close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let rows = env_usize("LEDGER_BENCH_ROWS", 1_000_000);
    let hashed = env_usize("LEDGER_BENCH_HASHED_ROWS", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    pin_cost();
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
        bench_backend("SQLite (file, WAL)", &sqlite_url, dir.path(), rows, hashed).await;
        if std::env::var("LEDGER_BENCH_PG").as_deref() != Ok("0") {
            let base = std::env::var("IVR_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("ivr_bench_{:08x}", rand::random::<u32>());
            let Ok(mut c) = sqlx::PgConnection::connect(&base).await else {
                println!("PostgreSQL not reachable; skipped");
                return;
            };
            let create = format!("CREATE DATABASE {name}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&mut c)
                .await
                .expect("create db");
            let url = match base.rsplit_once('/') {
                Some((h, _)) => format!("{h}/{name}"),
                None => base.clone(),
            };
            bench_backend("PostgreSQL 15 (loopback)", &url, dir.path(), rows, hashed).await;
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut c).await;
        }
    });
}

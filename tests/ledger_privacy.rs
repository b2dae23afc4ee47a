//! Privacy (docs/domain.md#privacy-and-audit): with tracing captured at TRACE
//! level (ours and sqlx's), authentication, lockout, import and outage paths
//! write no PIN and no clear ID to logs, error messages or `Debug` output.

#[macro_use]
mod ledger_support;

use std::sync::{Arc, Mutex, OnceLock};

use ivr12333::domain::Pin;
use ivr12333::ledger::{ImportOptions, LedgerConfig};
use ledger_support::{NORMAL, RETIREE, TestDb, UNKNOWN, ctx, id};

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global TRACE subscriber writing into a buffer.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Capture(buf.clone());
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        buf
    })
    .clone()
}

/// Whether `needle` occurs not embedded in a longer digit run (sqlx logs
/// timings such as `elapsed_secs=0.000123456`, which are not leaks).
fn has_token(hay: &str, needle: &str) -> bool {
    let h = hay.as_bytes();
    hay.match_indices(needle).any(|(i, _)| {
        let before = i.checked_sub(1).and_then(|j| h.get(j));
        let after = h.get(i + needle.len());
        !before.is_some_and(u8::is_ascii_digit) && !after.is_some_and(u8::is_ascii_digit)
    })
}

const SECRETS: [&str; 8] = [
    NORMAL.0,
    NORMAL.1,
    RETIREE.0,
    RETIREE.1,
    UNKNOWN,
    "000111",
    "135792",
    "11010119800101003",
];

async fn nothing_secret_reaches_logs(db: TestDb) {
    let buf = captured();
    tracing::info!("privacy test start");
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    let mut texts = Vec::new();
    let who = id(NORMAL.0);
    texts.push(format!(
        "{:?}",
        l.authenticate(&who, &Pin::new(NORMAL.1).unwrap(), &ctx("p1"))
            .await
            .unwrap()
    ));
    for _ in 0..6 {
        texts.push(format!(
            "{:?}",
            l.authenticate(&id(RETIREE.0), &Pin::new("000111").unwrap(), &ctx("p2"))
                .await
                .unwrap()
        ));
    }
    texts.push(format!(
        "{:?}",
        l.authenticate(&id(UNKNOWN), &Pin::new("135792").unwrap(), &ctx("p3"))
            .await
            .unwrap()
    ));
    texts.push(format!("{who:?} {who} {:?}", Pin::new(NORMAL.1).unwrap()));
    texts.push(format!(
        "{:?}",
        LedgerConfig::with_pepper(b"secret-pepper".to_vec())
    ));
    texts.push(format!("{l:?} {:?}", ctx("p5")));
    assert!(!texts.last().unwrap().contains("13812345678"));
    // A bad import row: the report carries only masked IDs.
    let bad = db.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "id_number,name,pin,pension_balance,pension_months,pension_last_paid,medical_balance,data_as_of\n\
         11010119800101003X,x,135792,abc,1,2026-09,1.00,2026-10\n",
    )
    .unwrap();
    let r = l.import_csv(&bad, &ImportOptions::default()).await.unwrap();
    texts.push(format!("{r:?}"));
    l.close().await;
    // Outage errors.
    let e = l
        .authenticate(&who, &Pin::new(NORMAL.1).unwrap(), &ctx("p4"))
        .await
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));
    let e = l.unlock(&who).await.unwrap_err();
    texts.push(format!("{e} {e:?}"));

    let logs = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    assert!(logs.contains("privacy test start"), "capture works");
    assert!(texts.iter().any(|t| t.contains("Verified")));
    for s in SECRETS {
        assert!(!has_token(&logs, s), "tracing output leaks a secret");
        for t in &texts {
            assert!(!has_token(t, s), "Debug/error text leaks a secret: {t}");
        }
    }
    assert!(!texts.iter().any(|t| t.contains("secret-pepper")));
    assert!(has_token("pin=123456;", "123456") && !has_token("0.000123456", "123456"));
}

both!(nothing_secret_reaches_logs);

//! CSV import: every kind of bad row, all-or-nothing, `skip_bad`,
//! idempotence; on SQLite and PostgreSQL.

#[macro_use]
mod ledger_support;

use ivr12333::domain::{AuthOutcome, Fen, InsuranceStatus, Pin, YearMonth, id_check_char};
use ivr12333::ledger::{ImportOptions, LedgerError};
use ledger_support::{TestDb, ctx, id};

const HEADER: &str = "id_number,name,pin,pension_balance,pension_months,pension_last_paid,\
                      medical_balance,data_as_of,unemployment_status,unemployment_last_paid,\
                      work_injury_status,work_injury_last_paid,maternity_status,maternity_last_paid";

/// A valid ID number with the given 17-digit body.
fn valid_id(first17: &str) -> String {
    let c = id_check_char(first17.as_bytes()).unwrap();
    format!("{first17}{}", c as char)
}

fn write(db: &TestDb, name: &str, body: &str) -> std::path::PathBuf {
    let p = db.dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn good_rows() -> String {
    let a = valid_id("11010119800101001");
    let b = valid_id("11010119800101002");
    format!(
        "{HEADER}\n\
         {a},张三,135790,12345.67,156,2026-09,2000.08,2026-10,active,2026-09,active,2026-09,none,\n\
         {b},李四,24680246,,0,,0.01,2026-10,suspended,2026-03,none,,none,\n"
    )
}

async fn imports_good_file_idempotently(db: TestDb) {
    let l = db.open().await;
    let path = write(&db, "good.csv", &good_rows());
    let r = l
        .import_csv(&path, &ImportOptions::default())
        .await
        .unwrap();
    assert!(r.committed);
    assert_eq!(
        (r.rows, r.valid, r.persons_written, r.accounts_written),
        (2, 2, 2, 2)
    );
    let a = id(&valid_id("11010119800101001"));
    let hash_before = db
        .text(&format!(
            "SELECT pin_hash FROM person WHERE id_number = '{}'",
            a.expose()
        ))
        .await;
    // Same file again: nothing changes.
    let r = l
        .import_csv(&path, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!((r.persons_written, r.accounts_written), (0, 0));
    let hash_after = db
        .text(&format!(
            "SELECT pin_hash FROM person WHERE id_number = '{}'",
            a.expose()
        ))
        .await;
    assert_eq!(hash_before, hash_after);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM person").await, 2);
    // The imported account authenticates and reads back exactly.
    let AuthOutcome::Verified(s) = l
        .authenticate(&a, &Pin::new("135790").unwrap(), &ctx("imp"))
        .await
        .unwrap()
    else {
        panic!("imported PIN does not verify");
    };
    assert_eq!(s.pension.as_ref().unwrap().balance, Fen(1_234_567));
    assert_eq!(s.medical.as_ref().unwrap().balance, Fen(200_008));
    assert_eq!(s.work_injury.status, InsuranceStatus::Active);
    let b = id(&valid_id("11010119800101002"));
    let AuthOutcome::Verified(s) = l
        .authenticate(&b, &Pin::new("24680246").unwrap(), &ctx("imp2"))
        .await
        .unwrap()
    else {
        panic!("8-digit PIN does not verify");
    };
    assert!(s.pension.is_none());
    assert_eq!(s.medical.as_ref().unwrap().balance, Fen(1));
    assert_eq!(s.unemployment.status, InsuranceStatus::Suspended);
    assert_eq!(s.unemployment.last_paid, YearMonth::new(2026, 3));
    // A changed balance updates one account row only; an empty PIN keeps
    // the PIN already set.
    let changed = good_rows()
        .replace("12345.67", "12400.00")
        .replace(",135790,", ",,");
    let p2 = write(&db, "changed.csv", &changed);
    let r = l.import_csv(&p2, &ImportOptions::default()).await.unwrap();
    assert_eq!((r.persons_written, r.accounts_written), (0, 1));
    assert!(matches!(
        l.authenticate(&a, &Pin::new("135790").unwrap(), &ctx("imp3"))
            .await
            .unwrap(),
        AuthOutcome::Verified(_)
    ));
    l.close().await;
}

/// One file with each kind of bad row; returns (file, expected (line, reason fragment)).
fn bad_file() -> (String, Vec<(u64, &'static str)>) {
    let good = valid_id("11010119800101003");
    let good2 = valid_id("11010119800101005");
    let mut bad_check = valid_id("11010119800101004");
    let wrong = if bad_check.ends_with('0') { '1' } else { '0' };
    bad_check.pop();
    bad_check.push(wrong);
    let body = format!(
        "{HEADER}\n\
         {good},好,135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {bad_check},坏,135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {good2},坏,135790,12.345,1,2026-09,1.00,2026-10,,,,,,\n\
         {good2},坏,135790,1.00,1,2026-09,abc,2026-10,,,,,,\n\
         {good2},坏,135790,1.00,1,2026-13,1.00,2026-10,,,,,,\n\
         {good2},坏,135790,1.00\n\
         {good},重复,135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {good2},坏,12345,1.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {good2},坏,135790,1.00,1,2026-09,1.00,2026-10,paused,,,,,\n\
         {good2},,135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {good2},好二,135790,2.00,2,2026-09,2.00,,,,,,,\n\
         {good2},好二,135790,2.00,2,2026-09,2.00,2026-10,,,,,,\n"
    );
    let expected = vec![
        (3, "check character"),
        (4, "more than two decimal"),
        (5, "not a decimal number"),
        (6, "bad month in pension_last_paid"),
        (7, "missing field"),
        (8, "duplicate ID number (first on line 2)"),
        (9, "bad PIN"),
        (10, "bad status"),
        (11, "missing field name"),
        (12, "missing field data_as_of"),
    ];
    (body, expected)
}

async fn bad_rows_are_reported_and_nothing_is_written(db: TestDb) {
    let l = db.open().await;
    l.seed_demo().await.unwrap();
    let (body, expected) = bad_file();
    let path = write(&db, "bad.csv", &body);
    let before = db.scalar("SELECT COUNT(*) FROM person").await;
    let r = l
        .import_csv(&path, &ImportOptions::default())
        .await
        .unwrap();
    assert!(!r.committed);
    assert_eq!(r.rows, 12);
    let got: Vec<(u64, String)> = r
        .rejected
        .iter()
        .map(|x| (x.line, x.reason.clone()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for ((line, reason), (el, frag)) in got.iter().zip(&expected) {
        assert_eq!(line, el, "{got:?}");
        assert!(
            reason.contains(frag),
            "line {line}: {reason:?} lacks {frag:?}"
        );
    }
    // Never the ID in clear, never the PIN.
    for x in &r.rejected {
        assert!(!body.lines().any(|l| {
            let id = l.split(',').next().unwrap_or("");
            id.len() == 18 && (x.id_masked.contains(id) || x.reason.contains(id))
        }));
        assert!(!x.reason.contains("135790") && !x.reason.contains("12345,"));
        assert!(x.id_masked.is_empty() || x.id_masked.contains("********"));
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM person").await, before);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM account").await, before);

    // --skip-bad: the two good rows go in.
    let opts = ImportOptions {
        skip_bad: true,
        ..ImportOptions::default()
    };
    let r = l.import_csv(&path, &opts).await.unwrap();
    assert!(r.committed);
    assert_eq!(r.valid, 2);
    assert_eq!(r.rejected.len(), expected.len());
    assert_eq!(db.scalar("SELECT COUNT(*) FROM person").await, before + 2);
    let out = db.dir.path().join("rejects.csv");
    ivr12333::ledger::import::write_rejects(&out, &r.rejected).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("line,id_masked,reason\n"));
    assert!(text.contains("3,110101********"));
    assert_eq!(text.lines().count(), expected.len() + 1);
    l.close().await;
}

async fn missing_column_fails_the_whole_file(db: TestDb) {
    let l = db.open().await;
    let path = write(
        &db,
        "nocol.csv",
        "id_number,name,pin,pension_balance,pension_months,pension_last_paid,data_as_of\n",
    );
    match l.import_csv(&path, &ImportOptions::default()).await {
        Err(LedgerError::Invalid(m)) => assert!(m.contains("medical_balance"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let missing = db.dir.path().join("does-not-exist.csv");
    assert!(matches!(
        l.import_csv(&missing, &ImportOptions::default()).await,
        Err(LedgerError::Invalid(_))
    ));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM person").await, 0);
    l.close().await;
}

async fn multi_batch_import(db: TestDb) {
    // More rows than one transaction batch, no PINs (hashing is measured in
    // the benchmark), so batching and chunking run for real.
    let l = db.open().await;
    let n = ivr12333::ledger::import::BATCH + 123;
    let mut s = String::from(HEADER);
    s.push('\n');
    for i in 0..n {
        let body = format!("110101198001{:02}{:03}", 1 + (i / 1000) % 28, i % 1000);
        let id = valid_id(&body);
        s.push_str(&format!(
            "{id},人{i},,{}.{:02},{},2026-09,{}.00,2026-10,,,,,,\n",
            i,
            i % 100,
            i % 400,
            i
        ));
    }
    let path = write(&db, "many.csv", &s);
    let r = l
        .import_csv(&path, &ImportOptions::default())
        .await
        .unwrap();
    assert!(r.committed, "{:?}", r.rejected.first());
    assert_eq!(r.persons_written, n as u64);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM account").await, n as i64);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM person WHERE pin_hash IS NULL")
            .await,
        n as i64
    );
    // An account without a PIN never verifies: same answer as a wrong PIN.
    let first = id(&valid_id("11010119800101000"));
    assert_eq!(
        l.authenticate(&first, &Pin::new("000000").unwrap(), &ctx("nopin"))
            .await
            .unwrap(),
        AuthOutcome::Rejected
    );
    l.close().await;
}

async fn negative_balances_need_allow_negative(db: TestDb) {
    let l = db.open().await;
    let a = valid_id("11010119800101006");
    let b = valid_id("11010119800101007");
    let c = valid_id("11010119800101008");
    // Without the column: a negative balance is a bad row, named by line.
    let body = format!(
        "{HEADER}\n\
         {a},负一,135790,-5.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {b},负二,135790,1.00,1,2026-09,-0.01,2026-10,,,,,,\n"
    );
    let path = write(&db, "neg.csv", &body);
    let r = l
        .import_csv(&path, &ImportOptions::default())
        .await
        .unwrap();
    assert!(!r.committed);
    let got: Vec<(u64, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.line, x.reason.as_str()))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, 2);
    assert!(
        got[0].1.contains("negative amount in pension_balance"),
        "{got:?}"
    );
    assert_eq!(got[1].0, 3);
    assert!(
        got[1].1.contains("negative amount in medical_balance"),
        "{got:?}"
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM account").await, 0);

    // With allow_negative=true on the row, it goes in; a bad value is a bad row.
    let body = format!(
        "{HEADER},allow_negative\n\
         {a},负一,135790,-5.00,1,2026-09,1.00,2026-10,,,,,,,true\n\
         {b},正,135790,1.00,1,2026-09,1.00,2026-10,,,,,,,\n\
         {c},负三,135790,-1.00,1,2026-09,1.00,2026-10,,,,,,,maybe\n"
    );
    let path = write(&db, "neg2.csv", &body);
    let opts = ImportOptions {
        skip_bad: true,
        ..ImportOptions::default()
    };
    let r = l.import_csv(&path, &opts).await.unwrap();
    assert!(r.committed);
    assert_eq!(r.valid, 2);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].line, 4);
    assert!(r.rejected[0].reason.contains("allow_negative"));
    assert_eq!(
        db.scalar(&format!(
            "SELECT pension_balance_fen FROM account WHERE id_number = '{a}'"
        ))
        .await,
        -500
    );
    l.close().await;
}

async fn long_fields_and_lines_are_refused_with_their_line(db: TestDb) {
    let l = db.open().await;
    let a = valid_id("11010119800101009");
    let b = valid_id("11010119800101010");
    // A 300-byte name: a bad row on line 3.
    let body = format!(
        "{HEADER}\n\
         {a},好,135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n\
         {b},{},135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n",
        "名".repeat(100)
    );
    let path = write(&db, "longfield.csv", &body);
    let r = l
        .import_csv(&path, &ImportOptions::default())
        .await
        .unwrap();
    assert!(!r.committed);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].line, 3);
    assert!(
        r.rejected[0]
            .reason
            .contains("field name longer than 256 bytes"),
        "{:?}",
        r.rejected[0].reason
    );

    // A 10 MB line (a 3.5-million-character name) on line 3: the whole
    // import stops with the file and line named, nothing written.
    let mut body = format!("{HEADER}\n{a},好,135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n{b},");
    body.push_str(&"名".repeat(3_500_000));
    body.push_str(",135790,1.00,1,2026-09,1.00,2026-10,,,,,,\n");
    assert!(body.len() > 10_000_000);
    let path = write(&db, "longline.csv", &body);
    for skip_bad in [false, true] {
        let opts = ImportOptions {
            skip_bad,
            ..ImportOptions::default()
        };
        match l.import_csv(&path, &opts).await {
            Err(LedgerError::Invalid(m)) => {
                assert!(m.contains("longline.csv"), "{m}");
                assert!(m.contains("line 3: record longer than 4096 bytes"), "{m}");
            }
            other => panic!("expected Invalid, got {:?}", other.map(|r| r.rows)),
        }
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM person").await, 0);
    l.close().await;
}

both!(
    imports_good_file_idempotently,
    bad_rows_are_reported_and_nothing_is_written,
    missing_column_fails_the_whole_file,
    multi_batch_import,
    negative_balances_need_allow_negative,
    long_fields_and_lines_are_refused_with_their_line,
);

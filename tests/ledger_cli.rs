//! `ivr12333 ledger ...` run as the built binary on a temp SQLite file and
//! on a fresh PostgreSQL database: exit codes, and no PIN or clear ID in
//! anything it prints.

#[macro_use]
mod ledger_support;

use std::io::Write;
use std::process::{Command, Stdio};

use ivr12333::domain::{AuthOutcome, Pin};
use ledger_support::{NORMAL, PEPPER, RETIREE, TestDb, UNKNOWN, ctx, id};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary in the test's temp dir; everything it prints is
/// appended to `log` for the privacy check.
fn ledger(db: &TestDb, args: &[&str], stdin: Option<&str>, log: &mut String) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr12333"));
    cmd.current_dir(db.dir.path())
        .arg("ledger")
        .args(args)
        .env(
            "IVR12333_LEDGER__PIN_PEPPER",
            std::str::from_utf8(PEPPER).unwrap(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run ivr12333");
    {
        let mut si = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            si.write_all(s.as_bytes()).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    log.push_str(&out.stdout);
    log.push_str(&out.stderr);
    out
}

async fn cli_round_trip(db: TestDb) {
    let url = db.url.clone();
    let mut log = String::new();
    let o = ledger(&db, &["migrate", "--db", &url], None, &mut log);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = ledger(&db, &["seed-demo", "--db", &url], None, &mut log);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("6 accounts"));

    // Import: one good row, one with a bad amount.
    let good_id = "110101198001010010";
    assert!(id(good_id).expose() == good_id);
    let csv = format!(
        "id_number,name,pin,pension_balance,pension_months,pension_last_paid,medical_balance,data_as_of\n\
         {good_id},甲,246813,10.00,12,2026-09,5.00,2026-10\n\
         {},乙,975310,12.345,12,2026-09,5.00,2026-10\n",
        RETIREE.0
    );
    let f = db.dir.path().join("in.csv");
    std::fs::write(&f, csv).unwrap();
    let fs = f.to_str().unwrap();
    let o = ledger(&db, &["import", "--db", &url, fs], None, &mut log);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("line 3 (110105********002X)"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("nothing imported"));
    let rej = db.dir.path().join("rejects.csv");
    let o = ledger(
        &db,
        &[
            "import",
            "--db",
            &url,
            fs,
            "--skip-bad",
            rej.to_str().unwrap(),
        ],
        None,
        &mut log,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let rejects = std::fs::read_to_string(&rej).unwrap();
    log.push_str(&rejects);
    assert!(rejects.contains("3,110105********002X,bad amount in pension_balance"));

    // set-pin reads stdin; the new PIN works.
    let o = ledger(
        &db,
        &["set-pin", "--db", &url, NORMAL.0],
        Some("777888\n"),
        &mut log,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = ledger(
        &db,
        &["set-pin", "--db", &url, NORMAL.0],
        Some("12\n"),
        &mut log,
    );
    assert_eq!(o.code, 2);
    let o = ledger(
        &db,
        &["set-pin", "--db", &url, UNKNOWN],
        Some("777888\n"),
        &mut log,
    );
    assert_eq!(o.code, 1);

    let l = db.open().await;
    assert!(matches!(
        l.authenticate(&id(NORMAL.0), &Pin::new("777888").unwrap(), &ctx("cli"))
            .await
            .unwrap(),
        AuthOutcome::Verified(_)
    ));
    assert!(matches!(
        l.authenticate(&id(good_id), &Pin::new("246813").unwrap(), &ctx("cli2"))
            .await
            .unwrap(),
        AuthOutcome::Verified(_)
    ));
    for i in 0..5 {
        l.authenticate(
            &id(RETIREE.0),
            &Pin::new("000000").unwrap(),
            &ctx(&format!("l{i}")),
        )
        .await
        .unwrap();
    }
    l.close().await;

    let o = ledger(&db, &["unlock", "--db", &url, RETIREE.0], None, &mut log);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("110105********002X"));
    let o = ledger(
        &db,
        &["unlock", "--db", &url, "110105194912310021"],
        None,
        &mut log,
    );
    assert_eq!(o.code, 2, "bad check digit is a usage error");
    let o = ledger(&db, &["unlock", "--db", &url, UNKNOWN], None, &mut log);
    assert_eq!(o.code, 1);

    let o = ledger(&db, &["verify-audit", "--db", &url], None, &mut log);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("intact: 7 rows"), "{}", o.stdout);
    db.exec("UPDATE audit_log SET call_id = 'forged' WHERE seq = 3")
        .await;
    let o = ledger(&db, &["verify-audit", "--db", &url], None, &mut log);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("broken at row 3"), "{}", o.stderr);

    let o = ledger(&db, &["no-such-action"], None, &mut log);
    assert_eq!(o.code, 2);

    // Privacy: nothing printed holds a PIN or a clear ID.
    for secret in [
        NORMAL.0, RETIREE.0, UNKNOWN, good_id, "777888", "246813", "975310", "123456",
    ] {
        assert!(!log.contains(secret), "CLI output leaks a secret");
    }
}

both!(cli_round_trip);

#[test]
fn postgres_without_pepper_is_refused() {
    let o = Command::new(env!("CARGO_BIN_EXE_ivr12333"))
        .args(["ledger", "migrate", "--db", &ledger_support::pg_base()])
        .env_remove("IVR12333_LEDGER__PIN_PEPPER")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("IVR12333_LEDGER__PIN_PEPPER"));
}

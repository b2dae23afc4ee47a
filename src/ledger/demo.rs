//! The demo ledger: fictitious accounts with valid check digits and
//! documented PINs (listed in `docs/ledger.md`), one per case the call flow
//! must speak. Seeding is an idempotent upsert through the import writer.

use super::import::{ImportRow, hash_batch, write_batch};
use super::{Ledger, LedgerError};
use crate::domain::{Fen, InsuranceStatus, YearMonth};

/// One demo account: (ID, PIN, what it shows).
pub struct DemoAccount {
    pub id: &'static str,
    pub pin: &'static str,
    pub shows: &'static str,
}

/// The demo accounts (fictitious people; the PINs are public).
pub const ACCOUNTS: [DemoAccount; 6] = [
    DemoAccount {
        id: "310104198507151239",
        pin: "123456",
        shows: "normal worker: pension 12345.67 yuan, 156 months, last paid 2026-09; \
                medical 2000.08; unemployment/work injury/maternity active; data as of 2026-10",
    },
    DemoAccount {
        id: "11010519491231002X",
        pin: "654321",
        shows: "retiree: pension 100000.50, 420 months, last paid 2009-12; medical 110.00 \
                (monthly allotment); other insurances none; data as of 2026-10",
    },
    DemoAccount {
        id: "510107200002290061",
        pin: "20000229",
        shows: "suspended unemployment (last paid 2026-03); pension 3210.00, 36 months, \
                last paid 2026-03; medical 35.20; data as of 2026-09",
    },
    DemoAccount {
        id: "440106199203150022",
        pin: "112233",
        shows: "no pension record; medical 880.00; unemployment active (2026-09); \
                data as of 2026-10",
    },
    DemoAccount {
        id: "320102197806234514",
        pin: "000000",
        shows: "zero balances: pension 0.00, 0 months, no last month; medical 0.00; \
                data as of 2026-10",
    },
    DemoAccount {
        id: "420106198811110034",
        pin: "98765432",
        shows: "tiny amounts: pension 0.01, 1 month, last paid 2026-10; medical 2.02; \
                work injury suspended (2025-12); data as of 2026-10",
    },
];

fn ym(y: u16, m: u8) -> YearMonth {
    YearMonth { year: y, month: m }
}

fn rows() -> Vec<ImportRow> {
    use InsuranceStatus::{Active, None as No, Suspended};
    let none = (No, None);
    let r = |i: usize,
             name: &str,
             as_of: YearMonth,
             pension: Option<(i64, i64, Option<YearMonth>)>,
             medical: Option<i64>,
             others: [(InsuranceStatus, Option<YearMonth>); 3]| ImportRow {
        id: ACCOUNTS[i].id.to_owned(),
        name: name.to_owned(),
        pin: Some(ACCOUNTS[i].pin.to_owned()),
        data_as_of: as_of,
        pension: pension.map(|(b, m, l)| (Fen(b), m, l)),
        medical: medical.map(Fen),
        others,
    };
    vec![
        r(
            0,
            "演示甲",
            ym(2026, 10),
            Some((1_234_567, 156, Some(ym(2026, 9)))),
            Some(200_008),
            [
                (Active, Some(ym(2026, 9))),
                (Active, Some(ym(2026, 9))),
                (Active, Some(ym(2026, 9))),
            ],
        ),
        r(
            1,
            "演示乙",
            ym(2026, 10),
            Some((10_000_050, 420, Some(ym(2009, 12)))),
            Some(11_000),
            [none, none, none],
        ),
        r(
            2,
            "演示丙",
            ym(2026, 9),
            Some((321_000, 36, Some(ym(2026, 3)))),
            Some(3_520),
            [
                (Suspended, Some(ym(2026, 3))),
                (Active, Some(ym(2026, 3))),
                (Active, Some(ym(2026, 3))),
            ],
        ),
        r(
            3,
            "演示丁",
            ym(2026, 10),
            None,
            Some(88_000),
            [(Active, Some(ym(2026, 9))), none, none],
        ),
        r(
            4,
            "演示戊",
            ym(2026, 10),
            Some((0, 0, None)),
            Some(0),
            [none, none, none],
        ),
        r(
            5,
            "演示己",
            ym(2026, 10),
            Some((1, 1, Some(ym(2026, 10)))),
            Some(202),
            [none, (Suspended, Some(ym(2025, 12))), none],
        ),
    ]
}

pub(crate) async fn seed(l: &Ledger) -> Result<usize, LedgerError> {
    let hasher = l.hasher().clone();
    let prepared = tokio::task::spawn_blocking(move || hash_batch(&hasher, rows(), 2))
        .await
        .map_err(|e| LedgerError::Invalid(format!("seed task failed: {e}")))??;
    write_batch(l, &prepared).await?;
    Ok(prepared.len())
}

//! Domain types shared by the ledger, the speller and the call flow.
//!
//! Everything that identifies a person (ID numbers, PINs) or says something
//! about their money is wrapped in a type whose `Debug` and `Display` never
//! print the value in clear, so that a stray `tracing::info!(?x)` or a panic
//! message cannot leak it (docs/domain.md#privacy-and-audit).

use std::fmt;

/// Money in integer fen (1 yuan = 100 fen). Never a float.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fen(pub i64);

impl Fen {
    /// Converts a decimal amount of yuan; more than two decimals is an error,
    /// never a silent rounding.
    pub fn from_decimal(d: rust_decimal::Decimal) -> Result<Fen, AmountError> {
        let scaled = d
            .checked_mul(rust_decimal::Decimal::ONE_HUNDRED)
            .ok_or(AmountError::OutOfRange)?;
        if scaled.fract() != rust_decimal::Decimal::ZERO {
            return Err(AmountError::TooManyDecimals);
        }
        let v: i64 = scaled
            .trunc()
            .try_into()
            .map_err(|_| AmountError::OutOfRange)?;
        Ok(Fen(v))
    }

    /// Parses a decimal yuan string such as `12345.67`, `-3.5` or `100`.
    pub fn parse_yuan(s: &str) -> Result<Fen, AmountError> {
        let t = s.trim();
        if t.is_empty() || t.contains(['e', 'E']) {
            return Err(AmountError::NotANumber);
        }
        let d: rust_decimal::Decimal = t.parse().map_err(|_| AmountError::NotANumber)?;
        Fen::from_decimal(d)
    }

    pub fn to_decimal(self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::new(self.0, 2)
    }
}

/// Balances are sensitive: `Debug` hides the value.
impl fmt::Debug for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fen(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a decimal number")]
    NotANumber,
    #[error("more than two decimal places")]
    TooManyDecimals,
    #[error("amount out of range")]
    OutOfRange,
}

/// A calendar month, e.g. the month a contribution was last paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

impl YearMonth {
    pub fn new(year: u16, month: u8) -> Option<YearMonth> {
        ((1..=12).contains(&month) && (1900..=9999).contains(&year))
            .then_some(YearMonth { year, month })
    }

    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Option<YearMonth> {
        let (y, m) = s.trim().split_once('-')?;
        if y.len() != 4
            || m.is_empty()
            || m.len() > 2
            || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        YearMonth::new(y.parse().ok()?, m.parse().ok()?)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Why a string is not a valid resident ID number. The variants carry no
/// part of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an ID number has 18 characters")]
    Length,
    #[error("an ID number has digits, and X only as the 18th character")]
    Character,
    #[error("impossible or future birth date")]
    BirthDate,
    #[error("wrong check character")]
    CheckDigit,
}

/// A validated 18-character resident ID number (GB 11643-1999).
///
/// `Debug`/`Display` show only the masked form `110105********002X`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdNumber([u8; 18]);

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The check character for the first 17 digits of an ID number.
pub fn id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let s: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    Some(ID_CHECK[(s % 11) as usize])
}

/// Days in a month of the Gregorian calendar (0 for a month outside 1–12).
pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

impl IdNumber {
    /// Validates an ID number; `today` is `(year, month, day)` and rejects
    /// future birth dates. A lowercase `x` is accepted as `X`.
    pub fn parse(s: &str, today: (u32, u32, u32)) -> Result<IdNumber, IdError> {
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err(IdError::Length);
        }
        let mut out = [0u8; 18];
        for (i, &c) in b.iter().enumerate() {
            out[i] = match c {
                b'0'..=b'9' => c,
                b'X' | b'x' if i == 17 => b'X',
                _ => return Err(IdError::Character),
            };
        }
        let num = |r: std::ops::Range<usize>| {
            out[r]
                .iter()
                .fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
        };
        let (y, m, d) = (num(6..10), num(10..12), num(12..14));
        if !(1900..=9999).contains(&y)
            || !(1..=12).contains(&m)
            || d == 0
            || d > days_in_month(y, m)
        {
            return Err(IdError::BirthDate);
        }
        if (y, m, d) > today {
            return Err(IdError::BirthDate);
        }
        if id_check_char(&out[..17]) != Some(out[17]) {
            return Err(IdError::CheckDigit);
        }
        Ok(IdNumber(out))
    }

    /// Validates against today's UTC date (for CLI/import use; the call flow
    /// passes its own clock to [`IdNumber::parse`]).
    pub fn parse_now(s: &str) -> Result<IdNumber, IdError> {
        IdNumber::parse(s, today_utc())
    }

    /// The ID in clear. Only for the ledger (hashing, storage) and the
    /// speller's read-back; never for logs.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }

    /// `110105********002X`: what an agent's screen may show.
    pub fn masked(&self) -> String {
        let s = self.expose();
        format!("{}********{}", &s[..6], &s[14..])
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Today's date in UTC as `(year, month, day)`, from the system clock.
pub fn today_utc() -> (u32, u32, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_from_days((secs / 86_400) as i64)
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (u32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    ((if m <= 2 { y + 1 } else { y }) as u32, m as u32, d as u32)
}

/// A query PIN as keyed by the caller. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Accepts 6–8 ASCII digits (the configured length is checked by the flow).
    pub fn new(s: &str) -> Option<Pin> {
        ((6..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Pin(s.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// The five insurances of the insurance menu (keys 1–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Insurance {
    Pension,
    Medical,
    Unemployment,
    WorkInjury,
    Maternity,
}

impl Insurance {
    pub const ALL: [Insurance; 5] = [
        Insurance::Pension,
        Insurance::Medical,
        Insurance::Unemployment,
        Insurance::WorkInjury,
        Insurance::Maternity,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Insurance::Pension => "pension",
            Insurance::Medical => "medical",
            Insurance::Unemployment => "unemployment",
            Insurance::WorkInjury => "work_injury",
            Insurance::Maternity => "maternity",
        }
    }
}

/// Status of an insurance without a personal account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsuranceStatus {
    /// 正常参保
    Active,
    /// 暂停缴费
    Suspended,
    /// no record for this insurance
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PensionRecord {
    pub balance: Fen,
    pub months_contributed: u32,
    pub last_paid: Option<YearMonth>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedicalRecord {
    pub balance: Fen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub status: InsuranceStatus,
    pub last_paid: Option<YearMonth>,
}

/// What the caller may hear about their accounts once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub pension: Option<PensionRecord>,
    pub medical: Option<MedicalRecord>,
    pub unemployment: StatusRecord,
    pub work_injury: StatusRecord,
    pub maternity: StatusRecord,
    /// 数据更新至 YYYY年M月
    pub data_as_of: YearMonth,
}

/// The result of an ID + PIN check. Unknown ID and wrong PIN are the same
/// variant on purpose: the line must not reveal which IDs exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Verified(Box<AccountSummary>),
    Rejected,
    Locked,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (u32, u32, u32) = (2026, 11, 27);

    #[test]
    fn id_examples_from_domain() {
        assert!(IdNumber::parse("11010519491231002X", TODAY).is_ok());
        assert!(IdNumber::parse("11010519491231002x", TODAY).is_ok());
        assert!(IdNumber::parse("310104198507151239", TODAY).is_ok());
        assert!(IdNumber::parse("510107200002290061", TODAY).is_ok());
        assert_eq!(
            IdNumber::parse("110105194912310021", TODAY),
            Err(IdError::CheckDigit)
        );
        assert_eq!(
            IdNumber::parse("110105199002301234", TODAY),
            Err(IdError::BirthDate)
        );
        assert_eq!(
            IdNumber::parse("1101051949123100X2", TODAY),
            Err(IdError::Character)
        );
        assert_eq!(
            IdNumber::parse("11010519491231002", TODAY),
            Err(IdError::Length)
        );
    }

    #[test]
    fn id_rejects_future_birth_date() {
        let first17 = b"11010520271231001";
        let mut s = first17.to_vec();
        s.push(id_check_char(first17).unwrap());
        let s = String::from_utf8(s).unwrap();
        assert_eq!(IdNumber::parse(&s, TODAY), Err(IdError::BirthDate));
        assert!(IdNumber::parse(&s, (2028, 1, 1)).is_ok());
    }

    #[test]
    fn id_never_printed_in_clear() {
        let id = IdNumber::parse("11010519491231002X", TODAY).unwrap();
        assert_eq!(format!("{id}"), "110105********002X");
        assert_eq!(format!("{id:?}"), "IdNumber(110105********002X)");
        let pin = Pin::new("123456").unwrap();
        assert!(!format!("{pin:?}").contains("123456"));
        assert!(!format!("{:?}", Fen(1234567)).contains("1234567"));
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(Fen::parse_yuan("12345.67"), Ok(Fen(1_234_567)));
        assert_eq!(Fen::parse_yuan("-35.2"), Ok(Fen(-3520)));
        assert_eq!(Fen::parse_yuan("100"), Ok(Fen(10_000)));
        assert_eq!(Fen::parse_yuan("12.345"), Err(AmountError::TooManyDecimals));
        assert_eq!(Fen::parse_yuan("abc"), Err(AmountError::NotANumber));
        assert_eq!(Fen::parse_yuan("1e5"), Err(AmountError::NotANumber));
        assert_eq!(Fen::parse_yuan(""), Err(AmountError::NotANumber));
        assert_eq!(Fen(1_234_567).to_decimal().to_string(), "12345.67");
    }

    #[test]
    fn year_month_and_calendar() {
        assert_eq!(YearMonth::parse("2026-09"), YearMonth::new(2026, 9));
        assert_eq!(YearMonth::parse("2026-13"), None);
        assert_eq!(YearMonth::parse("26-09"), None);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}

/// A call detail record. Holds no ID number, PIN digit or balance: spoken
/// values appear in `prompts` as placeholders such as `<amount>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// SIP Call-ID.
    pub call_id: String,
    /// Masked caller number, e.g. `138****5678`.
    pub caller_masked: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: i64,
    /// e.g. `caller_hangup`, `goodbye`, `transfer`, `rtp_timeout`, `error`.
    pub end_reason: String,
    /// Dialplan states visited, in order.
    pub states: Vec<String>,
    /// Prompt ids actually played, in order (values as placeholders).
    pub prompts: Vec<String>,
    /// Keys pressed at menus (never the digits of an ID or PIN).
    pub menu_keys: String,
}

/// Masks a caller number for logs, audit and CDRs: `13812345678` → `138****5678`.
pub fn mask_caller(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let keep_tail = 4.min(chars.len() - 1);
    let keep_head = 3.min(chars.len().saturating_sub(keep_tail + 1));
    let head: String = chars[..keep_head].iter().collect();
    let tail: String = chars[chars.len() - keep_tail..].iter().collect();
    format!(
        "{head}{}{tail}",
        "*".repeat(chars.len() - keep_head - keep_tail)
    )
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn masks_caller_numbers() {
        assert_eq!(super::mask_caller("13812345678"), "138****5678");
        assert_eq!(super::mask_caller("1234"), "****");
        assert_eq!(super::mask_caller("12345"), "*2345");
        assert_eq!(super::mask_caller("alice"), "*lice");
    }
}

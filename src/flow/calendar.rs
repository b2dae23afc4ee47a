//! The agent calendar: when a human can take a call (docs/domain.md#agents:
//! default weekdays 9:00–17:00 local time, UTC+8; holidays closed; the
//! make-up working days of Chinese public holidays open).
//!
//! Pure: the caller passes the wall clock in Unix seconds and the UTC offset.

use crate::domain::civil_from_days;

/// A date `(year, month, day)`.
pub type Date = (u32, u32, u32);

/// Opening hours of the agent desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Open weekdays, index 0 = Monday … 6 = Sunday.
    pub days: [bool; 7],
    /// Opening time, minutes after local midnight (inclusive).
    pub open_min: u32,
    /// Closing time, minutes after local midnight (exclusive).
    pub close_min: u32,
    /// Dates closed although their weekday is open (public holidays).
    pub holidays: Vec<Date>,
    /// Dates open although their weekday is closed (调休 make-up working days).
    pub extra_workdays: Vec<Date>,
}

impl Default for Calendar {
    /// Monday to Friday, 9:00–17:00.
    fn default() -> Self {
        Calendar {
            days: [true, true, true, true, true, false, false],
            open_min: 9 * 60,
            close_min: 17 * 60,
            holidays: Vec::new(),
            extra_workdays: Vec::new(),
        }
    }
}

/// Why a calendar setting is malformed (config input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("time must be HH:MM between 00:00 and 24:00")]
    Time,
    #[error("date must be YYYY-MM-DD")]
    Date,
    #[error("weekday must be mon, tue, wed, thu, fri, sat or sun")]
    Weekday,
    #[error("opening time must be before closing time")]
    Order,
}

impl Calendar {
    /// Builds a calendar from configuration strings: `days` like
    /// `["mon","tue",..]`, `open`/`close` like `"09:00"`, dates `YYYY-MM-DD`.
    pub fn from_config(
        days: &[&str],
        open: &str,
        close: &str,
        holidays: &[&str],
        extra_workdays: &[&str],
    ) -> Result<Calendar, CalendarError> {
        let mut d = [false; 7];
        for s in days {
            let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|w| w.eq_ignore_ascii_case(s.trim()))
                .ok_or(CalendarError::Weekday)?;
            d[i] = true;
        }
        let open_min = parse_hhmm(open)?;
        let close_min = parse_hhmm(close)?;
        if open_min >= close_min {
            return Err(CalendarError::Order);
        }
        let dates = |v: &[&str]| {
            v.iter()
                .map(|s| parse_date(s))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Calendar {
            days: d,
            open_min,
            close_min,
            holidays: dates(holidays)?,
            extra_workdays: dates(extra_workdays)?,
        })
    }

    /// Is the desk open at `unix_secs` (wall clock) in the zone `utc_offset_secs`?
    pub fn is_open(&self, unix_secs: i64, utc_offset_secs: i32) -> bool {
        let local = unix_secs.saturating_add(i64::from(utc_offset_secs));
        let days = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        let date = civil_from_days(days);
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as usize;
        let working_day = if self.holidays.contains(&date) {
            false
        } else if self.extra_workdays.contains(&date) {
            true
        } else {
            self.days.get(weekday).copied().unwrap_or(false)
        };
        working_day && minute >= self.open_min && minute < self.close_min
    }
}

fn parse_hhmm(s: &str) -> Result<u32, CalendarError> {
    let (h, m) = s.trim().split_once(':').ok_or(CalendarError::Time)?;
    let ok = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return Err(CalendarError::Time);
    }
    let h: u32 = h.parse().map_err(|_| CalendarError::Time)?;
    let m: u32 = m.parse().map_err(|_| CalendarError::Time)?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(CalendarError::Time);
    }
    Ok(h * 60 + m)
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, CalendarError> {
    let mut it = s.trim().split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(CalendarError::Date);
    };
    let num = |x: &str, len: usize| -> Result<u32, CalendarError> {
        if x.len() != len || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CalendarError::Date);
        }
        x.parse().map_err(|_| CalendarError::Date)
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(CalendarError::Date);
    }
    Ok((y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: i32 = 8 * 3600;

    /// Unix seconds of a local (UTC+8) date and time.
    fn local(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        // days_from_civil (Howard Hinnant), inverse of civil_from_days.
        let y2 = if mo <= 2 { y - 1 } else { y };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let mp = (mo + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + h * 3600 + mi * 60 - i64::from(CST)
    }

    #[test]
    fn weekdays_nine_to_five_in_utc_plus_8() {
        let c = Calendar::default();
        // 2026-11-27 is a Friday.
        assert!(c.is_open(local(2026, 11, 27, 9, 0), CST));
        assert!(c.is_open(local(2026, 11, 27, 16, 59), CST));
        assert!(!c.is_open(local(2026, 11, 27, 17, 0), CST));
        assert!(!c.is_open(local(2026, 11, 27, 8, 59), CST));
        // Saturday and Sunday closed.
        assert!(!c.is_open(local(2026, 11, 28, 10, 0), CST));
        assert!(!c.is_open(local(2026, 11, 29, 10, 0), CST));
        // Monday open.
        assert!(c.is_open(local(2026, 11, 30, 10, 0), CST));
        // 10:00 Beijing is 02:00 UTC: the offset matters.
        assert!(!c.is_open(local(2026, 11, 27, 10, 0), 0));
    }

    #[test]
    fn holidays_and_make_up_days() {
        let c = Calendar::from_config(
            &["mon", "tue", "wed", "thu", "fri"],
            "09:00",
            "17:00",
            &["2026-10-01"],
            &["2026-10-10"],
        )
        .unwrap();
        // 2026-10-01 is a Thursday but a holiday.
        assert!(!c.is_open(local(2026, 10, 1, 10, 0), CST));
        // 2026-10-10 is a Saturday but a make-up working day.
        assert!(c.is_open(local(2026, 10, 10, 10, 0), CST));
        assert!(!c.is_open(local(2026, 10, 10, 18, 0), CST));
    }

    #[test]
    fn configurable_days_and_hours() {
        let c = Calendar::from_config(&["sat"], "08:30", "12:00", &[], &[]).unwrap();
        assert!(c.is_open(local(2026, 11, 28, 8, 30), CST));
        assert!(!c.is_open(local(2026, 11, 28, 12, 0), CST));
        assert!(!c.is_open(local(2026, 11, 27, 10, 0), CST));
    }

    #[test]
    fn bad_config_is_an_error() {
        assert_eq!(
            Calendar::from_config(&["monday"], "09:00", "17:00", &[], &[]),
            Err(CalendarError::Weekday)
        );
        assert_eq!(
            Calendar::from_config(&["mon"], "9", "17:00", &[], &[]),
            Err(CalendarError::Time)
        );
        assert_eq!(
            Calendar::from_config(&["mon"], "17:00", "09:00", &[], &[]),
            Err(CalendarError::Order)
        );
        assert_eq!(
            Calendar::from_config(&["mon"], "09:00", "17:00", &["2026-13-01"], &[]),
            Err(CalendarError::Date)
        );
        assert_eq!(parse_date("2026-1-01"), Err(CalendarError::Date));
    }
}

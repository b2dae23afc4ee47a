//! The Mandarin speller: amounts, dates, counts and digit strings → prompt ids
//! (docs/domain.md#reading-numbers-aloud, rules R1–R11). Pure, no I/O.
//!
//! The output names prompts and so encodes the value spoken: never log it.
//!
//! # How a number is read
//!
//! * R1: the number is split at 亿 (10⁸) and then at 万 (10⁴), recursively, so
//!   10¹² reads 一万亿 and counts beyond 10¹⁶ read with 亿亿; inside a group of
//!   four digits the units are 千 百 十.
//! * R2: zeros at the end of a group are silent; a run of zeros inside a group
//!   is one 零; a lower part that does not fill its top position after a
//!   non-zero higher part starts with one 零 (10005 → 一万零五).
//! * R3: 十 without 一 only when it is the first syllable of the number.
//! * R4: 两 only for a leading 2 directly before 千/万/亿 (and 百 with
//!   [`SayOptions::liang_bai`]); a lone 2 in [`count`] is 两 too (两个月).
//! * R9: which of the three 一 recordings to use depends on what follows it:
//!   `n_1_yi2` (yí) before a fourth tone (万, 亿, and the measure words 个月/位
//!   that follow a [`count`]), `n_1_yi4` (yì) before a first/second/third tone
//!   (千, 百, 十, 元, 角, 分), and `n_1` (yī) right after 十 (十一, 十一万),
//!   at the end of a bare number, in ordinals (一月, 一日) and in years.
//!
//! Money (R5–R8) is read from integer fen; see [`amount`].

use crate::domain::{Fen, YearMonth};

/// One element of a readout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    /// A prompt id from `prompts/manifest.toml`.
    Prompt(&'static str),
    /// Silence of this many milliseconds.
    Pause(u32),
}

/// Speller options.
#[derive(Debug, Clone, Default)]
pub struct SayOptions {
    /// Read a leading 2 before 百 as 两百 instead of the default 二百 (R4).
    pub liang_bai: bool,
}

/// Why an amount cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SayError {
    #[error("amount out of range")]
    OutOfRange,
}

/// Amounts are read up to (but excluding) 10¹³ yuan (一万亿 is 10¹²).
pub const MAX_YUAN_EXCLUSIVE: u64 = 10_000_000_000_000;

/// Silence between the 6-4-4-4 groups of an ID read-back (R11).
pub const ID_GROUP_PAUSE_MS: u32 = 300;

/// Every prompt id the speller can produce (the number category of the
/// manifest); `tests/prompts_library.rs` checks they all exist.
pub const SPELLER_IDS: &[&str] = &[
    "n_0", "n_1", "n_1_yi2", "n_1_yi4", "n_2", "n_3", "n_4", "n_5", "n_6", "n_7", "n_8", "n_9",
    "n_yao", "n_liang", "u_shi", "u_bai", "u_qian", "u_wan", "u_yi", "m_yuan", "m_jiao", "m_fen",
    "m_zheng", "m_fu", "d_nian", "d_yue", "d_ri", "c_geyue", "c_wei", "l_x",
];

/// Plain digit prompts 0–9 (一 as yī).
const DIGIT: [&str; 10] = [
    "n_0", "n_1", "n_2", "n_3", "n_4", "n_5", "n_6", "n_7", "n_8", "n_9",
];

const P_ZERO: Seg = Seg::Prompt("n_0");
const P_SHI: Seg = Seg::Prompt("u_shi");
const P_BAI: Seg = Seg::Prompt("u_bai");
const P_QIAN: Seg = Seg::Prompt("u_qian");
const P_WAN: Seg = Seg::Prompt("u_wan");
const P_YI: Seg = Seg::Prompt("u_yi");

/// What the caller will say right after a number: decides the tone of a
/// final 一 (R9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Nothing (a bare number, an ordinal): yī.
    End,
    /// A fourth-tone syllable (万, 亿, 个, 位): yí.
    Tone4,
    /// A first/second/third-tone syllable (千, 百, 十, 元, 角, 分): yì.
    Tone123,
}

/// Whether a leading 2 may become 两 before the unit that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// This digit is the first syllable of the whole number.
    First,
    /// It is not.
    Inner,
}

/// The digit `d` (1–9) spoken before a unit or the end, with 一 sandhi and
/// 两. `liang` says whether R4 allows 两 here.
fn digit_seg(d: u8, after: After, after_shi: bool, liang: bool) -> Seg {
    match d {
        1 if after_shi => Seg::Prompt("n_1"),
        1 => Seg::Prompt(match after {
            After::End => "n_1",
            After::Tone4 => "n_1_yi2",
            After::Tone123 => "n_1_yi4",
        }),
        2 if liang => Seg::Prompt("n_liang"),
        _ => Seg::Prompt(DIGIT[usize::from(d % 10)]),
    }
}

/// Reads 1 ≤ n ≤ 9999 (one group, R1–R4). `lead` says whether the group
/// starts the number; `after` is what follows the group's last digit (R9);
/// `before_big_unit` says the group is followed by 万 or 亿 (R4: 两万, 两亿).
fn group(
    n: u64,
    lead: Lead,
    after: After,
    before_big_unit: bool,
    opts: &SayOptions,
    out: &mut Vec<Seg>,
) {
    let digits = [
        (n / 1000 % 10) as u8,
        (n / 100 % 10) as u8,
        (n / 10 % 10) as u8,
        (n % 10) as u8,
    ];
    let mut started = false;
    let mut zero_pending = false;
    let mut prev_was_shi = false;
    for (pos, &d) in digits.iter().enumerate() {
        if d == 0 {
            // R2: a zero only matters when something non-zero follows it
            // inside the group; trailing zeros stay silent.
            zero_pending |= started;
            prev_was_shi = false;
            continue;
        }
        if zero_pending {
            out.push(P_ZERO);
            zero_pending = false;
        }
        let first = lead == Lead::First && !started;
        let two_first = first && d == 2;
        match pos {
            0 => {
                out.push(digit_seg(d, After::Tone123, false, two_first));
                out.push(P_QIAN);
            }
            1 => {
                out.push(digit_seg(
                    d,
                    After::Tone123,
                    false,
                    two_first && opts.liang_bai,
                ));
                out.push(P_BAI);
            }
            2 => {
                // R3: 十 alone only as the very first syllable.
                if !(first && d == 1) {
                    out.push(digit_seg(d, After::Tone123, false, false));
                }
                out.push(P_SHI);
            }
            _ => out.push(digit_seg(
                d,
                after,
                prev_was_shi,
                two_first && before_big_unit,
            )),
        }
        prev_was_shi = pos == 2;
        started = true;
    }
}

/// Reads n ≥ 1 (R1–R4, R9), splitting at 亿 then 万; `before_big_unit` as
/// for [`group`] (this number is itself the part before a 亿).
fn number(
    n: u64,
    lead: Lead,
    after: After,
    before_big_unit: bool,
    opts: &SayOptions,
    out: &mut Vec<Seg>,
) {
    const YI: u64 = 100_000_000;
    const WAN: u64 = 10_000;
    if n >= YI {
        number(n / YI, lead, After::Tone4, true, opts, out);
        out.push(P_YI);
        let lo = n % YI;
        if lo > 0 {
            if lo < YI / 10 {
                out.push(P_ZERO);
            }
            number(lo, Lead::Inner, after, before_big_unit, opts, out);
        }
    } else if n >= WAN {
        group(n / WAN, lead, After::Tone4, true, opts, out);
        out.push(P_WAN);
        let lo = n % WAN;
        if lo > 0 {
            if lo < WAN / 10 {
                out.push(P_ZERO);
            }
            group(lo, Lead::Inner, after, before_big_unit, opts, out);
        }
    } else if n > 0 {
        group(n, lead, after, before_big_unit, opts, out);
    }
}

/// Money in fen → segments (R1–R9), e.g. 一万二千三百四十五元六角七分.
///
/// R5: 元 when the integer part is non-zero; 角 when non-zero (no 零 before
/// it); 零X分 when 角 is zero after a non-zero 元; 整 only when 角 = 分 = 0.
/// R6: below one yuan 元 is dropped (五角, 三角二分). R7: zero is 零元.
/// R8: negative amounts get 负 (the caller should also flag the anomaly).
/// |amount| ≥ 10¹³ yuan is [`SayError::OutOfRange`].
pub fn amount(fen: Fen, opts: &SayOptions) -> Result<Vec<Seg>, SayError> {
    let abs = fen.0.unsigned_abs();
    let yuan = abs / 100;
    if yuan >= MAX_YUAN_EXCLUSIVE {
        return Err(SayError::OutOfRange);
    }
    let jiao = (abs / 10 % 10) as u8;
    let fen_digit = (abs % 10) as u8;
    let mut out = Vec::with_capacity(24);
    if fen.0 < 0 {
        out.push(Seg::Prompt("m_fu"));
    }
    if abs == 0 {
        out.push(P_ZERO);
        out.push(Seg::Prompt("m_yuan"));
        return Ok(out);
    }
    if yuan > 0 {
        number(yuan, Lead::First, After::Tone123, false, opts, &mut out);
        out.push(Seg::Prompt("m_yuan"));
    }
    if jiao > 0 {
        out.push(digit_seg(jiao, After::Tone123, false, false));
        out.push(Seg::Prompt("m_jiao"));
    }
    if fen_digit > 0 {
        if jiao == 0 && yuan > 0 {
            out.push(P_ZERO);
        }
        out.push(digit_seg(fen_digit, After::Tone123, false, false));
        out.push(Seg::Prompt("m_fen"));
    }
    if jiao == 0 && fen_digit == 0 {
        out.push(Seg::Prompt("m_zheng"));
    }
    Ok(out)
}

/// A cardinal count before a measure word (months, queue position): 两 for a
/// lone 2 (两个月, 两位); otherwise read as an integer (R1–R4). The measure
/// word (`c_geyue`, `c_wei`) is not included: the caller appends it. Both
/// are fourth tone, so a lone 1 is yí (一个月, 一位); 0 is 零.
pub fn count(n: u64) -> Vec<Seg> {
    let mut out = Vec::with_capacity(16);
    match n {
        0 => out.push(P_ZERO),
        2 => out.push(Seg::Prompt("n_liang")),
        _ => number(
            n,
            Lead::First,
            After::Tone4,
            false,
            &SayOptions::default(),
            &mut out,
        ),
    }
    out
}

/// A bare integer with nothing after it (a final 一 is yī), e.g. 一百一十.
/// 0 is 零. Options as for amounts.
pub fn integer(n: u64, opts: &SayOptions) -> Vec<Seg> {
    let mut out = Vec::with_capacity(16);
    if n == 0 {
        out.push(P_ZERO);
    } else {
        number(n, Lead::First, After::End, false, opts, &mut out);
    }
    out
}

/// A year digit by digit with 一 as yī and 零 for 0 (R10: 二零二六).
fn year_digits(year: u16, out: &mut Vec<Seg>) {
    let y = u32::from(year);
    for div in [1000, 100, 10, 1] {
        out.push(Seg::Prompt(DIGIT[(y / div % 10) as usize]));
    }
}

/// An ordinal (month or day): a number with nothing after it, never 两.
fn ordinal(n: u8, out: &mut Vec<Seg>) {
    number(
        u64::from(n),
        Lead::First,
        After::End,
        false,
        &SayOptions::default(),
        out,
    );
}

/// 二零二六年九月 (R10).
pub fn year_month(ym: YearMonth) -> Vec<Seg> {
    let mut out = Vec::with_capacity(10);
    year_digits(ym.year, &mut out);
    out.push(Seg::Prompt("d_nian"));
    ordinal(ym.month, &mut out);
    out.push(Seg::Prompt("d_yue"));
    out
}

/// 二零二六年九月十五日 (R10: 日, not 号). `day` must be 1–31; a day outside
/// that range is left out (the caller validates calendar dates).
pub fn date(ym: YearMonth, day: u8) -> Vec<Seg> {
    let mut out = year_month(ym);
    if (1..=31).contains(&day) {
        ordinal(day, &mut out);
        out.push(Seg::Prompt("d_ri"));
    }
    out
}

/// Digit by digit, 1 as 幺, X as 艾克斯 (R11). Characters other than digits
/// and X/x (spaces, dashes) are skipped.
pub fn digits(s: &str) -> Vec<Seg> {
    let mut out = Vec::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'1' => out.push(Seg::Prompt("n_yao")),
            b'0'..=b'9' => out.push(Seg::Prompt(DIGIT[usize::from(b - b'0')])),
            b'X' | b'x' => out.push(Seg::Prompt("l_x")),
            _ => {}
        }
    }
    out
}

/// An ID number read back digit by digit in 6-4-4-4 groups with short pauses
/// (R11): region code, birth year, month+day, sequence+check.
pub fn id_readback(id: &str) -> Vec<Seg> {
    let segs = digits(id);
    let mut out = Vec::with_capacity(segs.len() + 3);
    for (i, s) in segs.into_iter().enumerate() {
        if i == 6 || i == 10 || i == 14 {
            out.push(Seg::Pause(ID_GROUP_PAUSE_MS));
        }
        out.push(s);
    }
    out
}

/// The Chinese text of one prompt id of the number category, or `None` for
/// an id the speller does not produce (phrases).
pub fn prompt_text(id: &str) -> Option<&'static str> {
    Some(match id {
        "n_0" => "零",
        "n_1" | "n_1_yi2" | "n_1_yi4" => "一",
        "n_2" => "二",
        "n_3" => "三",
        "n_4" => "四",
        "n_5" => "五",
        "n_6" => "六",
        "n_7" => "七",
        "n_8" => "八",
        "n_9" => "九",
        "n_yao" => "幺",
        "n_liang" => "两",
        "u_shi" => "十",
        "u_bai" => "百",
        "u_qian" => "千",
        "u_wan" => "万",
        "u_yi" => "亿",
        "m_yuan" => "元",
        "m_jiao" => "角",
        "m_fen" => "分",
        "m_zheng" => "整",
        "m_fu" => "负",
        "d_nian" => "年",
        "d_yue" => "月",
        "d_ri" => "日",
        "c_geyue" => "个月",
        "c_wei" => "位",
        "l_x" => "艾克斯",
        _ => return None,
    })
}

/// The Chinese text of a readout, for `say --text` and tests. The three 一
/// recordings all print as 一; pauses print nothing; an id that is not a
/// number segment prints as `[id]`.
pub fn to_text(segs: &[Seg]) -> String {
    let mut s = String::with_capacity(segs.len() * 3);
    for seg in segs {
        if let Seg::Prompt(id) = seg {
            match prompt_text(id) {
                Some(t) => s.push_str(t),
                None => {
                    s.push('[');
                    s.push_str(id);
                    s.push(']');
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yuan(s: &str) -> String {
        to_text(&amount(Fen::parse_yuan(s).unwrap(), &SayOptions::default()).unwrap())
    }
    fn int(n: u64) -> String {
        to_text(&integer(n, &SayOptions::default()))
    }
    fn ids(segs: &[Seg]) -> Vec<&'static str> {
        segs.iter()
            .filter_map(|s| match s {
                Seg::Prompt(p) => Some(*p),
                Seg::Pause(_) => None,
            })
            .collect()
    }

    #[test]
    fn domain_examples() {
        assert_eq!(yuan("0.01"), "一分");
        assert_eq!(yuan("2.02"), "二元零二分");
        assert_eq!(yuan("110.00"), "一百一十元整");
        assert_eq!(yuan("2000.08"), "两千元零八分");
        assert_eq!(yuan("12345.67"), "一万二千三百四十五元六角七分");
        assert_eq!(yuan("100000.50"), "十万元五角");
        assert_eq!(yuan("-35.20"), "负三十五元二角");
    }

    #[test]
    fn money_edges() {
        assert_eq!(yuan("0"), "零元");
        assert_eq!(yuan("0.5"), "五角");
        assert_eq!(yuan("0.32"), "三角二分");
        assert_eq!(yuan("0.05"), "五分");
        assert_eq!(yuan("2"), "二元整");
        assert_eq!(yuan("0.2"), "二角");
        assert_eq!(yuan("10.10"), "十元一角");
        assert_eq!(yuan("1.01"), "一元零一分");
        assert_eq!(yuan("-0.01"), "负一分");
        assert_eq!(
            yuan("9999999999999.99"),
            "九万九千九百九十九亿九千九百九十九万九千九百九十九元九角九分"
        );
        assert_eq!(
            amount(
                Fen::parse_yuan("10000000000000").unwrap(),
                &SayOptions::default()
            ),
            Err(SayError::OutOfRange)
        );
        assert_eq!(
            amount(Fen(i64::MIN), &SayOptions::default()),
            Err(SayError::OutOfRange)
        );
        assert_eq!(
            amount(Fen(i64::MAX), &SayOptions::default()),
            Err(SayError::OutOfRange)
        );
    }

    #[test]
    fn zeros_inside_and_across_groups() {
        assert_eq!(int(10005), "一万零五");
        assert_eq!(int(100010001), "一亿零一万零一");
        assert_eq!(int(1000000), "一百万");
        assert_eq!(int(100001000), "一亿零一千");
        assert_eq!(int(101000000), "一亿零一百万");
        assert_eq!(int(1001), "一千零一");
        assert_eq!(int(1100), "一千一百");
        assert_eq!(int(10100), "一万零一百");
        assert_eq!(int(1000_0000_0000), "一千亿");
        assert_eq!(int(1_0000_0000_0000), "一万亿");
        assert_eq!(int(1_0000_0000_0001), "一万亿零一");
        assert_eq!(int(0), "零");
    }

    #[test]
    fn shi_at_start_and_inside() {
        assert_eq!(int(10), "十");
        assert_eq!(int(12), "十二");
        assert_eq!(int(110), "一百一十");
        assert_eq!(int(100000), "十万");
        assert_eq!(int(1010), "一千零一十");
        assert_eq!(int(10_0000_0000), "十亿");
        assert_eq!(int(115), "一百一十五");
        assert_eq!(int(10_0010), "十万零一十");
    }

    #[test]
    fn liang_rules() {
        assert_eq!(int(2000), "两千");
        assert_eq!(int(22000), "两万二千");
        assert_eq!(int(200), "二百");
        assert_eq!(int(20), "二十");
        assert_eq!(int(2), "二");
        assert_eq!(int(20000000), "两千万");
        assert_eq!(int(200000000), "两亿");
        assert_eq!(int(220000000), "两亿二千万");
        assert_eq!(int(2_0000_0000_0000), "两万亿");
        assert_eq!(int(12000), "一万二千");
        assert_eq!(int(1200), "一千二百");
        assert_eq!(int(2200), "两千二百");
        let lb = SayOptions { liang_bai: true };
        assert_eq!(to_text(&integer(200, &lb)), "两百");
        assert_eq!(to_text(&integer(1200, &lb)), "一千二百");
        assert_eq!(to_text(&amount(Fen(20_000), &lb).unwrap()), "两百元整");
    }

    #[test]
    fn yi_sandhi_segments() {
        let o = SayOptions::default();
        // yì before 千/百/十/元/角/分; yí before 万/亿; yī after 十 and at the end
        assert_eq!(
            ids(&amount(Fen(100), &o).unwrap()),
            ["n_1_yi4", "m_yuan", "m_zheng"]
        );
        assert_eq!(ids(&amount(Fen(10), &o).unwrap()), ["n_1_yi4", "m_jiao"]);
        assert_eq!(ids(&amount(Fen(1), &o).unwrap()), ["n_1_yi4", "m_fen"]);
        assert_eq!(ids(&integer(1000, &o)), ["n_1_yi4", "u_qian"]);
        assert_eq!(ids(&integer(100, &o)), ["n_1_yi4", "u_bai"]);
        assert_eq!(
            ids(&integer(110, &o)),
            ["n_1_yi4", "u_bai", "n_1_yi4", "u_shi"]
        );
        assert_eq!(ids(&integer(10000, &o)), ["n_1_yi2", "u_wan"]);
        assert_eq!(ids(&integer(100000000, &o)), ["n_1_yi2", "u_yi"]);
        assert_eq!(ids(&integer(11, &o)), ["u_shi", "n_1"]);
        assert_eq!(ids(&integer(110000, &o)), ["u_shi", "n_1", "u_wan"]);
        assert_eq!(ids(&integer(1, &o)), ["n_1"]);
        assert_eq!(ids(&integer(101, &o)), ["n_1_yi4", "u_bai", "n_0", "n_1"]);
        assert_eq!(
            ids(&amount(Fen(1100), &o).unwrap()),
            ["u_shi", "n_1", "m_yuan", "m_zheng"]
        );
        assert_eq!(
            ids(&amount(Fen(10100), &o).unwrap()),
            ["n_1_yi4", "u_bai", "n_0", "n_1_yi4", "m_yuan", "m_zheng"]
        );
        assert_eq!(ids(&count(1)), ["n_1_yi2"]);
        assert_eq!(ids(&count(11)), ["u_shi", "n_1"]);
        assert_eq!(
            ids(&amount(Fen(1_234_567), &o).unwrap()),
            [
                "n_1_yi2", "u_wan", "n_2", "u_qian", "n_3", "u_bai", "n_4", "u_shi", "n_5",
                "m_yuan", "n_6", "m_jiao", "n_7", "m_fen"
            ]
        );
        assert_eq!(
            ids(&amount(Fen(-3520), &o).unwrap()),
            ["m_fu", "n_3", "u_shi", "n_5", "m_yuan", "n_2", "m_jiao"]
        );
        assert_eq!(
            ids(&amount(Fen(200_008), &o).unwrap()),
            ["n_liang", "u_qian", "m_yuan", "n_0", "n_8", "m_fen"]
        );
    }

    #[test]
    fn counts() {
        assert_eq!(to_text(&count(2)), "两");
        assert_eq!(to_text(&count(0)), "零");
        assert_eq!(to_text(&count(12)), "十二");
        assert_eq!(to_text(&count(20)), "二十");
        assert_eq!(to_text(&count(2000)), "两千");
        assert_eq!(to_text(&count(22)), "二十二");
        assert_eq!(to_text(&count(200)), "二百");
        assert_eq!(to_text(&count(156)), "一百五十六");
        let mut s = count(2);
        s.push(Seg::Prompt("c_geyue"));
        assert_eq!(to_text(&s), "两个月");
    }

    #[test]
    fn dates() {
        let ym = YearMonth::new(2026, 9).unwrap();
        assert_eq!(to_text(&year_month(ym)), "二零二六年九月");
        assert_eq!(
            to_text(&year_month(YearMonth::new(2011, 11).unwrap())),
            "二零一一年十一月"
        );
        assert_eq!(
            to_text(&year_month(YearMonth::new(2000, 12).unwrap())),
            "二零零零年十二月"
        );
        assert_eq!(to_text(&date(ym, 15)), "二零二六年九月十五日");
        assert_eq!(to_text(&date(ym, 20)), "二零二六年九月二十日");
        assert_eq!(to_text(&date(ym, 2)), "二零二六年九月二日");
        // year digits and ordinals use yī
        let y = year_month(YearMonth::new(2011, 1).unwrap());
        assert_eq!(
            ids(&y),
            ["n_2", "n_0", "n_1", "n_1", "d_nian", "n_1", "d_yue"]
        );
    }

    #[test]
    fn digit_strings_and_id_readback() {
        assert_eq!(to_text(&digits("12333")), "幺二三三三");
        assert_eq!(to_text(&digits("0x")), "零艾克斯");
        let segs = id_readback("11010519491231002X");
        assert_eq!(to_text(&segs), "幺幺零幺零五幺九四九幺二三幺零零二艾克斯");
        let pauses: Vec<usize> = segs
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Seg::Pause(_)))
            .map(|(i, _)| i)
            .collect();
        // 6 digits, pause, 4, pause, 4, pause, 4
        assert_eq!(pauses, [6, 11, 16]);
        assert_eq!(segs.len(), 21);
        assert!(segs.iter().all(|s| *s != Seg::Prompt("n_1")));
    }

    #[test]
    fn every_produced_id_is_known() {
        let o = SayOptions { liang_bai: true };
        for n in (0..2_000_000u64)
            .step_by(997)
            .chain([2, 20000, 200, 1, 11, 10])
        {
            for seg in integer(n, &o)
                .iter()
                .chain(count(n).iter())
                .chain(amount(Fen(n as i64 * 7 - 3), &o).unwrap().iter())
            {
                if let Seg::Prompt(p) = seg {
                    assert!(SPELLER_IDS.contains(p), "{p}");
                }
            }
        }
    }
}

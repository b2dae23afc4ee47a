//! Property tests for the speller: the Chinese text it produces, parsed back
//! by an independent reader, gives the same value, across the whole range;
//! and the 一/两 segment choices obey R4 and R9 everywhere.

use ivr12333::domain::Fen;
use ivr12333::say::{self, SayError, SayOptions, Seg};
use proptest::prelude::*;

fn digit_value(c: char) -> Option<u64> {
    Some(match c {
        '零' => 0,
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// Reads a number below 万 written with 千百十 (十 alone at the start = 10).
fn parse_small(s: &[char]) -> Result<u64, String> {
    let mut total = 0u64;
    let mut digit: Option<u64> = None;
    for &c in s {
        if let Some(d) = digit_value(c) {
            if d == 0 {
                continue;
            }
            if digit.is_some() {
                return Err(format!("two digits in a row in {s:?}"));
            }
            digit = Some(d);
            continue;
        }
        let unit = match c {
            '十' => 10,
            '百' => 100,
            '千' => 1000,
            _ => return Err(format!("unexpected {c}")),
        };
        let d = match digit.take() {
            Some(d) => d,
            None if c == '十' && total == 0 => 1,
            None => return Err(format!("unit {c} without digit")),
        };
        total += d * unit;
    }
    Ok(total + digit.unwrap_or(0))
}

/// Reads a whole integer: split at the last 亿, then the last 万.
fn parse_int(s: &[char]) -> Result<u64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    if let Some(p) = s.iter().rposition(|&c| c == '亿') {
        let hi = parse_int(&s[..p])?;
        if hi == 0 {
            return Err("亿 without a number".into());
        }
        return Ok(hi * 100_000_000 + parse_int(&s[p + 1..])?);
    }
    if let Some(p) = s.iter().rposition(|&c| c == '万') {
        let hi = parse_small(&s[..p])?;
        if hi == 0 {
            return Err("万 without a number".into());
        }
        return Ok(hi * 10_000 + parse_small(&s[p + 1..])?);
    }
    parse_small(s)
}

/// Reads money text back into fen.
fn parse_money(text: &str) -> Result<i64, String> {
    let mut chars: Vec<char> = text.chars().collect();
    let neg = chars.first() == Some(&'负');
    if neg {
        chars.remove(0);
    }
    if chars.last() == Some(&'整') {
        chars.pop();
    }
    let mut fen = 0u64;
    let mut rest: &[char] = &chars;
    if let Some(p) = rest.iter().position(|&c| c == '元') {
        fen += parse_int(&rest[..p])? * 100;
        rest = &rest[p + 1..];
    }
    if let Some(p) = rest.iter().position(|&c| c == '角') {
        fen += parse_small(&rest[..p])? * 10;
        rest = &rest[p + 1..];
    }
    if let Some(p) = rest.iter().position(|&c| c == '分') {
        fen += parse_small(&rest[..p])?;
        rest = &rest[p + 1..];
    }
    if !rest.is_empty() {
        return Err(format!("left over {rest:?}"));
    }
    let v = i64::try_from(fen).map_err(|e| e.to_string())?;
    Ok(if neg { -v } else { v })
}

fn ids(segs: &[Seg]) -> Vec<&'static str> {
    segs.iter()
        .filter_map(|s| match s {
            Seg::Prompt(p) => Some(*p),
            Seg::Pause(_) => None,
        })
        .collect()
}

/// R9 and R4 as segment-level invariants. `tail` is what follows the
/// readout ("end", a fourth-tone measure word "tone4").
fn check_sandhi(ids: &[&str], tail: &str, liang_bai: bool) -> Result<(), String> {
    for (i, id) in ids.iter().enumerate() {
        let next = ids.get(i + 1).copied().unwrap_or(tail);
        let prev = if i > 0 { ids.get(i - 1).copied() } else { None };
        match *id {
            "n_1_yi2" if !matches!(next, "u_wan" | "u_yi" | "tone4") || prev == Some("u_shi") => {
                return Err(format!("yí at {i} before {next}"));
            }
            "n_1_yi4"
                if !matches!(
                    next,
                    "u_qian" | "u_bai" | "u_shi" | "m_yuan" | "m_jiao" | "m_fen"
                ) || prev == Some("u_shi") =>
            {
                return Err(format!("yì at {i} before {next}"));
            }
            "n_1" if !(prev == Some("u_shi") || next == "end") => {
                return Err(format!("yī at {i} before {next}"));
            }
            "n_liang" if i > 1 || (i == 1 && prev != Some("m_fu")) => {
                return Err(format!("两 not leading at {i}"));
            }
            "n_liang"
                if !(matches!(next, "u_qian" | "u_wan" | "u_yi" | "tone4")
                    || (liang_bai && next == "u_bai")) =>
            {
                return Err(format!("两 before {next}"));
            }
            _ => {}
        }
    }
    Ok(())
}

const MAX_FEN: i64 = 10_000_000_000_000 * 100 - 1;

fn interesting_fen() -> impl Strategy<Value = i64> {
    prop_oneof![
        -MAX_FEN..=MAX_FEN,
        -100_000i64..100_000,
        // sparse digits: many zeros inside and across groups
        proptest::collection::vec(prop_oneof![Just(0u8), 0u8..10], 1..16)
            .prop_map(|ds| { ds.iter().fold(0i64, |a, &d| a * 10 + i64::from(d)) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]

    #[test]
    fn amount_text_parses_back(fen in interesting_fen(), liang_bai in any::<bool>()) {
        let opts = SayOptions { liang_bai };
        let segs = say::amount(Fen(fen), &opts).unwrap();
        let text = say::to_text(&segs);
        prop_assert_eq!(parse_money(&text), Ok(fen), "{}", text);
        prop_assert_eq!(check_sandhi(&ids(&segs), "end", liang_bai), Ok(()), "{}", text);
        // R5: 整 only with no 角/分; 元 only with a non-zero integer part
        prop_assert_eq!(text.ends_with('整'), fen != 0 && fen % 100 == 0);
        prop_assert_eq!(text.contains('元'), fen.unsigned_abs() >= 100 || fen == 0);
        // R2: never two 零 in a row, never a trailing 零 before a unit-less end
        prop_assert!(!text.contains("零零"), "{}", text);
        prop_assert!(!text.contains("零元") || fen == 0, "{}", text);
        prop_assert!(!text.contains("零角"), "{}", text);
        if !liang_bai {
            prop_assert!(!text.contains("两百"), "{}", text);
        }
    }

    #[test]
    fn count_text_parses_back(n in prop_oneof![0u64..100_000, 0u64..10_000_000_000_000_000]) {
        let segs = say::count(n);
        let text = say::to_text(&segs);
        let chars: Vec<char> = text.chars().collect();
        prop_assert_eq!(parse_int(&chars), Ok(n), "{}", text);
        if n != 0 {
            prop_assert_eq!(check_sandhi(&ids(&segs), "tone4", false), Ok(()), "{}", text);
        }
    }

    #[test]
    fn integer_text_parses_back(n in 0u64..u64::MAX) {
        let segs = say::integer(n, &SayOptions::default());
        let text = say::to_text(&segs);
        let chars: Vec<char> = text.chars().collect();
        prop_assert_eq!(parse_int(&chars), Ok(n), "{}", text);
        prop_assert!(!text.contains("零零"), "{}", text);
    }

    #[test]
    fn digit_strings_are_one_prompt_per_digit(s in "[0-9]{0,17}[0-9X]?") {
        let segs = say::digits(&s);
        prop_assert_eq!(segs.len(), s.len());
        let text = say::to_text(&segs);
        let back: String = text
            .replace("艾克斯", "X")
            .chars()
            .map(|c| match c {
                '幺' => '1',
                'X' => 'X',
                c => char::from_digit(digit_value(c).unwrap_or(99) as u32, 10).unwrap_or('?'),
            })
            .collect();
        prop_assert_eq!(back, s);
    }
}

#[test]
fn out_of_range_is_an_error_not_a_panic() {
    let o = SayOptions::default();
    assert_eq!(say::amount(Fen(MAX_FEN + 1), &o), Err(SayError::OutOfRange));
    assert_eq!(
        say::amount(Fen(-MAX_FEN - 1), &o),
        Err(SayError::OutOfRange)
    );
    assert!(say::amount(Fen(MAX_FEN), &o).is_ok());
    assert!(say::amount(Fen(-MAX_FEN), &o).is_ok());
}

#[test]
fn reverse_parser_reads_the_domain_examples() {
    // the parser itself is checked against hand-written text
    assert_eq!(parse_money("一万二千三百四十五元六角七分"), Ok(1_234_567));
    assert_eq!(parse_money("负三十五元二角"), Ok(-3520));
    assert_eq!(parse_money("十万元五角"), Ok(10_000_050));
    assert_eq!(parse_money("两千元零八分"), Ok(200_008));
    assert_eq!(parse_money("零元"), Ok(0));
    let c: Vec<char> = "一亿零一万零一".chars().collect();
    assert_eq!(parse_int(&c), Ok(100_010_001));
}

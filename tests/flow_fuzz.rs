//! Random callers: any sequence of keys, silences, playback ends, ledger
//! answers and transfer failures never panics, always ends in a bounded
//! number of steps, and never puts the ID or PIN in the record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::domain::{
    AccountSummary, AuthOutcome, Fen, InsuranceStatus, PensionRecord, StatusRecord, YearMonth,
};
use ivr12333::flow::dialplan::{builtin_prompts, parse_dialplan};
use ivr12333::flow::{FlowAction, FlowConfig, FlowEvent, Interpreter, LedgerUnavailable, Speller};
use ivr12333::say::{SayError, SayOptions, Seg};
use proptest::prelude::*;

fn amount(_: Fen, _: &SayOptions) -> Result<Vec<Seg>, SayError> {
    Ok(vec![Seg::Prompt("<amt>")])
}
fn count(_: u64) -> Vec<Seg> {
    vec![Seg::Prompt("<cnt>")]
}
fn year_month(_: YearMonth) -> Vec<Seg> {
    vec![Seg::Prompt("<ym>")]
}

#[derive(Debug, Clone)]
enum Step {
    Key(char),
    Done,
    StaleDone,
    Silence,
    Auth(u8),
    TransferFailed,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::sample::select(vec!['0','1','2','3','4','5','6','7','8','9','*','#','A','x']).prop_map(Step::Key),
        4 => Just(Step::Done),
        1 => Just(Step::StaleDone),
        2 => Just(Step::Silence),
        1 => (0u8..4).prop_map(Step::Auth),
        1 => Just(Step::TransferFailed),
    ]
}

fn summary() -> AccountSummary {
    let st = StatusRecord {
        status: InsuranceStatus::Suspended,
        last_paid: None,
    };
    AccountSummary {
        pension: Some(PensionRecord {
            balance: Fen(-1),
            months_contributed: 0,
            last_paid: None,
        }),
        medical: None,
        unemployment: st.clone(),
        work_injury: st.clone(),
        maternity: st,
        data_as_of: YearMonth::new(2026, 1).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_callers_never_break_the_flow(steps in prop::collection::vec(step(), 0..200), in_hours: bool) {
        let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml")).unwrap();
        let plan = Arc::new(parse_dialplan("12333.toml", &src, &builtin_prompts()).unwrap());
        let cfg = Arc::new(FlowConfig {
            speller: Speller { amount, count, year_month },
            pin_max_len: 8,
            ..FlowConfig::default()
        });
        let wall = if in_hours { 1_795_744_800 } else { 1_795_780_800 };
        let mut now = Instant::now();
        let mut it = Interpreter::new(plan, cfg, now, wall);
        it.start(now);
        let mut token = 0;
        let mut keyed = String::new();
        for s in steps {
            while let Some(a) = it.poll_action() {
                if let FlowAction::Play { token: t, .. } = a { token = t; }
            }
            now += Duration::from_millis(200);
            match s {
                Step::Key(c) => { keyed.push(c); it.handle_event(now, FlowEvent::Digit(c)) }
                Step::Done => it.handle_event(now, FlowEvent::PlaybackDone { token }),
                Step::StaleDone => it.handle_event(now, FlowEvent::PlaybackDone { token: token.wrapping_sub(1) }),
                Step::Silence => if let Some(t) = it.poll_timeout() {
                    prop_assert!(t >= now - Duration::from_millis(200));
                    now = now.max(t);
                    it.handle_timeout(now);
                },
                Step::Auth(k) => it.handle_event(now, FlowEvent::Auth(match k {
                    0 => Ok(AuthOutcome::Verified(Box::new(summary()))),
                    1 => Ok(AuthOutcome::Rejected),
                    2 => Ok(AuthOutcome::Locked),
                    _ => Err(LedgerUnavailable),
                })),
                Step::TransferFailed => it.handle_event(now, FlowEvent::TransferFailed),
            }
        }
        it.handle_event(now, FlowEvent::Hangup);
        while it.poll_action().is_some() {}
        prop_assert!(it.is_finished());
        let rec = it.record();
        prop_assert!(!rec.end_reason.is_empty());
        // Menu keys are a subsequence of what was keyed, never more.
        prop_assert!(rec.menu_keys.len() <= keyed.len());
        // Readout segments never reach the record, only placeholders.
        for p in &rec.prompts {
            prop_assert!(!["<amt>", "<cnt>", "<ym>"].contains(&p.as_str()));
        }
    }
}

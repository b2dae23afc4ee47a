//! Interpreter cost per whole call: a scripted caller through a full pension
//! query (welcome → main menu → ID → PIN → authenticate → pension readout →
//! after menu → two silences → goodbye). A digit-by-digit fake speller keeps
//! the figure about the interpreter, not the speller.
//!
//! Run: `cargo bench --bench flow`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ivr12333::domain::{
    AccountSummary, AuthOutcome, Fen, InsuranceStatus, MedicalRecord, PensionRecord, StatusRecord,
    YearMonth,
};
use ivr12333::flow::dialplan::{builtin_prompts, parse_dialplan};
use ivr12333::flow::{FlowAction, FlowConfig, FlowEvent, Interpreter, Speller};
use ivr12333::say::{SayError, SayOptions, Seg};

const N: [&str; 10] = [
    "n_0", "n_1", "n_2", "n_3", "n_4", "n_5", "n_6", "n_7", "n_8", "n_9",
];

fn digits(n: u64) -> Vec<Seg> {
    n.to_string()
        .bytes()
        .map(|b| Seg::Prompt(N[usize::from(b - b'0')]))
        .collect()
}
fn amount(f: Fen, _: &SayOptions) -> Result<Vec<Seg>, SayError> {
    let mut v = digits(f.0.unsigned_abs());
    v.push(Seg::Prompt("m_yuan"));
    Ok(v)
}
fn year_month(ym: YearMonth) -> Vec<Seg> {
    let mut v = digits(u64::from(ym.year));
    v.push(Seg::Prompt("d_nian"));
    v.extend(digits(u64::from(ym.month)));
    v.push(Seg::Prompt("d_yue"));
    v
}

fn summary() -> AccountSummary {
    let st = StatusRecord {
        status: InsuranceStatus::Active,
        last_paid: YearMonth::new(2026, 9),
    };
    AccountSummary {
        pension: Some(PensionRecord {
            balance: Fen(1_234_567),
            months_contributed: 157,
            last_paid: YearMonth::new(2026, 9),
        }),
        medical: Some(MedicalRecord {
            balance: Fen(56_789),
        }),
        unemployment: st.clone(),
        work_injury: st.clone(),
        maternity: st,
        data_as_of: YearMonth::new(2026, 10).unwrap_or(YearMonth {
            year: 2026,
            month: 10,
        }),
    }
}

/// Drives one interpreter like a caller and a media layer would.
struct Driver {
    it: Interpreter,
    now: Instant,
    token: u64,
    actions: usize,
}

impl Driver {
    fn drain(&mut self) {
        while let Some(a) = self.it.poll_action() {
            if let FlowAction::Play { token, .. } = a {
                self.token = token;
            }
            self.actions += 1;
        }
    }
    fn event(&mut self, ev: FlowEvent) {
        self.now += Duration::from_millis(300);
        self.it.handle_event(self.now, ev);
        self.drain();
    }
    fn done(&mut self) {
        self.event(FlowEvent::PlaybackDone { token: self.token });
    }
    fn keys(&mut self, s: &str) {
        for c in s.chars() {
            self.event(FlowEvent::Digit(c));
        }
    }
    fn silence(&mut self) {
        if let Some(t) = self.it.poll_timeout() {
            self.now = t;
            self.it.handle_timeout(t);
            self.drain();
        }
    }
}

/// One whole call; returns the number of actions (so nothing is optimised away).
fn whole_call(
    plan: &Arc<ivr12333::flow::Dialplan>,
    cfg: &Arc<FlowConfig>,
    t0: Instant,
    s: &AccountSummary,
) -> usize {
    let mut d = Driver {
        it: Interpreter::new(Arc::clone(plan), Arc::clone(cfg), t0, 1_795_780_800),
        now: t0,
        token: 0,
        actions: 0,
    };
    d.it.start(t0);
    d.drain();
    d.done(); // welcome + notice
    d.done(); // main menu
    d.keys("1");
    d.done(); // enter_id
    d.keys("310104198507151239");
    d.done(); // enter_pin
    d.keys("864209");
    d.event(FlowEvent::Auth(Ok(AuthOutcome::Verified(Box::new(
        s.clone(),
    )))));
    d.done(); // insurance menu
    d.keys("1");
    d.done(); // pension readout
    d.done(); // after menu
    d.silence();
    d.done(); // no_input + after menu
    d.silence();
    d.done(); // no_input
    d.done(); // goodbye
    assert!(d.it.is_finished());
    d.actions + d.it.record().prompts.len()
}

fn bench(c: &mut Criterion) {
    let src = include_str!("../dialplans/12333.toml");
    let plan = match parse_dialplan("12333.toml", src, &builtin_prompts()) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("{e}"),
    };
    let cfg = Arc::new(FlowConfig {
        speller: Speller {
            amount,
            count: digits,
            year_month,
        },
        ..FlowConfig::default()
    });
    let s = summary();
    let t0 = Instant::now();
    c.bench_function("flow/whole_pension_call", |b| {
        b.iter(|| black_box(whole_call(&plan, &cfg, t0, &s)))
    });
    c.bench_function("flow/parse_12333_dialplan", |b| {
        b.iter(|| {
            black_box(parse_dialplan(
                "12333.toml",
                black_box(src),
                &builtin_prompts(),
            ))
            .is_ok()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

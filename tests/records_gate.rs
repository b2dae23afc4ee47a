//! The disclosure rule on virtual time: a balance is read only after the
//! audit row of that readout is durable (`Interpreter::handle_audit(Ok)`);
//! if it cannot be stored (`Err`, or no answer before the deadline) the
//! caller hears "system busy" and no amount.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::domain::{
    AccountSummary, AuthOutcome, Fen, Insurance, InsuranceStatus, MedicalRecord, PensionRecord,
    StatusRecord, YearMonth,
};
use ivr12333::flow::dialplan::{builtin_prompts, parse_dialplan};
use ivr12333::flow::{FlowAction, FlowConfig, FlowEvent, Interpreter, LedgerUnavailable, PlayItem};

/// 2026-11-27 20:00 in UTC+8 (off hours: no agent branch matters here).
const WALL: i64 = 1_795_737_600 + 12 * 3600;
const ID: &str = "310104198507151239";
const PIN: &str = "864209";

fn summary() -> AccountSummary {
    let st = StatusRecord {
        status: InsuranceStatus::None,
        last_paid: None,
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
        data_as_of: YearMonth::new(2026, 10).unwrap(),
    }
}

struct Caller {
    it: Interpreter,
    now: Instant,
    heard: Vec<String>,
    actions: Vec<FlowAction>,
    playing: Option<u64>,
}

impl Caller {
    fn at_insurance_menu() -> Caller {
        let src =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
                .unwrap();
        let plan = Arc::new(parse_dialplan("12333.toml", &src, &builtin_prompts()).unwrap());
        let now = Instant::now();
        let mut it = Interpreter::new(plan, Arc::new(FlowConfig::default()), now, WALL);
        it.start(now);
        let mut c = Caller {
            it,
            now,
            heard: Vec::new(),
            actions: Vec::new(),
            playing: None,
        };
        c.drain();
        c.done(); // welcome
        c.done(); // main menu
        c.press("1");
        c.done(); // enter_id
        c.press(ID);
        c.done(); // enter_pin
        c.press(PIN);
        assert!(matches!(
            c.actions.last(),
            Some(FlowAction::Authenticate { .. })
        ));
        c.now += Duration::from_millis(100);
        c.it.handle_event(
            c.now,
            FlowEvent::Auth(Ok(AuthOutcome::Verified(Box::new(summary())))),
        );
        c.drain();
        c.done(); // insurance menu
        c.heard.clear();
        c.actions.clear();
        c
    }

    fn drain(&mut self) {
        while let Some(a) = self.it.poll_action() {
            match &a {
                FlowAction::Play { token, items, .. } => {
                    self.playing = Some(*token);
                    for i in items {
                        if let PlayItem::Prompt(p) = i {
                            self.heard.push(p.to_string());
                        }
                    }
                }
                FlowAction::StopPlayback => self.playing = None,
                _ => {}
            }
            self.actions.push(a);
        }
    }

    fn done(&mut self) {
        let token = self.playing.take().expect("a prompt is playing");
        self.now += Duration::from_secs(3);
        self.it
            .handle_event(self.now, FlowEvent::PlaybackDone { token });
        self.drain();
    }

    fn press(&mut self, keys: &str) {
        for c in keys.chars() {
            self.now += Duration::from_millis(250);
            self.it.handle_event(self.now, FlowEvent::Digit(c));
            self.drain();
        }
    }

    fn audit(&mut self, r: Result<(), LedgerUnavailable>) {
        self.now += Duration::from_millis(20);
        self.it.handle_audit(self.now, r);
        self.drain();
    }
}

fn amount_heard(heard: &[String]) -> bool {
    heard
        .iter()
        .any(|p| p == "pension_balance" || p.starts_with("m_") || p.starts_with("u_"))
}

#[test]
fn no_amount_before_the_ack_then_the_amount() {
    let mut c = Caller::at_insurance_menu();
    c.press("1");
    assert_eq!(
        c.actions,
        vec![FlowAction::Audit {
            insurance: Insurance::Pension
        }]
    );
    assert!(
        c.heard.is_empty(),
        "nothing plays before the ack: {:?}",
        c.heard
    );
    assert!(c.playing.is_none());
    // The wait is bounded (deadline armed), and keys are kept meanwhile.
    let deadline = c.it.poll_timeout().expect("a deadline while waiting");
    assert!(deadline > c.now);
    c.audit(Ok(()));
    assert_eq!(c.heard.first().map(String::as_str), Some("pension_balance"));
    assert!(c.heard.contains(&"m_yuan".to_owned()), "{:?}", c.heard);
    assert!(c.it.record().queries.contains(&Insurance::Pension));
    // The record lists what was played, once it has played.
    c.done();
    assert!(c.it.record().prompts.contains(&"<amount>".to_owned()));
}

#[test]
fn unavailable_means_system_busy_and_no_amount() {
    let mut c = Caller::at_insurance_menu();
    c.press("2");
    assert!(c.heard.is_empty());
    c.audit(Err(LedgerUnavailable));
    assert_eq!(c.heard, vec!["system_busy".to_owned()]);
    assert!(!amount_heard(&c.heard));
    let rec = c.it.record();
    assert!(!rec.prompts.contains(&"<amount>".to_owned()), "{rec:?}");
    assert!(rec.queries.is_empty(), "a query not heard is not recorded");
    // A late ack changes nothing.
    c.audit(Ok(()));
    assert!(!amount_heard(&c.heard));
}

#[test]
fn no_ack_before_the_deadline_is_system_busy() {
    let mut c = Caller::at_insurance_menu();
    c.press("1");
    let deadline = c.it.poll_timeout().unwrap();
    c.now = deadline - Duration::from_millis(1);
    c.it.handle_timeout(c.now);
    c.drain();
    assert!(c.heard.is_empty(), "not yet");
    c.now = deadline;
    c.it.handle_timeout(c.now);
    c.drain();
    assert_eq!(c.heard, vec!["system_busy".to_owned()]);
    c.audit(Ok(()));
    assert!(!amount_heard(&c.heard), "{:?}", c.heard);
}

#[test]
fn hangup_during_the_wait_ends_quietly_and_a_late_ack_plays_nothing() {
    let mut c = Caller::at_insurance_menu();
    c.press("1");
    c.press("9");
    assert!(c.heard.is_empty());
    c.now += Duration::from_millis(50);
    c.it.handle_event(c.now, FlowEvent::Hangup);
    c.drain();
    c.audit(Ok(()));
    assert!(c.heard.is_empty(), "nothing after hangup: {:?}", c.heard);
    assert!(c.it.is_finished());
    assert_eq!(c.it.record().end_reason, "caller_hangup");
}

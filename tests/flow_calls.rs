//! Whole calls through the flow interpreter on virtual time, with a scripted
//! caller, against `dialplans/12333.toml`. Each test asserts the exact
//! prompt ids the caller hears.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr12333::domain::{
    AccountSummary, AuthOutcome, Fen, Insurance, InsuranceStatus, MedicalRecord, PensionRecord,
    StatusRecord, YearMonth,
};
use ivr12333::flow::dialplan::{builtin_prompts, parse_dialplan};
use ivr12333::flow::interpreter::CUT_MARK;
use ivr12333::flow::{
    FlowAction, FlowConfig, FlowEvent, Interpreter, LedgerUnavailable, PlayItem, Speller,
};
use ivr12333::say::{SayError, SayOptions, Seg};

// ---------------------------------------------------------------------------
// A fake speller: digit by digit, so tests do not depend on the real one.

const N: [&str; 10] = [
    "n_0", "n_1", "n_2", "n_3", "n_4", "n_5", "n_6", "n_7", "n_8", "n_9",
];

fn digit_segs(n: u64, out: &mut Vec<Seg>) {
    for b in n.to_string().bytes() {
        out.push(Seg::Prompt(N[usize::from(b - b'0')]));
    }
}

fn fake_amount(f: Fen, _: &SayOptions) -> Result<Vec<Seg>, SayError> {
    let mut v = Vec::new();
    if f.0 < 0 {
        v.push(Seg::Prompt("m_fu"));
    }
    digit_segs(f.0.unsigned_abs(), &mut v);
    v.push(Seg::Prompt("m_yuan"));
    Ok(v)
}

fn fake_count(n: u64) -> Vec<Seg> {
    let mut v = Vec::new();
    digit_segs(n, &mut v);
    v
}

fn fake_year_month(ym: YearMonth) -> Vec<Seg> {
    let mut v = Vec::new();
    digit_segs(u64::from(ym.year), &mut v);
    v.push(Seg::Prompt("d_nian"));
    v.push(Seg::Pause(50));
    digit_segs(u64::from(ym.month), &mut v);
    v.push(Seg::Prompt("d_yue"));
    v
}

// ---------------------------------------------------------------------------
// Fixtures.

/// 2026-11-27 (a Friday) 10:00 in UTC+8.
const IN_HOURS: i64 = 1_795_737_600 + 2 * 3600;
/// 2026-11-27 20:00 in UTC+8.
const OFF_HOURS: i64 = 1_795_737_600 + 12 * 3600;

const ID: &str = "310104198507151239";
const PIN: &str = "864209";

fn summary() -> AccountSummary {
    AccountSummary {
        pension: Some(PensionRecord {
            balance: Fen(1_234_567),
            months_contributed: 157,
            last_paid: YearMonth::new(2026, 9),
        }),
        medical: Some(MedicalRecord {
            balance: Fen(56_789),
        }),
        unemployment: StatusRecord {
            status: InsuranceStatus::Active,
            last_paid: YearMonth::new(2026, 9),
        },
        work_injury: StatusRecord {
            status: InsuranceStatus::Suspended,
            last_paid: None,
        },
        maternity: StatusRecord {
            status: InsuranceStatus::None,
            last_paid: None,
        },
        data_as_of: YearMonth::new(2026, 10).unwrap(),
    }
}

fn verified() -> FlowEvent {
    FlowEvent::Auth(Ok(AuthOutcome::Verified(Box::new(summary()))))
}

fn plan() -> Arc<ivr12333::flow::Dialplan> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
        .unwrap();
    Arc::new(parse_dialplan("12333.toml", &src, &builtin_prompts()).unwrap())
}

fn config() -> FlowConfig {
    FlowConfig {
        speller: Speller {
            amount: fake_amount,
            count: fake_count,
            year_month: fake_year_month,
        },
        ..FlowConfig::default()
    }
}

/// The scripted caller and the service on virtual time.
struct Call {
    it: Interpreter,
    now: Instant,
    /// Prompt ids heard (pauses left out), in order.
    heard: Vec<String>,
    /// Every action, in order.
    actions: Vec<FlowAction>,
    playing: Option<u64>,
}

impl Call {
    fn with(cfg: FlowConfig, wall: i64) -> Call {
        let now = Instant::now();
        let mut it = Interpreter::new(plan(), Arc::new(cfg), now, wall);
        it.start(now);
        let mut c = Call {
            it,
            now,
            heard: Vec::new(),
            actions: Vec::new(),
            playing: None,
        };
        c.drain();
        c
    }
    fn new(wall: i64) -> Call {
        Call::with(config(), wall)
    }

    /// A call on another dial plan (e.g. with ID read-back) and the
    /// calling number known.
    fn on_plan(plan: Arc<ivr12333::flow::Dialplan>, wall: i64, caller: Option<&str>) -> Call {
        let now = Instant::now();
        let mut it = Interpreter::new(plan, Arc::new(config()), now, wall);
        if let Some(n) = caller {
            it.set_caller_number(n);
        }
        it.start(now);
        let mut c = Call {
            it,
            now,
            heard: Vec::new(),
            actions: Vec::new(),
            playing: None,
        };
        c.drain();
        c
    }

    /// Whether the prompt playing now can be stopped by a key.
    fn playing_barge_in(&self) -> Option<bool> {
        self.actions.iter().rev().find_map(|a| match a {
            FlowAction::Play { barge_in, .. } => Some(*barge_in),
            _ => None,
        })
    }

    fn drain(&mut self) {
        // The database takes every audit row at once: a readout's audit is
        // acknowledged as durable (tests/records_gate.rs covers the rest).
        let mut audited = false;
        while let Some(a) = self.it.poll_action() {
            audited |= matches!(a, FlowAction::Audit { .. });
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
        if audited {
            self.it.handle_audit(self.now, Ok(()));
            self.drain();
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// The current prompt plays to its end.
    fn done(&mut self) {
        let token = self.playing.take().expect("a prompt is playing");
        self.advance(3000);
        self.it
            .handle_event(self.now, FlowEvent::PlaybackDone { token });
        self.drain();
    }

    fn press(&mut self, keys: &str) {
        for c in keys.chars() {
            self.advance(250);
            self.it.handle_event(self.now, FlowEvent::Digit(c));
            self.drain();
        }
    }

    /// The caller says nothing until the next timeout.
    fn silence(&mut self) {
        let t = self.it.poll_timeout().expect("a timeout is armed");
        assert!(t > self.now);
        self.now = t;
        self.it.handle_timeout(self.now);
        self.drain();
    }

    fn event(&mut self, ev: FlowEvent) {
        self.advance(100);
        self.it.handle_event(self.now, ev);
        self.drain();
    }

    /// Takes what was heard so far.
    fn heard(&mut self) -> Vec<String> {
        std::mem::take(&mut self.heard)
    }

    fn last_action(&self) -> Option<&FlowAction> {
        self.actions.last()
    }

    /// From the start to the insurance menu (prompt finished).
    fn to_insurance_menu(wall: i64) -> Call {
        let mut c = Call::new(wall);
        c.done(); // welcome + notice
        c.done(); // main menu
        c.press("1");
        c.done(); // enter_id
        c.press(ID);
        c.done(); // enter_pin
        c.press(PIN);
        assert!(matches!(
            c.last_action(),
            Some(FlowAction::Authenticate { .. })
        ));
        c.event(verified());
        c.done(); // insurance_menu
        c.heard();
        c
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const PENSION: &[&str] = &[
    "pension_balance",
    "n_1",
    "n_2",
    "n_3",
    "n_4",
    "n_5",
    "n_6",
    "n_7",
    "m_yuan",
    "pension_months",
    "n_1",
    "n_5",
    "n_7",
    "c_geyue",
    "last_paid",
    "n_2",
    "n_0",
    "n_2",
    "n_6",
    "d_nian",
    "n_9",
    "d_yue",
    "data_as_of",
    "n_2",
    "n_0",
    "n_2",
    "n_6",
    "d_nian",
    "n_1",
    "n_0",
    "d_yue",
];

// ---------------------------------------------------------------------------

#[test]
fn pension_query_whole_call_then_two_silences_goodbye() {
    let mut c = Call::new(OFF_HOURS);
    assert_eq!(c.heard(), s(&["welcome", "notice_24h"]));
    // Timeouts run from the end of the prompt, not while it plays.
    assert_eq!(c.it.poll_timeout(), None);
    c.done();
    assert_eq!(c.heard(), s(&["main_menu"]));
    c.done();
    assert_eq!(c.it.poll_timeout(), Some(c.now + Duration::from_secs(6)));
    c.press("1");
    assert_eq!(c.heard(), s(&["enter_id"]));
    c.done();
    c.press(ID);
    assert_eq!(c.heard(), s(&["enter_pin"]));
    c.done();
    c.press(PIN);
    match c.last_action() {
        Some(FlowAction::Authenticate { id, pin }) => {
            assert_eq!(id.expose(), ID);
            assert_eq!(pin.expose(), PIN);
        }
        other => panic!("expected Authenticate, got {other:?}"),
    }
    c.event(verified());
    assert_eq!(c.heard(), s(&["insurance_menu"]));
    c.done();
    c.press("1");
    assert!(c.actions.contains(&FlowAction::Audit {
        insurance: Insurance::Pension
    }));
    assert_eq!(c.heard(), s(PENSION));
    c.done();
    assert_eq!(c.heard(), s(&["after_menu"]));
    c.done();
    c.silence();
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["after_menu"]));
    c.done();
    c.silence();
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
    c.done();
    assert_eq!(c.last_action(), Some(&FlowAction::Hangup));
    assert!(c.it.is_finished());
    let r = c.it.record();
    assert_eq!(r.end_reason, "goodbye");
    assert_eq!(r.menu_keys, "11");
    assert_eq!(r.queries, vec![Insurance::Pension]);
    assert!(r.prompts.contains(&"<amount>".to_owned()));
    assert!(r.prompts.contains(&"<count>".to_owned()));
    assert!(r.prompts.contains(&"<year_month>".to_owned()));
    assert_eq!(
        r.states,
        s(&[
            "welcome",
            "main_menu",
            "id_entry",
            "pin_entry",
            "auth",
            "insurance_menu",
            "pension",
            "after_menu",
            "goodbye"
        ])
    );
}

#[test]
fn medical_then_another_insurance_statuses() {
    let mut c = Call::to_insurance_menu(OFF_HOURS);
    c.press("2");
    assert_eq!(
        c.heard(),
        s(&[
            "medical_balance",
            "n_5",
            "n_6",
            "n_7",
            "n_8",
            "n_9",
            "m_yuan",
            "data_as_of",
            "n_2",
            "n_0",
            "n_2",
            "n_6",
            "d_nian",
            "n_1",
            "n_0",
            "d_yue"
        ])
    );
    c.done();
    c.done(); // after_menu
    c.heard();
    c.press("1"); // another insurance
    assert_eq!(c.heard(), s(&["insurance_menu"]));
    c.done();
    c.press("3");
    assert_eq!(
        c.heard(),
        s(&[
            "unemployment",
            "no_personal_account",
            "status_active",
            "last_paid",
            "n_2",
            "n_0",
            "n_2",
            "n_6",
            "d_nian",
            "n_9",
            "d_yue"
        ])
    );
    c.done();
    c.done();
    c.heard();
    c.press("1");
    c.done();
    c.press("4");
    // No last contribution: the month and its label are left out.
    assert_eq!(
        c.heard(),
        s(&[
            "insurance_menu",
            "work_injury",
            "no_personal_account",
            "status_suspended"
        ])
    );
    c.done();
    c.done();
    c.heard();
    c.press("1");
    c.done();
    c.press("5");
    assert_eq!(
        c.heard(),
        s(&[
            "insurance_menu",
            "maternity",
            "no_personal_account",
            "status_none"
        ])
    );
    let q = c.it.record().queries;
    assert_eq!(
        q,
        vec![
            Insurance::Medical,
            Insurance::Unemployment,
            Insurance::WorkInjury,
            Insurance::Maternity
        ]
    );
}

#[test]
fn wrong_id_check_digit_is_caught_before_the_ledger() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    c.press("110105194912310021"); // check character should be X
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["id_invalid"]));
    c.done();
    assert_eq!(c.heard(), s(&["enter_id"]));
    assert!(
        !c.actions
            .iter()
            .any(|a| matches!(a, FlowAction::Authenticate { .. }))
    );
    c.done();
    c.press(ID);
    assert_eq!(c.heard(), s(&["enter_pin"]));
}

#[test]
fn star_means_x_only_as_the_18th_character() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    // `*` in the 5th place is invalid at once.
    c.press("1101*");
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["id_invalid"]));
    c.done();
    assert_eq!(c.heard(), s(&["enter_id"]));
    c.done();
    // 17 digits then `*` = X completes the 18 characters.
    c.press("11010519491231002*");
    assert_eq!(c.heard(), s(&["enter_pin"]));
    c.done();
    c.press(PIN);
    match c.last_action() {
        Some(FlowAction::Authenticate { id, .. }) => assert_eq!(id.expose(), "11010519491231002X"),
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

#[test]
fn id_ended_early_by_hash_or_inter_digit_timeout_is_invalid() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    c.press("3101041985#");
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["id_invalid"]));
    c.done();
    assert_eq!(c.heard(), s(&["enter_id"]));
    c.done();
    c.press("31010419");
    // The inter-digit timeout (4 s) ends the entry.
    assert_eq!(c.it.poll_timeout(), Some(c.now + Duration::from_secs(4)));
    c.silence();
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["id_invalid"]));
    c.done();
    assert_eq!(c.heard(), s(&["enter_id"]));
    c.done();
    // Third failure: goodbye out of hours.
    c.press("1#");
    assert_eq!(c.heard(), s(&["id_invalid"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
}

fn to_auth(c: &mut Call) {
    c.done();
    c.press(ID);
    c.done();
    c.press(PIN);
    assert!(matches!(
        c.last_action(),
        Some(FlowAction::Authenticate { .. })
    ));
}

#[test]
fn unknown_id_and_wrong_pin_sound_the_same_and_three_end_the_attempt() {
    for wall in [OFF_HOURS, IN_HOURS] {
        let mut c = Call::new(wall);
        c.done();
        c.done();
        c.press("1");
        let mut rounds = Vec::new();
        for _ in 0..3 {
            to_auth(&mut c);
            c.heard();
            c.event(FlowEvent::Auth(Ok(AuthOutcome::Rejected)));
            rounds.push(c.heard());
        }
        assert_eq!(rounds[0], s(&["auth_failed"]));
        assert_eq!(rounds[1], rounds[0]);
        assert_eq!(rounds[2], rounds[0]);
        c.done();
        if wall == IN_HOURS {
            assert_eq!(c.heard(), s(&["transfer_agent"]));
            c.done();
            assert_eq!(
                c.last_action(),
                Some(&FlowAction::Transfer {
                    queue: "agents".into()
                })
            );
            assert!(c.it.is_transferred());
        } else {
            assert_eq!(c.heard(), s(&["goodbye"]));
            c.done();
            assert!(c.it.is_finished());
        }
    }
}

#[test]
fn account_locked_offers_agent_in_hours_else_goodbye() {
    for (wall, then) in [(IN_HOURS, "transfer_agent"), (OFF_HOURS, "goodbye")] {
        let mut c = Call::new(wall);
        c.done();
        c.done();
        c.press("1");
        to_auth(&mut c);
        c.heard();
        c.event(FlowEvent::Auth(Ok(AuthOutcome::Locked)));
        assert_eq!(c.heard(), s(&["account_locked"]));
        c.done();
        assert_eq!(c.heard(), s(&[then]));
    }
}

#[test]
fn ledger_down_says_system_busy() {
    let mut c = Call::new(IN_HOURS);
    c.done();
    c.done();
    c.press("1");
    to_auth(&mut c);
    c.heard();
    c.event(FlowEvent::Auth(Err(LedgerUnavailable)));
    assert_eq!(c.heard(), s(&["system_busy"]));
    c.done();
    assert_eq!(c.heard(), s(&["transfer_agent"]));

    // No answer at all: the auth timeout counts as unavailable.
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    to_auth(&mut c);
    c.heard();
    c.silence();
    assert_eq!(c.heard(), s(&["system_busy"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
}

#[test]
fn silence_everywhere_replays_then_goodbye() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.heard();
    c.done();
    c.silence();
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["main_menu"]));
    c.done();
    c.silence();
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["main_menu"]));
    c.done();
    c.silence();
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
    c.done();
    assert!(c.it.is_finished());
    assert_eq!(c.it.poll_timeout(), None);
}

#[test]
fn invalid_menu_key_says_input_error_and_replays() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.heard();
    c.press("7");
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["input_error"]));
    c.done();
    assert_eq!(c.heard(), s(&["main_menu"]));
    c.done();
    c.press("1");
    assert_eq!(c.heard(), s(&["enter_id"]));
    // The wrong key is recorded as `?`: it may be a digit of an ID or PIN.
    assert_eq!(c.it.record().menu_keys, "?1");
}

#[test]
fn barge_in_stops_the_menu_and_the_key_counts() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    assert_eq!(c.heard(), s(&["welcome", "notice_24h", "main_menu"]));
    // Key during the main menu prompt.
    c.press("1");
    let n = c.actions.len();
    assert_eq!(c.actions[n - 2], FlowAction::StopPlayback);
    assert_eq!(c.heard(), s(&["enter_id"]));
}

#[test]
fn type_ahead_during_welcome_skips_to_the_keyed_choice() {
    let mut c = Call::new(OFF_HOURS);
    c.heard();
    c.press("1");
    // welcome stops, main menu is not played: the buffered 1 chose already.
    assert_eq!(c.heard(), s(&["enter_id"]));
    assert_eq!(c.it.record().menu_keys, "1");
}

#[test]
fn type_ahead_of_a_whole_id_and_pin_during_enter_id() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.heard();
    // The whole ID (ended with #) and the PIN keyed while enter_id plays.
    c.press(&format!("{ID}#{PIN}"));
    // enter_pin starts once the 18th character completes the ID; the `#`
    // keyed out of habit right after stops it and is not taken as an empty PIN.
    assert_eq!(c.heard(), s(&["enter_pin"]));
    let stops = c
        .actions
        .iter()
        .filter(|a| **a == FlowAction::StopPlayback)
        .count();
    assert_eq!(stops, 2);
    assert!(matches!(
        c.last_action(),
        Some(FlowAction::Authenticate { .. })
    ));
    // Keys while the ledger answers are kept too.
    c.press("1");
    c.event(verified());
    assert_eq!(c.heard(), s(PENSION));
}

#[test]
fn repeat_and_back() {
    let mut c = Call::to_insurance_menu(OFF_HOURS);
    c.press("1");
    c.done();
    c.done();
    c.heard();
    c.press("2"); // repeat
    assert_eq!(c.heard(), s(PENSION));
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    c.press("*"); // back to the main menu
    assert_eq!(c.heard(), s(&["main_menu"]));
    let audits = c
        .actions
        .iter()
        .filter(|a| matches!(a, FlowAction::Audit { .. }))
        .count();
    assert_eq!(audits, 2);
}

#[test]
fn agent_in_hours_transfers_and_out_of_hours_returns_to_menu() {
    let mut c = Call::new(IN_HOURS);
    c.done();
    c.done();
    c.heard();
    c.press("0");
    assert_eq!(c.heard(), s(&["transfer_agent"]));
    c.done();
    assert_eq!(
        c.last_action(),
        Some(&FlowAction::Transfer {
            queue: "agents".into()
        })
    );
    assert_eq!(c.it.record().end_reason, "transfer");

    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.heard();
    c.press("0");
    assert_eq!(c.heard(), s(&["off_hours"]));
    c.done();
    assert_eq!(c.heard(), s(&["main_menu"]));

    // 0 from the insurance menu too.
    let mut c = Call::to_insurance_menu(IN_HOURS);
    c.press("0");
    assert_eq!(c.heard(), s(&["transfer_agent"]));
}

#[test]
fn card_loss_and_policy_go_to_an_agent() {
    for (key, prompt) in [("2", "card_loss"), ("3", "policy")] {
        let mut c = Call::new(IN_HOURS);
        c.done();
        c.done();
        c.heard();
        c.press(key);
        assert_eq!(c.heard(), s(&[prompt]));
        c.done();
        assert_eq!(c.heard(), s(&["transfer_agent"]));
    }
}

#[test]
fn transfer_failure_says_agents_busy_then_goodbye() {
    let mut c = Call::new(IN_HOURS);
    c.done();
    c.done();
    c.press("0");
    c.done();
    c.heard();
    c.event(FlowEvent::TransferFailed);
    assert_eq!(c.heard(), s(&["agents_busy"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
    c.done();
    assert_eq!(c.last_action(), Some(&FlowAction::Hangup));
    assert_eq!(c.it.record().end_reason, "goodbye");
}

#[test]
fn hangup_mid_prompt_finishes_with_no_further_actions() {
    let mut c = Call::new(OFF_HOURS);
    c.event(FlowEvent::Hangup);
    assert!(c.it.is_finished());
    let n = c.actions.len();
    let token = 1;
    c.event(FlowEvent::PlaybackDone { token });
    c.press("1");
    c.event(verified());
    c.it.handle_timeout(c.now + Duration::from_secs(60));
    c.drain();
    assert_eq!(c.actions.len(), n);
    assert_eq!(c.it.poll_timeout(), None);
    assert_eq!(c.it.record().end_reason, "caller_hangup");
}

#[test]
fn no_record_offers_the_after_menu() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    to_auth(&mut c);
    let mut sum = summary();
    sum.pension = None;
    c.event(FlowEvent::Auth(Ok(AuthOutcome::Verified(Box::new(sum)))));
    c.done();
    c.heard();
    c.press("1");
    assert_eq!(c.heard(), s(&["no_record"]));
    c.done();
    assert_eq!(c.heard(), s(&["after_menu"]));
    assert!(c.it.record().queries.is_empty());
    c.done();
    c.press("2");
    assert_eq!(c.heard(), s(&["no_record"]));
}

#[test]
fn negative_balance_is_read_with_fu_and_flagged() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    to_auth(&mut c);
    let mut sum = summary();
    sum.medical = Some(MedicalRecord {
        balance: Fen(-3520),
    });
    c.event(FlowEvent::Auth(Ok(AuthOutcome::Verified(Box::new(sum)))));
    c.done();
    c.heard();
    c.press("2");
    let heard = c.heard();
    assert_eq!(heard[..3], s(&["medical_balance", "m_fu", "n_3"])[..]);
    assert!(c.actions.contains(&FlowAction::Anomaly {
        insurance: Insurance::Medical
    }));
    assert!(c.it.record().anomaly);
}

#[test]
fn pin_length_is_configurable() {
    let cfg = FlowConfig {
        pin_min_len: 6,
        pin_max_len: 8,
        ..config()
    };
    let mut c = Call::with(cfg, OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.press(ID);
    c.done();
    c.heard();
    // 5 digits is too short.
    c.press("12345#");
    // the reason is heard in full, then the question again
    assert_eq!(c.heard(), s(&["input_error"]));
    c.done();
    assert_eq!(c.heard(), s(&["enter_pin"]));
    c.done();
    c.press("1234567#");
    match c.last_action() {
        Some(FlowAction::Authenticate { pin, .. }) => assert_eq!(pin.expose(), "1234567"),
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

#[test]
fn privacy_no_id_pin_or_balance_in_records_or_action_debug() {
    let mut c = Call::to_insurance_menu(OFF_HOURS);
    c.press("1");
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.press("2");
    let rec = c.it.record();
    let events: Vec<FlowEvent> = ID
        .chars()
        .chain(PIN.chars())
        .map(FlowEvent::Digit)
        .chain([verified()])
        .collect();
    let dumps = [
        format!("{events:?}"),
        format!("{rec:?}"),
        serde_json::to_string(&rec).unwrap(),
        format!("{:?}", c.actions),
        format!("{:?}", c.it),
    ];
    for d in &dumps {
        for secret in [ID, PIN, "1234567", "12345", "56789", "567.89", "157"] {
            assert!(!d.contains(secret), "{secret} leaked");
        }
        // The digits of the ID and PIN never reach the recorded menu keys.
        assert!(!d.contains("864"));
    }
    assert!(dumps[0].contains("Digit(<redacted>)") && dumps[0].contains("Auth(Verified)"));
    assert_eq!(rec.menu_keys, "1112");
    // The CDR gets the same data.
    let mut cdr = ivr12333::domain::CallRecord::default();
    rec.fill(&mut cdr);
    assert_eq!(cdr.prompts, rec.prompts);
}

#[test]
fn a_plan_cycle_that_never_waits_ends_the_call_instead_of_spinning() {
    // Readout-only state without an authenticated caller: nothing to play,
    // so it goes straight to `next`, which is itself.
    let src = r#"[dialplan]
initial = "a"
[state.a]
type = "play"
play = [{ say = "amount", field = "pension.balance" }]
next = "a"
"#;
    let plan = Arc::new(parse_dialplan("loop.toml", src, &builtin_prompts()).unwrap());
    let t0 = Instant::now();
    let mut it = Interpreter::new(plan, Arc::new(config()), t0, OFF_HOURS);
    it.start(t0);
    assert_eq!(it.poll_action(), Some(FlowAction::Hangup));
    assert_eq!(it.poll_action(), None);
    assert!(it.is_finished());
    assert_eq!(it.record().end_reason, "error");
}

/// Three silences at a prompt: two replays, then goodbye (out of hours).
fn three_silences(c: &mut Call, prompt: &str) {
    c.heard();
    for _ in 0..2 {
        c.silence();
        // the reason is heard in full, then the question again
        assert_eq!(c.heard(), s(&["no_input"]));
        c.done();
        assert_eq!(c.heard(), s(&[prompt]));
        c.done();
    }
    c.silence();
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
    c.done();
    assert!(c.it.is_finished());
}

#[test]
fn silence_at_id_pin_and_insurance_menu_ends_in_goodbye() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    three_silences(&mut c, "enter_id");

    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.press(ID);
    c.done();
    three_silences(&mut c, "enter_pin");

    let mut c = Call::to_insurance_menu(OFF_HOURS);
    three_silences(&mut c, "insurance_menu");
}

// ---------------------------------------------------------------------------
// Prompts that type-ahead cannot skip (issue 12).

/// Wrong PIN with "1" typed while the ledger answers: the caller hears the
/// wrong-PIN prompt in full (the "1" neither skips it nor answers the ID
/// prompt after it), then the ID prompt.
#[test]
fn wrong_pin_then_typed_ahead_key_hears_the_reason_then_the_id_prompt() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    to_auth(&mut c);
    c.heard();
    c.press("1"); // typed ahead while the ledger checks
    c.event(FlowEvent::Auth(Ok(AuthOutcome::Rejected)));
    assert_eq!(c.heard(), s(&["auth_failed"]));
    assert_eq!(c.playing_barge_in(), Some(false));
    // keys during it are discarded, not buffered
    c.press("12");
    assert!(!c.actions.contains(&FlowAction::StopPlayback));
    c.done();
    assert_eq!(c.heard(), s(&["enter_id"]));
    c.done();
    // the ID prompt waits for a fresh entry: no digit was carried over
    c.press(ID);
    assert_eq!(c.heard(), s(&["enter_pin"]));
    let r = c.it.record();
    assert!(r.prompts.contains(&"auth_failed".to_owned()));
    assert!(
        !r.prompts.iter().any(|p| p.ends_with(CUT_MARK)),
        "{:?}",
        r.prompts
    );
}

#[test]
fn locked_and_busy_are_heard_in_full_despite_type_ahead() {
    for (outcome, prompt) in [
        (FlowEvent::Auth(Ok(AuthOutcome::Locked)), "account_locked"),
        (FlowEvent::Auth(Err(LedgerUnavailable)), "system_busy"),
    ] {
        let mut c = Call::new(OFF_HOURS);
        c.done();
        c.done();
        c.press("1");
        to_auth(&mut c);
        c.heard();
        c.press("1");
        c.event(outcome);
        assert_eq!(c.heard(), s(&[prompt]), "{prompt}");
        c.press("0");
        c.done();
        // Off hours the failure path says goodbye: not skipped either.
        assert_eq!(c.heard(), s(&["goodbye"]), "{prompt}");
        c.done();
        assert!(c.it.is_finished());
        let r = c.it.record();
        assert_eq!(r.prompts.iter().filter(|p| *p == prompt).count(), 1);
        assert_eq!(
            r.menu_keys, "1",
            "the typed-ahead keys never reached a menu"
        );
    }
}

/// An invalid ID: "身份证号码有误" is heard in full, keys pressed during it
/// are dropped, then the ID prompt is asked again (and takes barge-in).
#[test]
fn id_invalid_is_heard_in_full_then_the_prompt_again() {
    let mut c = Call::new(OFF_HOURS);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    c.press("110105194912310021"); // wrong check digit
    assert_eq!(c.heard(), s(&["id_invalid"]));
    assert_eq!(c.playing_barge_in(), Some(false));
    c.press("3"); // dropped
    c.done();
    assert_eq!(c.heard(), s(&["enter_id"]));
    assert_eq!(c.playing_barge_in(), Some(true));
    c.press(ID);
    assert_eq!(c.heard(), s(&["enter_pin"]));
}

/// With the library's durations the record lists what was really heard:
/// a prompt stopped by a key is marked cut, prompts after it are left out.
#[test]
fn record_marks_cut_prompts_and_leaves_out_unplayed_ones() {
    let mut cfg = config();
    let ms: std::collections::HashMap<String, u32> = [
        ("welcome", 2000u32),
        ("notice_24h", 3000),
        ("main_menu", 5000),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    cfg.prompt_ms = Some(Arc::new(ms));
    let mut c = Call::with(cfg, OFF_HOURS);
    // 2.5 s in: welcome heard, notice_24h cut by the key.
    c.advance(2250);
    c.press("0");
    c.done(); // off_hours
    c.heard();
    let r = c.it.record();
    assert_eq!(
        r.prompts[..3],
        s(&["welcome", &format!("notice_24h{CUT_MARK}"), "off_hours"])[..]
    );
    // main_menu after it, barged into at once: cut at its start
    c.press("1");
    assert_eq!(
        c.it.record().prompts.last().cloned(),
        Some(format!("main_menu{CUT_MARK}"))
    );
    // a hangup mid-prompt cuts too
    c.it.handle_event(c.now, FlowEvent::Hangup);
    assert_eq!(
        c.it.record().prompts.last().cloned(),
        Some(format!("enter_id{CUT_MARK}"))
    );
}

// ---------------------------------------------------------------------------
// ID read-back (issue 12).

fn plan_with_read_back(groups: Option<&str>) -> Arc<ivr12333::flow::Dialplan> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
        .unwrap();
    let mut src = src.replacen("# read_back = true", "read_back = true", 1);
    if let Some(g) = groups {
        src = src.replacen(
            "# read_back_groups = [6, 4, 4, 4]",
            &format!("read_back_groups = {g}"),
            1,
        );
    }
    assert!(src.contains("\nread_back = true"));
    Arc::new(parse_dialplan("12333.toml", &src, &builtin_prompts()).unwrap())
}

/// R11: digit by digit, 1 as 幺, X as 艾克斯, groups with short pauses.
fn readback(id: &str, groups: &[usize]) -> Vec<String> {
    let mut v = vec!["id_readback".to_owned()];
    let mut at = 0;
    for g in groups {
        for ch in id[at..at + g].chars() {
            v.push(match ch {
                '1' => "n_yao".to_owned(),
                'X' => "l_x".to_owned(),
                d => format!("n_{d}"),
            });
        }
        at += g;
    }
    v.push("id_confirm".to_owned());
    v
}

#[test]
fn id_is_read_back_in_groups_and_confirmed_with_1() {
    let mut c = Call::on_plan(plan_with_read_back(None), OFF_HOURS, None);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    c.press("11010519491231002*"); // X as *
    // the read-back is heard in full (keys typed now are dropped) ...
    assert_eq!(c.playing_barge_in(), Some(false));
    c.press("8");
    let pauses: Vec<u32> = c
        .actions
        .iter()
        .rev()
        .find_map(|a| match a {
            FlowAction::Play { items, .. } => Some(items.clone()),
            _ => None,
        })
        .unwrap()
        .iter()
        .filter_map(|i| match i {
            PlayItem::Pause(ms) => Some(*ms),
            _ => None,
        })
        .collect();
    assert_eq!(pauses.len(), 3, "6-4-4-4: three pauses");
    c.done();
    // ... then the confirmation, which takes a key at once
    assert_eq!(c.heard(), readback("11010519491231002X", &[6, 4, 4, 4]));
    assert_eq!(c.playing_barge_in(), Some(true));
    c.press("1");
    assert_eq!(c.heard(), s(&["enter_pin"]));
    c.done();
    c.press(PIN);
    match c.last_action() {
        Some(FlowAction::Authenticate { id, .. }) => assert_eq!(id.expose(), "11010519491231002X"),
        other => panic!("expected Authenticate, got {other:?}"),
    }
    // the PIN is never read back; the record holds a placeholder, no digit
    c.event(verified());
    assert_eq!(c.heard(), s(&["insurance_menu"]));
    let r = c.it.record();
    assert!(r.prompts.contains(&"<id>".to_owned()));
    assert!(
        !r.prompts.iter().any(|p| p.starts_with("n_")),
        "{:?}",
        r.prompts
    );
    assert_eq!(r.menu_keys, "11");
}

#[test]
fn read_back_2_re_enters_and_groups_are_configurable() {
    let mut c = Call::on_plan(plan_with_read_back(Some("[6, 8, 4]")), OFF_HOURS, None);
    c.done();
    c.done();
    c.press("1");
    c.done();
    c.heard();
    c.press(ID);
    c.done();
    let heard = c.heard();
    assert_eq!(heard, readback(ID, &[6, 8, 4]));
    c.press("2"); // re-enter
    assert_eq!(c.heard(), s(&["enter_id"]));
    c.done();
    c.press(ID);
    c.done(); // the read-back
    c.done(); // the question
    c.heard();
    // silence at the confirmation: 您没有输入, then the question again
    c.silence();
    assert_eq!(c.heard(), s(&["no_input"]));
    c.done();
    assert_eq!(c.heard(), s(&["id_confirm"]));
    c.done();
    c.press("7");
    assert_eq!(c.heard(), s(&["input_error"]));
    c.done();
    assert_eq!(c.heard(), s(&["id_confirm"]));
    c.press("1");
    assert_eq!(c.heard(), s(&["enter_pin"]));
}

#[test]
fn read_back_is_refused_on_a_pin_and_groups_must_cover_the_id() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
        .unwrap();
    let pin = src.replacen(
        "validate = \"pin\"",
        "validate = \"pin\"\nread_back = true",
        1,
    );
    let e = parse_dialplan("x.toml", &pin, &builtin_prompts()).unwrap_err();
    assert!(e.message.contains("never read back"), "{e}");
    let bad = src
        .replacen("# read_back = true", "read_back = true", 1)
        .replacen(
            "# read_back_groups = [6, 4, 4, 4]",
            "read_back_groups = [6, 4, 4]",
            1,
        );
    let e = parse_dialplan("x.toml", &bad, &builtin_prompts()).unwrap_err();
    assert!(e.message.contains("add up to 14"), "{e}");
}

// ---------------------------------------------------------------------------
// Callback instead of a long wait (issue 12).

fn to_queue(c: &mut Call) {
    c.done();
    c.done();
    c.press("0");
    c.done(); // transfer_agent
    assert!(c.it.is_transferred());
    c.heard();
}

#[test]
fn callback_to_the_calling_number_is_read_back_and_booked() {
    let mut c = Call::on_plan(plan(), IN_HOURS, Some("+8613800138000"));
    to_queue(&mut c);
    assert!(c.it.can_offer_callback());
    c.event(FlowEvent::CallbackOffered);
    assert_eq!(c.heard(), s(&["callback_offer"]));
    c.done();
    c.press("1");
    // the number is heard in full, then the question
    assert_eq!(c.playing_barge_in(), Some(false));
    c.done();
    let mut want = s(&["callback_number"]);
    for ch in "8613800138000".chars() {
        want.push(if ch == '1' {
            "n_yao".into()
        } else {
            format!("n_{ch}")
        });
    }
    want.push("callback_confirm".into());
    assert_eq!(c.heard(), want);
    c.press("1");
    assert!(c.actions.contains(&FlowAction::Callback {
        queue: "agents".into(),
        number: "8613800138000".into()
    }));
    assert_eq!(c.heard(), s(&["callback_done"]));
    c.done();
    assert_eq!(c.heard(), s(&["goodbye"]));
    c.done();
    assert_eq!(c.last_action(), Some(&FlowAction::Hangup));
    let r = c.it.record();
    assert_eq!(r.end_reason, "callback");
    assert!(r.prompts.contains(&"<number>".to_owned()));
    assert!(!r.prompts.iter().any(|p| p.starts_with("n_")));
    // the Debug form never shows the number
    let shown = format!("{:?}", c.actions);
    assert!(!shown.contains("13800138000"), "{shown}");
}

#[test]
fn callback_to_a_keyed_number_and_continue_waiting() {
    // No usable calling number (anonymous): the caller keys one in.
    let mut c = Call::on_plan(plan(), IN_HOURS, Some("anonymous"));
    to_queue(&mut c);
    c.event(FlowEvent::CallbackOffered);
    c.done();
    c.press("1");
    assert_eq!(c.heard(), s(&["callback_offer", "callback_enter"]));
    c.done();
    c.press("123"); // too short
    c.press("#");
    assert_eq!(c.heard(), s(&["input_error"]));
    c.done();
    assert_eq!(c.heard(), s(&["callback_enter"]));
    c.press("02088886666#");
    c.done();
    let heard = c.heard();
    assert_eq!(heard.first().map(String::as_str), Some("callback_number"));
    assert_eq!(heard.last().map(String::as_str), Some("callback_confirm"));
    c.press("2"); // another number
    assert_eq!(c.heard(), s(&["callback_enter"]));
    c.press("13900001111#");
    c.done();
    c.heard();
    c.press("1");
    assert!(c.actions.contains(&FlowAction::Callback {
        queue: "agents".into(),
        number: "13900001111".into()
    }));

    // "2" at the offer: back into the queue.
    let mut c = Call::on_plan(plan(), IN_HOURS, Some("13800138000"));
    to_queue(&mut c);
    let transfers = |c: &Call| {
        c.actions
            .iter()
            .filter(|a| matches!(a, FlowAction::Transfer { .. }))
            .count()
    };
    assert_eq!(transfers(&c), 1);
    c.event(FlowEvent::CallbackOffered);
    c.done();
    c.press("2");
    assert_eq!(transfers(&c), 2);
    assert!(c.it.is_transferred());
    assert_eq!(c.it.record().end_reason, "transfer");
}

#[test]
fn callback_offer_is_ignored_unless_waiting_in_a_queue_that_has_one() {
    let mut c = Call::on_plan(plan(), IN_HOURS, Some("13800138000"));
    assert!(!c.it.can_offer_callback());
    c.event(FlowEvent::CallbackOffered);
    assert_eq!(c.heard(), s(&["welcome", "notice_24h"]));
    // a plan whose transfer has no callback target
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dialplans/12333.toml"))
        .unwrap()
        .replace("callback = \"callback_offer\"", "");
    let src = src.replace("\"1\" = \"callback\", ", "\"1\" = \"transfer\", ");
    let bare = Arc::new(parse_dialplan("x.toml", &src, &builtin_prompts()));
    // without the target the offer states are unreachable: a load error
    assert!(bare.is_err());
}

//! Dialplan files: parse and validate the TOML call-tree language
//! (reference: `docs/dialplan.md`).
//!
//! A dialplan is a set of named states; the interpreter (`interpreter.rs`)
//! walks them. Loading checks everything an operator can get wrong (unknown
//! state or prompt, unreachable state, a collect or menu without a way out,
//! bad timeouts, bad keys, a missing initial state) and reports it as
//! `file:line:column: reason`. Positions come from `toml`'s span support
//! (`toml::Spanned`), so even semantic errors name the line that is wrong.
//!
//! The file is operator input: nothing here panics on it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::domain::Insurance;

/// The prompt ids the project records (the prompts helper's manifest holds
/// exactly these). Used by tests and as a fallback for `dialplan check` when
/// no manifest is available.
pub const BUILTIN_PROMPT_IDS: &[&str] = &[
    "n_0",
    "n_1",
    "n_2",
    "n_3",
    "n_4",
    "n_5",
    "n_6",
    "n_7",
    "n_8",
    "n_9",
    "n_1_yi2",
    "n_1_yi4",
    "n_yao",
    "n_liang",
    "u_shi",
    "u_bai",
    "u_qian",
    "u_wan",
    "u_yi",
    "m_yuan",
    "m_jiao",
    "m_fen",
    "m_zheng",
    "m_fu",
    "d_nian",
    "d_yue",
    "d_ri",
    "c_geyue",
    "c_wei",
    "l_x",
    "welcome",
    "notice_24h",
    "main_menu",
    "card_loss",
    "policy",
    "enter_id",
    "id_invalid",
    "enter_pin",
    "auth_failed",
    "account_locked",
    "no_record",
    "insurance_menu",
    "pension_balance",
    "pension_months",
    "last_paid",
    "data_as_of",
    "medical_balance",
    "unemployment",
    "work_injury",
    "maternity",
    "no_personal_account",
    "status_active",
    "status_suspended",
    "status_none",
    "after_menu",
    "no_input",
    "input_error",
    "transfer_agent",
    "queue_ahead",
    "queue_wait",
    "agents_busy",
    "off_hours",
    "system_busy",
    "goodbye",
    "press_star_leave",
    "hold_music",
    "id_readback",
    "id_confirm",
    "callback_offer",
    "callback_number",
    "callback_confirm",
    "callback_enter",
    "callback_done",
];

/// Prompts of an ID read-back (`read_back = true` on a `validate = "id"`
/// collect): "您输入的身份证号码是", the digits, "确认请按1，重新输入请按2".
/// (`input_error` answers a wrong key at the question.)
pub const READ_BACK_PROMPTS: [&str; 3] = ["id_readback", "id_confirm", "input_error"];

/// Default read-back grouping of an 18-character ID: region code (6), birth
/// year (4), month and day (4), sequence and check character (4).
pub const DEFAULT_READ_BACK_GROUPS: [usize; 4] = [6, 4, 4, 4];

/// Prompts of a `callback` state: "您的回拨号码是", "确认请按1，输入其他号码请按2",
/// "请输入回拨号码，以井号键结束", "已为您预约回拨…".
pub const CALLBACK_PROMPTS: [&str; 4] = [
    "callback_number",
    "callback_confirm",
    "callback_enter",
    "callback_done",
];

/// Callback numbers keyed by the caller: 5 (short internal numbers) to 20
/// digits (international with prefix).
pub const CALLBACK_NUMBER_LEN: (usize, usize) = (5, 20);

/// The special target of a menu key that goes back to the last state marked
/// `repeatable = true` (the "repeat" key of the after-result menu).
pub const REPEAT_TARGET: &str = "@repeat";

/// Timeouts above this are an operator mistake (a caller would hang in silence).
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// A dialplan error with its position: displayed as `file:line:col: message`.
/// Messages never quote caller data (a dialplan holds none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct DialplanError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

// ---------------------------------------------------------------------------
// The validated model the interpreter runs.

/// A loaded, validated dialplan. Targets are indices into `states`.
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub name: String,
    pub initial: StateId,
    pub states: Vec<State>,
    index: HashMap<String, StateId>,
}

pub type StateId = usize;

impl Dialplan {
    /// Every prompt id this dial plan can play (its items, retry prompts,
    /// read-back and callback prompts), without the number segments the
    /// speller adds for values.
    pub fn prompt_ids(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let items = |v: &[Item], out: &mut BTreeSet<String>| {
            for it in v {
                match it {
                    Item::Prompt(p) => {
                        out.insert(p.to_string());
                    }
                    Item::Value { before, after, .. } => {
                        out.extend(before.iter().chain(after).map(|p| p.to_string()));
                    }
                }
            }
        };
        let retry = |r: &Retry, out: &mut BTreeSet<String>| {
            out.insert(r.no_input_prompt.to_string());
            out.insert(r.invalid_prompt.to_string());
        };
        for st in &self.states {
            match &st.kind {
                StateKind::Play(p) => items(&p.items, &mut out),
                StateKind::Menu(m) => {
                    items(&m.prompt, &mut out);
                    retry(&m.retry, &mut out);
                }
                StateKind::Collect(c) => {
                    items(&c.prompt, &mut out);
                    retry(&c.retry, &mut out);
                    if c.read_back.is_some() {
                        out.extend(READ_BACK_PROMPTS.iter().map(|p| (*p).to_owned()));
                    }
                }
                StateKind::Callback(c) => {
                    retry(&c.retry, &mut out);
                    out.extend(CALLBACK_PROMPTS.iter().map(|p| (*p).to_owned()));
                }
                StateKind::Hangup(h) => items(&h.items, &mut out),
                StateKind::Authenticate(_) | StateKind::Branch(_) | StateKind::Transfer(_) => {}
            }
        }
        // Status values are spoken as prompts of their own.
        for st in &self.states {
            let v = match &st.kind {
                StateKind::Play(p) => &p.items,
                _ => continue,
            };
            if v.iter().any(|i| {
                matches!(
                    i,
                    Item::Value {
                        field: Field::Status(_),
                        ..
                    }
                )
            }) {
                out.extend(["status_active", "status_suspended", "status_none"].map(str::to_owned));
            }
        }
        out
    }

    pub fn state_id(&self, name: &str) -> Option<StateId> {
        self.index.get(name).copied()
    }
    pub fn state(&self, id: StateId) -> Option<&State> {
        self.states.get(id)
    }
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: Arc<str>,
    pub kind: StateKind,
}

/// Where a transition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    State(StateId),
    /// Back to the last `repeatable` state visited.
    Repeat,
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Play(PlayState),
    Menu(MenuState),
    Collect(CollectState),
    Authenticate(AuthState),
    Branch(BranchState),
    Transfer(TransferState),
    Hangup(HangupState),
    Callback(CallbackState),
}

impl StateKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            StateKind::Play(_) => "play",
            StateKind::Menu(_) => "menu",
            StateKind::Collect(_) => "collect",
            StateKind::Authenticate(_) => "authenticate",
            StateKind::Branch(_) => "branch",
            StateKind::Transfer(_) => "transfer",
            StateKind::Hangup(_) => "hangup",
            StateKind::Callback(_) => "callback",
        }
    }
}

/// One element of a prompt list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Prompt(Arc<str>),
    /// A spoken value of the authenticated caller's account, with optional
    /// prompts around it; all three are skipped when the value is absent
    /// (e.g. no last contribution month).
    Value {
        field: Field,
        before: Option<Arc<str>>,
        after: Option<Arc<str>>,
    },
}

/// Account fields a dialplan can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    PensionBalance,
    PensionMonths,
    PensionLastPaid,
    MedicalBalance,
    DataAsOf,
    Status(Insurance),
    LastPaid(Insurance),
}

/// How a value is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SayKind {
    Amount,
    Count,
    YearMonth,
    Status,
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "pension.balance" => Field::PensionBalance,
            "pension.months" => Field::PensionMonths,
            "pension.last_paid" => Field::PensionLastPaid,
            "medical.balance" => Field::MedicalBalance,
            "data_as_of" => Field::DataAsOf,
            "unemployment.status" => Field::Status(Insurance::Unemployment),
            "work_injury.status" => Field::Status(Insurance::WorkInjury),
            "maternity.status" => Field::Status(Insurance::Maternity),
            "unemployment.last_paid" => Field::LastPaid(Insurance::Unemployment),
            "work_injury.last_paid" => Field::LastPaid(Insurance::WorkInjury),
            "maternity.last_paid" => Field::LastPaid(Insurance::Maternity),
            _ => return None,
        })
    }
    pub fn say_kind(self) -> SayKind {
        match self {
            Field::PensionBalance | Field::MedicalBalance => SayKind::Amount,
            Field::PensionMonths => SayKind::Count,
            Field::PensionLastPaid | Field::DataAsOf | Field::LastPaid(_) => SayKind::YearMonth,
            Field::Status(_) => SayKind::Status,
        }
    }
}

const FIELD_NAMES: &str = "pension.balance, pension.months, pension.last_paid, medical.balance, \
     data_as_of, {unemployment,work_injury,maternity}.{status,last_paid}";

#[derive(Debug, Clone)]
pub struct PlayState {
    pub items: Vec<Item>,
    pub barge_in: bool,
    pub next: Target,
    /// The account record this readout needs; without it go to `missing`.
    pub require: Option<(Insurance, Target)>,
    /// Emit `FlowAction::Audit` for this insurance when entered.
    pub audit: Option<Insurance>,
    /// `@repeat` comes back here.
    pub repeatable: bool,
}

/// Retry policy shared by menus and collects.
#[derive(Debug, Clone)]
pub struct Retry {
    pub first_digit_timeout_ms: u64,
    pub inter_digit_timeout_ms: u64,
    /// Failed attempts (silence or bad input) before `on_fail`.
    pub tries: u32,
    pub no_input_prompt: Arc<str>,
    pub invalid_prompt: Arc<str>,
    pub on_fail: Target,
    /// Optional: this many silences go to `on_no_input` (the after-result
    /// menu's "two silences → goodbye").
    pub no_input_limit: Option<(u32, Target)>,
    /// Whether a key stops the no-input / invalid prompt (`error_barge_in`,
    /// default false): the reason is heard in full, keys pressed during it
    /// are discarded, and only the repeated prompt after it takes keys.
    pub error_barge_in: bool,
}

#[derive(Debug, Clone)]
pub struct MenuState {
    pub prompt: Vec<Item>,
    pub barge_in: bool,
    /// Key → target. Keys are `0`–`9`, `*`, `#`.
    pub keys: Vec<(char, Target)>,
    pub retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validate {
    None,
    /// GB 11643 check digit and birth date via `IdNumber::parse`; stored as the caller's ID.
    Id,
    /// PIN length from `FlowConfig`; stored as the caller's PIN.
    Pin,
}

#[derive(Debug, Clone)]
pub struct CollectState {
    pub prompt: Vec<Item>,
    pub barge_in: bool,
    /// `None` for `validate = "pin"` without explicit lengths: the config decides.
    pub min_len: Option<usize>,
    pub max_len: Option<usize>,
    pub terminator: Option<char>,
    /// `*` stands for X, only as the last (max_len-th) character.
    pub star_as_x: bool,
    pub validate: Validate,
    pub next: Target,
    pub retry: Retry,
    /// Read the entry back and ask for confirmation before `next` (only
    /// with `validate = "id"`: a PIN is never read back).
    pub read_back: Option<ReadBack>,
}

/// How an ID entry is read back (`read_back`, `read_back_groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Group lengths, summing to the entry's `max_len` (default 6-4-4-4).
    pub groups: Vec<usize>,
}

/// `type = "callback"`: book a callback (预约回拨) to the calling number, or
/// to a number the caller keys in and hears back; nothing is dialled.
#[derive(Debug, Clone)]
pub struct CallbackState {
    /// The queue whose agents work the booking.
    pub queue: String,
    /// After the booking and its confirmation prompt.
    pub next: Target,
    pub retry: Retry,
}

#[derive(Debug, Clone)]
pub struct AuthState {
    pub verified: Target,
    pub rejected: Target,
    pub locked: Target,
    pub unavailable: Target,
    pub max_rejections: u32,
    pub too_many_rejections: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Inside the configured agent calendar.
    AgentHours,
    /// A negative balance was read during this call.
    Anomaly,
}

#[derive(Debug, Clone)]
pub struct BranchState {
    pub condition: Condition,
    pub then: Target,
    pub otherwise: Target,
}

#[derive(Debug, Clone)]
pub struct TransferState {
    pub queue: String,
    pub failed: Target,
    /// Where the call goes when a callback is offered while it waits (the
    /// estimated wait is over the queue's threshold, or the caller pressed
    /// the callback key): `FlowEvent::CallbackOffered`.
    pub callback: Option<Target>,
}

#[derive(Debug, Clone)]
pub struct HangupState {
    pub items: Vec<Item>,
    pub reason: String,
}

// ---------------------------------------------------------------------------
// The file format (serde side), with spans everywhere an error may point.

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    dialplan: S<RawHeader>,
    #[serde(default)]
    state: BTreeMap<S<String>, S<RawState>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    #[serde(default)]
    name: Option<String>,
    initial: Option<S<String>>,
    first_digit_timeout_ms: Option<S<i64>>,
    inter_digit_timeout_ms: Option<S<i64>>,
    tries: Option<S<i64>>,
    no_input_prompt: Option<S<String>>,
    invalid_prompt: Option<S<String>>,
    /// Default of the states' `error_barge_in`.
    #[serde(default)]
    error_barge_in: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawItem {
    Prompt(String),
    Value {
        say: String,
        field: String,
        #[serde(default)]
        before: Option<String>,
        #[serde(default)]
        after: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(rename = "type")]
    kind: Option<S<String>>,
    // play / hangup
    play: Option<Vec<S<RawItem>>>,
    // menu / collect
    prompt: Option<Vec<S<RawItem>>>,
    barge_in: Option<bool>,
    next: Option<S<String>>,
    require: Option<S<String>>,
    missing: Option<S<String>>,
    audit: Option<S<String>>,
    repeatable: Option<bool>,
    keys: Option<S<BTreeMap<S<String>, S<String>>>>,
    first_digit_timeout_ms: Option<S<i64>>,
    inter_digit_timeout_ms: Option<S<i64>>,
    tries: Option<S<i64>>,
    no_input_prompt: Option<S<String>>,
    invalid_prompt: Option<S<String>>,
    on_fail: Option<S<String>>,
    no_input_limit: Option<S<i64>>,
    on_no_input: Option<S<String>>,
    error_barge_in: Option<bool>,
    min_len: Option<S<i64>>,
    max_len: Option<S<i64>>,
    terminator: Option<S<String>>,
    star_as_x: Option<bool>,
    validate: Option<S<String>>,
    read_back: Option<S<bool>>,
    read_back_groups: Option<S<Vec<i64>>>,
    // authenticate
    verified: Option<S<String>>,
    rejected: Option<S<String>>,
    locked: Option<S<String>>,
    unavailable: Option<S<String>>,
    max_rejections: Option<S<i64>>,
    too_many_rejections: Option<S<String>>,
    // branch
    #[serde(rename = "if")]
    condition: Option<S<String>>,
    then: Option<S<String>>,
    #[serde(rename = "else")]
    otherwise: Option<S<String>>,
    // transfer
    queue: Option<S<String>>,
    failed: Option<S<String>>,
    callback: Option<S<String>>,
    // hangup
    reason: Option<String>,
}

// ---------------------------------------------------------------------------
// Loading.

/// Byte offset → 1-based (line, column in characters).
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let mut line = 1;
    let mut col = 1;
    for (i, c) in src.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    known_prompts: &'a HashSet<&'a str>,
    names: HashMap<String, StateId>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> DialplanError {
        let (line, column) = line_col(self.src, span.start);
        DialplanError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    fn prompt(&self, s: &S<String>) -> Result<Arc<str>, DialplanError> {
        self.prompt_at(s.get_ref(), s.span())
    }

    fn prompt_at(&self, id: &str, span: Range<usize>) -> Result<Arc<str>, DialplanError> {
        if self.known_prompts.contains(id) {
            Ok(Arc::from(id))
        } else {
            Err(self.err(span, format!("unknown prompt id `{id}`")))
        }
    }

    fn target(&self, s: &S<String>) -> Result<Target, DialplanError> {
        let name = s.get_ref().as_str();
        if name == REPEAT_TARGET {
            return Ok(Target::Repeat);
        }
        self.names
            .get(name)
            .map(|&i| Target::State(i))
            .ok_or_else(|| self.err(s.span(), format!("unknown state `{name}`")))
    }

    fn items(&self, list: &[S<RawItem>]) -> Result<Vec<Item>, DialplanError> {
        let mut out = Vec::with_capacity(list.len());
        for it in list {
            let span = it.span();
            match it.get_ref() {
                RawItem::Prompt(p) => out.push(Item::Prompt(self.prompt_at(p, span)?)),
                RawItem::Value {
                    say,
                    field,
                    before,
                    after,
                } => {
                    let f = Field::parse(field).ok_or_else(|| {
                        self.err(
                            span.clone(),
                            format!("unknown field `{field}` (known: {FIELD_NAMES})"),
                        )
                    })?;
                    let kind = match say.as_str() {
                        "amount" => SayKind::Amount,
                        "count" => SayKind::Count,
                        "year_month" => SayKind::YearMonth,
                        "status" => SayKind::Status,
                        _ => {
                            return Err(self.err(
                                span,
                                format!(
                                    "unknown `say` kind `{say}` (amount, count, year_month, status)"
                                ),
                            ));
                        }
                    };
                    if f.say_kind() != kind {
                        return Err(
                            self.err(span, format!("field `{field}` cannot be spoken as `{say}`"))
                        );
                    }
                    let before = match before {
                        Some(p) => Some(self.prompt_at(p, span.clone())?),
                        None => None,
                    };
                    let after = match after {
                        Some(p) => Some(self.prompt_at(p, span.clone())?),
                        None => None,
                    };
                    out.push(Item::Value {
                        field: f,
                        before,
                        after,
                    });
                }
            }
        }
        Ok(out)
    }

    fn timeout(&self, v: Option<&S<i64>>, default: u64) -> Result<u64, DialplanError> {
        match v {
            None => Ok(default),
            Some(s) => {
                let ms = *s.get_ref();
                if ms <= 0 || ms as u64 > MAX_TIMEOUT_MS {
                    Err(self.err(
                        s.span(),
                        format!("timeout must be between 1 and {MAX_TIMEOUT_MS} ms (got {ms})"),
                    ))
                } else {
                    Ok(ms as u64)
                }
            }
        }
    }

    fn count(&self, v: &S<i64>, what: &str, min: i64, max: i64) -> Result<u32, DialplanError> {
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.err(
                v.span(),
                format!("`{what}` must be between {min} and {max} (got {n})"),
            ));
        }
        Ok(n as u32)
    }
}

struct Defaults {
    first_ms: u64,
    inter_ms: u64,
    tries: u32,
    no_input: Arc<str>,
    invalid: Arc<str>,
    error_barge_in: bool,
}

fn insurance_name(s: &str) -> Option<Insurance> {
    Insurance::ALL.into_iter().find(|i| i.as_str() == s)
}

/// Parses and validates a dialplan. `file` only names the source in errors;
/// `known_prompts` is the set of recorded prompt ids (from the manifest).
pub fn parse_dialplan(
    file: &str,
    src: &str,
    known_prompts: &HashSet<&str>,
) -> Result<Dialplan, DialplanError> {
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let (line, column) = line_col(src, e.span().map(|s| s.start).unwrap_or(0));
        DialplanError {
            file: file.to_owned(),
            line,
            column,
            // The toml message contains a rendered excerpt; the first line is the reason.
            message: e
                .message()
                .lines()
                .next()
                .unwrap_or("syntax error")
                .to_owned(),
        }
    })?;

    let mut names = HashMap::new();
    for (i, k) in raw.state.keys().enumerate() {
        names.insert(k.get_ref().clone(), i);
    }
    let cx = Ctx {
        file,
        src,
        known_prompts,
        names,
    };
    let header = raw.dialplan.get_ref();
    let header_span = raw.dialplan.span();

    let defaults = Defaults {
        first_ms: cx.timeout(header.first_digit_timeout_ms.as_ref(), 6_000)?,
        inter_ms: cx.timeout(header.inter_digit_timeout_ms.as_ref(), 4_000)?,
        tries: match &header.tries {
            Some(t) => cx.count(t, "tries", 1, 10)?,
            None => 3,
        },
        no_input: match &header.no_input_prompt {
            Some(p) => cx.prompt(p)?,
            None => cx.prompt_at("no_input", header_span.clone())?,
        },
        invalid: match &header.invalid_prompt {
            Some(p) => cx.prompt(p)?,
            None => cx.prompt_at("input_error", header_span.clone())?,
        },
        error_barge_in: header.error_barge_in.unwrap_or(false),
    };

    let initial_name = header
        .initial
        .as_ref()
        .ok_or_else(|| cx.err(header_span.clone(), "missing `initial` state in [dialplan]"))?;
    let initial = match cx.target(initial_name)? {
        Target::State(i) => i,
        Target::Repeat => {
            return Err(cx.err(initial_name.span(), "`initial` must name a state"));
        }
    };

    let mut states = Vec::with_capacity(raw.state.len());
    let mut spans = Vec::with_capacity(raw.state.len());
    for (name, st) in &raw.state {
        let kind = build_state(&cx, &defaults, name, st)?;
        states.push(State {
            name: Arc::from(name.get_ref().as_str()),
            kind,
        });
        spans.push(name.span());
    }

    let plan = Dialplan {
        name: header.name.clone().unwrap_or_else(|| "dialplan".to_owned()),
        initial,
        states,
        index: cx.names.clone(),
    };

    // `@repeat` needs somewhere to go back to.
    let any_repeat = plan.states.iter().any(|s| {
        successors(&s.kind)
            .iter()
            .any(|(_, t)| *t == Target::Repeat)
    });
    let any_repeatable = plan
        .states
        .iter()
        .any(|s| matches!(&s.kind, StateKind::Play(p) if p.repeatable));
    if any_repeat && !any_repeatable {
        return Err(cx.err(
            header_span,
            format!("`{REPEAT_TARGET}` is used but no state is `repeatable = true`"),
        ));
    }

    // Every state must be reachable from the initial state.
    let mut seen = vec![false; plan.states.len()];
    let mut queue = VecDeque::from([plan.initial]);
    if let Some(s) = seen.get_mut(plan.initial) {
        *s = true;
    }
    while let Some(i) = queue.pop_front() {
        let Some(st) = plan.states.get(i) else {
            continue;
        };
        for (_, t) in successors(&st.kind) {
            if let Target::State(j) = t
                && let Some(s) = seen.get_mut(j)
                && !*s
            {
                *s = true;
                queue.push_back(j);
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        let span = spans.get(i).cloned().unwrap_or(0..0);
        let name = plan
            .states
            .get(i)
            .map(|s| s.name.to_string())
            .unwrap_or_default();
        return Err(cx.err(
            span,
            format!("state `{name}` is unreachable from the initial state"),
        ));
    }
    // Branches decide without waiting for anything: a cycle made only of
    // branches would spin forever.
    if let Some(i) = branch_cycle(&plan) {
        let span = spans.get(i).cloned().unwrap_or(0..0);
        let name = plan
            .states
            .get(i)
            .map(|s| s.name.to_string())
            .unwrap_or_default();
        return Err(cx.err(
            span,
            format!("branch `{name}` is on a cycle of branches that never waits for the caller"),
        ));
    }
    Ok(plan)
}

/// A state on a cycle of branch states, if any (iterative DFS, three colours).
fn branch_cycle(plan: &Dialplan) -> Option<StateId> {
    let n = plan.states.len();
    let next = |i: StateId| -> Vec<StateId> {
        match plan.states.get(i).map(|s| &s.kind) {
            Some(StateKind::Branch(b)) => [b.then, b.otherwise]
                .into_iter()
                .filter_map(|t| match t {
                    Target::State(j)
                        if matches!(
                            plan.states.get(j).map(|s| &s.kind),
                            Some(StateKind::Branch(_))
                        ) =>
                    {
                        Some(j)
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut colour = vec![0u8; n];
    for start in 0..n {
        if colour.get(start) != Some(&0) {
            continue;
        }
        let mut stack = vec![(start, next(start), 0usize)];
        colour[start] = 1;
        while let Some((node, succ, pos)) = stack.last_mut() {
            if let Some(&j) = succ.get(*pos) {
                *pos += 1;
                match colour.get(j) {
                    Some(0) => {
                        colour[j] = 1;
                        let s = next(j);
                        stack.push((j, s, 0));
                    }
                    Some(1) => return Some(j),
                    _ => {}
                }
            } else {
                colour[*node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// Reads and validates a dialplan file. An I/O error is reported at 0:0.
pub fn load_file(
    path: &std::path::Path,
    known_prompts: &HashSet<&str>,
) -> Result<Dialplan, DialplanError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| DialplanError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_dialplan(&file, &src, known_prompts)
}

fn require_field<'a, T>(
    cx: &Ctx<'_>,
    v: &'a Option<T>,
    state: &S<String>,
    kind: &str,
    field: &str,
    why: &str,
) -> Result<&'a T, DialplanError> {
    v.as_ref().ok_or_else(|| {
        cx.err(
            state.span(),
            format!("{kind} state `{}` needs `{field}` ({why})", state.get_ref()),
        )
    })
}

fn build_retry(
    cx: &Ctx<'_>,
    d: &Defaults,
    name: &S<String>,
    kind: &str,
    r: &RawState,
) -> Result<Retry, DialplanError> {
    let on_fail = require_field(
        cx,
        &r.on_fail,
        name,
        kind,
        "on_fail",
        "where to go after the last failed try: a way out of silence and bad input",
    )?;
    let no_input_limit = match (&r.no_input_limit, &r.on_no_input) {
        (Some(n), Some(t)) => Some((cx.count(n, "no_input_limit", 1, 10)?, cx.target(t)?)),
        (None, None) => None,
        (Some(n), None) => {
            return Err(cx.err(n.span(), "`no_input_limit` needs `on_no_input`"));
        }
        (None, Some(t)) => {
            return Err(cx.err(t.span(), "`on_no_input` needs `no_input_limit`"));
        }
    };
    Ok(Retry {
        first_digit_timeout_ms: cx.timeout(r.first_digit_timeout_ms.as_ref(), d.first_ms)?,
        inter_digit_timeout_ms: cx.timeout(r.inter_digit_timeout_ms.as_ref(), d.inter_ms)?,
        tries: match &r.tries {
            Some(t) => cx.count(t, "tries", 1, 10)?,
            None => d.tries,
        },
        no_input_prompt: match &r.no_input_prompt {
            Some(p) => cx.prompt(p)?,
            None => d.no_input.clone(),
        },
        invalid_prompt: match &r.invalid_prompt {
            Some(p) => cx.prompt(p)?,
            None => d.invalid.clone(),
        },
        on_fail: cx.target(on_fail)?,
        no_input_limit,
        error_barge_in: r.error_barge_in.unwrap_or(d.error_barge_in),
    })
}

fn build_state(
    cx: &Ctx<'_>,
    d: &Defaults,
    name: &S<String>,
    st: &S<RawState>,
) -> Result<StateKind, DialplanError> {
    let r = st.get_ref();
    let kind_s = r.kind.as_ref().ok_or_else(|| {
        cx.err(
            name.span(),
            format!(
                "state `{}` needs `type` (play, menu, collect, authenticate, branch, transfer, hangup)",
                name.get_ref()
            ),
        )
    })?;
    let need_target = |v: &Option<S<String>>, kind: &str, field: &str, why: &str| {
        require_field(cx, v, name, kind, field, why).and_then(|s| cx.target(s))
    };
    Ok(match kind_s.get_ref().as_str() {
        "play" => {
            let items = cx.items(require_field(
                cx,
                &r.play,
                name,
                "play",
                "play",
                "the prompts to play",
            )?)?;
            let require = match &r.require {
                Some(ins) => {
                    let i = match insurance_name(ins.get_ref()) {
                        Some(i @ (Insurance::Pension | Insurance::Medical)) => i,
                        _ => {
                            return Err(cx.err(
                                ins.span(),
                                "`require` is `pension` or `medical` (the records with a personal account)",
                            ));
                        }
                    };
                    Some((
                        i,
                        need_target(
                            &r.missing,
                            "play",
                            "missing",
                            "where to go without the record",
                        )?,
                    ))
                }
                None => None,
            };
            let audit = match &r.audit {
                Some(a) => Some(insurance_name(a.get_ref()).ok_or_else(|| {
                    cx.err(
                        a.span(),
                        "`audit` is one of pension, medical, unemployment, work_injury, maternity",
                    )
                })?),
                None => None,
            };
            StateKind::Play(PlayState {
                items,
                barge_in: r.barge_in.unwrap_or(true),
                next: need_target(&r.next, "play", "next", "where to go after playing")?,
                require,
                audit,
                repeatable: r.repeatable.unwrap_or(false),
            })
        }
        "menu" => {
            let prompt = cx.items(require_field(
                cx,
                &r.prompt,
                name,
                "menu",
                "prompt",
                "what the caller hears",
            )?)?;
            let keys_raw = require_field(cx, &r.keys, name, "menu", "keys", "key → state")?;
            let mut keys: Vec<(char, Target)> = Vec::new();
            for (k, t) in keys_raw.get_ref() {
                let mut chars = k.get_ref().chars();
                let c = match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => c,
                    _ => {
                        return Err(cx.err(
                            k.span(),
                            format!("menu key `{}` must be one of 0-9, * or #", k.get_ref()),
                        ));
                    }
                };
                if keys.iter().any(|(e, _)| *e == c) {
                    return Err(cx.err(k.span(), format!("duplicate menu key `{c}`")));
                }
                keys.push((c, cx.target(t)?));
            }
            if keys.is_empty() {
                return Err(cx.err(keys_raw.span(), "a menu needs at least one key"));
            }
            StateKind::Menu(MenuState {
                prompt,
                barge_in: r.barge_in.unwrap_or(true),
                keys,
                retry: build_retry(cx, d, name, "menu", r)?,
            })
        }
        "collect" => {
            let prompt = cx.items(require_field(
                cx,
                &r.prompt,
                name,
                "collect",
                "prompt",
                "what the caller hears",
            )?)?;
            let validate = match &r.validate {
                None => Validate::None,
                Some(v) => match v.get_ref().as_str() {
                    "none" => Validate::None,
                    "id" => Validate::Id,
                    "pin" => Validate::Pin,
                    other => {
                        return Err(cx.err(
                            v.span(),
                            format!("unknown `validate` `{other}` (none, id, pin)"),
                        ));
                    }
                },
            };
            let len = |v: &Option<S<i64>>, what: &str| match v {
                Some(s) => cx.count(s, what, 1, 32).map(|n| Some(n as usize)),
                None => Ok(None),
            };
            let min_len = len(&r.min_len, "min_len")?;
            let max_len = len(&r.max_len, "max_len")?;
            if validate != Validate::Pin && max_len.is_none() {
                return Err(cx.err(
                    name.span(),
                    format!("collect state `{}` needs `max_len`", name.get_ref()),
                ));
            }
            if let (Some(lo), Some(hi), Some(s)) = (min_len, max_len, &r.min_len)
                && lo > hi
            {
                return Err(cx.err(s.span(), "`min_len` is larger than `max_len`"));
            }
            let terminator = match &r.terminator {
                None => None,
                Some(t) => match t.get_ref().as_str() {
                    "#" => Some('#'),
                    "*" => Some('*'),
                    "" => None,
                    _ => {
                        return Err(cx.err(t.span(), "`terminator` is `#`, `*` or empty"));
                    }
                },
            };
            let star_as_x = r.star_as_x.unwrap_or(false);
            if star_as_x && terminator == Some('*') {
                return Err(cx.err(name.span(), "`*` cannot be both the terminator and X"));
            }
            let read_back = match (&r.read_back, &r.read_back_groups) {
                (Some(b), groups) if *b.get_ref() => {
                    if validate != Validate::Id {
                        return Err(cx.err(
                            b.span(),
                            "`read_back` is for `validate = \"id\"` only (a PIN is never read back)",
                        ));
                    }
                    for p in READ_BACK_PROMPTS {
                        cx.prompt_at(p, b.span())?;
                    }
                    let groups = match groups {
                        None => DEFAULT_READ_BACK_GROUPS.to_vec(),
                        Some(g) => {
                            let v: Vec<usize> = g
                                .get_ref()
                                .iter()
                                .map(|&n| usize::try_from(n).unwrap_or(0))
                                .collect();
                            if v.is_empty() || v.contains(&0) {
                                return Err(cx.err(
                                    g.span(),
                                    "`read_back_groups` lists positive group lengths",
                                ));
                            }
                            v
                        }
                    };
                    let total: usize = groups.iter().sum();
                    if Some(total) != max_len {
                        return Err(cx.err(
                            b.span(),
                            format!(
                                "read-back groups add up to {total}, not to `max_len` ({})",
                                max_len.unwrap_or(0)
                            ),
                        ));
                    }
                    Some(ReadBack { groups })
                }
                (_, Some(g)) if r.read_back.is_none() => {
                    return Err(cx.err(g.span(), "`read_back_groups` needs `read_back = true`"));
                }
                _ => None,
            };
            StateKind::Collect(CollectState {
                prompt,
                barge_in: r.barge_in.unwrap_or(true),
                min_len,
                max_len,
                terminator,
                star_as_x,
                validate,
                read_back,
                next: need_target(&r.next, "collect", "next", "where a valid entry goes")?,
                retry: build_retry(cx, d, name, "collect", r)?,
            })
        }
        "authenticate" => {
            let why = "every ledger answer needs a way out";
            StateKind::Authenticate(AuthState {
                verified: need_target(&r.verified, "authenticate", "verified", why)?,
                rejected: need_target(&r.rejected, "authenticate", "rejected", why)?,
                locked: need_target(&r.locked, "authenticate", "locked", why)?,
                unavailable: need_target(&r.unavailable, "authenticate", "unavailable", why)?,
                max_rejections: match &r.max_rejections {
                    Some(n) => cx.count(n, "max_rejections", 1, 10)?,
                    None => 3,
                },
                too_many_rejections: need_target(
                    &r.too_many_rejections,
                    "authenticate",
                    "too_many_rejections",
                    why,
                )?,
            })
        }
        "branch" => {
            let c = require_field(cx, &r.condition, name, "branch", "if", "the condition")?;
            let condition = match c.get_ref().as_str() {
                "agent_hours" => Condition::AgentHours,
                "anomaly" => Condition::Anomaly,
                other => {
                    return Err(cx.err(
                        c.span(),
                        format!("unknown condition `{other}` (agent_hours, anomaly)"),
                    ));
                }
            };
            StateKind::Branch(BranchState {
                condition,
                then: need_target(&r.then, "branch", "then", "where a true condition goes")?,
                otherwise: need_target(
                    &r.otherwise,
                    "branch",
                    "else",
                    "where a false condition goes",
                )?,
            })
        }
        "transfer" => {
            let q = require_field(cx, &r.queue, name, "transfer", "queue", "the agent queue")?;
            if q.get_ref().is_empty() {
                return Err(cx.err(q.span(), "`queue` is empty"));
            }
            StateKind::Transfer(TransferState {
                queue: q.get_ref().clone(),
                failed: need_target(
                    &r.failed,
                    "transfer",
                    "failed",
                    "where to go when the transfer fails",
                )?,
                callback: match &r.callback {
                    Some(t) => Some(cx.target(t)?),
                    None => None,
                },
            })
        }
        "callback" => {
            let q = require_field(cx, &r.queue, name, "callback", "queue", "the agent queue")?;
            if q.get_ref().is_empty() {
                return Err(cx.err(q.span(), "`queue` is empty"));
            }
            for p in CALLBACK_PROMPTS {
                cx.prompt_at(p, name.span())?;
            }
            StateKind::Callback(CallbackState {
                queue: q.get_ref().clone(),
                next: need_target(&r.next, "callback", "next", "where to go once booked")?,
                retry: build_retry(cx, d, name, "callback", r)?,
            })
        }
        "hangup" => StateKind::Hangup(HangupState {
            items: match &r.play {
                Some(p) => cx.items(p)?,
                None => Vec::new(),
            },
            reason: r.reason.clone().unwrap_or_else(|| "goodbye".to_owned()),
        }),
        other => {
            return Err(cx.err(
                kind_s.span(),
                format!(
                    "unknown state type `{other}` (play, menu, collect, authenticate, branch, transfer, hangup, callback)"
                ),
            ));
        }
    })
}

/// The outgoing edges of a state with their labels (for reachability and the graph).
pub fn successors(kind: &StateKind) -> Vec<(String, Target)> {
    let mut v = Vec::new();
    let retry = |v: &mut Vec<(String, Target)>, r: &Retry| {
        v.push(("fail".to_owned(), r.on_fail));
        if let Some((n, t)) = r.no_input_limit {
            v.push((format!("{n}× silence"), t));
        }
    };
    match kind {
        StateKind::Play(p) => {
            v.push(("next".to_owned(), p.next));
            if let Some((_, t)) = p.require {
                v.push(("no record".to_owned(), t));
            }
        }
        StateKind::Menu(m) => {
            for (k, t) in &m.keys {
                v.push((k.to_string(), *t));
            }
            retry(&mut v, &m.retry);
        }
        StateKind::Collect(c) => {
            v.push(("valid".to_owned(), c.next));
            retry(&mut v, &c.retry);
        }
        StateKind::Authenticate(a) => {
            v.push(("verified".to_owned(), a.verified));
            v.push(("rejected".to_owned(), a.rejected));
            v.push(("locked".to_owned(), a.locked));
            v.push(("unavailable".to_owned(), a.unavailable));
            v.push((
                format!("{}× rejected", a.max_rejections),
                a.too_many_rejections,
            ));
        }
        StateKind::Branch(b) => {
            v.push(("yes".to_owned(), b.then));
            v.push(("no".to_owned(), b.otherwise));
        }
        StateKind::Transfer(t) => {
            v.push(("failed".to_owned(), t.failed));
            if let Some(c) = t.callback {
                v.push(("callback".to_owned(), c));
            }
        }
        StateKind::Callback(c) => {
            v.push(("booked".to_owned(), c.next));
            retry(&mut v, &c.retry);
        }
        StateKind::Hangup(_) => {}
    }
    v
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::State(i) => write!(f, "#{i}"),
            Target::Repeat => f.write_str(REPEAT_TARGET),
        }
    }
}

/// Reads the prompt ids of a `prompts/manifest.toml` (`[[prompt]] id = ".."`).
pub fn manifest_prompt_ids(src: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        prompt: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: String,
    }
    let m: Manifest = toml::from_str(src).map_err(|e| {
        let (line, col) = line_col(src, e.span().map(|s| s.start).unwrap_or(0));
        format!(
            "{line}:{col}: {}",
            e.message().lines().next().unwrap_or("syntax error")
        )
    })?;
    Ok(m.prompt.into_iter().map(|e| e.id).collect())
}

/// The built-in prompt id set.
pub fn builtin_prompts() -> HashSet<&'static str> {
    BUILTIN_PROMPT_IDS.iter().copied().collect()
}

//! The flow interpreter: walks a [`Dialplan`] for one call. Pure and sans-IO
//! (docs/architecture.md): it takes `now` as an argument, receives [`FlowEvent`]s
//! (digits, playback done, the ledger's answer, transfer failure, hangup)
//! and emits [`FlowAction`]s (play, stop playback, authenticate, audit,
//! transfer, hang up). It never touches the clock, sockets or tokio; the
//! coordinator glues it to the real call.
//!
//! Behaviour from docs/domain.md#the-call-tree:
//! - **Barge-in**: a key during a barge-in prompt emits `StopPlayback` and
//!   the key counts (a valid menu key acts at once).
//! - **Type-ahead**: keys pressed while nothing collects (during a
//!   non-collecting prompt, before a collect starts, while the ledger is
//!   asked) are buffered and feed the next menu or collect, whose prompt is
//!   then skipped.
//! - **Prompts that must be heard** (`barge_in = false` on a play state, the
//!   no-input/invalid prompts unless `error_barge_in = true`, an ID
//!   read-back): keys typed before them do not skip them, and keys pressed
//!   while they play are discarded, so they never answer the next state.
//! - **Call record**: a prompt enters [`FlowRecord::prompts`] once it was
//!   played: in full (`PlaybackDone`), or, when a key or a hangup stops the
//!   playback, the prompts heard before it and the one it cut, marked with
//!   [`CUT_MARK`] (by the prompt durations in [`FlowConfig::prompt_ms`]; without
//!   them the first prompt of the stopped playback is marked cut).
//! - **Timeouts** run from the end of the prompt: first-digit, then
//!   inter-digit after each key (per-state values from the dialplan).
//! - **Privacy**: collected ID/PIN digits live only in this struct; the
//!   [`FlowRecord`] holds state names, prompt ids with readouts as
//!   placeholders (`<amount>`, `<count>`, `<year_month>`, `<id>`, `<number>`)
//!   and menu keys only;
//!   `Debug` of [`FlowAction`] hides readout segments, the ID and the PIN.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{
    AccountSummary, AuthOutcome, Fen, IdNumber, Insurance, InsuranceStatus, Pin, YearMonth,
    civil_from_days,
};
use crate::say::{SayError, SayOptions, Seg};

use super::calendar::Calendar;
use super::dialplan::{
    CALLBACK_NUMBER_LEN, CallbackState, CollectState, Condition, Dialplan, Field, Item, Retry,
    StateId, StateKind, Target, Validate,
};

/// The ledger could not answer (down, timed out). Carries nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerUnavailable;

/// The value speller, behind function pointers so tests can substitute a
/// fake; [`Speller::default`] calls `crate::say`.
#[derive(Clone, Copy)]
pub struct Speller {
    pub amount: fn(Fen, &SayOptions) -> Result<Vec<Seg>, SayError>,
    pub count: fn(u64) -> Vec<Seg>,
    pub year_month: fn(YearMonth) -> Vec<Seg>,
}

impl Default for Speller {
    fn default() -> Self {
        Speller {
            amount: crate::say::amount,
            count: crate::say::count,
            year_month: crate::say::year_month,
        }
    }
}

impl fmt::Debug for Speller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Speller")
    }
}

/// Per-deployment settings of the flow.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// PIN length, 6–8 (cities differ).
    pub pin_min_len: usize,
    pub pin_max_len: usize,
    /// When agents take calls.
    pub agent_hours: Calendar,
    /// Local time zone of the calendar and of "today" for ID birth dates (+8 h).
    pub utc_offset_secs: i32,
    pub say: SayOptions,
    pub speller: Speller,
    /// How long to wait for the ledger before treating it as unavailable.
    pub auth_timeout: Duration,
    /// Type-ahead buffer size; extra keys are dropped.
    pub max_type_ahead: usize,
    /// Playing time of each prompt id in ms (from the loaded library), to
    /// record which prompts a barge-in cut. `None`: unknown.
    pub prompt_ms: Option<Arc<std::collections::HashMap<String, u32>>>,
    /// The key a caller waiting in a queue presses for a callback (`None`:
    /// no key; config `[callback] key`).
    pub callback_key: Option<char>,
    /// Per queue: offer a callback when the estimated wait is over this
    /// (config `[callback] offer_after_wait_secs`).
    pub callback_after: std::collections::BTreeMap<String, Duration>,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            pin_min_len: 6,
            pin_max_len: 6,
            agent_hours: Calendar::default(),
            utc_offset_secs: 8 * 3600,
            say: SayOptions::default(),
            speller: Speller::default(),
            auth_timeout: Duration::from_secs(10),
            max_type_ahead: 40,
            prompt_ms: None,
            callback_key: None,
            callback_after: std::collections::BTreeMap::new(),
        }
    }
}

/// One element of a `Play` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayItem {
    Prompt(Arc<str>),
    /// Silence in milliseconds.
    Pause(u32),
}

/// Input to the interpreter. `Debug` hides the key and the account summary
/// (DTMF digits and account data never reach logs).
#[derive(Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// A DTMF key: `0`–`9`, `*`, `#` (others are ignored).
    Digit(char),
    /// The `Play` with this token finished (ignored if stale).
    PlaybackDone { token: u64 },
    /// The ledger's answer to `Authenticate`.
    Auth(Result<AuthOutcome, LedgerUnavailable>),
    /// The `Transfer` did not reach an agent.
    TransferFailed,
    /// The caller left the agent queue (`*`), or the queue sent it back
    /// (maximum wait with `on_max_wait = "return_to_menu"`, then
    /// `apology = true` says "坐席全忙" first): back to the main menu
    /// (the state named `main_menu`, else the initial state).
    TransferCancelled { apology: bool },
    /// The call offers a callback while the caller waits in a queue (the
    /// estimated wait is over the queue's threshold, or the caller pressed
    /// the callback key): the transfer state's `callback` target, if any.
    CallbackOffered,
    /// The caller hung up.
    Hangup,
}

impl fmt::Debug for FlowEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowEvent::Digit(_) => f.write_str("Digit(<redacted>)"),
            FlowEvent::PlaybackDone { token } => write!(f, "PlaybackDone {{ token: {token} }}"),
            FlowEvent::Auth(Ok(AuthOutcome::Verified(_))) => f.write_str("Auth(Verified)"),
            FlowEvent::Auth(Ok(AuthOutcome::Rejected)) => f.write_str("Auth(Rejected)"),
            FlowEvent::Auth(Ok(AuthOutcome::Locked)) => f.write_str("Auth(Locked)"),
            FlowEvent::Auth(Err(LedgerUnavailable)) => f.write_str("Auth(LedgerUnavailable)"),
            FlowEvent::TransferFailed => f.write_str("TransferFailed"),
            FlowEvent::TransferCancelled { apology } => {
                write!(f, "TransferCancelled {{ apology: {apology} }}")
            }
            FlowEvent::CallbackOffered => f.write_str("CallbackOffered"),
            FlowEvent::Hangup => f.write_str("Hangup"),
        }
    }
}

/// Suffix of a prompt id in [`FlowRecord::prompts`] whose playback a key or a
/// hangup cut short.
pub const CUT_MARK: &str = "~cut";

/// Output of the interpreter.
#[derive(Clone, PartialEq, Eq)]
pub enum FlowAction {
    /// Play these items; answer with `PlaybackDone { token }`.
    Play {
        token: u64,
        items: Vec<PlayItem>,
        barge_in: bool,
    },
    /// Stop the current playback (barge-in). No `PlaybackDone` is expected.
    StopPlayback,
    /// Ask the ledger; answer with `FlowEvent::Auth`.
    Authenticate {
        id: IdNumber,
        pin: Pin,
    },
    /// A query the caller listened to (for the audit log; no values).
    Audit {
        insurance: Insurance,
    },
    /// A balance read was negative: log an anomaly (docs/domain.md#reading-numbers-aloud, R8).
    Anomaly {
        insurance: Insurance,
    },
    /// Hand the call to an agent queue (answer `TransferFailed` if it fails).
    Transfer {
        queue: String,
    },
    /// Book a callback (预约回拨) for `queue`: `number` is what the caller
    /// confirmed (the calling number or one keyed in). The call adds the
    /// verified ID, stores the booking and answers nothing; nothing is dialled.
    Callback {
        queue: String,
        number: String,
    },
    Hangup,
}

/// Readout segments name the digits spoken, and the ID and PIN are
/// sensitive: `Debug` shows neither.
impl fmt::Debug for FlowAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowAction::Play {
                token,
                items,
                barge_in,
            } => write!(
                f,
                "Play {{ token: {token}, items: <{} items>, barge_in: {barge_in} }}",
                items.len()
            ),
            FlowAction::StopPlayback => f.write_str("StopPlayback"),
            FlowAction::Authenticate { .. } => {
                f.write_str("Authenticate { id: <redacted>, pin: <redacted> }")
            }
            FlowAction::Audit { insurance } => write!(f, "Audit {{ insurance: {insurance:?} }}"),
            FlowAction::Anomaly { insurance } => {
                write!(f, "Anomaly {{ insurance: {insurance:?} }}")
            }
            FlowAction::Transfer { queue } => write!(f, "Transfer {{ queue: {queue:?} }}"),
            FlowAction::Callback { queue, .. } => {
                write!(f, "Callback {{ queue: {queue:?}, number: <redacted> }}")
            }
            FlowAction::Hangup => f.write_str("Hangup"),
        }
    }
}

/// What the call record needs from the flow. Holds no ID/PIN digit and no
/// balance: readouts appear as `<amount>`, `<count>`, `<year_month>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowRecord {
    /// Dialplan states entered, in order.
    pub states: Vec<String>,
    /// Prompt ids played, in order (values as placeholders; a prompt cut
    /// short ends in [`CUT_MARK`]; prompts never reached are not listed).
    pub prompts: Vec<String>,
    /// Keys pressed at menus (never ID or PIN digits).
    pub menu_keys: String,
    /// `goodbye` (or a hangup state's reason), `caller_hangup`, `transfer`,
    /// `error`; empty while the call runs.
    pub end_reason: String,
    /// Insurances the caller heard.
    pub queries: Vec<Insurance>,
    /// A negative balance was read.
    pub anomaly: bool,
    /// The queue of the last transfer, if any.
    pub transfer_queue: Option<String>,
}

impl FlowRecord {
    /// Copies the flow's part into a CDR.
    pub fn fill(&self, rec: &mut crate::domain::CallRecord) {
        rec.states = self.states.clone();
        rec.prompts = self.prompts.clone();
        rec.menu_keys = self.menu_keys.clone();
        if !self.end_reason.is_empty() {
            rec.end_reason = self.end_reason.clone();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Goto(StateId),
    StartInput,
    /// An error prompt or a read-back that had to be heard: now the
    /// waiting state's own prompt (with its barge-in), then input.
    Reprompt,
    Hangup,
}

/// What a menu-like wait inside a collect or callback state is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// The state's own input.
    None,
    /// An ID was read back: 1 confirms, 2 re-enters.
    ConfirmId,
    /// A callback number was read back: 1 books, 2 keys another number.
    ConfirmNumber,
    /// The caller keys a callback number.
    EnterNumber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not started.
    Idle,
    Playing {
        token: u64,
        barge_in: bool,
        after: After,
    },
    /// A menu or collect waits for a key until `deadline`.
    Input {
        deadline: Instant,
    },
    Auth {
        deadline: Instant,
    },
    /// A readout waits for its audit row to be durable before it plays.
    Audit {
        deadline: Instant,
    },
    Transfer,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    NoInput,
    Invalid,
}

/// Upper bound of state transitions handled for one input: a dialplan loop
/// without a waiting state (branch → branch) ends the call instead of hanging.
const MAX_STEPS: usize = 256;

/// One call's walk through a dialplan.
pub struct Interpreter {
    plan: Arc<Dialplan>,
    cfg: Arc<FlowConfig>,
    created: Instant,
    wall_unix_secs: i64,
    current: StateId,
    pending: Option<StateId>,
    wait: Wait,
    next_token: u64,
    actions: VecDeque<FlowAction>,
    type_ahead: VecDeque<char>,
    /// Digits of the running collect (ID or PIN in clear: never logged).
    entry: String,
    tries: u32,
    silences: u32,
    /// A collect just completed by reaching its maximum length: a `#` the
    /// caller adds out of habit right after is swallowed, not taken as the
    /// (empty) answer to the next prompt.
    swallow: Option<char>,
    rejections: u32,
    last_repeatable: Option<StateId>,
    id: Option<IdNumber>,
    pin: Option<Pin>,
    summary: Option<Box<AccountSummary>>,
    hangup_reason: String,
    record: FlowRecord,
    sub: Sub,
    /// Times the caller chose "re-enter" at a read-back in this state.
    reentries: u32,
    /// The calling number (digits only) for a callback; never logged.
    caller_number: Option<String>,
    /// The callback number being confirmed.
    callback_number: Option<String>,
    /// CDR entries (label, playing time) rendered for the next `Play`.
    rendered: Vec<(String, Option<u32>)>,
    /// CDR entries of the `Play` in progress, and when it started.
    playing: Vec<(String, Option<u32>)>,
    play_started: Option<Instant>,
    /// The `now` of the input being handled.
    clock: Instant,
}

impl fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interpreter")
            .field("state", &self.state_name())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Interpreter {
    /// `wall_unix_secs` is the wall clock at `now` (for agent hours and the
    /// date that bounds ID birth dates).
    pub fn new(
        plan: Arc<Dialplan>,
        cfg: Arc<FlowConfig>,
        now: Instant,
        wall_unix_secs: i64,
    ) -> Self {
        let current = plan.initial;
        Interpreter {
            plan,
            cfg,
            created: now,
            wall_unix_secs,
            current,
            pending: None,
            wait: Wait::Idle,
            next_token: 1,
            actions: VecDeque::new(),
            type_ahead: VecDeque::new(),
            entry: String::new(),
            tries: 0,
            silences: 0,
            swallow: None,
            rejections: 0,
            last_repeatable: None,
            id: None,
            pin: None,
            summary: None,
            hangup_reason: String::new(),
            record: FlowRecord::default(),
            sub: Sub::None,
            reentries: 0,
            caller_number: None,
            callback_number: None,
            rendered: Vec::new(),
            playing: Vec::new(),
            play_started: None,
            clock: now,
        }
    }

    /// The calling number (the From user part), for a callback to it. Only
    /// a plain number (digits, an optional leading `+`, 5–20 digits) is
    /// kept; anything else (a name, an anonymous caller) is unknown and the
    /// caller keys the number in.
    pub fn set_caller_number(&mut self, number: &str) {
        let digits = number.strip_prefix('+').unwrap_or(number);
        let (min, max) = CALLBACK_NUMBER_LEN;
        let plain = digits.bytes().all(|b| b.is_ascii_digit());
        self.caller_number =
            (plain && (min..=max).contains(&digits.len())).then(|| digits.to_owned());
    }

    /// The queue of the last transfer, if any.
    pub fn transfer_queue(&self) -> Option<&str> {
        self.record.transfer_queue.as_deref()
    }

    /// The settings this interpreter runs with.
    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// Whether a [`FlowEvent::CallbackOffered`] would be taken now (the
    /// call waits in a queue whose transfer state has a `callback` target).
    pub fn can_offer_callback(&self) -> bool {
        self.wait == Wait::Transfer
            && matches!(self.kind(), Some(StateKind::Transfer(t)) if t.callback.is_some())
    }

    /// Enters the initial state (call answered).
    pub fn start(&mut self, now: Instant) {
        self.clock = now;
        if self.wait == Wait::Idle {
            self.pending = Some(self.plan.initial);
            self.run(now);
        }
    }

    pub fn handle_event(&mut self, now: Instant, ev: FlowEvent) {
        if self.wait == Wait::Done {
            return;
        }
        self.clock = now;
        match ev {
            FlowEvent::Digit(c) => {
                if c.is_ascii_digit() || c == '*' || c == '#' {
                    self.on_key(now, c);
                }
            }
            FlowEvent::PlaybackDone { token } => {
                if let Wait::Playing {
                    token: t, after, ..
                } = self.wait
                    && t == token
                {
                    self.settle_play(now, false);
                    self.after_play(now, after);
                }
            }
            FlowEvent::Auth(res) => {
                if matches!(self.wait, Wait::Auth { .. }) {
                    self.on_auth(res);
                }
            }
            FlowEvent::TransferFailed => {
                if self.wait == Wait::Transfer
                    && let Some(StateKind::Transfer(t)) = self.kind()
                {
                    let failed = t.failed;
                    self.record.end_reason.clear();
                    self.goto(failed);
                }
            }
            FlowEvent::CallbackOffered => {
                if self.wait == Wait::Transfer
                    && let Some(StateKind::Transfer(t)) = self.kind()
                    && let Some(target) = t.callback
                {
                    self.record.end_reason.clear();
                    self.type_ahead.clear();
                    self.goto(target);
                }
            }
            FlowEvent::TransferCancelled { apology } => {
                if self.wait == Wait::Transfer {
                    let menu = self.plan.state_id("main_menu").unwrap_or(self.plan.initial);
                    self.record.end_reason.clear();
                    self.type_ahead.clear();
                    if apology {
                        self.play(
                            vec![PlayItem::Prompt(Arc::from("agents_busy"))],
                            false,
                            After::Goto(menu),
                        );
                    } else {
                        self.pending = Some(menu);
                    }
                }
            }
            FlowEvent::Hangup => {
                // Nothing more is said or done once the caller is gone.
                self.actions.clear();
                if matches!(self.wait, Wait::Playing { .. }) {
                    self.settle_play(now, true);
                }
                if self.record.end_reason.is_empty() {
                    self.record.end_reason = "caller_hangup".to_owned();
                }
                self.finish_quietly();
                return;
            }
        }
        self.run(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        match self.wait {
            Wait::Input { deadline } if now >= deadline => {
                let in_collect = matches!(self.kind(), Some(StateKind::Collect(_)))
                    || self.sub == Sub::EnterNumber;
                if in_collect && !self.entry.is_empty() {
                    // Inter-digit timeout ends the entry like `#`.
                    self.finish_collect(now);
                } else {
                    self.fail(now, Failure::NoInput);
                }
            }
            Wait::Auth { deadline } if now >= deadline => {
                self.on_auth(Err(LedgerUnavailable));
            }
            Wait::Audit { deadline } if now >= deadline => {
                self.on_audit(Err(LedgerUnavailable));
            }
            _ => return,
        }
        self.run(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.wait {
            Wait::Input { deadline } | Wait::Auth { deadline } | Wait::Audit { deadline } => {
                Some(deadline)
            }
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<FlowAction> {
        self.actions.pop_front()
    }

    pub fn is_finished(&self) -> bool {
        self.wait == Wait::Done
    }

    /// Whether the call was handed to an agent queue (and not failed back).
    pub fn is_transferred(&self) -> bool {
        self.wait == Wait::Transfer
    }

    /// The name of the current state (for logs and metrics: no caller data).
    pub fn state_name(&self) -> &str {
        self.plan
            .state(self.current)
            .map(|s| &*s.name)
            .unwrap_or("")
    }

    pub fn record(&self) -> FlowRecord {
        self.record.clone()
    }

    // -----------------------------------------------------------------------

    fn kind(&self) -> Option<&StateKind> {
        self.plan.state(self.current).map(|s| &s.kind)
    }

    fn goto(&mut self, t: Target) {
        let id = match t {
            Target::State(i) => i,
            Target::Repeat => self.last_repeatable.unwrap_or(self.plan.initial),
        };
        self.pending = Some(id);
    }

    /// Drives pending transitions and buffered keys until the flow waits.
    fn run(&mut self, now: Instant) {
        for _ in 0..MAX_STEPS {
            if self.wait == Wait::Done {
                self.pending = None;
                return;
            }
            if let Some(s) = self.pending.take() {
                self.enter(now, s);
            } else if matches!(self.wait, Wait::Input { .. })
                && let Some(c) = self.type_ahead.pop_front()
            {
                self.input_key(now, c);
            } else {
                return;
            }
        }
        // A dialplan cycle that never waits: end the call rather than spin.
        self.actions.push_back(FlowAction::Hangup);
        self.record.end_reason = "error".to_owned();
        self.finish_quietly();
    }

    fn wall_at(&self, now: Instant) -> i64 {
        let elapsed = now.saturating_duration_since(self.created).as_secs();
        self.wall_unix_secs
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    fn today(&self, now: Instant) -> (u32, u32, u32) {
        let local = self
            .wall_at(now)
            .saturating_add(i64::from(self.cfg.utc_offset_secs));
        civil_from_days(local.div_euclid(86_400))
    }

    fn push_type_ahead(&mut self, c: char) {
        if self.type_ahead.len() < self.cfg.max_type_ahead {
            self.type_ahead.push_back(c);
        }
    }

    fn enter(&mut self, now: Instant, sid: StateId) {
        let plan = Arc::clone(&self.plan);
        let Some(state) = plan.state(sid) else {
            self.record.end_reason = "error".to_owned();
            self.actions.push_back(FlowAction::Hangup);
            self.finish_quietly();
            return;
        };
        if self.current != sid {
            self.reentries = 0;
        }
        self.current = sid;
        self.tries = 0;
        self.silences = 0;
        self.entry.clear();
        self.sub = Sub::None;
        self.callback_number = None;
        self.record.states.push(state.name.to_string());
        match &state.kind {
            StateKind::Play(p) => {
                if let Some((ins, missing)) = p.require
                    && !self.has_record(ins)
                {
                    self.goto(missing);
                    return;
                }
                if p.repeatable {
                    self.last_repeatable = Some(sid);
                }
                if p.barge_in && !self.type_ahead.is_empty() {
                    // The caller already keyed ahead: skip to what the keys are for.
                    self.goto(p.next);
                    return;
                }
                if !p.barge_in {
                    // A prompt that must be heard (a result or an error):
                    // keys typed before it belonged to what went wrong.
                    self.type_ahead.clear();
                }
                if let Some(ins) = p.audit {
                    self.actions.push_back(FlowAction::Audit { insurance: ins });
                    self.record.queries.push(ins);
                    if self.summary.is_some() {
                        // Account data is disclosed only once its audit row
                        // is durable: wait for `handle_audit`.
                        self.wait = Wait::Audit {
                            deadline: now + self.cfg.auth_timeout,
                        };
                        return;
                    }
                }
                self.play_readout(sid);
            }
            StateKind::Menu(m) => self.start_input(now, &m.prompt, m.barge_in, &m.retry),
            StateKind::Collect(c) => self.start_input(now, &c.prompt, c.barge_in, &c.retry),
            StateKind::Authenticate(a) => {
                match (self.id.clone(), self.pin.take()) {
                    (Some(id), Some(pin)) => {
                        self.actions.push_back(FlowAction::Authenticate { id, pin });
                        self.wait = Wait::Auth {
                            deadline: now + self.cfg.auth_timeout,
                        };
                    }
                    // No credentials collected: a dialplan mistake; treat as rejected.
                    _ => self.goto(a.rejected),
                }
            }
            StateKind::Branch(b) => {
                let yes = match b.condition {
                    Condition::AgentHours => self
                        .cfg
                        .agent_hours
                        .is_open(self.wall_at(now), self.cfg.utc_offset_secs),
                    Condition::Anomaly => self.record.anomaly,
                };
                self.goto(if yes { b.then } else { b.otherwise });
            }
            StateKind::Transfer(t) => {
                self.actions.push_back(FlowAction::Transfer {
                    queue: t.queue.clone(),
                });
                self.record.end_reason = "transfer".to_owned();
                self.record.transfer_queue = Some(t.queue.clone());
                self.wait = Wait::Transfer;
            }
            StateKind::Callback(cb) => {
                self.type_ahead.clear();
                match self.caller_number.clone() {
                    Some(n) => self.read_back_number(n),
                    None => {
                        self.sub = Sub::EnterNumber;
                        let prompt = [Item::Prompt(Arc::from("callback_enter"))];
                        self.start_input(now, &prompt, true, &cb.retry);
                    }
                }
            }
            StateKind::Hangup(h) => {
                self.hangup_reason = h.reason.clone();
                let items = self.render(&h.items, &[]);
                if items.is_empty() {
                    self.hang_up();
                } else {
                    self.play(items, false, After::Hangup);
                }
            }
        }
    }

    /// Plays a `play` state's items (its readout) and moves on after them.
    fn play_readout(&mut self, sid: StateId) {
        let plan = Arc::clone(&self.plan);
        let Some(StateKind::Play(p)) = plan.state(sid).map(|s| &s.kind) else {
            return;
        };
        let items = self.render(&p.items, &[]);
        if items.is_empty() {
            self.goto(p.next);
            return;
        }
        let after = match p.next {
            Target::State(i) => After::Goto(i),
            Target::Repeat => After::Goto(self.last_repeatable.unwrap_or(plan.initial)),
        };
        self.play(items, p.barge_in, after);
    }

    /// The answer to [`FlowAction::Audit`] of a readout: `Ok` once the
    /// audit row is durable (the readout plays), `Err` when it could not be
    /// stored (nothing is read; the caller hears "system busy").
    pub fn handle_audit(&mut self, now: Instant, result: Result<(), LedgerUnavailable>) {
        if !matches!(self.wait, Wait::Audit { .. }) {
            return;
        }
        self.on_audit(result);
        self.run(now);
    }

    fn on_audit(&mut self, result: Result<(), LedgerUnavailable>) {
        self.wait = Wait::Idle;
        match result {
            Ok(()) => self.play_readout(self.current),
            Err(LedgerUnavailable) => {
                // Not heard: not a query of this call.
                self.record.queries.pop();
                match self.plan.state_id("system_busy") {
                    Some(s) => self.pending = Some(s),
                    None => {
                        let items = self.render(&[Item::Prompt(Arc::from("system_busy"))], &[]);
                        self.play(items, false, After::Hangup);
                    }
                }
            }
        }
    }

    fn start_input(&mut self, now: Instant, prompt: &[Item], barge_in: bool, retry: &Retry) {
        if barge_in && !self.type_ahead.is_empty() {
            // Type-ahead: the buffered keys answer this prompt; `run` feeds them.
            self.wait = Wait::Input {
                deadline: now + ms(retry.first_digit_timeout_ms),
            };
            return;
        }
        let items = self.render(prompt, &[]);
        if items.is_empty() {
            self.wait = Wait::Input {
                deadline: now + ms(retry.first_digit_timeout_ms),
            };
        } else {
            self.play(items, barge_in, After::StartInput);
        }
    }

    fn play(&mut self, items: Vec<PlayItem>, barge_in: bool, after: After) {
        if !self.playing.is_empty() {
            // Not expected: a play replaced before it ended or was stopped.
            self.settle_play(self.clock, false);
        }
        self.playing = std::mem::take(&mut self.rendered);
        self.play_started = Some(self.clock);
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.actions.push_back(FlowAction::Play {
            token,
            items,
            barge_in,
        });
        self.wait = Wait::Playing {
            token,
            barge_in,
            after,
        };
    }

    /// Moves the CDR entries of the play in progress into the record: all
    /// of them when it finished, or the ones heard before `now` and the one
    /// cut (marked) when a key or a hangup stopped it.
    fn settle_play(&mut self, now: Instant, cut: bool) {
        let entries = std::mem::take(&mut self.playing);
        let started = self.play_started.take().unwrap_or(now);
        if !cut {
            self.record
                .prompts
                .extend(entries.into_iter().map(|(label, _)| label));
            return;
        }
        let elapsed =
            u64::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX);
        let mut heard = 0u64;
        for (label, ms) in entries {
            match ms {
                Some(ms) if heard.saturating_add(u64::from(ms)) <= elapsed => {
                    heard = heard.saturating_add(u64::from(ms));
                    self.record.prompts.push(label);
                }
                _ => {
                    self.record.prompts.push(format!("{label}{CUT_MARK}"));
                    break;
                }
            }
        }
    }

    /// The prompt of the waiting menu, collect or callback question, its
    /// barge-in and retry policy.
    fn current_prompt(&self) -> Option<(Vec<Item>, bool, Retry)> {
        let p = |id: &str| vec![Item::Prompt(Arc::from(id))];
        Some(match (self.kind()?, self.sub) {
            (StateKind::Menu(m), _) => (m.prompt.clone(), m.barge_in, m.retry.clone()),
            (StateKind::Collect(c), Sub::ConfirmId) => {
                // A wrong key at the question is not a wrong ID.
                let mut retry = c.retry.clone();
                retry.invalid_prompt = Arc::from("input_error");
                (p("id_confirm"), true, retry)
            }
            (StateKind::Collect(c), _) => (c.prompt.clone(), c.barge_in, c.retry.clone()),
            (StateKind::Callback(c), Sub::ConfirmNumber) => {
                (p("callback_confirm"), true, c.retry.clone())
            }
            (StateKind::Callback(c), _) => (p("callback_enter"), true, c.retry.clone()),
            _ => return None,
        })
    }

    fn after_play(&mut self, now: Instant, after: After) {
        match after {
            After::Goto(s) => self.pending = Some(s),
            After::Reprompt => match self.current_prompt() {
                Some((prompt, barge_in, retry)) => {
                    let items = self.render(&prompt, &[]);
                    if items.is_empty() {
                        self.wait = Wait::Input {
                            deadline: now + ms(retry.first_digit_timeout_ms),
                        };
                    } else {
                        self.play(items, barge_in, After::StartInput);
                    }
                }
                None => self.wait = Wait::Idle,
            },
            After::StartInput => {
                let first = self
                    .retry()
                    .map(|r| r.first_digit_timeout_ms)
                    .unwrap_or(6_000);
                self.wait = Wait::Input {
                    deadline: now + ms(first),
                };
            }
            After::Hangup => self.hang_up(),
        }
    }

    fn retry(&self) -> Option<&Retry> {
        match self.kind()? {
            StateKind::Menu(m) => Some(&m.retry),
            StateKind::Collect(c) => Some(&c.retry),
            StateKind::Callback(c) => Some(&c.retry),
            _ => None,
        }
    }

    fn on_key(&mut self, now: Instant, c: char) {
        match self.wait {
            Wait::Playing {
                barge_in: true,
                after,
                ..
            } => {
                self.actions.push_back(FlowAction::StopPlayback);
                self.settle_play(now, true);
                match after {
                    After::StartInput | After::Reprompt => {
                        let first = self
                            .retry()
                            .map(|r| r.first_digit_timeout_ms)
                            .unwrap_or(6_000);
                        self.wait = Wait::Input {
                            deadline: now + ms(first),
                        };
                        self.input_key(now, c);
                    }
                    After::Goto(s) => {
                        self.push_type_ahead(c);
                        self.pending = Some(s);
                    }
                    After::Hangup => self.hang_up(),
                }
            }
            Wait::Input { .. } => self.input_key(now, c),
            // A prompt that must be heard: its keys are discarded, never
            // applied to the state after it.
            Wait::Playing {
                barge_in: false, ..
            } => {}
            Wait::Idle | Wait::Auth { .. } | Wait::Audit { .. } | Wait::Transfer => {
                self.push_type_ahead(c)
            }
            Wait::Done => {}
        }
    }

    /// A key for the waiting menu or collect.
    fn input_key(&mut self, now: Instant, c: char) {
        if self.swallow.take() == Some(c) {
            return;
        }
        let plan = Arc::clone(&self.plan);
        match plan.state(self.current).map(|s| &s.kind) {
            Some(StateKind::Menu(m)) => match m.keys.iter().find(|(k, _)| *k == c) {
                Some((_, t)) => {
                    self.record.menu_keys.push(c);
                    self.goto(*t)
                }
                None => {
                    // A key no option takes may be the first digit of an ID
                    // or PIN typed too early: the record keeps only that a
                    // wrong key came.
                    self.record.menu_keys.push('?');
                    self.fail(now, Failure::Invalid)
                }
            },
            Some(StateKind::Collect(col)) => match self.sub {
                Sub::ConfirmId => self.confirm_id_key(now, col, c),
                _ => self.collect_key(now, col, c),
            },
            Some(StateKind::Callback(cb)) => match self.sub {
                Sub::ConfirmNumber => self.confirm_number_key(now, cb, c),
                _ => self.number_key(now, cb, c),
            },
            _ => {}
        }
    }

    /// "您输入的身份证号码是" + the ID in groups (R11: digit by digit, 1 as
    /// 幺, X as 艾克斯), heard in full; then "确认请按1，重新输入请按2".
    fn read_back_id(&mut self, groups: &[usize]) {
        let Some(id) = self.id.clone() else {
            return;
        };
        self.sub = Sub::ConfirmId;
        self.tries = 0;
        self.silences = 0;
        // Keys typed after the ID (the PIN, out of habit) must not answer
        // the confirmation.
        self.type_ahead.clear();
        let text = id.expose();
        let mut segs = Vec::with_capacity(text.len() + groups.len());
        let mut at = 0usize;
        for (i, &n) in groups.iter().enumerate() {
            if i > 0 {
                segs.push(Seg::Pause(crate::say::ID_GROUP_PAUSE_MS));
            }
            let end = at.saturating_add(n).min(text.len());
            segs.extend(crate::say::digits(text.get(at..end).unwrap_or("")));
            at = end;
        }
        let mut items = self.render(&[Item::Prompt(Arc::from("id_readback"))], &[]);
        items.extend(self.render_segs(segs, "<id>"));
        self.play(items, false, After::Reprompt);
    }

    fn confirm_id_key(&mut self, now: Instant, col: &CollectState, c: char) {
        match c {
            '1' => {
                self.record.menu_keys.push('1');
                self.sub = Sub::None;
                self.goto(col.next);
            }
            '2' => {
                self.record.menu_keys.push('2');
                self.sub = Sub::None;
                self.id = None;
                self.reentries = self.reentries.saturating_add(1);
                if self.reentries >= col.retry.tries {
                    self.goto(col.retry.on_fail);
                } else {
                    self.pending = Some(self.current);
                }
            }
            _ => {
                self.record.menu_keys.push('?');
                self.fail(now, Failure::Invalid);
            }
        }
    }

    /// "您的回拨号码是" + the number digit by digit, heard in full; then
    /// "确认请按1，输入其他号码请按2".
    fn read_back_number(&mut self, number: String) {
        self.sub = Sub::ConfirmNumber;
        self.tries = 0;
        self.silences = 0;
        self.type_ahead.clear();
        let segs = crate::say::digits(&number);
        self.callback_number = Some(number);
        let mut items = self.render(&[Item::Prompt(Arc::from("callback_number"))], &[]);
        items.extend(self.render_segs(segs, "<number>"));
        self.play(items, false, After::Reprompt);
    }

    fn confirm_number_key(&mut self, now: Instant, cb: &CallbackState, c: char) {
        match c {
            '1' => {
                self.record.menu_keys.push('1');
                self.sub = Sub::None;
                let Some(number) = self.callback_number.take() else {
                    return;
                };
                self.actions.push_back(FlowAction::Callback {
                    queue: cb.queue.clone(),
                    number,
                });
                let after = match cb.next {
                    Target::State(i) => After::Goto(i),
                    Target::Repeat => {
                        After::Goto(self.last_repeatable.unwrap_or(self.plan.initial))
                    }
                };
                let items = self.render(&[Item::Prompt(Arc::from("callback_done"))], &[]);
                self.play(items, false, after);
            }
            '2' => {
                self.record.menu_keys.push('2');
                self.callback_number = None;
                self.reentries = self.reentries.saturating_add(1);
                if self.reentries > cb.retry.tries {
                    self.goto(cb.retry.on_fail);
                    return;
                }
                self.sub = Sub::EnterNumber;
                self.tries = 0;
                self.silences = 0;
                let prompt = [Item::Prompt(Arc::from("callback_enter"))];
                self.start_input(now, &prompt, true, &cb.retry);
            }
            _ => {
                self.record.menu_keys.push('?');
                self.fail(now, Failure::Invalid);
            }
        }
    }

    /// A key of a callback number being keyed in (never recorded).
    fn number_key(&mut self, now: Instant, cb: &CallbackState, c: char) {
        let (_, max) = CALLBACK_NUMBER_LEN;
        if c == '#' {
            self.finish_number(now);
        } else if c.is_ascii_digit() {
            self.entry.push(c);
            if self.entry.len() >= max {
                self.finish_number(now);
            } else {
                self.wait = Wait::Input {
                    deadline: now + ms(cb.retry.inter_digit_timeout_ms),
                };
            }
        } else {
            self.fail(now, Failure::Invalid);
        }
    }

    fn finish_number(&mut self, now: Instant) {
        let entry = std::mem::take(&mut self.entry);
        let (min, max) = CALLBACK_NUMBER_LEN;
        if (min..=max).contains(&entry.len()) {
            self.read_back_number(entry);
        } else {
            self.fail(now, Failure::Invalid);
        }
    }

    fn lengths(&self, c: &CollectState) -> (usize, usize) {
        let (dmin, dmax) = match c.validate {
            Validate::Pin => (self.cfg.pin_min_len, self.cfg.pin_max_len),
            _ => (1, 32),
        };
        (c.min_len.unwrap_or(dmin), c.max_len.unwrap_or(dmax))
    }

    fn collect_key(&mut self, now: Instant, col: &CollectState, c: char) {
        let (_, max) = self.lengths(col);
        if Some(c) == col.terminator {
            self.finish_collect(now);
        } else if c == '*' && col.star_as_x {
            // X exists only as the last character of an ID number.
            if self.entry.len().checked_add(1) == Some(max) {
                self.entry.push('X');
                self.finish_collect(now);
                self.swallow = col.terminator;
            } else {
                self.fail(now, Failure::Invalid);
            }
        } else if c.is_ascii_digit() {
            self.entry.push(c);
            if self.entry.len() >= max {
                self.finish_collect(now);
                self.swallow = col.terminator;
            } else {
                self.wait = Wait::Input {
                    deadline: now + ms(col.retry.inter_digit_timeout_ms),
                };
            }
        } else {
            self.fail(now, Failure::Invalid);
        }
    }

    fn finish_collect(&mut self, now: Instant) {
        if self.sub == Sub::EnterNumber {
            self.finish_number(now);
            return;
        }
        let plan = Arc::clone(&self.plan);
        let Some(StateKind::Collect(col)) = plan.state(self.current).map(|s| &s.kind) else {
            return;
        };
        let entry = std::mem::take(&mut self.entry);
        let (min, max) = self.lengths(col);
        let ok = entry.len() >= min
            && entry.len() <= max
            && match col.validate {
                Validate::None => true,
                Validate::Id => match IdNumber::parse(&entry, self.today(now)) {
                    Ok(id) => {
                        self.id = Some(id);
                        true
                    }
                    Err(_) => false,
                },
                Validate::Pin => match Pin::new(&entry) {
                    Some(p) => {
                        self.pin = Some(p);
                        true
                    }
                    None => false,
                },
            };
        if ok {
            match &col.read_back {
                Some(rb) if col.validate == Validate::Id => self.read_back_id(&rb.groups),
                _ => self.goto(col.next),
            }
        } else {
            self.fail(now, Failure::Invalid);
        }
    }

    fn fail(&mut self, now: Instant, why: Failure) {
        let Some((prompt, barge_in, retry)) = self.current_prompt() else {
            return;
        };
        let plan = Arc::clone(&self.plan);
        self.entry.clear();
        // After a mistake, keys typed ahead belong to the mistaken attempt.
        self.type_ahead.clear();
        self.tries = self.tries.saturating_add(1);
        let err = match why {
            Failure::NoInput => {
                self.silences = self.silences.saturating_add(1);
                retry.no_input_prompt.clone()
            }
            Failure::Invalid => retry.invalid_prompt.clone(),
        };
        let give_up = match retry.no_input_limit {
            Some((limit, t)) if why == Failure::NoInput && self.silences >= limit => Some(t),
            _ if self.tries >= retry.tries => Some(retry.on_fail),
            _ => None,
        };
        match give_up {
            Some(t) => {
                self.sub = Sub::None;
                self.callback_number = None;
                let id = match t {
                    Target::State(i) => i,
                    Target::Repeat => self.last_repeatable.unwrap_or(plan.initial),
                };
                let items = self.render(&[Item::Prompt(err)], &[]);
                self.play(items, false, After::Goto(id));
            }
            None if retry.error_barge_in => {
                let items = self.render(&[Item::Prompt(err)], &prompt);
                if items.is_empty() {
                    self.wait = Wait::Input {
                        deadline: now + ms(retry.first_digit_timeout_ms),
                    };
                } else {
                    self.play(items, barge_in, After::StartInput);
                }
            }
            None => {
                // The reason is heard in full, then the question again.
                let items = self.render(&[Item::Prompt(err)], &[]);
                self.play(items, false, After::Reprompt);
            }
        }
    }

    fn on_auth(&mut self, res: Result<AuthOutcome, LedgerUnavailable>) {
        let Some(StateKind::Authenticate(a)) = self.kind() else {
            return;
        };
        let a = a.clone();
        self.pin = None;
        // Re-arm nothing: the transition below decides the next wait.
        self.wait = Wait::Idle;
        match res {
            Ok(AuthOutcome::Verified(summary)) => {
                self.summary = Some(summary);
                // Not needed any more: do not keep the ID longer than the check.
                self.id = None;
                self.goto(a.verified);
            }
            Ok(AuthOutcome::Rejected) => {
                self.id = None;
                self.rejections = self.rejections.saturating_add(1);
                if self.rejections >= a.max_rejections {
                    self.goto(a.too_many_rejections);
                } else {
                    self.goto(a.rejected);
                }
            }
            Ok(AuthOutcome::Locked) => {
                self.id = None;
                self.goto(a.locked);
            }
            Err(LedgerUnavailable) => self.goto(a.unavailable),
        }
    }

    fn hang_up(&mut self) {
        self.actions.push_back(FlowAction::Hangup);
        self.record.end_reason = if self.hangup_reason.is_empty() {
            "goodbye".to_owned()
        } else {
            self.hangup_reason.clone()
        };
        self.finish_quietly();
    }

    /// Ends the call and forgets everything sensitive.
    fn finish_quietly(&mut self) {
        self.wait = Wait::Done;
        self.pending = None;
        self.type_ahead.clear();
        self.entry.clear();
        self.id = None;
        self.pin = None;
        self.summary = None;
    }

    fn has_record(&self, ins: Insurance) -> bool {
        match (&self.summary, ins) {
            (Some(s), Insurance::Pension) => s.pension.is_some(),
            (Some(s), Insurance::Medical) => s.medical.is_some(),
            (Some(_), _) => true,
            (None, _) => false,
        }
    }

    /// Playing time of a prompt id, if the library's durations are known.
    fn prompt_ms(&self, id: &str) -> Option<u32> {
        self.cfg.prompt_ms.as_ref()?.get(id).copied()
    }

    /// Play items of spoken segments, noted for the record as one
    /// `placeholder` entry (never the value).
    fn render_segs(&mut self, segs: Vec<Seg>, placeholder: &str) -> Vec<PlayItem> {
        let mut total = Some(0u32);
        let mut out = Vec::with_capacity(segs.len());
        for s in segs {
            match s {
                Seg::Prompt(p) => {
                    total = total
                        .zip(self.prompt_ms(p))
                        .map(|(a, b)| a.saturating_add(b));
                    out.push(PlayItem::Prompt(Arc::from(p)));
                }
                Seg::Pause(ms) => {
                    total = total.map(|a| a.saturating_add(ms));
                    out.push(PlayItem::Pause(ms));
                }
            }
        }
        self.rendered.push((placeholder.to_owned(), total));
        out
    }

    fn render_prompt(&mut self, p: &Arc<str>, out: &mut Vec<PlayItem>) {
        let ms = self.prompt_ms(p);
        self.rendered.push((p.to_string(), ms));
        out.push(PlayItem::Prompt(Arc::clone(p)));
    }

    /// Turns dialplan items into play items, noting prompt ids (values as
    /// placeholders) for the call record once they are played.
    fn render(&mut self, a: &[Item], b: &[Item]) -> Vec<PlayItem> {
        let mut out = Vec::new();
        for it in a.iter().chain(b) {
            match it {
                Item::Prompt(p) => self.render_prompt(p, &mut out),
                Item::Value {
                    field,
                    before,
                    after,
                } => {
                    let Some((segs, placeholder)) = self.value(*field) else {
                        continue;
                    };
                    if let Some(p) = before {
                        self.render_prompt(p, &mut out);
                    }
                    let items = self.render_segs(segs, &placeholder);
                    out.extend(items);
                    if let Some(p) = after {
                        self.render_prompt(p, &mut out);
                    }
                }
            }
        }
        out
    }

    /// The segments of one account value and its CDR placeholder, or `None`
    /// when the caller has no such value.
    fn value(&mut self, field: Field) -> Option<(Vec<Seg>, String)> {
        let sp = self.cfg.speller;
        let s = self.summary.as_deref()?;
        let ym = |v: Option<YearMonth>| v.map(|y| ((sp.year_month)(y), "<year_month>".to_owned()));
        let (amount, ins) = match field {
            Field::PensionBalance => (s.pension.as_ref()?.balance, Insurance::Pension),
            Field::MedicalBalance => (s.medical.as_ref()?.balance, Insurance::Medical),
            Field::PensionMonths => {
                let n = s.pension.as_ref()?.months_contributed;
                return Some(((sp.count)(u64::from(n)), "<count>".to_owned()));
            }
            Field::PensionLastPaid => return ym(s.pension.as_ref()?.last_paid),
            Field::DataAsOf => return ym(Some(s.data_as_of)),
            Field::LastPaid(i) => return ym(status_record(s, i)?.last_paid),
            Field::Status(i) => {
                let id = match status_record(s, i)?.status {
                    InsuranceStatus::Active => "status_active",
                    InsuranceStatus::Suspended => "status_suspended",
                    InsuranceStatus::None => "status_none",
                };
                return Some((vec![Seg::Prompt(id)], id.to_owned()));
            }
        };
        let segs = (sp.amount)(amount, &self.cfg.say).ok()?;
        if amount.0 < 0 {
            // R8: a personal balance is never negative; flag it, still read it with 负.
            self.record.anomaly = true;
            self.actions
                .push_back(FlowAction::Anomaly { insurance: ins });
        }
        Some((segs, "<amount>".to_owned()))
    }
}

fn status_record(s: &AccountSummary, i: Insurance) -> Option<&crate::domain::StatusRecord> {
    match i {
        Insurance::Unemployment => Some(&s.unemployment),
        Insurance::WorkInjury => Some(&s.work_injury),
        Insurance::Maternity => Some(&s.maternity),
        _ => None,
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

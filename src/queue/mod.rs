//! The agent queue of ivr12333: who waits for which human agent, in what
//! order, and which agent's phone rings next.
//!
//! This is a sans-IO core in the quinn/str0m style (see docs/architecture.md): the
//! runtime feeds inputs (`join`, `leave`, `agent_*`, `call_ended`,
//! `handle_timeout`) with the current `now`, then drains
//! [`QueueSet::poll_event`] and arms a timer for
//! [`QueueSet::poll_timeout`]. The core never touches sockets or the clock;
//! placing the INVITE to an agent, bridging RTP or sending REFER/CANCEL is
//! the runtime's job.
//!
//! Behaviour follows Asterisk `app_queue` and FreeSWITCH `mod_callcenter`
//! where they are useful (strategies, ring timeout, retry, wrap-up,
//! autopause, periodic position/estimated-wait announcements, maximum
//! wait) and goes further where the hotline needs it (see `docs/queue.md`):
//! a caller whose maximum wait expires while an agent's phone is ringing is
//! not dropped before that ring ends; an agent in several queues serves the
//! longest-waiting caller across them; positions are O(log n) at 10,000
//! waiting callers.
//!
//! Files: [`state`] (the state machine), [`order`] (FIFO with cheap
//! positions), [`strategy`] (which agent next), [`snapshot`] (the
//! serialisable view), [`digest`] (SIP digest auth for agents that
//! REGISTER), [`admin`] (axum routes), [`config`] (TOML tables).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod admin;
pub mod config;
pub mod digest;
pub mod order;
pub mod shared;
pub mod snapshot;
pub mod state;
pub mod strategy;

pub use snapshot::{AgentView, QueueSnapshot, QueueView, WaitingCaller};
pub use state::QueueSet;

/// A waiting call, numbered by the runtime (unique among calls alive at the
/// same time). Carries no caller number on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallerId(pub u64);

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "caller#{}", self.0)
    }
}

/// A configured agent name, e.g. `agent1001` (also the SIP user name the
/// agent registers with).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn new(s: impl Into<String>) -> AgentId {
        AgentId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which available agent is offered the next caller (Asterisk
/// `strategy=`, FreeSWITCH `strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent who has been idle longest (Asterisk `leastrecent`,
    /// mod_callcenter `longest-idle-agent`). Agents who never took a call
    /// since login count from their login time.
    #[default]
    LongestIdle,
    /// Rotate through the member list, remembering where the last ring went
    /// (Asterisk `rrmemory`, mod_callcenter `round-robin`).
    RoundRobin,
    /// Ring every available agent at once; the first to answer wins and the
    /// others are cancelled (Asterisk `ringall`).
    RingAll,
}

/// What happens when a caller reaches the queue's maximum wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxWaitAction {
    /// Play "坐席全忙，请稍后再拨" and goodbye, then hang up.
    #[default]
    Hangup,
    /// Play "坐席全忙" and return to the main menu.
    ReturnToMenu,
}

/// How a connected caller reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueMode {
    /// The IVR bridges the caller's RTP to the agent's call (B2BUA).
    #[default]
    Bridge,
    /// The IVR sends REFER to the caller's side. `target` comes from
    /// configuration only, never from the caller or SIP headers (toll fraud).
    Refer { target: String },
}

/// One named queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub name: String,
    pub strategy: Strategy,
    /// Members, in configuration order (round robin follows this order).
    pub agents: Vec<AgentId>,
    /// How long an agent's phone rings before the next agent is tried.
    pub ring_timeout: Duration,
    /// Rest after a call before the agent is offered another one (may be 0).
    pub wrap_up: Duration,
    /// Period of "您前面还有 N 位，请耐心等候".
    pub announce_every: Duration,
    /// Delay from joining to the first announcement (may be 0).
    pub first_announce_after: Duration,
    /// Longest a caller waits before [`QueueAction::MaxWait`].
    pub max_wait: Duration,
    pub on_max_wait: MaxWaitAction,
    /// Include an estimated wait in announcements (needs a few finished
    /// calls to estimate from).
    pub announce_estimated_wait: bool,
    pub mode: QueueMode,
    /// After a caller has rung every available agent without an answer, it
    /// waits this long before the same agents are tried again (Asterisk
    /// `retry`). Agents it has not tried yet are offered at once.
    pub retry: Duration,
    /// Pause an agent whose phone rang out unanswered (Asterisk
    /// `autopause`), so the next caller does not ring an empty desk.
    pub autopause: bool,
}

impl QueueConfig {
    /// A queue with the documented defaults: longest idle, 15 s ring, 10 s
    /// wrap-up, announcements every 30 s starting after 5 s, 300 s maximum
    /// wait ending in hang-up, 5 s retry, no autopause, bridge mode.
    pub fn new(name: impl Into<String>, agents: Vec<AgentId>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            strategy: Strategy::LongestIdle,
            agents,
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::from_secs(10),
            announce_every: Duration::from_secs(30),
            first_announce_after: Duration::from_secs(5),
            max_wait: Duration::from_secs(300),
            on_max_wait: MaxWaitAction::Hangup,
            announce_estimated_wait: false,
            mode: QueueMode::Bridge,
            retry: Duration::from_secs(5),
            autopause: false,
        }
    }
}

/// One agent.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub id: AgentId,
    /// Digest password for REGISTER (plain, or `ha1-md5:<hex>` /
    /// `ha1-sha256:<hex>`; see [`digest`]). Never printed.
    pub password: Option<String>,
    /// A static `sip:` URI to ring when the agent does not REGISTER.
    pub contact: Option<String>,
}

impl AgentConfig {
    pub fn new(id: impl Into<String>) -> AgentConfig {
        AgentConfig {
            id: AgentId(id.into()),
            password: None,
            contact: None,
        }
    }
}

/// The password is a secret: `Debug` shows only whether there is one.
impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("id", &self.id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("contact", &self.contact)
            .finish()
    }
}

/// An agent's state as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    LoggedOut,
    Available,
    Ringing,
    OnCall,
    WrapUp,
    Paused,
}

/// What the runtime must do. Drain with [`QueueSet::poll_event`] after
/// every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// INVITE the agent at `contact` on behalf of `caller`.
    RingAgent {
        caller: CallerId,
        agent: AgentId,
        contact: String,
    },
    /// Stop ringing (ring timeout, caller left, agent logged out, another
    /// agent answered in ring-all): CANCEL the agent's INVITE.
    CancelRing { caller: CallerId, agent: AgentId },
    /// The agent answered: bridge (or REFER in [`QueueMode::Refer`]). The
    /// caller is no longer in the queue.
    Connect { caller: CallerId, agent: AgentId },
    /// Play "您前面还有 N 位，请耐心等候". `position` is 1-based (1 = next
    /// to be served), the same number [`QueueSet::join`] returned; the
    /// number of people ahead is `position - 1`.
    Announce {
        caller: CallerId,
        position: usize,
        estimated_wait: Option<Duration>,
    },
    /// The maximum wait expired; the caller is no longer in the queue.
    MaxWait {
        caller: CallerId,
        action: MaxWaitAction,
    },
    /// Acknowledges [`QueueSet::leave`]: the caller is out of the queue.
    Left { caller: CallerId },
}

/// Errors of the queue API and of its configuration. Messages name queues
/// and agents (configuration) but never caller numbers or digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    #[error("{0} is already waiting in a queue")]
    AlreadyQueued(CallerId),
    #[error("agent {0:?} has no contact: it must REGISTER or have a static contact")]
    NoContact(String),
    #[error("queue {0:?} is defined twice")]
    DuplicateQueue(String),
    #[error("agent {0:?} is defined twice")]
    DuplicateAgent(String),
    #[error("queue {queue:?} lists agent {agent:?}, which is not defined as an [[agent]]")]
    AgentNotDefined { queue: String, agent: String },
    #[error("queue {queue:?} lists agent {agent:?} twice")]
    AgentListedTwice { queue: String, agent: String },
    #[error("queue {queue:?}: {field} must be greater than zero")]
    ZeroDuration { queue: String, field: &'static str },
    #[error("queue {queue:?}: {field} must be at most a year")]
    DurationTooLong { queue: String, field: &'static str },
    #[error("a queue or agent name must not be empty")]
    EmptyName,
    #[error("queue {0:?}: refer mode needs a non-empty target")]
    EmptyReferTarget(String),
}

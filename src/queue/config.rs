//! Queue and agent configuration as TOML `[[queue]]` and `[[agent]]`
//! tables (see `docs/queue.md` for the reference and an example).
//!
//! Durations are whole seconds (`*_secs`). Errors say which queue or agent
//! and which field is wrong, and name the line for syntax errors, but never
//! echo a value (a malformed line could be a password).

use std::time::Duration;

use serde::Deserialize;

use super::{
    AgentConfig, AgentId, MaxWaitAction, QueueConfig, QueueError, QueueMode, QueueSet, Strategy,
};

/// The `[[queue]]` and `[[agent]]` tables of a configuration file. Can be
/// embedded in a larger config struct as two fields named `queue` and
/// `agent`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesFile {
    #[serde(default)]
    pub queue: Vec<QueueTable>,
    #[serde(default)]
    pub agent: Vec<AgentTable>,
}

/// How the caller reaches the agent (`mode = "bridge" | "refer"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    #[default]
    Bridge,
    Refer,
}

/// One `[[queue]]` table; every field but `name` and `agents` has the
/// default shown in `docs/queue.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTable {
    pub name: String,
    #[serde(default)]
    pub strategy: StrategyName,
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default = "d15")]
    pub ring_timeout_secs: u64,
    #[serde(default = "d10")]
    pub wrap_up_secs: u64,
    #[serde(default = "d30")]
    pub announce_every_secs: u64,
    #[serde(default = "d5")]
    pub first_announce_after_secs: u64,
    #[serde(default = "d300")]
    pub max_wait_secs: u64,
    #[serde(default)]
    pub on_max_wait: MaxWaitAction,
    #[serde(default)]
    pub announce_estimated_wait: bool,
    #[serde(default)]
    pub mode: ModeName,
    /// Required with `mode = "refer"`: where the caller is transferred.
    #[serde(default)]
    pub refer_target: Option<String>,
    #[serde(default = "d5")]
    pub retry_secs: u64,
    #[serde(default)]
    pub autopause: bool,
}

/// Strategy names, with the Asterisk and FreeSWITCH spellings accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum StrategyName {
    #[default]
    #[serde(
        rename = "longest_idle",
        alias = "leastrecent",
        alias = "longest-idle-agent"
    )]
    LongestIdle,
    #[serde(rename = "round_robin", alias = "rrmemory", alias = "round-robin")]
    RoundRobin,
    #[serde(rename = "ring_all", alias = "ringall", alias = "ring-all")]
    RingAll,
}

impl From<StrategyName> for Strategy {
    fn from(s: StrategyName) -> Strategy {
        match s {
            StrategyName::LongestIdle => Strategy::LongestIdle,
            StrategyName::RoundRobin => Strategy::RoundRobin,
            StrategyName::RingAll => Strategy::RingAll,
        }
    }
}

fn d5() -> u64 {
    5
}
fn d10() -> u64 {
    10
}
fn d15() -> u64 {
    15
}
fn d30() -> u64 {
    30
}
fn d300() -> u64 {
    300
}

/// One `[[agent]]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTable {
    pub id: String,
    /// Digest password (or `ha1-md5:`/`ha1-sha256:` HA1) for REGISTER.
    #[serde(default)]
    pub password: Option<String>,
    /// Static `sip:` URI for agents that do not REGISTER.
    #[serde(default)]
    pub contact: Option<String>,
}

impl std::fmt::Debug for AgentTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTable")
            .field("id", &self.id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("contact", &self.contact)
            .finish()
    }
}

/// What is wrong with the queue configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueConfigError {
    #[error("queue configuration, line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("queue {queue:?}: {message}")]
    Queue { queue: String, message: String },
    #[error("agent {agent:?}: {message}")]
    Agent { agent: String, message: String },
    #[error(transparent)]
    Invalid(#[from] QueueError),
}

fn is_sip_uri(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    (l.starts_with("sip:") || l.starts_with("sips:"))
        && s.len() > 4
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl QueuesFile {
    /// Parses a TOML document holding `[[queue]]`/`[[agent]]` tables.
    pub fn from_toml_str(text: &str) -> Result<QueuesFile, QueueConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).map_or(0, |p| p.matches('\n').count()) + 1)
                .unwrap_or(0);
            QueueConfigError::Syntax {
                line,
                message: e.message().to_owned(),
            }
        })
    }

    /// Checks the tables and converts them to the state machine's types.
    pub fn into_configs(self) -> Result<(Vec<QueueConfig>, Vec<AgentConfig>), QueueConfigError> {
        let mut agents = Vec::with_capacity(self.agent.len());
        for a in self.agent {
            if let Some(c) = &a.contact
                && !is_sip_uri(c)
            {
                return Err(QueueConfigError::Agent {
                    agent: a.id,
                    message: "contact must be a sip: or sips: URI".into(),
                });
            }
            if a.password.as_deref() == Some("") {
                return Err(QueueConfigError::Agent {
                    agent: a.id,
                    message: "password must not be empty (omit it to disable REGISTER)".into(),
                });
            }
            agents.push(AgentConfig {
                id: AgentId(a.id),
                password: a.password,
                contact: a.contact,
            });
        }
        let mut queues = Vec::with_capacity(self.queue.len());
        for q in self.queue {
            let mode = match (q.mode, q.refer_target) {
                (ModeName::Bridge, None) => QueueMode::Bridge,
                (ModeName::Bridge, Some(_)) => {
                    return Err(QueueConfigError::Queue {
                        queue: q.name,
                        message: "refer_target is only used with mode = \"refer\"".into(),
                    });
                }
                (ModeName::Refer, Some(t)) if is_sip_uri(&t) => QueueMode::Refer { target: t },
                (ModeName::Refer, _) => {
                    return Err(QueueConfigError::Queue {
                        queue: q.name,
                        message: "mode = \"refer\" needs refer_target = \"sip:...\"".into(),
                    });
                }
            };
            if q.agents.is_empty() {
                return Err(QueueConfigError::Queue {
                    queue: q.name,
                    message: "agents = [...] must list at least one agent".into(),
                });
            }
            queues.push(QueueConfig {
                name: q.name,
                strategy: q.strategy.into(),
                agents: q.agents.into_iter().map(AgentId).collect(),
                ring_timeout: Duration::from_secs(q.ring_timeout_secs),
                wrap_up: Duration::from_secs(q.wrap_up_secs),
                announce_every: Duration::from_secs(q.announce_every_secs),
                first_announce_after: Duration::from_secs(q.first_announce_after_secs),
                max_wait: Duration::from_secs(q.max_wait_secs),
                on_max_wait: q.on_max_wait,
                announce_estimated_wait: q.announce_estimated_wait,
                mode,
                retry: Duration::from_secs(q.retry_secs),
                autopause: q.autopause,
            });
        }
        Ok((queues, agents))
    }

    /// Parses, validates and builds the state machine in one go.
    pub fn build(self) -> Result<QueueSet, QueueConfigError> {
        let (queues, agents) = self.into_configs()?;
        Ok(QueueSet::new(queues, agents)?)
    }
}

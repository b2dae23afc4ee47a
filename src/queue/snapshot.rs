//! The serialisable picture of the queues and agents that the admin API
//! returns (`GET /queues`, `GET /agents`). Times are whole seconds relative
//! to the snapshot's `now`, because an `Instant` has no meaning outside the
//! process. Caller entries carry only the runtime's call number, never a
//! phone number.

use serde::Serialize;

use super::{AgentId, AgentState, CallerId, Strategy};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueSnapshot {
    pub queues: Vec<QueueView>,
    pub agents: Vec<AgentView>,
}

impl QueueSnapshot {
    pub fn queue(&self, name: &str) -> Option<&QueueView> {
        self.queues.iter().find(|q| q.name == name)
    }

    pub fn agent(&self, id: &str) -> Option<&AgentView> {
        self.agents.iter().find(|a| a.id.0 == id)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueView {
    pub name: String,
    pub strategy: Strategy,
    pub waiting_count: usize,
    /// Wait of the first caller in line (0 when nobody waits).
    pub longest_wait_secs: u64,
    /// Members in configuration order.
    pub agents: Vec<AgentId>,
    pub available_agents: usize,
    pub answered: u64,
    pub abandoned: u64,
    pub max_wait_reached: u64,
    pub avg_wait_secs: Option<u64>,
    pub avg_service_secs: Option<u64>,
    /// Waiting callers in order.
    pub waiting: Vec<WaitingCaller>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WaitingCaller {
    pub caller: CallerId,
    pub position: usize,
    pub waited_secs: u64,
    /// Agents whose phones ring for this caller now.
    pub ringing: Vec<AgentId>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentView {
    pub id: AgentId,
    pub state: AgentState,
    pub calls_taken: u64,
    /// Seconds since the agent last became free (only when available).
    pub idle_secs: Option<u64>,
    /// The caller being rung or talked to.
    pub caller: Option<CallerId>,
    pub on_call_secs: Option<u64>,
    pub contact: Option<String>,
    pub queues: Vec<String>,
}

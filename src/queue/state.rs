//! The queue state machine: several named FIFO queues sharing a pool of
//! agents, driven on the caller's clock (`now` arguments only).
//!
//! Model (after Asterisk `app_queue` / FreeSWITCH `mod_callcenter`):
//! - Callers are served first-in first-out per queue. An agent who is a
//!   member of several queues serves the queue whose first caller has
//!   waited longest.
//! - A caller rings one agent at a time (longest idle, round robin) or all
//!   free agents (ring all). A ring that times out is cancelled and the next
//!   agent is tried; an agent who rejects or is unreachable is skipped the
//!   same way. The caller never loses its place because of an agent.
//! - Once a caller has tried every free agent without an answer it waits
//!   `retry` before trying them again, and keeps those agents reserved
//!   meanwhile so that nobody behind it jumps the queue (Asterisk's
//!   behaviour); an agent it has not tried yet is rung at once.
//! - After a call the agent rests `wrap_up` before the next offer.
//! - Every `announce_every` a waiting caller (not currently ringing an
//!   agent) is told its position; at `max_wait` it is taken out with
//!   [`QueueAction::MaxWait`] — unless an agent's phone is ringing for it,
//!   in which case that ring is allowed to finish first (at most
//!   `ring_timeout` more), because dropping a caller a second before the
//!   agent picks up is the worst outcome for both.
//!
//! Timers live in one binary heap with lazy deletion: each entry carries a
//! generation that must still match when it fires; stale entries are
//! dropped when popped, or in bulk when they outnumber live ones 4 to 1.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::order::WaitOrder;
use super::snapshot::{AgentView, QueueSnapshot, QueueView, WaitingCaller};
use super::strategy;
use super::{
    AgentConfig, AgentId, AgentState, CallerId, QueueAction, QueueConfig, QueueError, QueueMode,
    Strategy,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Idle,
    Ringing {
        caller: CallerId,
    },
    OnCall {
        caller: CallerId,
        queue: usize,
        since: Instant,
    },
    WrapUp {
        until: Instant,
    },
}

#[derive(Debug)]
struct Agent {
    id: AgentId,
    static_contact: Option<String>,
    contact: Option<String>,
    logged_in: bool,
    paused: bool,
    activity: Activity,
    /// When the agent last became free (login or end of wrap-up).
    idle_since: Option<Instant>,
    calls_taken: u64,
    queues: Vec<usize>,
    /// Generation for the ring and wrap-up timers.
    epoch: u64,
}

impl Agent {
    fn is_available(&self) -> bool {
        self.logged_in && !self.paused && self.activity == Activity::Idle && self.contact.is_some()
    }

    fn state(&self) -> AgentState {
        match self.activity {
            Activity::Ringing { .. } => AgentState::Ringing,
            Activity::OnCall { .. } => AgentState::OnCall,
            Activity::WrapUp { .. } if self.logged_in => AgentState::WrapUp,
            _ if !self.logged_in => AgentState::LoggedOut,
            _ if self.paused => AgentState::Paused,
            _ => AgentState::Available,
        }
    }
}

#[derive(Debug)]
struct Caller {
    queue: usize,
    seq: u64,
    epoch: u64,
    joined: Instant,
    /// Agents whose phones ring for this caller now.
    ringing: Vec<usize>,
    /// Agents that did not answer this caller in the current round.
    tried: Vec<usize>,
    retry_at: Option<Instant>,
    /// Max wait reached while ringing: leave when the ring ends unanswered.
    expired: bool,
}

#[derive(Debug, Default)]
struct QueueStats {
    answered: u64,
    abandoned: u64,
    max_waited: u64,
    /// Exponential average (3/4 old, 1/4 new, as Asterisk's holdtime) of
    /// talk time plus wrap-up.
    avg_service: Option<Duration>,
    /// Exponential average of the wait of answered callers.
    avg_wait: Option<Duration>,
}

#[derive(Debug)]
struct Queue {
    cfg: QueueConfig,
    members: Vec<usize>,
    order: WaitOrder,
    rr_next: usize,
    stats: QueueStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    // MaxWait sorts first so that a caller whose announcement falls due at
    // the same instant as its maximum wait hears "坐席全忙" only.
    MaxWait { caller: CallerId, epoch: u64 },
    Announce { caller: CallerId, epoch: u64 },
    Retry { caller: CallerId, epoch: u64 },
    Ring { agent: usize, epoch: u64 },
    WrapUp { agent: usize, epoch: u64 },
}

fn ewma(old: Option<Duration>, sample: Duration) -> Duration {
    match old {
        None => sample,
        Some(o) => (o.saturating_mul(3).saturating_add(sample)) / 4,
    }
}

/// All queues and agents of one service instance. See the module docs.
#[derive(Debug)]
pub struct QueueSet {
    queues: Vec<Queue>,
    queue_index: HashMap<String, usize>,
    agents: Vec<Agent>,
    agent_index: HashMap<AgentId, usize>,
    callers: HashMap<CallerId, Caller>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    actions: VecDeque<QueueAction>,
    next_epoch: u64,
    avail: Vec<bool>,
    picked: Vec<usize>,
}

impl QueueSet {
    /// Validates the configuration: names non-empty and unique, every
    /// queue member defined as an agent, ring timeout, announcement period,
    /// maximum wait and retry non-zero, refer targets non-empty.
    pub fn new(queues: Vec<QueueConfig>, agents: Vec<AgentConfig>) -> Result<QueueSet, QueueError> {
        let mut agent_index = HashMap::new();
        let mut agent_list = Vec::with_capacity(agents.len());
        for a in agents {
            if a.id.0.trim().is_empty() {
                return Err(QueueError::EmptyName);
            }
            if agent_index.insert(a.id.clone(), agent_list.len()).is_some() {
                return Err(QueueError::DuplicateAgent(a.id.0));
            }
            agent_list.push(Agent {
                id: a.id,
                static_contact: a.contact,
                contact: None,
                logged_in: false,
                paused: false,
                activity: Activity::Idle,
                idle_since: None,
                calls_taken: 0,
                queues: Vec::new(),
                epoch: 0,
            });
        }
        let mut queue_index = HashMap::new();
        let mut queue_list: Vec<Queue> = Vec::with_capacity(queues.len());
        for q in queues {
            if q.name.trim().is_empty() {
                return Err(QueueError::EmptyName);
            }
            for (field, d) in [
                ("ring_timeout", q.ring_timeout),
                ("announce_every", q.announce_every),
                ("max_wait", q.max_wait),
                // A zero retry would re-ring an unreachable agent in a
                // tight loop.
                ("retry", q.retry),
            ] {
                if d.is_zero() {
                    return Err(QueueError::ZeroDuration {
                        queue: q.name.clone(),
                        field,
                    });
                }
            }
            // `now + d` must not overflow on the call path.
            const MAX: Duration = Duration::from_secs(365 * 86_400);
            for (field, d) in [
                ("ring_timeout", q.ring_timeout),
                ("wrap_up", q.wrap_up),
                ("announce_every", q.announce_every),
                ("first_announce_after", q.first_announce_after),
                ("max_wait", q.max_wait),
                ("retry", q.retry),
            ] {
                if d > MAX {
                    return Err(QueueError::DurationTooLong {
                        queue: q.name.clone(),
                        field,
                    });
                }
            }
            if let QueueMode::Refer { target } = &q.mode
                && target.trim().is_empty()
            {
                return Err(QueueError::EmptyReferTarget(q.name.clone()));
            }
            let qi = queue_list.len();
            if queue_index.insert(q.name.clone(), qi).is_some() {
                return Err(QueueError::DuplicateQueue(q.name));
            }
            let mut members = Vec::with_capacity(q.agents.len());
            for id in &q.agents {
                let Some(&ai) = agent_index.get(id) else {
                    return Err(QueueError::AgentNotDefined {
                        queue: q.name.clone(),
                        agent: id.0.clone(),
                    });
                };
                if members.contains(&ai) {
                    return Err(QueueError::AgentListedTwice {
                        queue: q.name.clone(),
                        agent: id.0.clone(),
                    });
                }
                members.push(ai);
                agent_list[ai].queues.push(qi);
            }
            queue_list.push(Queue {
                cfg: q,
                members,
                order: WaitOrder::new(),
                rr_next: 0,
                stats: QueueStats::default(),
            });
        }
        Ok(QueueSet {
            queues: queue_list,
            queue_index,
            agents: agent_list,
            agent_index,
            callers: HashMap::new(),
            timers: BinaryHeap::new(),
            actions: VecDeque::new(),
            next_epoch: 0,
            avail: Vec::new(),
            picked: Vec::new(),
        })
    }

    /// The configuration of a queue (e.g. its [`QueueMode`] after a
    /// `Connect`).
    pub fn queue_config(&self, name: &str) -> Option<&QueueConfig> {
        self.queue_index.get(name).map(|&i| &self.queues[i].cfg)
    }

    /// Names of the configured queues, in configuration order.
    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queues.iter().map(|q| q.cfg.name.as_str())
    }

    pub fn has_agent(&self, agent: &AgentId) -> bool {
        self.agent_index.contains_key(agent)
    }

    pub fn agent_state(&self, agent: &AgentId) -> Option<AgentState> {
        self.agent_index.get(agent).map(|&a| self.agents[a].state())
    }

    /// The queue whose caller `agent` is talking to (after
    /// [`QueueAction::Connect`] the caller is no longer waiting, so this is
    /// how the runtime finds the [`QueueMode`] to bridge or REFER).
    pub fn agent_call_queue(&self, agent: &AgentId) -> Option<&QueueConfig> {
        let &ai = self.agent_index.get(agent)?;
        match self.agents[ai].activity {
            Activity::OnCall { queue, .. } => Some(&self.queues[queue].cfg),
            _ => None,
        }
    }

    /// The queue a caller waits in, if it is waiting.
    pub fn caller_queue(&self, caller: CallerId) -> Option<&str> {
        self.callers
            .get(&caller)
            .map(|c| self.queues[c.queue].cfg.name.as_str())
    }

    /// 1-based position of a waiting caller.
    pub fn position(&self, caller: CallerId) -> Option<usize> {
        let c = self.callers.get(&caller)?;
        self.queues[c.queue].order.position(c.seq)
    }

    /// Number of callers waiting in all queues.
    pub fn waiting(&self) -> usize {
        self.callers.len()
    }

    /// Logs in every agent that has a static contact (desk phones that do
    /// not REGISTER). Call once at start-up.
    pub fn login_static_agents(&mut self, now: Instant) {
        let ids: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|a| a.static_contact.is_some() && !a.logged_in)
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            // Cannot fail: the agent exists and has a contact.
            let _ = self.agent_login(now, &id, None);
        }
    }

    fn schedule(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
        let live = self.callers.len() * 3 + self.agents.len();
        if self.timers.len() > 4 * live + 1024 {
            let timers = std::mem::take(&mut self.timers);
            let kept: Vec<_> = timers
                .into_vec()
                .into_iter()
                .filter(|Reverse((at, t))| self.timer_live(*at, *t))
                .collect();
            self.timers = BinaryHeap::from(kept);
        }
    }

    fn timer_live(&self, at: Instant, t: Timer) -> bool {
        match t {
            Timer::Announce { caller, epoch } => {
                self.callers.get(&caller).is_some_and(|c| c.epoch == epoch)
            }
            Timer::MaxWait { caller, epoch } => self
                .callers
                .get(&caller)
                .is_some_and(|c| c.epoch == epoch && !c.expired),
            Timer::Retry { caller, epoch } => self
                .callers
                .get(&caller)
                .is_some_and(|c| c.epoch == epoch && c.retry_at == Some(at)),
            Timer::Ring { agent, epoch } => self.agents.get(agent).is_some_and(|a| {
                a.epoch == epoch && matches!(a.activity, Activity::Ringing { .. })
            }),
            Timer::WrapUp { agent, epoch } => self
                .agents
                .get(agent)
                .is_some_and(|a| a.epoch == epoch && matches!(a.activity, Activity::WrapUp { .. })),
        }
    }

    /// Puts a caller at the end of `queue`; returns its 1-based position.
    pub fn join(
        &mut self,
        now: Instant,
        queue: &str,
        caller: CallerId,
    ) -> Result<usize, QueueError> {
        let Some(&qi) = self.queue_index.get(queue) else {
            return Err(QueueError::UnknownQueue(queue.to_owned()));
        };
        if self.callers.contains_key(&caller) {
            return Err(QueueError::AlreadyQueued(caller));
        }
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        let q = &mut self.queues[qi];
        let seq = q.order.push(caller);
        let position = q.order.len();
        let first = now + q.cfg.first_announce_after;
        let deadline = now + q.cfg.max_wait;
        self.callers.insert(
            caller,
            Caller {
                queue: qi,
                seq,
                epoch,
                joined: now,
                ringing: Vec::new(),
                tried: Vec::new(),
                retry_at: None,
                expired: false,
            },
        );
        self.schedule(first, Timer::Announce { caller, epoch });
        self.schedule(deadline, Timer::MaxWait { caller, epoch });
        self.dispatch(now);
        Ok(position)
    }

    fn remove_caller(&mut self, caller: CallerId) -> Option<Caller> {
        let c = self.callers.remove(&caller)?;
        self.queues[c.queue].order.remove(c.seq);
        Some(c)
    }

    /// The caller pressed `*` or hung up. Cancels any ring for it and
    /// acknowledges with [`QueueAction::Left`]; a caller not waiting (already
    /// connected, timed out or unknown) is ignored.
    pub fn leave(&mut self, now: Instant, caller: CallerId) {
        let Some(c) = self.remove_caller(caller) else {
            return;
        };
        for &a in &c.ringing {
            self.agents[a].activity = Activity::Idle;
            self.actions.push_back(QueueAction::CancelRing {
                caller,
                agent: self.agents[a].id.clone(),
            });
        }
        self.queues[c.queue].stats.abandoned += 1;
        self.actions.push_back(QueueAction::Left { caller });
        self.dispatch(now);
    }

    /// An agent logs in (admin API or a successful REGISTER). `contact` is
    /// the registered Contact URI; without one the static contact is used.
    pub fn agent_login(
        &mut self,
        now: Instant,
        agent: &AgentId,
        contact: Option<String>,
    ) -> Result<(), QueueError> {
        let Some(&ai) = self.agent_index.get(agent) else {
            return Err(QueueError::UnknownAgent(agent.0.clone()));
        };
        let a = &mut self.agents[ai];
        let Some(contact) = contact.or_else(|| a.static_contact.clone()) else {
            return Err(QueueError::NoContact(agent.0.clone()));
        };
        a.contact = Some(contact);
        if !a.logged_in {
            tracing::info!(agent = %a.id, "agent logged in");
            a.logged_in = true;
            a.paused = false;
            if a.activity == Activity::Idle {
                a.idle_since = Some(now);
            }
        }
        self.dispatch(now);
        Ok(())
    }

    /// An agent logs out. A ring in progress is cancelled and its caller
    /// tries the next agent; a call in progress continues (the agent shows
    /// as on call until [`QueueSet::call_ended`]).
    pub fn agent_logout(&mut self, now: Instant, agent: &AgentId) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        if let Activity::Ringing { caller } = self.agents[ai].activity {
            self.actions.push_back(QueueAction::CancelRing {
                caller,
                agent: agent.clone(),
            });
            self.end_ring(ai, caller, false);
        }
        let a = &mut self.agents[ai];
        if a.logged_in {
            tracing::info!(agent = %a.id, "agent logged out");
        }
        a.logged_in = false;
        a.paused = false;
        a.contact = None;
        if matches!(a.activity, Activity::WrapUp { .. }) {
            a.activity = Activity::Idle;
        }
        self.dispatch(now);
    }

    /// Pauses (break, paperwork) or resumes an agent. A ring in progress
    /// continues; the pause takes effect for the next offer.
    pub fn agent_pause(&mut self, now: Instant, agent: &AgentId, paused: bool) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        self.agents[ai].paused = paused;
        if !paused {
            self.dispatch(now);
        }
    }

    /// The agent answered the ring for `caller`: [`QueueAction::Connect`],
    /// and in ring-all the other agents' rings are cancelled. A late answer
    /// (the ring was already cancelled) is ignored: the runtime hangs that
    /// leg up.
    pub fn agent_answered(&mut self, now: Instant, agent: &AgentId, caller: CallerId) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        if self.agents[ai].activity != (Activity::Ringing { caller }) {
            return;
        }
        let Some(c) = self.remove_caller(caller) else {
            self.agents[ai].activity = Activity::Idle;
            return;
        };
        let a = &mut self.agents[ai];
        a.activity = Activity::OnCall {
            caller,
            queue: c.queue,
            since: now,
        };
        a.calls_taken += 1;
        let stats = &mut self.queues[c.queue].stats;
        stats.answered += 1;
        stats.avg_wait = Some(ewma(
            stats.avg_wait,
            now.saturating_duration_since(c.joined),
        ));
        self.actions.push_back(QueueAction::Connect {
            caller,
            agent: agent.clone(),
        });
        for &other in c.ringing.iter().filter(|&&o| o != ai) {
            self.agents[other].activity = Activity::Idle;
            self.actions.push_back(QueueAction::CancelRing {
                caller,
                agent: self.agents[other].id.clone(),
            });
        }
        self.dispatch(now);
    }

    /// The agent rejected the ring, was busy or unreachable: the caller
    /// keeps its place and the next agent is tried.
    pub fn agent_failed(&mut self, now: Instant, agent: &AgentId, caller: CallerId) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        if self.agents[ai].activity != (Activity::Ringing { caller }) {
            return;
        }
        self.end_ring(ai, caller, true);
        self.dispatch(now);
    }

    /// The bridged (or transferred) call of `agent` is over: wrap-up, then
    /// available again.
    pub fn call_ended(&mut self, now: Instant, agent: &AgentId) {
        let Some(&ai) = self.agent_index.get(agent) else {
            return;
        };
        let Activity::OnCall { queue, since, .. } = self.agents[ai].activity else {
            return;
        };
        let wrap_up = self.queues[queue].cfg.wrap_up;
        let stats = &mut self.queues[queue].stats;
        stats.avg_service = Some(ewma(
            stats.avg_service,
            now.saturating_duration_since(since) + wrap_up,
        ));
        let a = &mut self.agents[ai];
        if wrap_up.is_zero() || !a.logged_in {
            a.activity = Activity::Idle;
            a.idle_since = Some(now);
        } else {
            a.epoch += 1;
            let epoch = a.epoch;
            a.activity = Activity::WrapUp {
                until: now + wrap_up,
            };
            self.schedule(now + wrap_up, Timer::WrapUp { agent: ai, epoch });
        }
        self.dispatch(now);
    }

    /// Ends the ring of agent `ai` for `caller` without an answer.
    fn end_ring(&mut self, ai: usize, caller: CallerId, count_as_tried: bool) {
        if self.agents[ai].activity == (Activity::Ringing { caller }) {
            self.agents[ai].activity = Activity::Idle;
        }
        let Some(c) = self.callers.get_mut(&caller) else {
            return;
        };
        c.ringing.retain(|&x| x != ai);
        if count_as_tried && !c.tried.contains(&ai) {
            c.tried.push(ai);
        }
        if c.expired && c.ringing.is_empty() {
            self.finish_max_wait(caller);
        }
    }

    fn finish_max_wait(&mut self, caller: CallerId) {
        if let Some(c) = self.remove_caller(caller) {
            let q = &mut self.queues[c.queue];
            q.stats.max_waited += 1;
            tracing::debug!(%caller, queue = %q.cfg.name, "maximum wait reached");
            self.actions.push_back(QueueAction::MaxWait {
                caller,
                action: q.cfg.on_max_wait,
            });
        }
    }

    /// When [`QueueSet::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if !self.timer_live(at, t) {
                continue;
            }
            self.fire(now, at, t);
        }
        self.dispatch(now);
    }

    fn fire(&mut self, now: Instant, at: Instant, t: Timer) {
        match t {
            Timer::Announce { caller, epoch } => {
                let Some(c) = self.callers.get(&caller) else {
                    return;
                };
                let qi = c.queue;
                let cfg = &self.queues[qi].cfg;
                let mut next = at + cfg.announce_every;
                if next <= now {
                    next = now + cfg.announce_every;
                }
                // While an agent's phone rings the caller hears ringback or
                // hold audio; a position prompt would only be cut off.
                if c.ringing.is_empty() && !c.expired {
                    let position = self.queues[qi].order.position(c.seq).unwrap_or(1);
                    let estimated_wait = self.estimate(qi, position);
                    self.actions.push_back(QueueAction::Announce {
                        caller,
                        position,
                        estimated_wait,
                    });
                }
                self.schedule(next, Timer::Announce { caller, epoch });
            }
            Timer::MaxWait { caller, .. } => {
                let Some(c) = self.callers.get_mut(&caller) else {
                    return;
                };
                if c.ringing.is_empty() {
                    self.finish_max_wait(caller);
                } else {
                    c.expired = true;
                }
            }
            Timer::Retry { caller, .. } => {
                if let Some(c) = self.callers.get_mut(&caller) {
                    c.retry_at = None;
                    c.tried.clear();
                }
            }
            Timer::Ring { agent, .. } => {
                let Activity::Ringing { caller } = self.agents[agent].activity else {
                    return;
                };
                self.actions.push_back(QueueAction::CancelRing {
                    caller,
                    agent: self.agents[agent].id.clone(),
                });
                let autopause = self
                    .callers
                    .get(&caller)
                    .is_some_and(|c| self.queues[c.queue].cfg.autopause);
                tracing::debug!(agent = %self.agents[agent].id, %caller, "ring timeout");
                if autopause {
                    tracing::info!(agent = %self.agents[agent].id, "agent paused: ring not answered (autopause)");
                    self.agents[agent].paused = true;
                }
                self.end_ring(agent, caller, true);
            }
            Timer::WrapUp { agent, .. } => {
                let a = &mut self.agents[agent];
                a.activity = Activity::Idle;
                a.idle_since = Some(now);
            }
        }
    }

    /// Estimated wait for `position`: average service time (talk plus
    /// wrap-up) times the callers up to and including this one, shared by
    /// the staffed (logged in, not paused) members.
    fn estimate(&self, qi: usize, position: usize) -> Option<Duration> {
        let q = &self.queues[qi];
        if !q.cfg.announce_estimated_wait {
            return None;
        }
        let avg = q.stats.avg_service?;
        let staffed = q
            .members
            .iter()
            .filter(|&&a| self.agents[a].logged_in && !self.agents[a].paused)
            .count();
        if staffed == 0 {
            return None;
        }
        let p = u32::try_from(position).ok()?;
        let s = u32::try_from(staffed).ok()?;
        Some(avg.checked_mul(p)? / s)
    }

    /// Offers free agents to waiting callers, then drops stale timers from
    /// the top of the heap so that [`QueueSet::poll_timeout`] names a timer
    /// that will really do something (no spurious wake-ups for callers who
    /// already left). Every input ends here.
    fn dispatch(&mut self, now: Instant) {
        self.dispatch_agents(now);
        while let Some(&Reverse((at, t))) = self.timers.peek() {
            if self.timer_live(at, t) {
                break;
            }
            self.timers.pop();
        }
    }

    fn dispatch_agents(&mut self, now: Instant) {
        self.avail.clear();
        self.avail
            .extend(self.agents.iter().map(Agent::is_available));
        if !self.avail.iter().any(|&b| b) {
            return;
        }
        // Queues whose first caller has waited longest go first, so an agent
        // in several queues serves the longest wait.
        let mut order: Vec<(Instant, usize)> = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(qi, q)| {
                let (_, c) = q.order.nth(1)?;
                Some((self.callers.get(&c)?.joined, qi))
            })
            .collect();
        order.sort_unstable();
        for (_, qi) in order {
            self.dispatch_queue(qi, now);
        }
    }

    fn dispatch_queue(&mut self, qi: usize, now: Instant) {
        let mut pool = self.queues[qi]
            .members
            .iter()
            .filter(|&&a| self.avail[a])
            .count();
        let strategy = self.queues[qi].cfg.strategy;
        let ring_timeout = self.queues[qi].cfg.ring_timeout;
        let retry = self.queues[qi].cfg.retry;
        let mut k = 0;
        // Every caller visited either takes or reserves at least one free
        // agent, or already has a ring in progress (at most one such caller
        // per agent), so this loop runs O(agents) times.
        while pool > 0 {
            k += 1;
            let Some((_, cid)) = self.queues[qi].order.nth(k) else {
                break;
            };
            let Some(c) = self.callers.get_mut(&cid) else {
                continue;
            };
            if c.expired || (strategy != Strategy::RingAll && !c.ringing.is_empty()) {
                continue;
            }
            let q = &mut self.queues[qi];
            let agents = &self.agents;
            let avail = &self.avail;
            let tried = &c.tried;
            strategy::pick(
                strategy,
                &q.members,
                &mut q.rr_next,
                |a| avail[a] && !tried.contains(&a),
                |a| agents[a].idle_since,
                &mut self.picked,
            );
            if self.picked.is_empty() {
                if c.ringing.is_empty() {
                    // Tried every free agent: keep them for this caller's
                    // retry so nobody behind it jumps the queue.
                    for &a in &c.tried {
                        if self.avail[a] && q.members.contains(&a) {
                            self.avail[a] = false;
                            pool -= 1;
                        }
                    }
                    if c.retry_at.is_none() {
                        let at = now + retry;
                        c.retry_at = Some(at);
                        let epoch = c.epoch;
                        self.schedule(at, Timer::Retry { caller: cid, epoch });
                    }
                }
                continue;
            }
            c.retry_at = None;
            let picked = std::mem::take(&mut self.picked);
            for &a in &picked {
                c.ringing.push(a);
            }
            for &a in &picked {
                self.avail[a] = false;
                pool -= 1;
                let ag = &mut self.agents[a];
                ag.activity = Activity::Ringing { caller: cid };
                ag.epoch += 1;
                let epoch = ag.epoch;
                self.actions.push_back(QueueAction::RingAgent {
                    caller: cid,
                    agent: ag.id.clone(),
                    contact: ag.contact.clone().unwrap_or_default(),
                });
                self.schedule(now + ring_timeout, Timer::Ring { agent: a, epoch });
            }
            self.picked = picked;
        }
    }

    /// Next thing for the runtime to do.
    pub fn poll_event(&mut self) -> Option<QueueAction> {
        self.actions.pop_front()
    }

    /// A serialisable picture of every queue and agent (admin API).
    pub fn snapshot(&self, now: Instant) -> QueueSnapshot {
        QueueSnapshot {
            queues: self.queue_views(now),
            agents: self.agent_views(now),
        }
    }

    /// The queues part of [`QueueSet::snapshot`] (O(waiting callers)).
    pub fn queue_views(&self, now: Instant) -> Vec<QueueView> {
        let secs = |d: Duration| d.as_secs();
        self.queues
            .iter()
            .map(|q| {
                let waiting: Vec<WaitingCaller> = q
                    .order
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, cid))| {
                        let c = self.callers.get(&cid)?;
                        Some(WaitingCaller {
                            caller: cid,
                            position: i + 1,
                            waited_secs: secs(now.saturating_duration_since(c.joined)),
                            ringing: c
                                .ringing
                                .iter()
                                .map(|&a| self.agents[a].id.clone())
                                .collect(),
                        })
                    })
                    .collect();
                let longest_wait_secs = waiting.first().map_or(0, |w| w.waited_secs);
                QueueView {
                    name: q.cfg.name.clone(),
                    strategy: q.cfg.strategy,
                    waiting_count: waiting.len(),
                    longest_wait_secs,
                    agents: q
                        .members
                        .iter()
                        .map(|&a| self.agents[a].id.clone())
                        .collect(),
                    available_agents: q
                        .members
                        .iter()
                        .filter(|&&a| self.agents[a].is_available())
                        .count(),
                    answered: q.stats.answered,
                    abandoned: q.stats.abandoned,
                    max_wait_reached: q.stats.max_waited,
                    avg_wait_secs: q.stats.avg_wait.map(secs),
                    avg_service_secs: q.stats.avg_service.map(secs),
                    waiting,
                }
            })
            .collect()
    }

    /// The agents part of [`QueueSet::snapshot`] (O(agents), cheap).
    pub fn agent_views(&self, now: Instant) -> Vec<AgentView> {
        let secs = |d: Duration| d.as_secs();
        self.agents
            .iter()
            .map(|a| {
                let (caller, since) = match a.activity {
                    Activity::Ringing { caller } => (Some(caller), None),
                    Activity::OnCall { caller, since, .. } => (Some(caller), Some(since)),
                    _ => (None, None),
                };
                AgentView {
                    id: a.id.clone(),
                    state: a.state(),
                    calls_taken: a.calls_taken,
                    idle_secs: (a.state() == AgentState::Available)
                        .then(|| a.idle_since.map(|t| secs(now.saturating_duration_since(t))))
                        .flatten(),
                    caller,
                    on_call_secs: since.map(|t| secs(now.saturating_duration_since(t))),
                    contact: a.contact.clone(),
                    queues: a
                        .queues
                        .iter()
                        .map(|&q| self.queues[q].cfg.name.clone())
                        .collect(),
                }
            })
            .collect()
    }

    /// Checks the internal invariants (for tests and debug assertions):
    /// every waiting caller is in its queue's order, rings are recorded on
    /// both sides, no caller is rung by an agent it does not know of.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let in_orders: usize = self.queues.iter().map(|q| q.order.len()).sum();
        if in_orders != self.callers.len() {
            return Err(format!(
                "{in_orders} in queues but {} callers",
                self.callers.len()
            ));
        }
        for (cid, c) in &self.callers {
            if self.queues[c.queue].order.position(c.seq).is_none() {
                return Err(format!("{cid} missing from its queue"));
            }
            if c.expired && c.ringing.is_empty() {
                return Err(format!("{cid} expired but not ringing"));
            }
            for &a in &c.ringing {
                if self.agents[a].activity != (Activity::Ringing { caller: *cid }) {
                    return Err(format!(
                        "{cid} rings {} which is not ringing it",
                        self.agents[a].id
                    ));
                }
            }
        }
        for (ai, a) in self.agents.iter().enumerate() {
            if let Activity::Ringing { caller } = a.activity {
                let ok = self
                    .callers
                    .get(&caller)
                    .is_some_and(|c| c.ringing.contains(&ai));
                if !ok {
                    return Err(format!("{} rings {caller} which does not know", a.id));
                }
            }
        }
        Ok(())
    }
}

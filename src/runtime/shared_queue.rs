//! The shell around the shared queue ([`crate::queue::shared`]): one tokio
//! task per node that feeds the node's [`QueueNode`], applies its
//! [`StoreCmd`]s to PostgreSQL in order, runs the dispatch transaction
//! after every change, takes offers from other nodes by `LISTEN`, renews
//! this node's lease and reaps dead nodes.
//!
//! A database that cannot be reached delays changes, never loses them: the
//! failed change stays first in line and is tried again (every statement is
//! idempotent), so callers keep waiting on hold audio through an outage and
//! are offered agents when it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::queue::shared::{QueueNode, StoreCmd};
use crate::queue::{AgentId, CallerId, QueueAction, QueueConfig, QueueError};
use crate::runtime::queue_store::{
    ClusterView, OFFER_CHANNEL, OfferNote, PgQueueStore, StoreReply,
};

use super::driver::sleep_until;

/// Agent changes that are not about one caller.
#[derive(Debug, Clone)]
enum AgentCmd {
    Register {
        agent: AgentId,
        contact: String,
        path: Vec<String>,
        expires: Duration,
        received: Option<String>,
    },
    Unregister(AgentId),
    Pause(AgentId, bool),
    /// An operator's login (`Some` contact: ring there) or logout.
    Login(AgentId, bool, Option<String>),
}

#[derive(Debug)]
enum Op {
    Store(StoreCmd),
    Agent(AgentCmd),
}

/// One node's handle on the shared queue.
pub struct SharedQueue {
    node: Mutex<QueueNode>,
    store: PgQueueStore,
    wake: Notify,
    agent_cmds: Mutex<VecDeque<AgentCmd>>,
    /// Route sets (RFC 3327 Path) of the agents offered to this node.
    paths: Mutex<HashMap<AgentId, Vec<String>>>,
    /// Free agents per queue at the last dispatch.
    free: Mutex<HashMap<String, usize>>,
    /// When each of this node's callers joined (join → ring latency).
    joined: Mutex<HashMap<CallerId, Instant>>,
    lease: Duration,
    agents: Vec<(AgentId, Option<String>)>,
    /// The cluster's queue as last read (every lease tick), and when.
    view: Mutex<Option<(Instant, ClusterView)>>,
    /// Database round trips (statements or transactions) of this node's
    /// shared queue, and callers it put in the queue: the load figure.
    round_trips: AtomicU64,
    /// Of which the lease ticks (a fixed cost per node, not per call).
    tick_trips: AtomicU64,
    joins: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedQueue {
    /// `agents`: every configured agent with its static contact.
    pub fn new(
        store: PgQueueStore,
        queues: Vec<QueueConfig>,
        agents: Vec<(AgentId, Option<String>)>,
        lease: Duration,
    ) -> Arc<SharedQueue> {
        Arc::new(SharedQueue {
            node: Mutex::new(QueueNode::new(queues)),
            store,
            wake: Notify::new(),
            agent_cmds: Mutex::new(VecDeque::new()),
            paths: Mutex::new(HashMap::new()),
            free: Mutex::new(HashMap::new()),
            joined: Mutex::new(HashMap::new()),
            lease,
            agents,
            view: Mutex::new(None),
            round_trips: AtomicU64::new(0),
            tick_trips: AtomicU64::new(0),
            joins: AtomicU64::new(0),
        })
    }

    /// The cluster's queue as read at the last lease tick (None before the
    /// first one) and how long ago that was.
    pub fn view(&self) -> Option<(Duration, ClusterView)> {
        lock(&self.view)
            .as_ref()
            .map(|(at, v)| (at.elapsed(), v.clone()))
    }

    fn trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    fn with_node<T>(&self, f: impl FnOnce(&mut QueueNode, Instant) -> T) -> T {
        let r = f(&mut lock(&self.node), Instant::now());
        self.wake.notify_one();
        r
    }

    pub fn join(&self, queue: &str, caller: CallerId) -> Result<(), QueueError> {
        let r = self.with_node(|n, now| n.join(now, queue, caller));
        if r.is_ok() {
            self.joins.fetch_add(1, Ordering::Relaxed);
            lock(&self.joined).insert(caller, Instant::now());
        }
        r
    }

    pub fn leave(&self, caller: CallerId) {
        self.with_node(|n, now| n.leave(now, caller));
    }

    pub fn agent_answered(&self, agent: &AgentId, caller: CallerId) {
        self.with_node(|n, now| n.agent_answered(now, agent, caller));
    }

    pub fn agent_failed(&self, agent: &AgentId, caller: CallerId) {
        self.with_node(|n, now| n.agent_failed(now, agent, caller));
    }

    pub fn call_ended(&self, agent: &AgentId) {
        self.with_node(|n, now| n.call_ended(now, agent));
    }

    /// Whether the last dispatch left an agent of `queue` free.
    pub fn has_free_agent(&self, queue: &str) -> bool {
        lock(&self.free).get(queue).is_some_and(|&n| n > 0)
    }

    /// The Route set for calls to `agent` (its Path), from its last offer.
    pub fn path(&self, agent: &AgentId) -> Option<Vec<String>> {
        lock(&self.paths).get(agent).cloned()
    }

    fn push(&self, cmd: AgentCmd) {
        lock(&self.agent_cmds).push_back(cmd);
        self.wake.notify_one();
    }

    /// A REGISTER succeeded here: the binding goes to the database, where
    /// every node finds it.
    pub fn registered(
        &self,
        agent: &AgentId,
        contact: &str,
        path: &[String],
        expires: Duration,
        received: Option<String>,
    ) {
        self.push(AgentCmd::Register {
            agent: agent.clone(),
            contact: contact.to_owned(),
            path: path.to_vec(),
            expires,
            received,
        });
    }

    pub fn unregistered(&self, agent: &AgentId) {
        self.push(AgentCmd::Unregister(agent.clone()));
    }

    pub fn pause(&self, agent: &AgentId, paused: bool) {
        self.push(AgentCmd::Pause(agent.clone(), paused));
    }

    /// An operator logs `agent` in (optionally at `contact`) or out.
    pub fn login(&self, agent: &AgentId, logged_in: bool, contact: Option<String>) {
        self.push(AgentCmd::Login(agent.clone(), logged_in, contact));
    }

    async fn apply(&self, op: &Op) -> Result<Option<StoreReply>, sqlx::Error> {
        self.trip();
        match op {
            Op::Store(cmd) => self.store.apply(cmd).await,
            Op::Agent(AgentCmd::Register {
                agent,
                contact,
                path,
                expires,
                received,
            }) => self
                .store
                .register(agent, contact, path, *expires, received.as_deref())
                .await
                .map(|()| None),
            Op::Agent(AgentCmd::Unregister(a)) => self.store.unregister(a).await.map(|()| None),
            Op::Agent(AgentCmd::Pause(a, p)) => self.store.pause(a, *p).await.map(|()| None),
            Op::Agent(AgentCmd::Login(a, on, contact)) => self
                .store
                .set_login(a, *on, contact.as_deref())
                .await
                .map(|()| None),
        }
    }

    fn offer(&self, note: OfferNote) {
        self.offer_to(&mut lock(&self.node), note);
        self.wake.notify_one();
    }

    fn offer_to(&self, node: &mut QueueNode, note: OfferNote) {
        let agent = AgentId(note.agent);
        lock(&self.paths).insert(agent.clone(), note.path);
        // No contact left (the binding lapsed since the offer): the ring
        // fails at once and the next agent is tried.
        node.offer(Instant::now(), note.entry, agent, note.contact);
    }

    /// Gives up this node's lease at shutdown (its entries go at once).
    pub async fn release(&self) {
        let (trips, ticks, joins) = (
            self.round_trips.load(Ordering::Relaxed),
            self.tick_trips.load(Ordering::Relaxed),
            self.joins.load(Ordering::Relaxed),
        );
        tracing::info!(
            node = %self.store.node(),
            round_trips = trips,
            tick_round_trips = ticks,
            joins,
            "shared queue: database round trips of this node"
        );
        if let Err(e) = self.store.stop().await {
            tracing::warn!(error = %e, "shared queue: could not give up the lease; it lapses");
        }
    }

    /// Runs until aborted (after the node's calls are over, see
    /// [`SharedQueue::release`]).
    /// `route` hands an action to the call it is for (the queue runtime's
    /// routing, which undoes what a vanished call cannot take).
    pub async fn run(self: Arc<Self>, route: impl Fn(QueueAction) + Send + Sync) {
        let retry = Duration::from_millis(500);
        let mut pending: VecDeque<Op> = VecDeque::new();
        let mut started = false;
        let mut listener: Option<PgListener> = None;
        let mut need_dispatch = true;
        let mut dispatch_at: Option<Instant> = None;
        let mut backoff_until: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned_at: Option<Instant> = None;
        let mut warn = |what: &str, e: &sqlx::Error| {
            let now = Instant::now();
            if warned_at.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                warned_at = Some(now);
                tracing::warn!(error = %e, "shared queue: {what} failed; trying again");
            }
        };
        loop {
            let now = Instant::now();
            if !started {
                match self.store.start(self.lease, &self.agents).await {
                    Ok(()) => {
                        started = true;
                        tracing::info!(node = %self.store.node(), "shared agent queue: lease taken");
                    }
                    Err(e) => warn("start", &e),
                }
            }
            if listener.is_none() && started {
                match PgListener::connect_with(self.store.pool()).await {
                    Ok(mut l) => match l.listen(OFFER_CHANNEL).await {
                        Ok(()) => listener = Some(l),
                        Err(e) => warn("LISTEN", &e),
                    },
                    Err(e) => warn("LISTEN", &e),
                }
            }
            pending.extend(std::iter::from_fn(|| lock(&self.node).poll_store()).map(Op::Store));
            pending.extend(lock(&self.agent_cmds).drain(..).map(Op::Agent));
            let may_write = started && backoff_until.is_none_or(|t| now >= t);
            if may_write {
                backoff_until = None;
                while let Some(op) = pending.front() {
                    match self.apply(op).await {
                        Ok(reply) => {
                            pending.pop_front();
                            need_dispatch = true;
                            match reply {
                                Some(StoreReply::Joined {
                                    caller,
                                    entry,
                                    joined_at_ms,
                                }) => self.with_node(|n, _| n.joined(caller, entry, joined_at_ms)),
                                Some(StoreReply::Position { caller, position }) => {
                                    self.with_node(|n, _| n.position(caller, position))
                                }
                                None => {}
                            }
                            pending.extend(
                                std::iter::from_fn(|| lock(&self.node).poll_store()).map(Op::Store),
                            );
                        }
                        Err(e) => {
                            warn("a change", &e);
                            backoff_until = Some(Instant::now() + retry);
                            break;
                        }
                    }
                }
                if dispatch_at.is_some_and(|t| Instant::now() >= t) {
                    need_dispatch = true;
                    dispatch_at = None;
                }
                if need_dispatch && backoff_until.is_none() {
                    self.trip();
                    match self.store.dispatch().await {
                        Ok(d) => {
                            need_dispatch = false;
                            metrics::counter!("ivr_queue_offers_total").increment(d.offers as u64);
                            *lock(&self.free) = d.free_per_queue;
                            dispatch_at = d.wake_in.map(|w| Instant::now() + w);
                            for note in d.local {
                                self.offer(note);
                            }
                        }
                        Err(e) => {
                            warn("dispatch", &e);
                            backoff_until = Some(Instant::now() + retry);
                        }
                    }
                }
            }
            // Route what the node produced (outside its lock: routing may
            // feed it again, e.g. a ring for a caller that just hung up).
            let actions: Vec<QueueAction> =
                std::iter::from_fn(|| lock(&self.node).poll_event()).collect();
            let rerun = !actions.is_empty();
            for a in actions {
                match &a {
                    QueueAction::RingAgent { caller, agent, .. } => {
                        if let Some(t) = lock(&self.joined).get(caller) {
                            let waited = t.elapsed();
                            metrics::histogram!("ivr_queue_join_to_ring_seconds")
                                .record(waited.as_secs_f64());
                            tracing::info!(%caller, %agent, join_to_ring_us = waited.as_micros() as u64, "shared queue: agent offered");
                        }
                    }
                    QueueAction::Connect { caller, .. }
                    | QueueAction::MaxWait { caller, .. }
                    | QueueAction::Left { caller } => {
                        lock(&self.joined).remove(caller);
                    }
                    _ => {}
                }
                route(a);
            }
            if rerun {
                continue;
            }
            let deadline = [
                lock(&self.node).poll_timeout(),
                dispatch_at,
                backoff_until.filter(|_| !pending.is_empty() || need_dispatch),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = self.wake.notified() => {}
                n = async { listener.as_mut().expect("guarded").try_recv().await }, if listener.is_some() => {
                    match n {
                        Ok(Some(n)) => match serde_json::from_str::<OfferNote>(n.payload()) {
                            Ok(note) if note.node == self.store.node() => self.offer(note),
                            Ok(_) => {}
                            Err(_) => tracing::warn!("shared queue: unreadable offer notification"),
                        },
                        // The connection dropped and was made again: some
                        // notifications may be lost; the next tick resyncs.
                        Ok(None) => {}
                        Err(e) => {
                            warn("LISTEN", &e);
                            listener = None;
                        }
                    }
                }
                _ = tick.tick() => {
                    if started && pending.is_empty() {
                        self.housekeeping(&mut need_dispatch).await;
                    }
                }
                _ = sleep_until(deadline) => {
                    lock(&self.node).handle_timeout(Instant::now());
                }
            }
        }
    }

    /// The lease tick: renew (re-insert this node's callers if the lease
    /// had lapsed), reap dead nodes, and compare the agents ringing for
    /// this node with the database (offers lost in a reconnect).
    async fn housekeeping(&self, need_dispatch: &mut bool) {
        // View, renewal, reaping, resync.
        self.round_trips.fetch_add(4, Ordering::Relaxed);
        self.tick_trips.fetch_add(4, Ordering::Relaxed);
        match self.store.view().await {
            Ok(v) => *lock(&self.view) = Some((Instant::now(), v)),
            Err(e) => tracing::warn!(error = %e, "shared queue: reading the cluster view failed"),
        }
        match self.store.renew(self.lease).await {
            Ok(true) => {
                tracing::warn!(node = %self.store.node(), "shared queue: this node's lease had lapsed; its callers join again at their places");
                lock(&self.node).rejoin_all();
                self.wake.notify_one();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "shared queue: lease renewal failed");
                return;
            }
        }
        match self.store.reap().await {
            Ok(dead) if !dead.is_empty() => {
                tracing::warn!(nodes = ?dead, "shared queue: reaped nodes whose lease ran out; their callers left the queue, their agents went to wrap-up");
                *need_dispatch = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "shared queue: reaping failed"),
        }
        match self.store.ringing_for_node().await {
            // Only when this node has written everything: else the database
            // may still show a ring that just ended here.
            Ok(notes) => {
                let mut node = lock(&self.node);
                if !node.has_store_pending() {
                    for n in notes {
                        self.offer_to(&mut node, n);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "shared queue: resync failed"),
        }
        if lock(&self.node).waiting() > 0 {
            *need_dispatch = true;
        }
        self.wake.notify_one();
    }
}

/// The admin API and console on a node of a cluster: agent changes go to
/// the database (and this node's local view), pictures come from the
/// cluster view read at each lease tick.
pub struct ClusterControl {
    local: crate::queue::admin::SharedQueueSet,
    shared: Arc<SharedQueue>,
}

impl ClusterControl {
    pub fn new(
        local: crate::queue::admin::SharedQueueSet,
        shared: Arc<SharedQueue>,
    ) -> ClusterControl {
        ClusterControl { local, shared }
    }
}

fn secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0) / 1000).unwrap_or(0)
}

impl crate::queue::admin::QueueControl for ClusterControl {
    fn snapshot(&self) -> crate::queue::QueueSnapshot {
        use crate::queue::{AgentState, AgentView, QueueView, WaitingCaller};
        let local = self.local.snapshot();
        let Some((age, v)) = self.shared.view() else {
            return local;
        };
        let now = v.now_ms + i64::try_from(age.as_millis()).unwrap_or(0);
        let member_of = |agent: &str| -> Vec<String> {
            local
                .queues
                .iter()
                .filter(|q| q.agents.iter().any(|a| a.as_str() == agent))
                .map(|q| q.name.clone())
                .collect()
        };
        let agents: Vec<AgentView> = v
            .agents
            .iter()
            .filter(|a| local.agent(&a.agent).is_some())
            .map(|a| {
                let state = match a.state.as_str() {
                    "ringing" => AgentState::Ringing,
                    "on_call" => AgentState::OnCall,
                    "wrap_up" if a.logged_in && a.idle_since_ms > now => AgentState::WrapUp,
                    _ if !a.logged_in || a.contact.is_none() => AgentState::LoggedOut,
                    _ if a.paused => AgentState::Paused,
                    _ => AgentState::Available,
                };
                AgentView {
                    id: AgentId::new(&a.agent),
                    state,
                    calls_taken: u64::try_from(a.calls_taken).unwrap_or(0),
                    idle_secs: (state == AgentState::Available)
                        .then(|| secs(now - a.idle_since_ms)),
                    caller: a.caller.map(|c| CallerId(c as u64)),
                    on_call_secs: (state == AgentState::OnCall).then(|| secs(now - a.since_ms)),
                    contact: a.contact.clone(),
                    queues: member_of(&a.agent),
                }
            })
            .collect();
        let queues: Vec<QueueView> = local
            .queues
            .into_iter()
            .map(|mut q| {
                let waiting: Vec<WaitingCaller> = v
                    .entries
                    .iter()
                    .filter(|e| e.queue == q.name)
                    .enumerate()
                    .map(|(i, e)| WaitingCaller {
                        caller: CallerId(e.caller as u64),
                        position: i + 1,
                        waited_secs: secs(now - e.joined_at_ms),
                        ringing: e.ringing.iter().map(AgentId::new).collect(),
                    })
                    .collect();
                q.waiting_count = waiting.len();
                q.longest_wait_secs = waiting.first().map_or(0, |w| w.waited_secs);
                q.available_agents = agents
                    .iter()
                    .filter(|a| a.state == AgentState::Available && q.agents.contains(&a.id))
                    .count();
                q.waiting = waiting;
                q
            })
            .collect();
        crate::queue::QueueSnapshot { queues, agents }
    }

    fn login(&self, agent: &AgentId, contact: Option<String>) -> Result<(), QueueError> {
        self.local.login(agent, contact.clone())?;
        self.shared.login(agent, true, contact);
        Ok(())
    }

    fn logout(&self, agent: &AgentId) -> Result<(), QueueError> {
        self.local.logout(agent)?;
        self.shared.login(agent, false, None);
        Ok(())
    }

    fn pause(&self, agent: &AgentId, paused: bool) -> Result<(), QueueError> {
        self.local.pause(agent, paused)?;
        self.shared.pause(agent, paused);
        Ok(())
    }
}

//! The agent-queue driver: one tokio task that runs the sans-IO
//! [`QueueSet`]'s timers and routes its [`QueueAction`]s to the call tasks.
//!
//! The `QueueSet` sits behind a mutex shared with the admin API
//! ([`SharedQueueSet`]); call tasks feed it inputs through [`QueueRuntime`]
//! (join, leave, agent leg answered/failed, call ended). Every input only
//! changes the state machine and wakes this task; this task alone drains
//! `poll_action` and arms the `poll_timeout` timer, so actions are routed in
//! the order the state machine produced them. Each call registers a channel
//! under its [`CallerId`] when it joins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, watch};

use crate::queue::admin::SharedQueueSet;
use crate::queue::{AgentId, CallerId, QueueAction, QueueError, QueueMode, QueueSet};

/// Shared handle on the queues for call tasks and the admin API.
pub struct QueueRuntime {
    set: Arc<Mutex<QueueSet>>,
    wake: Arc<Notify>,
    routes: Mutex<HashMap<CallerId, mpsc::UnboundedSender<QueueAction>>>,
    /// Whether any agent is configured (none: transfers fail at once).
    has_agents: bool,
}

impl QueueRuntime {
    /// Wraps a configured `QueueSet` and logs in the static-contact agents.
    pub fn new(mut set: QueueSet, has_agents: bool) -> Arc<QueueRuntime> {
        set.login_static_agents(Instant::now());
        Arc::new(QueueRuntime {
            set: Arc::new(Mutex::new(set)),
            wake: Arc::new(Notify::new()),
            routes: Mutex::new(HashMap::new()),
            has_agents,
        })
    }

    fn lock(&self) -> MutexGuard<'_, QueueSet> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<CallerId, mpsc::UnboundedSender<QueueAction>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The admin API's view (same mutex, same wake-up).
    pub fn shared(&self) -> SharedQueueSet {
        let wake = self.wake.clone();
        SharedQueueSet::new(
            self.set.clone(),
            Arc::new(Instant::now),
            Arc::new(move || wake.notify_one()),
        )
    }

    /// Puts `caller` in `queue`; its actions arrive on `tx`. Fails at once
    /// when no agent is configured or the queue is unknown.
    pub fn join(
        &self,
        queue: &str,
        caller: CallerId,
        tx: mpsc::UnboundedSender<QueueAction>,
    ) -> Result<usize, QueueError> {
        if !self.has_agents {
            return Err(QueueError::UnknownQueue(queue.to_owned()));
        }
        self.routes().insert(caller, tx);
        let r = self.lock().join(Instant::now(), queue, caller);
        if r.is_err() {
            self.routes().remove(&caller);
        }
        self.wake.notify_one();
        r
    }

    /// `*` or hang-up while waiting (a caller not waiting is ignored).
    pub fn leave(&self, caller: CallerId) {
        self.lock().leave(Instant::now(), caller);
        self.wake.notify_one();
    }

    /// The call task is gone: no more actions for it.
    pub fn forget(&self, caller: CallerId) {
        self.routes().remove(&caller);
    }

    pub fn agent_answered(&self, agent: &AgentId, caller: CallerId) {
        self.lock().agent_answered(Instant::now(), agent, caller);
        self.wake.notify_one();
    }

    pub fn agent_failed(&self, agent: &AgentId, caller: CallerId) {
        self.lock().agent_failed(Instant::now(), agent, caller);
        self.wake.notify_one();
    }

    pub fn call_ended(&self, agent: &AgentId) {
        self.lock().call_ended(Instant::now(), agent);
        self.wake.notify_one();
    }

    /// The mode of the queue `caller` waits in.
    pub fn caller_mode(&self, caller: CallerId) -> Option<QueueMode> {
        let q = self.lock();
        let name = q.caller_queue(caller)?.to_owned();
        q.queue_config(&name).map(|c| c.mode.clone())
    }

    /// The mode of `queue`.
    pub fn queue_mode(&self, queue: &str) -> Option<QueueMode> {
        self.lock().queue_config(queue).map(|c| c.mode.clone())
    }

    /// Runs timers and routes actions until `stop` is set.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut actions = Vec::new();
        loop {
            let deadline = {
                let mut q = self.lock();
                q.handle_timeout(Instant::now());
                while let Some(a) = q.poll_action() {
                    actions.push(a);
                }
                q.poll_timeout()
            };
            for a in actions.drain(..) {
                self.route(a);
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                        None => std::future::pending::<()>().await,
                    }
                } => {}
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }

    fn route(&self, a: QueueAction) {
        let caller = match &a {
            QueueAction::RingAgent { caller, .. }
            | QueueAction::CancelRing { caller, .. }
            | QueueAction::Connect { caller, .. }
            | QueueAction::Announce { caller, .. }
            | QueueAction::MaxWait { caller, .. }
            | QueueAction::Left { caller } => *caller,
        };
        let tx = self.routes().get(&caller).cloned();
        let undelivered = match tx {
            Some(tx) => tx.send(a).err().map(|e| e.0),
            None => Some(a),
        };
        // The call task is gone: undo what the action started so no agent
        // stays reserved for a caller that no longer exists.
        match undelivered {
            Some(QueueAction::RingAgent { agent, .. }) => {
                let mut q = self.lock();
                q.agent_failed(Instant::now(), &agent, caller);
                q.leave(Instant::now(), caller);
                drop(q);
                self.wake.notify_one();
            }
            Some(QueueAction::Connect { agent, .. }) => {
                self.call_ended(&agent);
            }
            _ => {}
        }
    }
}

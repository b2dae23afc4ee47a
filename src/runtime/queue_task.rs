//! The agent-queue driver: one tokio task that runs the sans-IO
//! [`QueueSet`]'s timers under the shared [`driver`](super::driver) and
//! routes its [`QueueAction`]s to the call tasks.
//!
//! The `QueueSet` sits behind a mutex shared with the admin API
//! ([`SharedQueueSet`]); call tasks feed it inputs through [`QueueRuntime`]
//! (join, leave, agent leg answered/failed, call ended). Every input only
//! changes the state machine and wakes this task; this task alone drains
//! `poll_event` and arms the `poll_timeout` timer, so actions are routed in
//! the order the state machine produced them. Each call registers a channel
//! under its [`CallerId`] when it joins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, watch};

use crate::core::Core;
use crate::queue::admin::SharedQueueSet;
use crate::queue::{AgentId, CallerId, QueueAction, QueueError, QueueMode, QueueSet};
use crate::sip::bindings::Bindings;

use super::driver::{Shell, drive};
use super::shared_queue::SharedQueue;

/// Shared handle on the queues for call tasks and the admin API.
pub struct QueueRuntime {
    set: Arc<Mutex<QueueSet>>,
    wake: Arc<Notify>,
    routes: Mutex<HashMap<CallerId, mpsc::UnboundedSender<QueueAction>>>,
    /// Whether any agent is configured (none: transfers fail at once).
    has_agents: bool,
    /// REGISTER handling, when some agent has a password.
    registrar: Option<Mutex<Registrar>>,
    /// The queue shared with other nodes through PostgreSQL: when set,
    /// callers wait there and the local `set` keeps only configuration and
    /// this node's view of agent logins.
    shared: Option<Arc<SharedQueue>>,
}

impl QueueRuntime {
    /// Wraps a configured `QueueSet` and logs in the static-contact agents.
    /// `registrar`: REGISTER handling for agents with passwords.
    pub fn new(set: QueueSet, has_agents: bool, registrar: Option<Registrar>) -> Arc<QueueRuntime> {
        QueueRuntime::with_shared(set, has_agents, registrar, None)
    }

    /// [`QueueRuntime::new`], with callers waiting in the shared queue
    /// when `shared` is set.
    pub fn with_shared(
        mut set: QueueSet,
        has_agents: bool,
        registrar: Option<Registrar>,
        shared: Option<Arc<SharedQueue>>,
    ) -> Arc<QueueRuntime> {
        set.login_static_agents(Instant::now());
        Arc::new(QueueRuntime {
            set: Arc::new(Mutex::new(set)),
            wake: Arc::new(Notify::new()),
            routes: Mutex::new(HashMap::new()),
            has_agents,
            registrar: registrar.map(Mutex::new),
            shared,
        })
    }

    /// The shared queue, when this node takes part in one.
    pub fn shared_queue(&self) -> Option<&Arc<SharedQueue>> {
        self.shared.as_ref()
    }

    /// Whether REGISTER is served (some agent has a password).
    pub fn registrar_enabled(&self) -> bool {
        self.registrar.is_some()
    }

    /// Answers a REGISTER (403 when no agent may register). `path`: the
    /// REGISTER's Path values (RFC 3327), kept with the binding.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        now_unix: u64,
        user: &str,
        contact: Option<&str>,
        expires: u32,
        authorization: Option<&str>,
        method_uri: &str,
        path: &[String],
        source: std::net::IpAddr,
    ) -> crate::sip::registrar::RegisterReply {
        match &self.registrar {
            Some(r) => r.lock().unwrap_or_else(|e| e.into_inner()).handle(
                self,
                Instant::now(),
                now_unix,
                user,
                contact,
                expires,
                authorization,
                method_uri,
                path,
                source,
            ),
            None => crate::sip::registrar::RegisterReply::Forbidden,
        }
    }

    /// The pre-loaded Route set for calls to `agent`: the Path its current
    /// registration came through (RFC 3327 §5.3), empty when it registered
    /// directly, has a static contact or is not registered.
    pub fn agent_route(&self, agent: &AgentId) -> Vec<String> {
        if let Some(path) = self.shared.as_ref().and_then(|s| s.path(agent)) {
            return path;
        }
        match &self.registrar {
            Some(r) => r
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .path(agent)
                .to_vec(),
            None => Vec::new(),
        }
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
        let r = match &self.shared {
            // The place across nodes follows in the first announcement.
            Some(s) => s.join(queue, caller).map(|()| 0),
            None => self.lock().join(Instant::now(), queue, caller),
        };
        if r.is_err() {
            self.routes().remove(&caller);
        }
        self.wake.notify_one();
        r
    }

    /// A call's [`crate::call::CallEvent::JoinQueue`]: the position, or why
    /// not (no queue configured, unknown queue, no agent free when
    /// `only_if_agent_free`).
    pub fn join_call(
        queues: Option<&QueueRuntime>,
        queue: &str,
        caller: CallerId,
        tx: mpsc::UnboundedSender<QueueAction>,
        only_if_agent_free: bool,
    ) -> Result<usize, String> {
        match queues {
            Some(q) if only_if_agent_free && !q.has_available_agent(queue) => {
                Err("no agent free".to_owned())
            }
            Some(q) => q.join(queue, caller, tx).map_err(|e| e.to_string()),
            None => Err("no agent queue configured".to_owned()),
        }
    }

    /// `*` or hang-up while waiting (a caller not waiting is ignored).
    pub fn leave(&self, caller: CallerId) {
        if let Some(s) = &self.shared {
            return s.leave(caller);
        }
        self.lock().leave(Instant::now(), caller);
        self.wake.notify_one();
    }

    /// The call task is gone: no more actions for it.
    pub fn forget(&self, caller: CallerId) {
        self.routes().remove(&caller);
    }

    pub fn agent_answered(&self, agent: &AgentId, caller: CallerId) {
        if let Some(s) = &self.shared {
            return s.agent_answered(agent, caller);
        }
        self.lock().agent_answered(Instant::now(), agent, caller);
        self.wake.notify_one();
    }

    pub fn agent_failed(&self, agent: &AgentId, caller: CallerId) {
        if let Some(s) = &self.shared {
            return s.agent_failed(agent, caller);
        }
        self.lock().agent_failed(Instant::now(), agent, caller);
        self.wake.notify_one();
    }

    pub fn call_ended(&self, agent: &AgentId) {
        if let Some(s) = &self.shared {
            return s.call_ended(agent);
        }
        self.lock().call_ended(Instant::now(), agent);
        self.wake.notify_one();
    }

    /// Runs `f` on the queue set with the current time, then wakes the
    /// driver to route what it produced.
    pub fn with_set<T>(&self, f: impl FnOnce(&mut QueueSet, Instant) -> T) -> T {
        let r = f(&mut self.lock(), Instant::now());
        self.wake.notify_one();
        r
    }

    /// Whether `queue` has an agent free to take a call now (REFER
    /// fallback: only then is the caller queued instead of apologised to).
    pub fn has_available_agent(&self, queue: &str) -> bool {
        if let Some(s) = &self.shared {
            return s.has_free_agent(queue);
        }
        let now = Instant::now();
        self.lock()
            .queue_views(now)
            .iter()
            .any(|v| v.name == queue && v.available_agents > 0)
    }

    /// The mode of `queue`.
    pub fn queue_mode(&self, queue: &str) -> Option<QueueMode> {
        self.lock().queue_config(queue).map(|c| c.mode.clone())
    }

    /// Queues in REFER mode → their configured target.
    pub fn refer_targets(&self) -> HashMap<String, String> {
        let q = self.lock();
        q.queue_names()
            .filter_map(|n| match &q.queue_config(n)?.mode {
                QueueMode::Refer { target } => Some((n.to_owned(), target.clone())),
                QueueMode::Bridge => None,
            })
            .collect()
    }

    /// Runs timers and routes actions until `stop` is set. The shared
    /// queue's task runs apart ([`SharedQueue::run`]): it must outlive
    /// `stop`, since calls still waiting while the node drains keep their
    /// places.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut shell = QueueShell {
            q: self,
            stop,
            stopped: false,
        };
        drive(&mut shell).await;
    }

    pub(super) fn route(&self, a: QueueAction) {
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
                self.agent_failed(&agent, caller);
                self.leave(caller);
            }
            Some(QueueAction::Connect { agent, .. }) => {
                self.call_ended(&agent);
            }
            _ => {}
        }
    }
}

/// REGISTER for agents (RFC 3261 §10.3 with digest auth, RFC 7616): a
/// successful REGISTER logs the agent in at its Contact, `expires=0` (or
/// `Contact: *`) logs it out. An unknown agent and a wrong password get
/// the same 401 (the digest check does the same work for both), so the
/// SIP side never reveals which agent names exist.
pub struct Registrar {
    auth: crate::queue::digest::DigestAuth,
    passwords: HashMap<String, String>,
    realm: String,
    /// Registered agents, when their binding lapses, and the Path each
    /// registered through (RFC 3327; empty without a proxy).
    bindings: Bindings<AgentId, Vec<String>>,
}

impl Registrar {
    /// `passwords`: agent id → configured password (plain or `ha1-*:`).
    pub fn new(secret: &[u8], passwords: HashMap<String, String>) -> Registrar {
        Registrar {
            // MD5 first: common phones (baresip 1.0 among them) give up on a 401
            // whose first challenge is SHA-256; SHA-256 stays on offer after it.
            auth: crate::queue::digest::DigestAuth::new(secret, 300).with_algorithms(&[
                crate::queue::digest::Algorithm::Md5,
                crate::queue::digest::Algorithm::Sha256,
            ]),
            passwords,
            realm: "ivr12333".to_owned(),
            bindings: Bindings::new(),
        }
    }

    /// Guessing resistance for the digest check (`[agent_auth]`).
    pub fn with_guessing_limits(mut self, limits: crate::queue::digest::GuessLimits) -> Registrar {
        self.auth = self.auth.with_guessing_limits(limits);
        self
    }

    /// The Path `agent` registered through (empty: none, or not bound).
    pub fn path(&self, agent: &AgentId) -> &[String] {
        self.bindings.get(agent).map_or(&[], Vec::as_slice)
    }

    /// Answers one REGISTER. `user` is the address-of-record's user part;
    /// `path` the REGISTER's Path values, stored with the binding (a
    /// refresh without Path clears them: the agent now registers directly).
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &mut self,
        queues: &QueueRuntime,
        now: Instant,
        now_unix: u64,
        user: &str,
        contact: Option<&str>,
        expires: u32,
        authorization: Option<&str>,
        method_uri: &str,
        path: &[String],
        source: std::net::IpAddr,
    ) -> crate::sip::registrar::RegisterReply {
        use crate::queue::digest::DigestError;
        use crate::sip::registrar::RegisterReply;
        let challenge =
            |auth: &crate::queue::digest::DigestAuth, stale: bool| RegisterReply::Challenge {
                www_authenticate: auth.challenges(now_unix, &self.realm, stale),
                stale,
            };
        let Some(authorization) = authorization else {
            return challenge(&self.auth, false);
        };
        let passwords = &self.passwords;
        let verified = self.auth.verify_from(
            "REGISTER",
            method_uri,
            authorization,
            |u| passwords.get(u).cloned(),
            now_unix,
            source,
        );
        let agent = match verified {
            Ok(a) => a,
            Err(DigestError::Stale) => return challenge(&self.auth, true),
            Err(_) => return challenge(&self.auth, false),
        };
        // Credentials of one agent cannot register another's address.
        if agent != user {
            return RegisterReply::Forbidden;
        }
        let id = AgentId(agent);
        let remove = expires == 0 || contact == Some("*");
        if remove {
            self.bindings.unbind(&id);
            queues.with_set(|q, now| q.agent_logout(now, &id));
            if let Some(s) = &queues.shared {
                s.unregistered(&id);
            }
            tracing::info!(agent = %id, "agent unregistered: logged out");
            return RegisterReply::Ok {
                contact: None,
                expires: 0,
            };
        }
        match contact {
            Some(c) => {
                let uri = c.trim().trim_start_matches('<').trim_end_matches('>');
                let uri = uri.to_owned();
                let ok = queues.with_set(|q, now| q.agent_login(now, &id, Some(uri.clone())));
                if ok.is_err() {
                    return RegisterReply::Forbidden;
                }
                let expires = self
                    .bindings
                    .bind_with(now, id.clone(), expires, path.to_vec());
                if let Some(s) = &queues.shared {
                    s.registered(
                        &id,
                        &uri,
                        path,
                        std::time::Duration::from_secs(u64::from(expires)),
                        Some(source.to_string()),
                    );
                }
                tracing::info!(agent = %id, expires, path_hops = path.len(), "agent registered: logged in");
                RegisterReply::Ok {
                    contact: Some(uri),
                    expires,
                }
            }
            // A query: nothing to change.
            None => RegisterReply::Ok {
                contact: None,
                expires: 0,
            },
        }
    }

    /// Logs out agents whose registration lapsed without a refresh.
    pub fn expire(&mut self, queues: &QueueRuntime, now: Instant) {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.auth.handle_timeout(now_unix);
        for a in self.bindings.expire(now) {
            tracing::info!(agent = %a, "agent registration expired: logged out");
            queues.with_set(|q, now| q.agent_logout(now, &a));
        }
    }
}

/// What the queue task wakes up for: an input reached the queue set (call
/// tasks and the admin API change it directly and notify), the registrar's
/// tick, or shutdown.
enum QueueInput {
    Woken,
    Tick,
}

struct QueueShell {
    q: Arc<QueueRuntime>,
    stop: watch::Receiver<bool>,
    stopped: bool,
}

impl Shell for QueueShell {
    type Input = QueueInput;

    async fn next_input(&mut self) -> Option<QueueInput> {
        let registrar = self.q.registrar.is_some();
        tokio::select! {
            _ = self.q.wake.notified() => Some(QueueInput::Woken),
            // Registrations lapse on this tick at the latest.
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)), if registrar => Some(QueueInput::Tick),
            r = self.stop.changed() => {
                if r.is_err() || *self.stop.borrow() {
                    None
                } else {
                    Some(QueueInput::Woken)
                }
            }
        }
    }

    fn handle_input(&mut self, _now: Instant, input: Option<QueueInput>) {
        // The queue set already took the input; waking is enough (flush
        // routes what it produced and lapses registrations).
        match input {
            Some(QueueInput::Woken | QueueInput::Tick) => {}
            None => self.stopped = true,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        Core::handle_timeout(&mut *self.q.lock(), now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Core::poll_timeout(&*self.q.lock())
    }

    fn flush(&mut self, now: Instant) {
        if let Some(r) = &self.q.registrar {
            r.lock()
                .unwrap_or_else(|e| e.into_inner())
                .expire(&self.q, now);
        }
        // Route in the order the state machine produced them, outside the lock.
        let actions: Vec<QueueAction> = {
            let mut q = self.q.lock();
            std::iter::from_fn(|| Core::poll_event(&mut *q)).collect()
        };
        for a in actions {
            self.q.route(a);
        }
    }

    fn is_done(&self) -> bool {
        self.stopped
    }
}

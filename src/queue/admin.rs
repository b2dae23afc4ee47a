//! Admin HTTP API for queues and agents (axum 0.8 routes the coordinator
//! mounts on the trusted localhost admin listener):
//!
//! | method | path | |
//! |---|---|---|
//! | GET  | `/queues` | every queue with its waiting callers |
//! | GET  | `/queues/{name}` | one queue (404 if unknown) |
//! | GET  | `/agents` | every agent's state |
//! | GET  | `/agents/{id}` | one agent (404 if unknown) |
//! | POST | `/agents/{id}/login` | optional JSON `{"contact": "sip:..."}` |
//! | POST | `/agents/{id}/logout` | |
//! | POST | `/agents/{id}/pause` / `unpause` | |
//! | GET  | `/calls` | calls in progress ([`QueueControl::active_calls`]) |
//! | GET  | `/callbacks` | open callback bookings, oldest first (`?all=1`: done ones too) |
//! | POST | `/callbacks/{id}/done` | JSON `{"done_by": "agent name"}` |
//!
//! The callback routes ([`callbacks_router`]) read the ledger's bookings:
//! the ID appears only masked (`110105********002X`); the number to call
//! back is shown in full because the agent dials it by hand.
//!
//! Responses are JSON; errors are `{"error": "..."}` with 404 for an
//! unknown queue or agent and 400 for a bad body. The interface is trusted
//! (localhost), so naming what does not exist is fine here, unlike on the
//! SIP side. Caller entries show only the runtime's call number.
//!
//! The routes talk to a [`QueueControl`]; [`SharedQueueSet`] implements it
//! over an `Arc<Mutex<QueueSet>>` with an injected clock (the core stays
//! free of `Instant::now`) and a wake-up hook so the runtime drains the
//! actions an admin login or unpause produces (e.g. a `RingAgent`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{AgentId, AgentState, AgentView, QueueError, QueueSet, QueueSnapshot};

/// What the admin routes need from the queue. Implement it yourself to add
/// richer `/calls` data, or use [`SharedQueueSet`].
pub trait QueueControl: Send + Sync + 'static {
    fn snapshot(&self) -> QueueSnapshot;
    /// `Err(UnknownAgent)` → 404, `Err(NoContact)` → 400.
    fn login(&self, agent: &AgentId, contact: Option<String>) -> Result<(), QueueError>;
    fn logout(&self, agent: &AgentId) -> Result<(), QueueError>;
    fn pause(&self, agent: &AgentId, paused: bool) -> Result<(), QueueError>;
    /// Agents on a call with the call number and duration. Override to
    /// offer richer data.
    fn active_calls(&self) -> serde_json::Value {
        let calls: Vec<serde_json::Value> = self
            .agents()
            .iter()
            .filter(|a| a.state == AgentState::OnCall)
            .map(|a| json!({ "agent": a.id, "caller": a.caller, "secs": a.on_call_secs }))
            .collect();
        json!(calls)
    }
    /// Agents only; override when cheaper than a full snapshot (which
    /// lists every waiting caller).
    fn agents(&self) -> Vec<AgentView> {
        self.snapshot().agents
    }
}

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;
type Wake = Arc<dyn Fn() + Send + Sync>;

/// A [`QueueSet`] shared between the runtime's driver loop and the admin
/// API.
#[derive(Clone)]
pub struct SharedQueueSet {
    inner: Arc<Mutex<QueueSet>>,
    clock: Clock,
    wake: Wake,
}

impl SharedQueueSet {
    /// `clock` is normally `Arc::new(Instant::now)`; `wake` nudges the
    /// driver loop to drain [`QueueSet::poll_event`] and re-read
    /// [`QueueSet::poll_timeout`] (e.g. a `tokio::sync::Notify`).
    pub fn new(inner: Arc<Mutex<QueueSet>>, clock: Clock, wake: Wake) -> SharedQueueSet {
        SharedQueueSet { inner, clock, wake }
    }

    pub fn queue_set(&self) -> &Arc<Mutex<QueueSet>> {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, QueueSet> {
        // A panic elsewhere while holding the lock must not take the admin
        // API down with it; the state machine keeps its own invariants.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_agent(
        &self,
        agent: &AgentId,
        f: impl FnOnce(&mut QueueSet, Instant) -> Result<(), QueueError>,
    ) -> Result<(), QueueError> {
        let now = (self.clock)();
        let r = {
            let mut q = self.lock();
            if !q.has_agent(agent) {
                return Err(QueueError::UnknownAgent(agent.0.clone()));
            }
            f(&mut q, now)
        };
        (self.wake)();
        r
    }
}

impl QueueControl for SharedQueueSet {
    fn snapshot(&self) -> QueueSnapshot {
        let now = (self.clock)();
        self.lock().snapshot(now)
    }

    fn login(&self, agent: &AgentId, contact: Option<String>) -> Result<(), QueueError> {
        self.with_agent(agent, |q, now| q.agent_login(now, agent, contact))
    }

    fn logout(&self, agent: &AgentId) -> Result<(), QueueError> {
        self.with_agent(agent, |q, now| {
            q.agent_logout(now, agent);
            Ok(())
        })
    }

    fn pause(&self, agent: &AgentId, paused: bool) -> Result<(), QueueError> {
        self.with_agent(agent, |q, now| {
            q.agent_pause(now, agent, paused);
            Ok(())
        })
    }

    /// The agents without the waiting callers' list of a full snapshot.
    fn agents(&self) -> Vec<AgentView> {
        let now = (self.clock)();
        self.lock().agent_views(now)
    }
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn queue_error(e: QueueError) -> Response {
    let status = match e {
        QueueError::UnknownAgent(_) | QueueError::UnknownQueue(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

type Ctl = Arc<dyn QueueControl>;

/// The admin routes, to be nested or merged into the coordinator's router.
pub fn router(control: Arc<dyn QueueControl>) -> Router {
    Router::new()
        .route("/queues", get(list_queues))
        .route("/queues/{name}", get(one_queue))
        .route("/agents", get(list_agents))
        .route("/agents/{id}", get(one_agent))
        .route("/agents/{id}/login", post(login))
        .route("/agents/{id}/logout", post(logout))
        .route("/agents/{id}/pause", post(pause))
        .route("/agents/{id}/unpause", post(unpause))
        .route("/calls", get(calls))
        .with_state(control)
}

async fn list_queues(State(c): State<Ctl>) -> Response {
    Json(c.snapshot().queues).into_response()
}

async fn one_queue(State(c): State<Ctl>, Path(name): Path<String>) -> Response {
    let snap = c.snapshot();
    match snap.queues.into_iter().find(|q| q.name == name) {
        Some(q) => Json(q).into_response(),
        None => queue_error(QueueError::UnknownQueue(name)),
    }
}

async fn list_agents(State(c): State<Ctl>) -> Response {
    Json(c.agents()).into_response()
}

async fn one_agent(State(c): State<Ctl>, Path(id): Path<String>) -> Response {
    match c.agents().into_iter().find(|a| a.id.0 == id) {
        Some(a) => Json(a).into_response(),
        None => queue_error(QueueError::UnknownAgent(id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    contact: Option<String>,
}

/// The state of one agent after a change, as the response body.
fn agent_reply(c: &Ctl, id: &AgentId) -> Response {
    match c.agents().into_iter().find(|a| &a.id == id) {
        Some(a) => Json(a).into_response(),
        None => queue_error(QueueError::UnknownAgent(id.0.clone())),
    }
}

async fn login(State(c): State<Ctl>, Path(id): Path<String>, body: Bytes) -> Response {
    let contact = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<LoginBody>(&body) {
            Ok(b) => b.contact,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")),
        }
    };
    if let Some(uri) = &contact {
        let lower = uri.to_ascii_lowercase();
        let ok = (lower.starts_with("sip:") || lower.starts_with("sips:"))
            && uri.len() <= 512
            && !uri.chars().any(|ch| ch.is_control() || ch.is_whitespace());
        if !ok {
            return error(
                StatusCode::BAD_REQUEST,
                "contact must be a sip: or sips: URI",
            );
        }
    }
    let id = AgentId(id);
    match c.login(&id, contact) {
        Ok(()) => agent_reply(&c, &id),
        Err(e) => queue_error(e),
    }
}

async fn logout(State(c): State<Ctl>, Path(id): Path<String>) -> Response {
    let id = AgentId(id);
    match c.logout(&id) {
        Ok(()) => agent_reply(&c, &id),
        Err(e) => queue_error(e),
    }
}

async fn pause(State(c): State<Ctl>, Path(id): Path<String>) -> Response {
    let id = AgentId(id);
    match c.pause(&id, true) {
        Ok(()) => agent_reply(&c, &id),
        Err(e) => queue_error(e),
    }
}

async fn unpause(State(c): State<Ctl>, Path(id): Path<String>) -> Response {
    let id = AgentId(id);
    match c.pause(&id, false) {
        Ok(()) => agent_reply(&c, &id),
        Err(e) => queue_error(e),
    }
}

async fn calls(State(c): State<Ctl>) -> Response {
    Json(c.active_calls()).into_response()
}

// ---- callback bookings (预约回拨) ------------------------------------------

/// `GET /callbacks` and `POST /callbacks/{id}/done` over the ledger's
/// bookings (see the module docs); merged by the runtime next to the queue
/// routes.
pub fn callbacks_router(ledger: crate::ledger::Ledger) -> Router {
    Router::new()
        .route("/callbacks", get(list_callbacks))
        .route("/callbacks/{id}/done", post(callback_done))
        .with_state(ledger)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: Option<String>,
}

fn ledger_error(e: crate::ledger::LedgerError) -> Response {
    use crate::ledger::LedgerError as E;
    match e {
        E::NotFound => error(StatusCode::NOT_FOUND, "no such callback"),
        E::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        E::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "database error"),
    }
}

async fn list_callbacks(
    State(l): State<crate::ledger::Ledger>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let all = q.all.as_deref().is_some_and(|v| v == "1" || v == "true");
    match l.list_callbacks(all).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => ledger_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DoneBody {
    done_by: String,
}

async fn callback_done(
    State(l): State<crate::ledger::Ledger>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "callback id is a number");
    };
    let body = match serde_json::from_slice::<DoneBody>(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")),
    };
    match l.callback_done(id, body.done_by.trim()).await {
        Ok(row) => Json(row).into_response(),
        Err(e) => ledger_error(e),
    }
}

//! The operators' console on the admin listener: wallboard (`/`), agent
//! desk (`/agent`), call records (`/cdr`), sign-in, and the guard that puts
//! the JSON API (`/queues`, `/agents`, `/calls`, agent POSTs) behind a
//! session or an API token. See `docs/console.md`.
//!
//! The pages are plain HTML/CSS/JS from `web/`, compiled in with
//! `include_str!`; live figures arrive over Server-Sent Events. Nothing the
//! console sends carries a full ID number, a PIN or a balance: the screen
//! pop has the masked ID and which balances were *played* (insurance names
//! from the audit log), the CDR pages have prompt ids and placeholders.

pub mod auth;
pub mod cli;
pub mod feed;
pub mod pop;
pub mod ring;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::config::Config;
use crate::ledger::cdr_query::{self, CdrFilter, Cursor};
use crate::ledger::{AuditAction, AuditContext, Ledger};
use crate::queue::AgentState;
use crate::queue::admin::QueueControl;

use auth::{Role, Sessions, Throttle};

/// The session cookie's name.
pub const COOKIE: &str = "ivr_console";
/// The header carrying the CSRF token on every state change.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Failed sign-ins per user name and per source address within
/// [`THROTTLE_WINDOW`] before further attempts are refused.
pub const THROTTLE_LIMIT: usize = 5;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most rows one export returns.
pub const EXPORT_MAX: usize = 10_000;

/// A console user from `[[console_user]]`.
#[derive(Clone)]
struct User {
    hash: String,
    role: Role,
    agent: Option<String>,
}

/// An API token from `[[console.token]]`.
#[derive(Clone)]
struct Token {
    name: String,
    sha256: String,
    role: Role,
    agent: Option<String>,
}

/// The validated `[console]` and `[[console_user]]` settings.
#[derive(Clone, Default)]
pub struct Settings {
    users: HashMap<String, User>,
    tokens: Vec<Token>,
    secure_cookie: bool,
    idle: Duration,
}

impl Settings {
    /// Checks roles, hash formats and agent references.
    pub fn from_config(cfg: &Config) -> Result<Settings, String> {
        let agents: std::collections::HashSet<&str> =
            cfg.agent.iter().map(|a| a.id.as_str()).collect();
        let mut users = HashMap::new();
        for (i, u) in cfg.console_user.iter().enumerate() {
            let at = format!("console_user[{i}] `{}`", u.name);
            let role = Role::parse(&u.role)
                .ok_or_else(|| format!("{at}: role must be `supervisor` or `agent`"))?;
            auth::check_hash_format(&u.password_hash)
                .map_err(|e| format!("{at}: password_hash: {e}"))?;
            if role == Role::Agent {
                match &u.agent {
                    Some(a) if agents.contains(a.as_str()) => {}
                    Some(a) => return Err(format!("{at}: no [[agent]] with id `{a}`")),
                    None => return Err(format!("{at}: an agent user needs `agent = \"...\"`")),
                }
            }
            if u.name.is_empty() || u.name.len() > 64 {
                return Err(format!("{at}: name must be 1–64 characters"));
            }
            if users
                .insert(
                    u.name.clone(),
                    User {
                        hash: u.password_hash.clone(),
                        role,
                        agent: u.agent.clone(),
                    },
                )
                .is_some()
            {
                return Err(format!("{at}: duplicate name"));
            }
        }
        let mut tokens = Vec::new();
        for (i, t) in cfg.console.token.iter().enumerate() {
            let at = format!("console.token[{i}] `{}`", t.name);
            let role = Role::parse(&t.role)
                .ok_or_else(|| format!("{at}: role must be `supervisor` or `agent`"))?;
            let ok = t.sha256.len() == 64 && t.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(format!("{at}: sha256 must be 64 hex digits"));
            }
            if role == Role::Agent && t.agent.as_deref().is_none_or(|a| !agents.contains(a)) {
                return Err(format!("{at}: an agent token needs an existing `agent`"));
            }
            tokens.push(Token {
                name: t.name.clone(),
                sha256: t.sha256.to_ascii_lowercase(),
                role,
                agent: t.agent.clone(),
            });
        }
        Ok(Settings {
            users,
            tokens,
            secure_cookie: cfg.console.secure_cookie,
            idle: Duration::from_secs(cfg.console.session_idle_minutes.max(1) * 60),
        })
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub agent: Option<String>,
    /// `None` for API tokens (no ambient credential, so no CSRF check).
    pub csrf: Option<String>,
    pub session: Option<String>,
}

/// The console's shared state.
pub struct Console {
    settings: Settings,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    dummy_hash: String,
    pub board: Arc<Mutex<feed::Board>>,
    wall_tx: watch::Sender<Arc<String>>,
    ledger: Ledger,
    queues: Option<Arc<dyn QueueControl>>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    stopping: watch::Receiver<bool>,
}

impl Console {
    pub fn new(
        settings: Settings,
        ledger: Ledger,
        queues: Option<Arc<dyn QueueControl>>,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
        stopping: watch::Receiver<bool>,
    ) -> Arc<Console> {
        let (wall_tx, _) = watch::channel(Arc::new(String::new()));
        let idle = if settings.idle.is_zero() {
            Duration::from_secs(8 * 3600)
        } else {
            settings.idle
        };
        Arc::new(Console {
            settings,
            sessions: Mutex::new(Sessions::new(idle)),
            throttle: Mutex::new(Throttle::new(THROTTLE_LIMIT, THROTTLE_WINDOW)),
            dummy_hash: auth::hash_password(&auth::new_token()),
            board: Arc::new(Mutex::new(feed::Board::default())),
            wall_tx,
            ledger,
            queues,
            metrics,
            stopping,
        })
    }

    /// Starts the wallboard sampler (one per listener).
    pub fn spawn_sampler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let src = feed::Sources {
            ledger: self.ledger.clone(),
            queues: self.queues.clone(),
            metrics: self.metrics.clone(),
        };
        tokio::spawn(feed::run(
            self.board.clone(),
            src,
            self.wall_tx.clone(),
            self.stopping.clone(),
        ))
    }

    /// Samples once now (tests, and the first page load before the sampler
    /// has ticked).
    pub async fn sample_now(&self) -> String {
        let src = feed::Sources {
            ledger: self.ledger.clone(),
            queues: self.queues.clone(),
            metrics: self.metrics.clone(),
        };
        let json = feed::sample(&self.board, &src, true).await;
        self.wall_tx.send_replace(Arc::new(json.clone()));
        json
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The principal of a request: a Bearer token, else the session cookie.
    pub fn principal(&self, headers: &HeaderMap) -> Option<Principal> {
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let v = v.to_str().ok()?;
            let tok = v.strip_prefix("Bearer ")?.trim();
            let h = auth::token_hash(tok);
            let t = self
                .settings
                .tokens
                .iter()
                .find(|t| auth::ct_eq(t.sha256.as_bytes(), h.as_bytes()))?;
            return Some(Principal {
                name: format!("token:{}", t.name),
                role: t.role,
                agent: t.agent.clone(),
                csrf: None,
                session: None,
            });
        }
        let sid = cookie(headers, COOKIE)?;
        let s = self.lock_sessions().get(Instant::now(), &sid)?;
        Some(Principal {
            name: s.user,
            role: s.role,
            agent: s.agent,
            csrf: Some(s.csrf),
            session: Some(sid),
        })
    }

    fn session_cookie(&self, sid: &str, max_age: u64) -> String {
        let secure = if self.settings.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=')
                && k == name
                && !val.is_empty()
            {
                return Some(val.to_owned());
            }
        }
    }
    None
}

/// Whether a state-changing request carries the session's CSRF token
/// (tokens, which are not ambient, need none).
fn csrf_ok(p: &Principal, headers: &HeaderMap) -> bool {
    match &p.csrf {
        None => true,
        Some(expected) => headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|got| auth::ct_eq(got.as_bytes(), expected.as_bytes())),
    }
}

fn err(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

/// Records one agent state change (or refused attempt) in the audit log.
/// The only place the console writes audit rows.
pub async fn audit_state_change(
    ledger: &Ledger,
    actor: &str,
    agent: &str,
    action: &str,
    outcome: &str,
) {
    // The ledger's audit API has no console action yet: the row goes in as
    // a `transfer` row whose queue column names the console change
    // (`console:<action>:<agent>`) and whose call id names the actor.
    let ctx = AuditContext {
        call_id: format!("console:{actor}"),
        caller: actor.to_owned(),
    };
    let what = AuditAction::Transfer {
        queue: format!("console:{action}:{agent}"),
    };
    if let Err(e) = ledger.audit(&ctx, None, what, outcome).await {
        tracing::error!(error = %e, %actor, %agent, %action, "console: audit write failed");
    }
}

/// Middleware for the JSON API: a session or token is required; POSTs need
/// the CSRF token (sessions), an agent may change only their own state, and
/// every state change is audited.
pub async fn guard_api(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let Some(p) = c.principal(req.headers()) else {
        return err(StatusCode::UNAUTHORIZED, "sign in or send an API token");
    };
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    if !csrf_ok(&p, req.headers()) {
        return err(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    // /agents/{id}/{action}
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (agent, action) = match parts.as_slice() {
        ["agents", id, action] => ((*id).to_owned(), (*action).to_owned()),
        _ => return err(StatusCode::NOT_FOUND, "no such state change"),
    };
    if p.role == Role::Agent && p.agent.as_deref() != Some(agent.as_str()) {
        audit_state_change(&c.ledger, &p.name, &agent, &action, "refused").await;
        return err(
            StatusCode::FORBIDDEN,
            "an agent may change only their own state",
        );
    }
    let resp = next.run(req).await;
    let outcome = if resp.status().is_success() {
        "ok".to_owned()
    } else {
        format!("error {}", resp.status().as_u16())
    };
    audit_state_change(&c.ledger, &p.name, &agent, &action, &outcome).await;
    resp
}

// ---------------------------------------------------------------- assets

/// A file of `web/`.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        mime: "text/css; charset=utf-8",
        body: include_str!("../../web/console.css"),
    },
    Asset {
        name: "console.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../../web/console.js"),
    },
    Asset {
        name: "wallboard.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../../web/wallboard.js"),
    },
    Asset {
        name: "agent.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../../web/agent.js"),
    },
    Asset {
        name: "cdr.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../../web/cdr.js"),
    },
    Asset {
        name: "login.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../../web/login.js"),
    },
];

const LOGIN_HTML: &str = include_str!("../../web/login.html");
const WALLBOARD_HTML: &str = include_str!("../../web/wallboard.html");
const AGENT_HTML: &str = include_str!("../../web/agent.html");
const CDR_HTML: &str = include_str!("../../web/cdr.html");

/// Headers every console page and asset carries.
fn hardened(mime: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => hardened(a.mime, a.body),
        None => err(StatusCode::NOT_FOUND, "no such file"),
    }
}

fn redirect(to: &'static str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

/// Serves a page to `role`, sending others where they belong.
fn page(c: &Console, headers: &HeaderMap, role: Role, html: &'static str) -> Response {
    match c.principal(headers) {
        None => redirect("/login"),
        Some(p) if p.role == role => hardened("text/html; charset=utf-8", html),
        Some(p) if p.role == Role::Agent => redirect("/agent"),
        Some(_) => redirect("/"),
    }
}

async fn wallboard_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    page(&c, &headers, Role::Supervisor, WALLBOARD_HTML)
}

async fn agent_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    page(&c, &headers, Role::Agent, AGENT_HTML)
}

async fn cdr_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    page(&c, &headers, Role::Supervisor, CDR_HTML)
}

async fn login_page() -> Response {
    hardened("text/html; charset=utf-8", LOGIN_HTML)
}

// ---------------------------------------------------------------- sign-in

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

async fn login(State(c): State<Arc<Console>>, req: Request) -> Response {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "local".into());
    // JSON only: a cross-site form cannot send it without a CORS preflight,
    // which this server never grants (login CSRF).
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON {\"user\", \"password\"}",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 4096).await else {
        return err(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let Ok(body) = serde_json::from_slice::<LoginBody>(&bytes) else {
        return err(
            StatusCode::BAD_REQUEST,
            "send JSON {\"user\", \"password\"}",
        );
    };
    if body.user.len() > 64 || body.password.len() > 256 {
        return err(StatusCode::BAD_REQUEST, "user or password too long");
    }
    let ukey = format!("u:{}", body.user);
    let skey = format!("ip:{source}");
    let keys = [ukey.as_str(), skey.as_str()];
    {
        let mut th = c.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if !th.allowed(Instant::now(), &keys) {
            tracing::warn!(%source, "console sign-in throttled");
            return err(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins; try again later",
            );
        }
    }
    let user = c.settings.users.get(&body.user).cloned();
    // Unknown users cost one hash too, so timing does not tell names apart.
    let hash = user
        .as_ref()
        .map(|u| u.hash.clone())
        .unwrap_or_else(|| c.dummy_hash.clone());
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            c.throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .failed(Instant::now(), &keys);
            tracing::info!(%source, "console sign-in refused");
            return err(StatusCode::UNAUTHORIZED, "wrong user name or password");
        }
    };
    c.throttle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .succeeded(&[ukey.as_str()]);
    let (sid, s) =
        c.lock_sessions()
            .create(Instant::now(), &body.user, user.role, user.agent.clone());
    tracing::info!(user = %body.user, "console sign-in");
    let mut r = axum::Json(json!({
        "user": body.user, "role": s.role, "agent": s.agent, "csrf": s.csrf,
        "home": if s.role == Role::Agent { "/agent" } else { "/" },
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&c.session_cookie(&sid, c.settings.idle.as_secs())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(p) = c.principal(&headers) else {
        return err(StatusCode::UNAUTHORIZED, "not signed in");
    };
    if p.csrf.is_none() || !csrf_ok(&p, &headers) {
        return err(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    if let Some(sid) = &p.session {
        c.lock_sessions().remove(sid);
    }
    let mut r = axum::Json(json!({"signed_out": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&c.session_cookie("", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn session_info(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match c.principal(&headers) {
        Some(p) => axum::Json(json!({
            "user": p.name, "role": p.role, "agent": p.agent, "csrf": p.csrf,
        }))
        .into_response(),
        None => err(StatusCode::UNAUTHORIZED, "not signed in"),
    }
}

fn require(c: &Console, headers: &HeaderMap, role: Role) -> Result<Principal, Box<Response>> {
    match c.principal(headers) {
        None => Err(Box::new(err(StatusCode::UNAUTHORIZED, "not signed in"))),
        Some(p) if p.role == role => Ok(p),
        Some(_) => Err(Box::new(err(
            StatusCode::FORBIDDEN,
            "not allowed for this role",
        ))),
    }
}

// ---------------------------------------------------------------- wallboard

async fn wallboard_json(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Err(r) = require(&c, &headers, Role::Supervisor) {
        return *r;
    }
    let cur = c.wall_tx.borrow().clone();
    let body = if cur.is_empty() {
        c.sample_now().await
    } else {
        cur.as_str().to_owned()
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn wallboard_events(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Err(r) = require(&c, &headers, Role::Supervisor) {
        return *r;
    }
    if c.wall_tx.borrow().is_empty() {
        c.sample_now().await;
    }
    let rx = c.wall_tx.subscribe();
    let stop = c.stopping.clone();
    // The current figures at once, then every change.
    let stream =
        futures_util::stream::unfold((rx, stop, true), |(mut rx, mut stop, first)| async move {
            if !first {
                tokio::select! {
                    r = rx.changed() => r.ok()?,
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
            let v = rx.borrow_and_update().clone();
            let ev = Event::default().event("wallboard").data(v.as_str());
            Some((Ok::<_, Infallible>(ev), (rx, stop, false)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------- agent desk

/// The agent desk's view: the agent's own state and, on a call, the screen
/// pop.
pub async fn desk(c: &Console, agent: &str) -> serde_json::Value {
    let Some(q) = &c.queues else {
        return json!({"agent": null, "pop": null, "error": "no agent queues configured"});
    };
    let Some(a) = q.agents().into_iter().find(|a| a.id.0 == agent) else {
        return json!({"agent": null, "pop": null});
    };
    let state = serde_json::to_value(a.state).unwrap_or_default();
    let pop = match (a.state, a.caller) {
        (AgentState::OnCall | AgentState::Ringing, Some(caller)) => {
            Some(screen_pop(&c.ledger, caller.0).await)
        }
        _ => None,
    };
    json!({
        "agent": {
            "id": a.id.0, "state": state, "calls_taken": a.calls_taken,
            "on_call_secs": a.on_call_secs, "idle_secs": a.idle_secs, "queues": a.queues,
        },
        "pop": pop,
    })
}

/// What the agent sees about a caller: masked ID, verified or not, which
/// balances were played (insurance names only), the queue, account status.
pub async fn screen_pop(ledger: &Ledger, caller: u64) -> serde_json::Value {
    let Some(entry) = pop::lookup(caller) else {
        return json!({"caller": caller, "id_masked": null, "verified": false,
                      "heard": [], "queue": null, "status": "unknown"});
    };
    let rows = cdr_query::call_audit(ledger, &entry.call_id)
        .await
        .unwrap_or_default();
    let auth = rows
        .iter()
        .rev()
        .find(|r| r.action == "authenticate")
        .map(|r| r.outcome.clone());
    let mut heard: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.action == "query") {
        if let Some(i) = &r.insurance
            && !heard.contains(i)
        {
            heard.push(i.clone());
        }
    }
    let queue = rows
        .iter()
        .rev()
        .find(|r| r.action == "transfer")
        .and_then(|r| r.queue.clone());
    let status = match auth.as_deref() {
        Some("verified") => "verified",
        Some("lockout") | Some("locked") => "locked",
        Some("rejected") => "rejected",
        Some(_) => "unknown",
        None => "not_identified",
    };
    json!({
        "caller": caller,
        "id_masked": entry.id_masked,
        "verified": auth.as_deref() == Some("verified"),
        "heard": heard,
        "queue": queue,
        "status": status,
    })
}

async fn desk_json(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let p = match require(&c, &headers, Role::Agent) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let agent = p.agent.unwrap_or_default();
    axum::Json(desk(&c, &agent).await).into_response()
}

async fn desk_events(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let p = match require(&c, &headers, Role::Agent) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let agent = p.agent.unwrap_or_default();
    let stop = c.stopping.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stream = futures_util::stream::unfold(
        (c, agent, stop, tick, String::new()),
        |(c, agent, mut stop, mut tick, mut last)| async move {
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return None,
                }
                let v = desk(&c, &agent).await.to_string();
                if v != last {
                    last = v.clone();
                    let ev = Event::default().event("desk").data(v);
                    return Some((Ok::<_, Infallible>(ev), (c, agent, stop, tick, last)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------- CDRs

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CdrParams {
    from: Option<i64>,
    to: Option<i64>,
    reason: Option<String>,
    queue: Option<String>,
    verified: Option<String>,
    /// `<started_at_ms>.<id>` of the last row of the previous page.
    after: Option<String>,
    limit: Option<i64>,
    format: Option<String>,
}

impl CdrParams {
    fn filter(&self) -> Result<CdrFilter, &'static str> {
        let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        let verified = match self.verified.as_deref() {
            None | Some("") | Some("any") => None,
            Some("yes") | Some("true") => Some(true),
            Some("no") | Some("false") => Some(false),
            Some(_) => return Err("verified must be yes, no or any"),
        };
        Ok(CdrFilter {
            from_ms: self.from,
            to_ms: self.to,
            end_reason: nonempty(&self.reason),
            queue: nonempty(&self.queue),
            verified,
        })
    }

    fn cursor(&self) -> Result<Option<Cursor>, &'static str> {
        match self.after.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => {
                let (a, b) = s.split_once('.').ok_or("bad cursor")?;
                Ok(Some(Cursor {
                    started_at_ms: a.parse().map_err(|_| "bad cursor")?,
                    id: b.parse().map_err(|_| "bad cursor")?,
                }))
            }
        }
    }
}

async fn cdr_list(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    params: Result<Query<CdrParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = require(&c, &headers, Role::Supervisor) {
        return *r;
    }
    let Ok(Query(params)) = params else {
        return err(StatusCode::BAD_REQUEST, "bad query parameters");
    };
    let (f, after) = match (params.filter(), params.cursor()) {
        (Ok(f), Ok(a)) => (f, a),
        (Err(e), _) | (_, Err(e)) => return err(StatusCode::BAD_REQUEST, e),
    };
    match cdr_query::page(&c.ledger, &f, after, params.limit.unwrap_or(50)).await {
        Ok((rows, next)) => axum::Json(json!({
            "rows": rows,
            "next": next.map(|n| format!("{}.{}", n.started_at_ms, n.id)),
        }))
        .into_response(),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn cdr_one(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = require(&c, &headers, Role::Supervisor) {
        return *r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return err(StatusCode::BAD_REQUEST, "record id must be a number");
    };
    match cdr_query::transcript(&c.ledger, id).await {
        Ok(Some(t)) => axum::Json(t).into_response(),
        Ok(None) => err(StatusCode::NOT_FOUND, "no such record"),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// A CSV cell that a spreadsheet will not run as a formula.
fn csv_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

async fn cdr_export(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    params: Result<Query<CdrParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = require(&c, &headers, Role::Supervisor) {
        return *r;
    }
    let Ok(Query(params)) = params else {
        return err(StatusCode::BAD_REQUEST, "bad query parameters");
    };
    let f = match params.filter() {
        Ok(f) => f,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        match cdr_query::page(&c.ledger, &f, after, cdr_query::MAX_PAGE).await {
            Ok((mut page, next)) => {
                rows.append(&mut page);
                if rows.len() >= EXPORT_MAX || next.is_none() {
                    break;
                }
                after = next;
            }
            Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
    rows.truncate(EXPORT_MAX);
    match params.format.as_deref().unwrap_or("csv") {
        "json" => {
            let mut r = axum::Json(&rows).into_response();
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"cdr.json\""),
            );
            r
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record([
                "id",
                "call_id",
                "caller_masked",
                "started_at_ms",
                "answered_at_ms",
                "ended_at_ms",
                "end_reason",
                "verified",
                "auth_outcome",
                "queue",
                "menu_keys",
            ]);
            for r in &rows {
                let _ = w.write_record([
                    r.id.to_string(),
                    csv_safe(&r.call_id),
                    csv_safe(&r.caller_masked),
                    r.started_at_ms.to_string(),
                    r.answered_at_ms.map(|v| v.to_string()).unwrap_or_default(),
                    r.ended_at_ms.to_string(),
                    csv_safe(&r.end_reason),
                    r.verified.to_string(),
                    r.auth_outcome.clone().unwrap_or_default(),
                    csv_safe(r.queue.as_deref().unwrap_or("")),
                    csv_safe(&r.menu_keys),
                ]);
            }
            let body = w.into_inner().unwrap_or_default();
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"cdr.csv\""),
            );
            r
        }
        _ => err(StatusCode::BAD_REQUEST, "format must be csv or json"),
    }
}

/// The console's own routes (pages, sign-in, wallboard, desk, CDRs).
pub fn router(c: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(wallboard_page))
        .route("/agent", get(agent_page))
        .route("/cdr", get(cdr_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/session", get(session_info))
        .route("/static/{name}", get(asset))
        .route("/api/wallboard", get(wallboard_json))
        .route("/api/events", get(wallboard_events))
        .route("/api/desk", get(desk_json))
        .route("/api/desk/events", get(desk_events))
        .route("/api/cdr", get(cdr_list))
        .route("/api/cdr/export", get(cdr_export))
        .route("/api/cdr/{id}", get(cdr_one))
        .with_state(c)
}

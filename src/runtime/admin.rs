//! The admin HTTP endpoint: `/healthz`, Prometheus `/metrics` and, when
//! agent queues are configured, the queue routes of
//! [`crate::queue::admin::router`] (`/queues`, `/agents`, agent login,
//! logout and pause, `/calls`).
//!
//! Metrics carry counts, durations and reasons only: never a digit, ID, PIN
//! or balance.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use super::call_task::Services;
use crate::console::{Console, Settings as ConsoleSettings};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global metrics recorder once (later calls reuse it).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            describe_metrics();
            handle
        })
        .clone()
}

/// Names and explains every metric up front, so `/metrics` lists them
/// (at zero) before the first call.
fn describe_metrics() {
    metrics::describe_counter!(
        "ivr_calls_total",
        "Calls offered to the service (INVITEs accepted for answering)"
    );
    metrics::describe_gauge!("ivr_calls_active", "Calls in progress");
    metrics::describe_counter!("ivr_calls_ended_total", "Calls ended, by end reason");
    metrics::describe_histogram!(
        "ivr_auth_seconds",
        "Ledger authentication time (lookup, PIN hash, lockout, audit)"
    );
    metrics::describe_counter!(
        "ivr_balance_anomalies_total",
        "Negative personal-account balances read to callers"
    );
    metrics::describe_counter!(
        "ivr_admission_refused_total",
        "INVITEs refused by admission control, by reason (source address not in labels)"
    );
    metrics::describe_counter!(
        "ivr_agent_auth_failures_total",
        "Agent digest logins refused: reason=wrong (bad answer) or locked (agent or source locked)"
    );
    metrics::describe_counter!(
        "ivr_media_clock_ticks_total",
        "Calls ticked by the media clock (most ticks send one RTP packet)"
    );
    metrics::describe_counter!(
        "ivr_media_clock_late_ticks_total",
        "Media clock ticks later than their deadline by more than `over` (2, 5, 10, 20, 40 ms)"
    );
    metrics::describe_gauge!(
        "ivr_media_clock_late_max_seconds",
        "The latest media clock tick since the process started"
    );
    metrics::describe_counter!(
        "ivr_media_clock_wakeups_total",
        "Timed wake-ups of the media clock's threads"
    );
    metrics::describe_counter!(
        "ivr_media_clock_late_wakeups_total",
        "Media clock wake-ups later than asked by more than `over` (the OS ran the thread late)"
    );
    metrics::describe_counter!(
        "ivr_media_clock_rounds_total",
        "Media clock rounds that found at least one deadline due"
    );
    metrics::describe_counter!(
        "ivr_media_clock_long_rounds_total",
        "Media clock rounds that took more than `over` from waking to sleeping"
    );
    metrics::describe_gauge!(
        "ivr_media_clock_wakeup_late_max_seconds",
        "The latest media clock wake-up since the process started"
    );
    metrics::describe_gauge!(
        "ivr_media_clock_round_max_seconds",
        "The longest media clock round since the process started"
    );
    metrics::describe_counter!(
        "ivr_media_clock_preempted_rounds_total",
        "Media clock rounds during which the OS took the CPU from the clock's thread"
    );
    metrics::describe_counter!(
        "ivr_media_clock_long_preempted_rounds_total",
        "Preempted media clock rounds that took more than `over` from waking to sleeping"
    );
    metrics::describe_counter!(
        "ivr_media_clock_lock_waits_total",
        "Media clock ticks that found the call's lock held by its task"
    );
    metrics::describe_counter!(
        "ivr_media_clock_long_lock_waits_total",
        "Media clock ticks that waited longer than `over` (1 ms) for the call's lock"
    );
    metrics::describe_gauge!(
        "ivr_media_clock_lock_wait_max_seconds",
        "The longest wait of a media clock tick for its call's lock since the process started"
    );
    metrics::counter!("ivr_calls_total").absolute(0);
    metrics::gauge!("ivr_calls_active").set(0.0);
}

#[derive(Clone)]
struct AdminState {
    services: Arc<Services>,
    metrics: Option<PrometheusHandle>,
    stopping: watch::Receiver<bool>,
}

/// The admin routes, testable with `tower::ServiceExt::oneshot`, with a
/// console that has no users or tokens (the JSON API then refuses every
/// request; `/healthz` and `/metrics` stay open).
pub fn router(services: Arc<Services>, stopping: watch::Receiver<bool>) -> Router {
    router_with_console(services, stopping, ConsoleSettings::default()).0
}

/// The admin routes with the operators' console ([`crate::console`]): the
/// queue JSON API behind [`crate::console::guard_api`] (session or token),
/// and the console's pages. `/healthz` and `/metrics` stay open for probes.
pub fn router_with_console(
    services: Arc<Services>,
    stopping: watch::Receiver<bool>,
    settings: ConsoleSettings,
) -> (Router, Arc<Console>) {
    let ctl: Option<Arc<dyn crate::queue::admin::QueueControl>> =
        services.queues.as_ref().map(|q| match q.shared_queue() {
            Some(s) => Arc::new(super::shared_queue::ClusterControl::new(
                q.shared(),
                s.clone(),
            )) as Arc<dyn crate::queue::admin::QueueControl>,
            None => Arc::new(q.shared()) as Arc<dyn crate::queue::admin::QueueControl>,
        });
    let console = Console::new(
        settings,
        services.ledger.clone(),
        ctl.clone(),
        metrics_handle(),
        stopping.clone(),
    );
    let queues = ctl.map(|ctl| {
        crate::queue::admin::router(ctl).route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            crate::console::guard_api,
        ))
    });
    // Callback bookings are personal data: the same session or token.
    let callbacks = crate::queue::admin::callbacks_router(services.ledger.clone()).route_layer(
        axum::middleware::from_fn_with_state(console.clone(), crate::console::guard_api),
    );
    let state = AdminState {
        services,
        metrics: metrics_handle(),
        stopping,
    };
    let base = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(callbacks)
        .merge(crate::console::router(console.clone()));
    let app = match queues {
        Some(q) => base.merge(q),
        None => base,
    };
    (app, console)
}

/// `200 ok` while serving; `503 draining` from the moment shutdown starts
/// (new calls refused, calls in progress finishing) until the process exits,
/// so that a load balancer takes the node out while it drains.
async fn healthz(State(s): State<AdminState>) -> (StatusCode, String) {
    if *s.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    let free = s.services.ports.available();
    // Database unreachable: still 200 (calls are answered, records go to
    // the spool) but the body says `degraded` (docs/records.md).
    let r = s.services.records.status();
    if !r.db_up {
        return (
            StatusCode::OK,
            format!(
                "degraded db=down spooled_rows={} queue_depth={} rtp_ports_free={free}\n",
                r.spooled_rows, r.queue_depth
            ),
        );
    }
    (StatusCode::OK, format!("ok rtp_ports_free={free}\n"))
}

async fn metrics_text(State(s): State<AdminState>) -> (StatusCode, String) {
    match &s.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n".into(),
        ),
    }
}

/// Serves the admin routes and the console (see [`router_with_console`])
/// until the task is aborted (at process exit): while draining, `/healthz`
/// answers 503 and `/metrics` and the console keep answering.
pub async fn serve(
    addr: SocketAddr,
    services: Arc<Services>,
    stopping: watch::Receiver<bool>,
    console: ConsoleSettings,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "admin HTTP: cannot bind; continuing without it");
            return;
        }
    };
    let (app, console) = router_with_console(services, stopping, console);
    let _sampler = console.spawn_sampler();
    let _ = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::RwLock;
    use std::time::Duration;
    use tower::ServiceExt;

    use crate::ledger::{Ledger, LedgerConfig};
    use crate::media::prompts::PromptLibrary;
    use crate::queue::config::QueuesFile;
    use crate::runtime::ports::PortPool;
    use crate::runtime::queue_task::QueueRuntime;

    async fn services(with_queues: bool) -> Arc<Services> {
        let prompts = Arc::new(PromptLibrary::load(std::path::Path::new("prompts")).unwrap());
        let plan =
            crate::runtime::load_dialplan(std::path::Path::new("dialplans/12333.toml"), &prompts)
                .unwrap();
        let ledger = Ledger::open("sqlite::memory:", LedgerConfig::demo())
            .await
            .unwrap();
        let queues = with_queues.then(|| {
            let set = QueuesFile::from_toml_str(
                "[[agent]]\nid = \"agent1001\"\ncontact = \"sip:1001@127.0.0.1:5070\"\n\
                 [[agent]]\nid = \"agent1002\"\npassword = \"pw\"\n\
                 [[queue]]\nname = \"agents\"\nagents = [\"agent1001\", \"agent1002\"]\n",
            )
            .unwrap()
            .build()
            .unwrap();
            QueueRuntime::new(set, true, None)
        });
        Arc::new(Services {
            prompts,
            plan: RwLock::new(Arc::new(plan)),
            flow: Arc::new(Default::default()),
            records: crate::records::Records::start(
                ledger.clone(),
                crate::records::RecordsConfig {
                    spool_dir: std::env::temp_dir()
                        .join(format!("ivr-admin-spool-{:x}", rand::random::<u64>())),
                    ..Default::default()
                },
            )
            .unwrap(),
            ledger,
            ports: PortPool::new(40000, 40009),
            bind_ip: "127.0.0.1".parse().unwrap(),
            media_ip: "127.0.0.1".parse().unwrap(),
            inactivity_timeout: Duration::from_secs(30),
            queues,
            media_policy: Default::default(),
        })
    }

    /// Requests carry a supervisor API token (the JSON API needs one).
    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("authorization", "Bearer admin-test-token")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn with_token(services: Arc<Services>, rx: watch::Receiver<bool>) -> Router {
        let cfg: crate::config::Config = toml::from_str(&format!(
            "[[console.token]]\nname = \"t\"\nsha256 = \"{}\"\n",
            crate::console::auth::token_hash("admin-test-token")
        ))
        .unwrap();
        let settings = ConsoleSettings::from_config(&cfg).unwrap();
        router_with_console(services, rx, settings).0
    }

    #[tokio::test]
    async fn queue_routes_are_mounted_next_to_health_and_metrics() {
        let (_tx, rx) = watch::channel(false);
        let services = services(true).await;
        // Without a session or token the JSON API refuses; probes stay open.
        let closed = router(services.clone(), rx.clone());
        let resp = closed
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/queues")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let resp = closed
            .oneshot(
                Request::builder()
                    .uri("/healthz")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let app = with_token(services, rx);
        let (s, body) = call(&app, "GET", "/healthz").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body.starts_with("ok rtp_ports_free=5"));

        let (s, body) = call(&app, "GET", "/queues").await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["name"], "agents");
        // The static agent is logged in at start-up, the other is not.
        assert_eq!(v[0]["available_agents"], 1);

        let (s, body) = call(&app, "GET", "/agents/agent1001").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("\"available\""), "{body}");
        let (s, body) = call(&app, "POST", "/agents/agent1001/pause").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("\"paused\""), "{body}");
        let (s, _) = call(&app, "POST", "/agents/agent1001/logout").await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = call(&app, "GET", "/agents/agent1001").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("\"logged_out\""), "{body}");
        let (s, _) = call(&app, "GET", "/agents/nobody").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, body) = call(&app, "GET", "/calls").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "[]"));
        // The password never shows in the API.
        let (_, body) = call(&app, "GET", "/agents").await;
        assert!(!body.contains("\"pw\""));
    }

    #[tokio::test]
    async fn without_queues_only_health_and_metrics() {
        let (tx, rx) = watch::channel(false);
        let app = router(services(false).await, rx);
        let (s, _) = call(&app, "GET", "/queues").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        tx.send(true).unwrap();
        let (s, body) = call(&app, "GET", "/healthz").await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        );
        // Metrics stay available while draining.
        let (s, _) = call(&app, "GET", "/metrics").await;
        assert_eq!(s, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_listed_before_the_first_call() {
        let (_tx, rx) = watch::channel(false);
        let app = router(services(false).await, rx);
        let (s, body) = call(&app, "GET", "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("ivr_calls_active"), "{body}");
        assert!(body.contains("# HELP ivr_calls_total"), "{body}");
    }
}

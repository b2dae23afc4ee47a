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
    metrics::counter!("ivr_calls_total").absolute(0);
    metrics::gauge!("ivr_calls_active").set(0.0);
}

#[derive(Clone)]
struct AdminState {
    services: Arc<Services>,
    metrics: Option<PrometheusHandle>,
    stopping: watch::Receiver<bool>,
}

/// The admin routes, testable with `tower::ServiceExt::oneshot`.
pub fn router(services: Arc<Services>, stopping: watch::Receiver<bool>) -> Router {
    let queues = services.queues.as_ref().map(|q| {
        let ctl: Arc<dyn crate::queue::admin::QueueControl> = Arc::new(q.shared());
        crate::queue::admin::router(ctl)
    });
    let state = AdminState {
        services,
        metrics: metrics_handle(),
        stopping,
    };
    let base = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    match queues {
        Some(q) => base.merge(q),
        None => base,
    }
}

async fn healthz(State(s): State<AdminState>) -> (StatusCode, String) {
    if *s.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into());
    }
    let free = s.services.ports.available();
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

/// Serves the admin routes until `stopping` is set.
pub async fn serve(addr: SocketAddr, services: Arc<Services>, stopping: watch::Receiver<bool>) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "admin HTTP: cannot bind; continuing without it");
            return;
        }
    };
    let mut stop = stopping.clone();
    let app = router(services, stopping);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
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
            ledger,
            ports: PortPool::new(40000, 40009),
            bind_ip: "127.0.0.1".parse().unwrap(),
            media_ip: "127.0.0.1".parse().unwrap(),
            inactivity_timeout: Duration::from_secs(30),
            queues,
        })
    }

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
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

    #[tokio::test]
    async fn queue_routes_are_mounted_next_to_health_and_metrics() {
        let (_tx, rx) = watch::channel(false);
        let app = router(services(true).await, rx);
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
        let (s, _) = call(&app, "GET", "/healthz").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
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

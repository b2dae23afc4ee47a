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
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
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

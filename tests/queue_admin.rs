//! The admin routes, called directly with `tower::ServiceExt::oneshot`
//! (no server, no sockets).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ivr12333::queue::admin::{QueueControl, SharedQueueSet, router};
use ivr12333::queue::{AgentConfig, AgentId, CallerId, QueueAction, QueueConfig, QueueSet};
use serde_json::Value;
use tower::ServiceExt;

struct Fixture {
    shared: SharedQueueSet,
    wakes: Arc<AtomicUsize>,
    offset: Arc<AtomicU64>,
    t0: Instant,
}

fn fixture() -> Fixture {
    let mut a1 = AgentConfig::new("agent1001");
    a1.contact = Some("sip:1001@127.0.0.1:5070".into());
    let a2 = AgentConfig::new("agent1002");
    let q = QueueConfig::new(
        "pension",
        vec![AgentId::new("agent1001"), AgentId::new("agent1002")],
    );
    let set = QueueSet::new(vec![q], vec![a1, a2]).unwrap();
    let t0 = Instant::now();
    let offset = Arc::new(AtomicU64::new(0));
    let o = offset.clone();
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let shared = SharedQueueSet::new(
        Arc::new(Mutex::new(set)),
        Arc::new(move || t0 + Duration::from_secs(o.load(Ordering::SeqCst))),
        Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }),
    );
    Fixture {
        shared,
        wakes,
        offset,
        t0,
    }
}

async fn call(f: &Fixture, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let app = router(Arc::new(f.shared.clone()));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, v)
}

#[tokio::test]
async fn lists_queues_and_agents() {
    let f = fixture();
    {
        let mut q = f.shared.queue_set().lock().unwrap();
        q.join(f.t0, "pension", CallerId(5)).unwrap();
    }
    f.offset.store(42, Ordering::SeqCst);
    let (st, v) = call(&f, "GET", "/queues", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v[0]["name"], "pension");
    assert_eq!(v[0]["waiting"][0]["caller"], 5);
    assert_eq!(v[0]["waiting"][0]["waited_secs"], 42);
    assert_eq!(v[0]["longest_wait_secs"], 42);

    let (st, v) = call(&f, "GET", "/queues/pension", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["waiting_count"], 1);

    let (st, v) = call(&f, "GET", "/queues/nope", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("unknown queue"));

    let (st, v) = call(&f, "GET", "/agents", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["id"], "agent1001");
    assert_eq!(v[0]["state"], "logged_out");

    let (st, _) = call(&f, "GET", "/agents/ghost", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_pause_unpause_logout() {
    let f = fixture();
    // Static contact, no body.
    let (st, v) = call(&f, "POST", "/agents/agent1001/login", "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "available");
    assert_eq!(v["contact"], "sip:1001@127.0.0.1:5070");
    assert!(f.wakes.load(Ordering::SeqCst) >= 1);

    let (st, v) = call(&f, "POST", "/agents/agent1001/pause", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["state"], "paused");
    let (st, v) = call(&f, "POST", "/agents/agent1001/unpause", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["state"], "available");
    let (st, v) = call(&f, "POST", "/agents/agent1001/logout", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["state"], "logged_out");

    // No static contact: a body with one is needed.
    let (st, v) = call(&f, "POST", "/agents/agent1002/login", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("no contact"));
    let (st, v) = call(
        &f,
        "POST",
        "/agents/agent1002/login",
        r#"{"contact":"sip:1002@10.0.0.2:5060"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["contact"], "sip:1002@10.0.0.2:5060");
}

#[tokio::test]
async fn admin_login_rings_a_waiting_caller() {
    let f = fixture();
    {
        let mut q = f.shared.queue_set().lock().unwrap();
        q.join(f.t0, "pension", CallerId(9)).unwrap();
    }
    let (st, v) = call(&f, "POST", "/agents/agent1001/login", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["state"], "ringing");
    assert_eq!(v["caller"], 9);
    let action = f.shared.queue_set().lock().unwrap().poll_event();
    assert!(matches!(
        action,
        Some(QueueAction::RingAgent {
            caller: CallerId(9),
            ..
        })
    ));
    {
        let mut q = f.shared.queue_set().lock().unwrap();
        q.agent_answered(f.t0, &AgentId::new("agent1001"), CallerId(9));
    }
    f.offset.store(30, Ordering::SeqCst);
    let (st, v) = call(&f, "GET", "/calls", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v[0]["agent"], "agent1001");
    assert_eq!(v[0]["caller"], 9);
    assert_eq!(v[0]["secs"], 30);
    assert_eq!(f.shared.active_calls().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_requests() {
    let f = fixture();
    for (path, body) in [
        ("/agents/agent1002/login", "{not json"),
        ("/agents/agent1002/login", r#"{"contact": 5}"#),
        ("/agents/agent1002/login", r#"{"contakt": "sip:x"}"#),
        ("/agents/agent1002/login", r#"{"contact": "http://evil"}"#),
        ("/agents/agent1002/login", r#"{"contact": "sip:a b"}"#),
    ] {
        let (st, v) = call(&f, "POST", path, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(v["error"].is_string());
    }
    for path in [
        "/agents/ghost/login",
        "/agents/ghost/logout",
        "/agents/ghost/pause",
        "/agents/ghost/unpause",
    ] {
        let (st, v) = call(&f, "POST", path, "").await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        assert!(v["error"].as_str().unwrap().contains("unknown agent"));
    }
    // Wrong method.
    let (st, _) = call(&f, "GET", "/agents/agent1001/login", "").await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}

//! The console and the guarded JSON API, driven in-process with
//! `tower::ServiceExt::oneshot`: every endpoint, and every refusal (no
//! session, wrong role, missing or wrong CSRF token, an agent changing
//! another agent, throttled sign-in). Real SQLite ledger in memory.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tokio::sync::watch;
use tower::ServiceExt;

use ivr12333::config::Config;
use ivr12333::console::{Console, Settings, auth};
use ivr12333::domain::{CallRecord, IdNumber, Insurance};
use ivr12333::ledger::cdr_query;
use ivr12333::ledger::{AuditAction, AuditContext, Ledger, LedgerConfig};
use ivr12333::media::prompts::PromptLibrary;
use ivr12333::queue::config::QueuesFile;
use ivr12333::runtime::call_task::Services;
use ivr12333::runtime::ports::PortPool;
use ivr12333::runtime::queue_task::QueueRuntime;

const SUP_PW: &str = "supervisor-password";
const AGENT_PW: &str = "agent-password-1";
const TOKEN: &str = "test-token-0123456789abcdef";

/// Hashing costs ~0.1 s: hash each password once for all tests.
fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| (auth::hash_password(SUP_PW), auth::hash_password(AGENT_PW)))
}

fn config(secure: bool) -> Config {
    let (sup, agent) = hashes();
    let text = format!(
        "[console]\nsecure_cookie = {secure}\n\
         [[console.token]]\nname = \"prom\"\nsha256 = \"{}\"\n\
         [[console_user]]\nname = \"sup\"\nrole = \"supervisor\"\npassword_hash = \"{sup}\"\n\
         [[console_user]]\nname = \"ann\"\nrole = \"agent\"\nagent = \"agent1001\"\npassword_hash = \"{agent}\"\n\
         [[agent]]\nid = \"agent1001\"\ncontact = \"sip:1001@127.0.0.1:5070\"\n\
         [[agent]]\nid = \"agent1002\"\ncontact = \"sip:1002@127.0.0.1:5072\"\n\
         [[queue]]\nname = \"agents\"\nagents = [\"agent1001\", \"agent1002\"]\n",
        auth::token_hash(TOKEN)
    );
    toml::from_str(&text).expect("test config")
}

struct Fx {
    app: Router,
    console: Arc<Console>,
    ledger: Ledger,
    _stop: watch::Sender<bool>,
    _spool: tempfile::TempDir,
}

async fn fixture(secure: bool) -> Fx {
    let cfg = config(secure);
    let prompts = Arc::new(PromptLibrary::load(std::path::Path::new("prompts")).unwrap());
    let plan =
        ivr12333::runtime::load_dialplan(std::path::Path::new("dialplans/12333.toml"), &prompts)
            .unwrap();
    let ledger = Ledger::open("sqlite::memory:", LedgerConfig::demo())
        .await
        .unwrap();
    let set = QueuesFile::from_toml_str(
        "[[agent]]\nid = \"agent1001\"\ncontact = \"sip:1001@127.0.0.1:5070\"\n\
         [[agent]]\nid = \"agent1002\"\ncontact = \"sip:1002@127.0.0.1:5072\"\n\
         [[queue]]\nname = \"agents\"\nagents = [\"agent1001\", \"agent1002\"]\n",
    )
    .unwrap()
    .build()
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let records = ivr12333::records::Records::start(
        ledger.clone(),
        ivr12333::records::RecordsConfig {
            spool_dir: spool.path().to_path_buf(),
            ..Default::default()
        },
    )
    .unwrap();
    let services = Arc::new(Services {
        prompts,
        records,
        plan: RwLock::new(Arc::new(plan)),
        flow: Arc::new(Default::default()),
        ledger: ledger.clone(),
        ports: PortPool::new(41000, 41009),
        bind_ip: "127.0.0.1".parse().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        inactivity_timeout: Duration::from_secs(30),
        queues: Some(QueueRuntime::new(set, true, None)),
        media_policy: Default::default(),
    });
    let (tx, rx) = watch::channel(false);
    let settings = Settings::from_config(&cfg).unwrap();
    let (app, console) = ivr12333::runtime::admin::router_with_console(services, rx, settings);
    Fx {
        app,
        console,
        ledger,
        _stop: tx,
        _spool: spool,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method("GET").uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn post(uri: &str, cookie: Option<&str>, csrf: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(t) = csrf {
        b = b.header("x-csrf-token", t);
    }
    b.body(Body::empty()).unwrap()
}

fn login_req(user: &str, password: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"user": user, "password": password}).to_string(),
        ))
        .unwrap()
}

/// Signs in; returns (cookie header value, csrf token).
async fn sign_in(app: &Router, user: &str, pw: &str) -> (String, String) {
    let r = send(app, login_req(user, pw)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    (cookie, r.json()["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn probes_stay_open_and_the_json_api_needs_a_session_or_token() {
    let f = fixture(false).await;
    assert_eq!(
        send(&f.app, get("/healthz", None)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&f.app, get("/metrics", None)).await.status,
        StatusCode::OK
    );
    for uri in [
        "/queues",
        "/queues/agents",
        "/agents",
        "/agents/agent1001",
        "/calls",
    ] {
        let r = send(&f.app, get(uri, None)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}: {}", r.body);
        let bad = Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer not-the-token")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            send(&f.app, bad).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        let good = Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let r = send(&f.app, good).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    }
    let (cookie, _) = sign_in(&f.app, "sup", SUP_PW).await;
    let r = send(&f.app, get("/queues", Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()[0]["name"], "agents");
    // An agent may read the queue state too.
    let (acookie, _) = sign_in(&f.app, "ann", AGENT_PW).await;
    assert_eq!(
        send(&f.app, get("/agents", Some(&acookie))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn state_changes_need_csrf_own_agent_and_are_audited() {
    let f = fixture(false).await;
    let (sup, sup_csrf) = sign_in(&f.app, "sup", SUP_PW).await;
    let (ann, ann_csrf) = sign_in(&f.app, "ann", AGENT_PW).await;

    // No session at all.
    let r = send(&f.app, post("/agents/agent1001/pause", None, None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Session but no CSRF token, or a wrong one.
    let r = send(&f.app, post("/agents/agent1001/pause", Some(&sup), None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = send(
        &f.app,
        post("/agents/agent1001/pause", Some(&sup), Some(&ann_csrf)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another session's token");
    // An agent changing another agent.
    let r = send(
        &f.app,
        post("/agents/agent1002/pause", Some(&ann), Some(&ann_csrf)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Allowed: the agent on themself, the supervisor on anyone, a token.
    let r = send(
        &f.app,
        post("/agents/agent1001/pause", Some(&ann), Some(&ann_csrf)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "paused");
    let r = send(
        &f.app,
        post("/agents/agent1002/pause", Some(&sup), Some(&sup_csrf)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tok = Request::builder()
        .method("POST")
        .uri("/agents/agent1002/unpause")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, tok).await.status, StatusCode::OK);
    // Unknown agent: the supervisor gets the API's 404 (and it is audited).
    let r = send(
        &f.app,
        post("/agents/nobody/pause", Some(&sup), Some(&sup_csrf)),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Every change and refusal is in the audit log, and the chain holds.
    let ann_rows = cdr_query::call_audit(&f.ledger, "console:ann")
        .await
        .unwrap();
    let got: Vec<(String, String)> = ann_rows
        .iter()
        .map(|r| (r.queue.clone().unwrap_or_default(), r.outcome.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("console:pause:agent1002".into(), "refused".into()),
            ("console:pause:agent1001".into(), "ok".into()),
        ]
    );
    let sup_rows = cdr_query::call_audit(&f.ledger, "console:sup")
        .await
        .unwrap();
    assert_eq!(sup_rows.len(), 2, "{sup_rows:?}");
    assert_eq!(sup_rows[1].outcome, "error 404");
    let tok_rows = cdr_query::call_audit(&f.ledger, "console:token:prom")
        .await
        .unwrap();
    assert_eq!(
        tok_rows[0].queue.as_deref(),
        Some("console:unpause:agent1002")
    );
    assert!(f.ledger.verify_audit().await.unwrap().is_intact());
}

#[tokio::test]
async fn sign_in_cookies_sign_out_and_throttle() {
    let f = fixture(true).await;
    // Not JSON: refused before any password check.
    let form = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("user=sup&password=x"))
        .unwrap();
    assert_eq!(
        send(&f.app, form).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let r = send(&f.app, login_req("sup", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    let r = send(&f.app, login_req("nobody", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = send(&f.app, login_req("sup", SUP_PW)).await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert_eq!(r.json()["role"], "supervisor");
    let cookie = set.split(';').next().unwrap().to_owned();
    let csrf = r.json()["csrf"].as_str().unwrap().to_owned();
    let s = send(&f.app, get("/session", Some(&cookie))).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.json()["user"], "sup");
    assert_eq!(
        send(&f.app, get("/session", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Sign-out needs the CSRF token, then the session is gone.
    assert_eq!(
        send(&f.app, post("/logout", Some(&cookie), None))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&f.app, post("/logout", None, None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&f.app, post("/logout", Some(&cookie), Some(&csrf)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&f.app, get("/session", Some(&cookie))).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Five failures for one user, from five addresses: the sixth attempt,
    // from yet another address, is refused even with the right password.
    for i in 0..5 {
        let r = send(
            &f.app,
            from(login_req("ann", "wrong"), &format!("10.0.0.{i}")),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = send(&f.app, from(login_req("ann", AGENT_PW), "10.0.1.1")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Five failures from one address with five names: that address is
    // refused for everyone, others are not.
    for i in 0..5 {
        let r = send(
            &f.app,
            from(login_req(&format!("u{i}"), "wrong"), "10.0.2.2"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = send(&f.app, from(login_req("sup", SUP_PW), "10.0.2.2")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = send(&f.app, from(login_req("sup", SUP_PW), "10.0.2.3")).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// The request as if it came from `ip` (what `into_make_service_with_connect_info` adds).
fn from(mut req: Request<Body>, ip: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test]
async fn pages_go_to_the_right_role() {
    let f = fixture(false).await;
    let (sup, _) = sign_in(&f.app, "sup", SUP_PW).await;
    let (ann, _) = sign_in(&f.app, "ann", AGENT_PW).await;
    let loc = |r: &Resp| r.headers[header::LOCATION].to_str().unwrap().to_owned();
    for page in ["/", "/agent", "/cdr"] {
        let r = send(&f.app, get(page, None)).await;
        assert_eq!(
            (r.status, loc(&r).as_str()),
            (StatusCode::SEE_OTHER, "/login"),
            "{page}"
        );
    }
    let r = send(&f.app, get("/", Some(&sup))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("实时监控") && r.body.contains("lang=\"zh-CN\""));
    assert!(
        r.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let r = send(&f.app, get("/cdr", Some(&sup))).await;
    assert!(r.status == StatusCode::OK && r.body.contains("通话记录"));
    let r = send(&f.app, get("/agent", Some(&sup))).await;
    assert_eq!((r.status, loc(&r).as_str()), (StatusCode::SEE_OTHER, "/"));
    let r = send(&f.app, get("/", Some(&ann))).await;
    assert_eq!(
        (r.status, loc(&r).as_str()),
        (StatusCode::SEE_OTHER, "/agent")
    );
    let r = send(&f.app, get("/cdr", Some(&ann))).await;
    assert_eq!(
        (r.status, loc(&r).as_str()),
        (StatusCode::SEE_OTHER, "/agent")
    );
    let r = send(&f.app, get("/agent", Some(&ann))).await;
    assert!(r.status == StatusCode::OK && r.body.contains("坐席工作台"));
    let r = send(&f.app, get("/login", None)).await;
    assert!(r.status == StatusCode::OK && r.body.contains("<label for=\"password\">密码</label>"));
    for a in [
        "console.css",
        "console.js",
        "wallboard.js",
        "agent.js",
        "cdr.js",
        "login.js",
    ] {
        let r = send(&f.app, get(&format!("/static/{a}"), None)).await;
        assert_eq!(r.status, StatusCode::OK, "{a}");
    }
    assert_eq!(
        send(&f.app, get("/static/../Cargo.toml", None))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&f.app, get("/static/secret.txt", None)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn wallboard_json_and_stream_for_supervisors_only() {
    let f = fixture(false).await;
    let (sup, _) = sign_in(&f.app, "sup", SUP_PW).await;
    let (ann, _) = sign_in(&f.app, "ann", AGENT_PW).await;
    for uri in ["/api/wallboard", "/api/events"] {
        assert_eq!(
            send(&f.app, get(uri, None)).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            send(&f.app, get(uri, Some(&ann))).await.status,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    let r = send(&f.app, get("/api/wallboard", Some(&sup))).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["queues"][0]["name"], "agents");
    assert_eq!(v["agents"].as_array().unwrap().len(), 2);
    assert_eq!(v["per_minute"].as_array().unwrap().len(), 60);
    assert_eq!(v["security"].as_array().unwrap().len(), 24);
    for k in [
        "answered",
        "menu",
        "id_entered",
        "verified",
        "balance_heard",
        "asked_agent",
        "gave_up",
    ] {
        assert!(v["funnel"][k].is_u64(), "{k}");
    }

    // The stream: the first event carries the current figures.
    let resp = f
        .app
        .clone()
        .oneshot(get("/api/events", Some(&sup)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = first_chunk(resp).await;
    assert!(first.starts_with("event: wallboard\ndata: {"), "{first}");

    // A finished call in the ledger moves the funnel on the next sample.
    f.ledger
        .write_cdr(&record("call-1", "goodbye"))
        .await
        .unwrap();
    f.console.sample_now().await;
    let v = f.console.sample_now().await;
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["funnel"]["verified"], 1, "{v}");
    assert_eq!(v["funnel"]["balance_heard"], 1, "{v}");
}

/// The first complete SSE event (frames may split it).
async fn first_chunk(resp: axum::response::Response) -> String {
    use futures_util::StreamExt;
    let mut s = resp.into_body().into_data_stream();
    let mut text = String::new();
    for _ in 0..50 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("an SSE event")
            .expect("a chunk")
            .expect("no error");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("\n\n") {
            break;
        }
    }
    text
}

fn record(call_id: &str, reason: &str) -> CallRecord {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    CallRecord {
        call_id: call_id.into(),
        caller_masked: "138****5678".into(),
        started_at_ms: now - 60_000,
        answered_at_ms: Some(now - 59_000),
        ended_at_ms: now - 1000,
        end_reason: reason.into(),
        states: [
            "welcome",
            "main_menu",
            "id_entry",
            "pin_entry",
            "auth",
            "insurance_menu",
            "pension",
            "after_menu",
            "goodbye",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        prompts: [
            "welcome",
            "main_menu",
            "enter_id",
            "enter_pin",
            "pension_balance",
            "{amount}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        menu_keys: "11".into(),
    }
}

fn demo_id() -> IdNumber {
    IdNumber::parse("310104198507151239", (2026, 12, 3)).unwrap()
}

#[tokio::test]
async fn agent_desk_and_screen_pop() {
    let f = fixture(false).await;
    let (sup, _) = sign_in(&f.app, "sup", SUP_PW).await;
    let (ann, _) = sign_in(&f.app, "ann", AGENT_PW).await;
    for uri in ["/api/desk", "/api/desk/events"] {
        assert_eq!(
            send(&f.app, get(uri, None)).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            send(&f.app, get(uri, Some(&sup))).await.status,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    let r = send(&f.app, get("/api/desk", Some(&ann))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["agent"]["id"], "agent1001");
    assert_eq!(r.json()["agent"]["state"], "available");
    assert!(r.json()["pop"].is_null());
    let resp = f
        .app
        .clone()
        .oneshot(get("/api/desk/events", Some(&ann)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = first_chunk(resp).await;
    assert!(first.starts_with("event: desk\ndata: {"), "{first}");

    // The screen pop of a caller who verified, heard the pension balance
    // and asked for an agent: masked ID, never the full one.
    let ctx = AuditContext {
        call_id: "pop-call".into(),
        caller: "13812345678".into(),
    };
    let id = demo_id();
    f.ledger
        .audit(&ctx, Some(&id), AuditAction::Authenticate, "verified")
        .await
        .unwrap();
    f.ledger
        .audit(
            &ctx,
            Some(&id),
            AuditAction::Query(Insurance::Pension),
            "played",
        )
        .await
        .unwrap();
    f.ledger
        .audit(
            &ctx,
            Some(&id),
            AuditAction::Transfer {
                queue: "agents".into(),
            },
            "queued",
        )
        .await
        .unwrap();
    ivr12333::console::pop::note_transfer(777_001, "pop-call", Some(&id));
    let pop = ivr12333::console::screen_pop(&f.ledger, 777_001).await;
    assert_eq!(pop["id_masked"], "310104********1239");
    assert_eq!(pop["verified"], true);
    assert_eq!(pop["heard"], serde_json::json!(["pension"]));
    assert_eq!(pop["queue"], "agents");
    assert_eq!(pop["status"], "verified");
    assert!(!pop.to_string().contains("19850715"), "{pop}");
    // A caller who keyed 0 before any ID.
    ivr12333::console::pop::note_transfer(777_002, "pop-call-2", None);
    let pop = ivr12333::console::screen_pop(&f.ledger, 777_002).await;
    assert!(pop["id_masked"].is_null());
    assert_eq!(pop["status"], "not_identified");
}

#[tokio::test]
async fn call_records_search_transcript_and_export() {
    let f = fixture(false).await;
    let (sup, _) = sign_in(&f.app, "sup", SUP_PW).await;
    let (ann, _) = sign_in(&f.app, "ann", AGENT_PW).await;
    for uri in ["/api/cdr", "/api/cdr/1", "/api/cdr/export?format=csv"] {
        assert_eq!(
            send(&f.app, get(uri, None)).await.status,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            send(&f.app, get(uri, Some(&ann))).await.status,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    f.ledger
        .write_cdr(&record("c-verified", "goodbye"))
        .await
        .unwrap();
    f.ledger
        .write_cdr(&record("c-transfer", "transfer"))
        .await
        .unwrap();
    f.ledger
        .write_cdr(&record("c-hangup", "caller_hangup"))
        .await
        .unwrap();
    let id = demo_id();
    let ctx = |c: &str| AuditContext {
        call_id: c.into(),
        caller: "13812345678".into(),
    };
    f.ledger
        .audit(
            &ctx("c-verified"),
            Some(&id),
            AuditAction::Authenticate,
            "verified",
        )
        .await
        .unwrap();
    f.ledger
        .audit(
            &ctx("c-transfer"),
            None,
            AuditAction::Transfer {
                queue: "agents".into(),
            },
            "queued",
        )
        .await
        .unwrap();

    let r = send(&f.app, get("/api/cdr", Some(&sup))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rows = r.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 3);
    let r = send(&f.app, get("/api/cdr?verified=yes", Some(&sup))).await;
    let v = r.json();
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    assert_eq!(v["rows"][0]["call_id"], "c-verified");
    let r = send(
        &f.app,
        get("/api/cdr?verified=no&reason=caller_hangup", Some(&sup)),
    )
    .await;
    assert_eq!(r.json()["rows"][0]["call_id"], "c-hangup");
    let r = send(&f.app, get("/api/cdr?queue=agents", Some(&sup))).await;
    assert_eq!(r.json()["rows"][0]["call_id"], "c-transfer");
    assert_eq!(r.json()["rows"][0]["queue"], "agents");
    let far = 4_000_000_000_000i64;
    let r = send(&f.app, get(&format!("/api/cdr?from={far}"), Some(&sup))).await;
    assert!(r.json()["rows"].as_array().unwrap().is_empty());
    // Paging: one row a page, three pages.
    let mut after = String::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = send(
            &f.app,
            get(&format!("/api/cdr?limit=1&after={after}"), Some(&sup)),
        )
        .await;
        let v = r.json();
        seen.push(v["rows"][0]["call_id"].as_str().unwrap().to_owned());
        after = v["next"].as_str().unwrap_or("").to_owned();
    }
    assert_eq!(seen.len(), 3);
    assert!(after.is_empty(), "no fourth page");
    for bad in [
        "/api/cdr?verified=maybe",
        "/api/cdr?after=x",
        "/api/cdr?from=yesterday",
        "/api/cdr?nope=1",
    ] {
        assert_eq!(
            send(&f.app, get(bad, Some(&sup))).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // One call's transcript: prompts in order, placeholders for values.
    let first_id = rows.iter().find(|r| r["call_id"] == "c-verified").unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = send(&f.app, get(&format!("/api/cdr/{first_id}"), Some(&sup))).await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.json();
    assert_eq!(t["prompts"][4], "pension_balance");
    assert_eq!(t["prompts"][5], "{amount}");
    assert_eq!(t["call"]["verified"], true);
    assert_eq!(
        send(&f.app, get("/api/cdr/999999", Some(&sup)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&f.app, get("/api/cdr/abc", Some(&sup))).await.status,
        StatusCode::BAD_REQUEST
    );

    // Exports.
    let r = send(&f.app, get("/api/cdr/export?format=csv", Some(&sup))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.body);
    assert!(lines[0].starts_with("id,call_id,caller_masked,started_at_ms"));
    assert!(r.body.contains("c-transfer") && r.body.contains("138****5678"));
    let r = send(
        &f.app,
        get("/api/cdr/export?format=json&verified=yes", Some(&sup)),
    )
    .await;
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        send(&f.app, get("/api/cdr/export?format=xml", Some(&sup)))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // Nothing here ever shows a full ID number.
    let all = send(&f.app, get("/api/cdr/export?format=json", Some(&sup)))
        .await
        .body;
    assert!(!all.contains("310104198507151239"));
}

#[test]
fn settings_refuse_bad_console_config() {
    let (sup, _) = hashes();
    let bad = [
        format!("[[console_user]]\nname = \"x\"\nrole = \"boss\"\npassword_hash = \"{sup}\"\n"),
        "[[console_user]]\nname = \"x\"\nrole = \"supervisor\"\npassword_hash = \"hunter2\"\n"
            .to_owned(),
        format!(
            "[[console_user]]\nname = \"x\"\nrole = \"agent\"\nagent = \"ghost\"\npassword_hash = \"{sup}\"\n"
        ),
        "[[console.token]]\nname = \"t\"\nsha256 = \"abc\"\n".to_owned(),
    ];
    for text in bad {
        let cfg: Config = toml::from_str(&text).unwrap();
        let e = Settings::from_config(&cfg)
            .err()
            .unwrap_or_else(|| panic!("accepted {text}"));
        assert!(!e.contains("hunter2"), "{e}");
    }
}

//! Callback bookings (预约回拨) in the database and the admin API, on SQLite
//! and PostgreSQL: stored with the verified ID as keyed hash + masked form
//! only, listed oldest first with the ID masked, closed by an agent.

mod ledger_support;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ivr12333::ledger::Ledger;
use ivr12333::ledger::callbacks::NewCallback;
use ivr12333::queue::admin::callbacks_router;
use ledger_support::{NORMAL, TestDb, id};
use serde_json::Value;
use tower::ServiceExt;

async fn call(l: &Ledger, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let app = callbacks_router(l.clone());
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

async fn booked_listed_and_done(db: TestDb) {
    let l = db.open().await;
    let who = id(NORMAL.0);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_737_600);
    let a = l
        .book_callback_at(
            &NewCallback {
                call_id: "c1",
                number: "13800138000",
                id: Some(&who),
                queue: "agents",
            },
            t0,
        )
        .await
        .unwrap();
    let b = l
        .book_callback_at(
            &NewCallback {
                call_id: "c2",
                number: "02088886666",
                id: None,
                queue: "agents",
            },
            t0 + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_ne!(a, b);
    // the table holds the keyed hash and the masked form, never the ID
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM callbacks WHERE id_hash = '{}'",
            l.id_hash(&who)
        ))
        .await,
        1
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM callbacks WHERE id_masked LIKE '%{}%' \
             OR id_hash LIKE '%{}%' OR caller_number LIKE '%{}%'",
            NORMAL.0, NORMAL.0, NORMAL.0
        ))
        .await,
        0
    );
    // hostile input is refused
    let bad = l
        .book_callback(&NewCallback {
            call_id: "c3",
            number: "12'; DROP TABLE callbacks; --",
            id: None,
            queue: "agents",
        })
        .await;
    assert!(bad.is_err());

    let (st, v) = call(&l, "GET", "/callbacks", "").await;
    assert_eq!(st, StatusCode::OK);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["caller_number"], "13800138000");
    assert_eq!(rows[0]["id_masked"], "310104********1239");
    assert_eq!(rows[0]["status"], "open");
    assert_eq!(rows[1]["id_masked"], Value::Null);
    let text = v.to_string();
    assert!(!text.contains(NORMAL.0), "{text}");
    assert!(
        !text.contains(&l.id_hash(&who)),
        "the hash is not shown: {text}"
    );

    let (st, v) = call(
        &l,
        "POST",
        &format!("/callbacks/{a}/done"),
        r#"{"done_by": "agent 7"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "done");
    assert_eq!(v["done_by"], "agent 7");
    assert!(v["done_at_ms"].as_i64().unwrap() > 0);
    // done twice keeps the first
    let (st, v) = call(
        &l,
        "POST",
        &format!("/callbacks/{a}/done"),
        r#"{"done_by": "agent 9"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["done_by"], "agent 7");

    let (_, v) = call(&l, "GET", "/callbacks", "").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "only the open one");
    let (_, v) = call(&l, "GET", "/callbacks?all=1", "").await;
    assert_eq!(v.as_array().unwrap().len(), 2);

    // errors: unknown id, bad id, bad body
    let (st, _) = call(&l, "POST", "/callbacks/999999/done", r#"{"done_by":"x"}"#).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&l, "POST", "/callbacks/abc/done", r#"{"done_by":"x"}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(&l, "POST", &format!("/callbacks/{b}/done"), "{}").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(
        &l,
        "POST",
        &format!("/callbacks/{b}/done"),
        r#"{"done_by":""}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    l.close().await;
}

both!(booked_listed_and_done);

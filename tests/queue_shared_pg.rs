//! The shared agent queue's statements on a real PostgreSQL (a fresh
//! database per test): two nodes' stores dispatching at the same time never
//! offer one agent twice, the retry round keeps tried agents for the caller
//! who tried them, wrap-up holds an agent back, a dead node is reaped, and
//! every change can be repeated after a lost reply.

mod ledger_support;

use std::time::Duration;

use ivr12333::queue::shared::StoreCmd;
use ivr12333::queue::{AgentId, CallerId, QueueConfig};
use ivr12333::runtime::queue_store::{PgQueueStore, StoreReply};
use ledger_support::{Backend, TestDb, run};

fn queue(wrap_up_ms: u64, retry_ms: u64) -> QueueConfig {
    let mut q = QueueConfig::new(
        "agents",
        ["a1", "a2", "a3"]
            .iter()
            .map(|a| AgentId::new(*a))
            .collect(),
    );
    q.wrap_up = Duration::from_millis(wrap_up_ms);
    q.retry = Duration::from_millis(retry_ms);
    q
}

fn static_agents() -> Vec<(AgentId, Option<String>)> {
    (1..=3)
        .map(|i| {
            (
                AgentId::new(format!("a{i}")),
                Some(format!("sip:a{i}@127.0.0.1:5099")),
            )
        })
        .collect()
}

async fn stores(db: &TestDb, q: QueueConfig) -> (PgQueueStore, PgQueueStore) {
    let ledger = db.open().await;
    let pool = ledger.pg_pool().expect("a PostgreSQL ledger");
    let a = PgQueueStore::new(pool.clone(), "node-a", vec![q.clone()]);
    let b = PgQueueStore::new(pool, "node-b", vec![q]);
    a.start(Duration::from_secs(30), &static_agents())
        .await
        .unwrap();
    b.start(Duration::from_secs(30), &static_agents())
        .await
        .unwrap();
    (a, b)
}

async fn join(s: &PgQueueStore, caller: u64) -> i64 {
    match s
        .apply(&StoreCmd::Join {
            caller: CallerId(caller),
            queue: "agents".into(),
            joined_at_ms: None,
        })
        .await
        .unwrap()
    {
        Some(StoreReply::Joined { entry, .. }) => entry,
        other => panic!("join answered {other:?}"),
    }
}

/// (agent, entry) of every ringing agent, by agent.
async fn ringing(db: &TestDb) -> Vec<(String, i64)> {
    let ledger = db.open().await;
    let pool = ledger.pg_pool().unwrap();
    sqlx::query_as("SELECT agent, entry FROM queue_agents WHERE state = 'ringing' ORDER BY agent")
        .fetch_all(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatch_offers_each_agent_once_in_join_order() {
    run(Backend::Postgres, |db| async move {
        let (a, b) = stores(&db, queue(0, 5_000)).await;
        let mut entries = Vec::new();
        for i in 0..10u64 {
            let s = if i % 2 == 0 { &a } else { &b };
            entries.push(join(s, 100 + i).await);
        }
        // Both nodes dispatch at once, many times.
        let mut offers = 0;
        for _ in 0..20 {
            let (x, y) = tokio::join!(a.dispatch(), b.dispatch());
            offers += x.unwrap().offers + y.unwrap().offers;
        }
        assert_eq!(offers, 3, "three agents, three offers");
        let rung = ringing(&db).await;
        let mut got: Vec<i64> = rung.iter().map(|r| r.1).collect();
        got.sort();
        assert_eq!(got, entries[..3].to_vec(), "the three longest waiting");
    })
    .await;
}

#[tokio::test]
async fn a_caller_who_tried_every_free_agent_keeps_them_through_the_retry_wait() {
    run(Backend::Postgres, |db| async move {
        let (a, b) = stores(&db, queue(0, 400)).await;
        // Only a1 logged in.
        for ag in ["a2", "a3"] {
            a.set_login(&AgentId::new(ag), false, None).await.unwrap();
        }
        let first = join(&a, 1).await;
        let second = join(&b, 2).await;
        let d = a.dispatch().await.unwrap();
        assert_eq!(d.local.len(), 1);
        assert_eq!(d.local[0].entry, first);
        // a1 does not answer the first caller.
        a.apply(&StoreCmd::RingEnded {
            entry: first,
            agent: AgentId::new("a1"),
            tried: true,
            autopause: false,
        })
        .await
        .unwrap();
        let d = b.dispatch().await.unwrap();
        assert_eq!(d.offers, 0, "the second caller must not jump the queue");
        let wake = d.wake_in.expect("a retry wake-up");
        assert!(wake <= Duration::from_millis(400), "{wake:?}");
        tokio::time::sleep(wake + Duration::from_millis(50)).await;
        let d = b.dispatch().await.unwrap();
        assert_eq!(d.offers, 1);
        assert_eq!(ringing(&db).await, vec![("a1".to_owned(), first)]);
        let _ = second;
    })
    .await;
}

#[tokio::test]
async fn wrap_up_holds_the_agent_back_then_it_takes_the_next_caller() {
    run(Backend::Postgres, |db| async move {
        let (a, b) = stores(&db, queue(300, 5_000)).await;
        for ag in ["a2", "a3"] {
            a.set_login(&AgentId::new(ag), false, None).await.unwrap();
        }
        let first = join(&a, 1).await;
        let second = join(&b, 2).await;
        a.dispatch().await.unwrap();
        a.apply(&StoreCmd::Connected {
            entry: first,
            agent: AgentId::new("a1"),
        })
        .await
        .unwrap();
        // The entry is gone; a1 is on a call: nothing to offer.
        assert_eq!(b.dispatch().await.unwrap().offers, 0);
        a.apply(&StoreCmd::CallEnded {
            agent: AgentId::new("a1"),
        })
        .await
        .unwrap();
        let d = b.dispatch().await.unwrap();
        assert_eq!(d.offers, 0, "in wrap-up");
        let wake = d.wake_in.expect("wake at the end of wrap-up");
        tokio::time::sleep(wake + Duration::from_millis(50)).await;
        let d = b.dispatch().await.unwrap();
        assert_eq!(d.local.len(), 1, "node b holds the second caller");
        assert_eq!(d.local[0].entry, second);
        assert_eq!(d.local[0].contact, "sip:a1@127.0.0.1:5099");
    })
    .await;
}

#[tokio::test]
async fn a_dead_node_is_reaped_and_finds_out_when_it_comes_back() {
    run(Backend::Postgres, |db| async move {
        let (a, b) = stores(&db, queue(0, 5_000)).await;
        let mine = join(&a, 1).await;
        let theirs = join(&b, 2).await;
        b.dispatch().await.unwrap();
        // node-b's lease runs out (it stops renewing); node-a renews.
        b.renew(Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.renew(Duration::from_secs(30)).await.unwrap();
        assert_eq!(a.reap().await.unwrap(), vec!["node-b".to_owned()]);
        let ledger = db.open().await;
        let pool = ledger.pg_pool().unwrap();
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM queue_entries ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(left, vec![mine], "node-b's entry {theirs} is gone");
        // The agent that rang for node-b's caller is free again; node-a's
        // caller keeps its own ring.
        let states: Vec<(String, String)> =
            sqlx::query_as("SELECT agent, state FROM queue_agents ORDER BY agent")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(states.iter().all(|(_, s)| s == "idle" || s == "ringing"));
        assert_eq!(ringing(&db).await.len(), 1);
        // node-b renews again: it learns its lease had lapsed.
        assert!(b.renew(Duration::from_secs(30)).await.unwrap());
        assert!(!b.renew(Duration::from_secs(30)).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn changes_repeated_after_a_lost_reply_change_nothing_more() {
    run(Backend::Postgres, |db| async move {
        let (a, _b) = stores(&db, queue(0, 5_000)).await;
        let e1 = join(&a, 7).await;
        assert_eq!(join(&a, 7).await, e1, "the same caller joins once");
        a.dispatch().await.unwrap();
        let agent = ringing(&db).await[0].0.clone();
        let ended = StoreCmd::RingEnded {
            entry: e1,
            agent: AgentId::new(&agent),
            tried: true,
            autopause: false,
        };
        a.apply(&ended).await.unwrap();
        a.apply(&ended).await.unwrap();
        let ledger = db.open().await;
        let pool = ledger.pg_pool().unwrap();
        let tried: Vec<String> =
            sqlx::query_scalar("SELECT tried FROM queue_entries WHERE id = $1")
                .bind(e1)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(tried, vec![agent]);
        let leave = StoreCmd::Leave { entry: e1 };
        a.apply(&leave).await.unwrap();
        a.apply(&leave).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_entries")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    })
    .await;
}

#[tokio::test]
async fn positions_count_callers_on_every_node() {
    run(Backend::Postgres, |db| async move {
        let (a, b) = stores(&db, queue(0, 5_000)).await;
        for ag in ["a1", "a2", "a3"] {
            a.set_login(&AgentId::new(ag), false, None).await.unwrap();
        }
        join(&a, 1).await;
        join(&b, 1).await;
        let third = join(&a, 2).await;
        let r = a
            .apply(&StoreCmd::Position {
                caller: CallerId(2),
                entry: third,
            })
            .await
            .unwrap();
        assert_eq!(
            r,
            Some(StoreReply::Position {
                caller: CallerId(2),
                position: 3
            })
        );
        let v = b.view().await.unwrap();
        assert_eq!(v.entries.len(), 3);
        assert_eq!(v.entries[1].node, "node-b");
    })
    .await;
}

#[tokio::test]
async fn the_cluster_view_names_the_call_an_agent_rings_for_and_talks_to() {
    run(Backend::Postgres, |db| async move {
        let (a, _b) = stores(&db, queue(0, 5_000)).await;
        for ag in ["a2", "a3"] {
            a.set_login(&AgentId::new(ag), false, None).await.unwrap();
        }
        let entry = join(&a, 42).await;
        a.dispatch().await.unwrap();
        let caller_of = |v: &ivr12333::runtime::queue_store::ClusterView| {
            v.agents
                .iter()
                .find(|x| x.agent == "a1")
                .map(|x| (x.state.clone(), x.caller))
        };
        let v = a.view().await.unwrap();
        assert_eq!(caller_of(&v), Some(("ringing".into(), Some(42))));
        a.apply(&StoreCmd::Connected {
            entry,
            agent: AgentId::new("a1"),
        })
        .await
        .unwrap();
        let v = a.view().await.unwrap();
        assert_eq!(caller_of(&v), Some(("on_call".into(), Some(42))));
        assert!(v.entries.is_empty());
        a.apply(&StoreCmd::CallEnded {
            agent: AgentId::new("a1"),
        })
        .await
        .unwrap();
        let v = a.view().await.unwrap();
        assert_eq!(caller_of(&v), Some(("idle".into(), None)));
    })
    .await;
}

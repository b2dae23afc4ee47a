//! One node's part of the shared agent queue ([`QueueNode`]) on virtual
//! time: the `QueueAction`s for this node's calls and the `StoreCmd`s owed
//! to PostgreSQL, both drained fully and compared in order. Join, offer,
//! answer, ring timeout with and without autopause, agent failure, maximum
//! wait with and without a ring, announcements, leaving before and after
//! the database answered, stale and duplicate offers, ring-all, re-joining
//! after a lost lease, errors, and a proptest over random input sequences
//! against a small in-memory stand-in for the database.

use std::time::{Duration, Instant};

use ivr12333::queue::shared::{QueueNode, StoreCmd};
use ivr12333::queue::{AgentId, CallerId, MaxWaitAction, QueueAction, QueueConfig, QueueError};

const Q: &str = "main";

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn aid(name: &str) -> AgentId {
    AgentId::new(name)
}

fn contact(agent: &str) -> String {
    format!("sip:{agent}@10.0.0.7:5070")
}

/// `main` with the documented defaults: 15 s ring, first announcement
/// after 5 s then every 30 s, 300 s maximum wait ending in hang-up, no
/// autopause.
fn cfg() -> QueueConfig {
    QueueConfig::new(Q, vec![aid("a1"), aid("a2"), aid("a3")])
}

fn node() -> QueueNode {
    QueueNode::new(vec![cfg()])
}

fn node_with(f: impl FnOnce(&mut QueueConfig)) -> QueueNode {
    let mut c = cfg();
    f(&mut c);
    QueueNode::new(vec![c])
}

/// Everything the node produced since the last call, in order.
fn out(n: &mut QueueNode) -> (Vec<QueueAction>, Vec<StoreCmd>) {
    let actions = std::iter::from_fn(|| n.poll_event()).collect();
    let store = std::iter::from_fn(|| n.poll_store()).collect();
    (actions, store)
}

/// Fires every timer up to `until` at its own time, returning what
/// happened in order; afterwards no timer is left in the past.
fn advance(n: &mut QueueNode, until: Instant) -> (Vec<QueueAction>, Vec<StoreCmd>) {
    let (mut actions, mut store) = out(n);
    for _ in 0..100_000 {
        match n.poll_timeout() {
            Some(t) if t <= until => {
                n.handle_timeout(t);
                let (a, st) = out(n);
                actions.extend(a);
                store.extend(st);
            }
            _ => break,
        }
    }
    n.handle_timeout(until);
    let (a, st) = out(n);
    actions.extend(a);
    store.extend(st);
    if let Some(t) = n.poll_timeout() {
        assert!(t > until, "a timer left in the past");
    }
    (actions, store)
}

fn nothing() -> (Vec<QueueAction>, Vec<StoreCmd>) {
    (vec![], vec![])
}

fn ring(caller: u64, agent: &str) -> QueueAction {
    QueueAction::RingAgent {
        caller: CallerId(caller),
        agent: aid(agent),
        contact: contact(agent),
    }
}

fn cancel(caller: u64, agent: &str) -> QueueAction {
    QueueAction::CancelRing {
        caller: CallerId(caller),
        agent: aid(agent),
    }
}

fn connect(caller: u64, agent: &str) -> QueueAction {
    QueueAction::Connect {
        caller: CallerId(caller),
        agent: aid(agent),
    }
}

fn left(caller: u64) -> QueueAction {
    QueueAction::Left {
        caller: CallerId(caller),
    }
}

fn max_wait(caller: u64, action: MaxWaitAction) -> QueueAction {
    QueueAction::MaxWait {
        caller: CallerId(caller),
        action,
    }
}

fn announce(caller: u64, position: usize) -> QueueAction {
    QueueAction::Announce {
        caller: CallerId(caller),
        position,
        estimated_wait: None,
    }
}

fn join_cmd(caller: u64, queue: &str, joined_at_ms: Option<i64>) -> StoreCmd {
    StoreCmd::Join {
        caller: CallerId(caller),
        queue: queue.to_owned(),
        joined_at_ms,
    }
}

fn leave_cmd(entry: i64) -> StoreCmd {
    StoreCmd::Leave { entry }
}

fn ring_ended(entry: i64, agent: &str, tried: bool, autopause: bool) -> StoreCmd {
    StoreCmd::RingEnded {
        entry,
        agent: aid(agent),
        tried,
        autopause,
    }
}

/// The hand-back of an offer the node cannot use.
fn released(entry: i64, agent: &str) -> StoreCmd {
    ring_ended(entry, agent, false, false)
}

fn connected(entry: i64, agent: &str) -> StoreCmd {
    StoreCmd::Connected {
        entry,
        agent: aid(agent),
    }
}

fn position_cmd(caller: u64, entry: i64) -> StoreCmd {
    StoreCmd::Position {
        caller: CallerId(caller),
        entry,
    }
}

/// Joins `caller` at `now` and lets the database answer with `entry`.
fn join_as(n: &mut QueueNode, now: Instant, caller: u64, entry: i64, joined_at_ms: i64) {
    n.join(now, Q, CallerId(caller)).unwrap();
    assert_eq!(out(n), (vec![], vec![join_cmd(caller, Q, None)]));
    n.joined(CallerId(caller), entry, joined_at_ms);
    assert_eq!(out(n), nothing());
}

fn offer(n: &mut QueueNode, now: Instant, entry: i64, agent: &str) {
    n.offer(now, entry, aid(agent), contact(agent));
}

// 1. The whole path of one call.

#[test]
fn a_caller_joins_is_offered_an_agent_connects_and_the_call_ends() {
    let t0 = Instant::now();
    let mut n = node();
    assert_eq!(n.join(t0, Q, CallerId(1)), Ok(()));
    assert_eq!(n.waiting(), 1);
    assert!(n.has_store_pending());
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, None)]));
    assert!(!n.has_store_pending());

    n.joined(CallerId(1), 10, 1_000);
    assert_eq!(out(&mut n), nothing());

    offer(&mut n, t0 + s(1), 10, "a1");
    assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));

    n.agent_answered(t0 + s(4), &aid("a1"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (vec![connect(1, "a1")], vec![connected(10, "a1")])
    );
    assert_eq!(n.waiting(), 0);

    n.call_ended(t0 + s(60), &aid("a1"));
    assert_eq!(
        out(&mut n),
        (vec![], vec![StoreCmd::CallEnded { agent: aid("a1") }])
    );

    // The caller is gone: its leftover timers (ring, announcements,
    // maximum wait) produce nothing, and then there is none left.
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
    assert_eq!(n.poll_timeout(), None);
    // Late answers and failures for the finished call are ignored.
    n.agent_answered(t0 + s(1_001), &aid("a1"), CallerId(1));
    n.agent_failed(t0 + s(1_001), &aid("a1"), CallerId(1));
    n.leave(t0 + s(1_001), CallerId(1));
    assert_eq!(out(&mut n), nothing());
}

#[test]
fn the_join_carries_the_queue_it_was_made_for() {
    let t0 = Instant::now();
    let mut sales = cfg();
    sales.name = "sales".into();
    sales.ring_timeout = s(7);
    let mut n = QueueNode::new(vec![cfg(), sales]);
    n.join(t0, "sales", CallerId(4)).unwrap();
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(4, "sales", None)]));
    n.joined(CallerId(4), 40, 5);
    offer(&mut n, t0, 40, "a2");
    assert_eq!(out(&mut n), (vec![ring(4, "a2")], vec![]));
    // The ring timeout is the one of the caller's queue (7 s, not 15 s).
    assert_eq!(advance(&mut n, t0 + s(6)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(7)),
        (
            vec![cancel(4, "a2")],
            vec![ring_ended(40, "a2", true, false)]
        )
    );
}

// 2. Ring timeout and agent failure.

#[test]
fn a_ring_timeout_cancels_the_ring_and_frees_the_agent_with_the_queue_autopause() {
    for autopause in [false, true] {
        let t0 = Instant::now();
        let mut n = node_with(|c| c.autopause = autopause);
        join_as(&mut n, t0, 1, 10, 1_000);
        offer(&mut n, t0 + s(1), 10, "a1");
        assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));

        // One second before the ring timeout: nothing (the announcement
        // at 5 s is skipped while ringing).
        assert_eq!(advance(&mut n, t0 + s(15)), nothing());
        assert_eq!(
            advance(&mut n, t0 + s(16)),
            (
                vec![cancel(1, "a1")],
                vec![ring_ended(10, "a1", true, autopause)]
            ),
            "autopause = {autopause}"
        );
        assert_eq!(n.waiting(), 1);
        // The caller keeps its place: the next announcement asks for it.
        assert_eq!(
            advance(&mut n, t0 + s(35)),
            (vec![], vec![position_cmd(1, 10)])
        );
        // The failure report of the cancelled leg changes nothing.
        n.agent_failed(t0 + s(36), &aid("a1"), CallerId(1));
        assert_eq!(out(&mut n), nothing());
        // The same agent may be offered again, with a fresh ring timeout.
        offer(&mut n, t0 + s(40), 10, "a1");
        assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));
        assert_eq!(advance(&mut n, t0 + s(54)), nothing());
        assert_eq!(
            advance(&mut n, t0 + s(55)),
            (
                vec![cancel(1, "a1")],
                vec![ring_ended(10, "a1", true, autopause)]
            )
        );
    }
}

#[test]
fn an_agent_that_fails_is_freed_as_tried_without_cancel_or_autopause() {
    let t0 = Instant::now();
    let mut n = node_with(|c| c.autopause = true);
    join_as(&mut n, t0, 1, 10, 1_000);
    offer(&mut n, t0 + s(1), 10, "a1");
    assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));
    n.agent_failed(t0 + s(3), &aid("a1"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (vec![], vec![ring_ended(10, "a1", true, false)])
    );
    // The ring timer of the failed ring fires nothing.
    assert_eq!(
        advance(&mut n, t0 + s(20)),
        (vec![], vec![position_cmd(1, 10)])
    );
    assert_eq!(n.waiting(), 1);
    // A failure for an agent that is not ringing for this caller is
    // ignored.
    n.agent_failed(t0 + s(21), &aid("a2"), CallerId(1));
    n.agent_failed(t0 + s(21), &aid("a1"), CallerId(99));
    assert_eq!(out(&mut n), nothing());
}

// 3. Maximum wait.

#[test]
fn the_maximum_wait_while_not_ringing_takes_the_caller_out() {
    for action in [MaxWaitAction::Hangup, MaxWaitAction::ReturnToMenu] {
        let t0 = Instant::now();
        let mut n = node_with(|c| {
            c.max_wait = s(60);
            c.on_max_wait = action;
        });
        join_as(&mut n, t0, 1, 10, 1_000);
        assert_eq!(
            advance(&mut n, t0 + s(59)),
            (vec![], vec![position_cmd(1, 10), position_cmd(1, 10)])
        );
        assert_eq!(
            advance(&mut n, t0 + s(60)),
            (vec![max_wait(1, action)], vec![leave_cmd(10)])
        );
        assert_eq!(n.waiting(), 0);
        // Its entry is no longer this node's: an offer is handed back.
        offer(&mut n, t0 + s(61), 10, "a1");
        assert_eq!(out(&mut n), (vec![], vec![released(10, "a1")]));
        assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
        // It may join again (return to the menu, then the queue again).
        assert_eq!(n.join(t0 + s(1_000), Q, CallerId(1)), Ok(()));
    }
}

#[test]
fn the_maximum_wait_before_the_database_answered_deletes_the_entry_later() {
    let t0 = Instant::now();
    let mut n = node_with(|c| c.max_wait = s(60));
    n.join(t0, Q, CallerId(1)).unwrap();
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, None)]));
    // Announcements need the entry: none is asked for.
    assert_eq!(
        advance(&mut n, t0 + s(60)),
        (vec![max_wait(1, MaxWaitAction::Hangup)], vec![])
    );
    // The insert lands after all: it is deleted again.
    n.joined(CallerId(1), 10, 1_000);
    assert_eq!(out(&mut n), (vec![], vec![leave_cmd(10)]));
    offer(&mut n, t0 + s(61), 10, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(10, "a1")]));
}

#[test]
fn the_maximum_wait_during_a_ring_waits_for_the_ring_timeout() {
    let t0 = Instant::now();
    let mut n = node_with(|c| {
        c.max_wait = s(60);
        c.on_max_wait = MaxWaitAction::ReturnToMenu;
    });
    join_as(&mut n, t0, 1, 10, 1_000);
    assert_eq!(
        advance(&mut n, t0 + s(50)),
        (vec![], vec![position_cmd(1, 10), position_cmd(1, 10)])
    );
    offer(&mut n, t0 + s(50), 10, "a1");
    assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));
    // The maximum wait passes at 60 s: the ring goes on.
    assert_eq!(advance(&mut n, t0 + s(64)), nothing());
    assert_eq!(n.waiting(), 1);
    // No announcement for an expired caller, and no new agent either.
    n.position(CallerId(1), 1);
    offer(&mut n, t0 + s(64), 10, "a2");
    assert_eq!(out(&mut n), (vec![], vec![released(10, "a2")]));
    // The ring times out at 65 s: then the caller is out.
    assert_eq!(
        advance(&mut n, t0 + s(65)),
        (
            vec![cancel(1, "a1"), max_wait(1, MaxWaitAction::ReturnToMenu)],
            vec![ring_ended(10, "a1", true, false), leave_cmd(10)]
        )
    );
    assert_eq!(n.waiting(), 0);
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

#[test]
fn the_maximum_wait_during_a_ring_waits_for_the_agent_failure() {
    let t0 = Instant::now();
    let mut n = node_with(|c| {
        c.max_wait = s(60);
        c.autopause = true;
    });
    join_as(&mut n, t0, 1, 10, 1_000);
    assert_eq!(
        advance(&mut n, t0 + s(50)),
        (vec![], vec![position_cmd(1, 10), position_cmd(1, 10)])
    );
    offer(&mut n, t0 + s(50), 10, "a1");
    assert_eq!(advance(&mut n, t0 + s(61)), (vec![ring(1, "a1")], vec![]));
    n.agent_failed(t0 + s(62), &aid("a1"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (
            vec![max_wait(1, MaxWaitAction::Hangup)],
            vec![ring_ended(10, "a1", true, false), leave_cmd(10)]
        )
    );
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

#[test]
fn an_answer_after_the_maximum_wait_during_the_ring_still_connects() {
    let t0 = Instant::now();
    let mut n = node_with(|c| c.max_wait = s(60));
    join_as(&mut n, t0, 1, 10, 1_000);
    assert_eq!(
        advance(&mut n, t0 + s(50)),
        (vec![], vec![position_cmd(1, 10), position_cmd(1, 10)])
    );
    offer(&mut n, t0 + s(50), 10, "a1");
    // The maximum wait passes at 60 s, during the ring.
    assert_eq!(advance(&mut n, t0 + s(64)), (vec![ring(1, "a1")], vec![]));
    n.agent_answered(t0 + s(64), &aid("a1"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (vec![connect(1, "a1")], vec![connected(10, "a1")])
    );
    assert_eq!(n.waiting(), 0);
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

#[test]
fn the_maximum_wait_during_a_ring_all_waits_for_the_last_ring() {
    let t0 = Instant::now();
    let mut n = node_with(|c| c.max_wait = s(60));
    join_as(&mut n, t0, 1, 10, 1_000);
    assert_eq!(advance(&mut n, t0 + s(50)).0, vec![]);
    offer(&mut n, t0 + s(50), 10, "a1");
    offer(&mut n, t0 + s(55), 10, "a2");
    assert_eq!(out(&mut n), (vec![ring(1, "a1"), ring(1, "a2")], vec![]));
    // a1 times out at 65 s, after the maximum wait: a2 still rings.
    assert_eq!(
        advance(&mut n, t0 + s(65)),
        (
            vec![cancel(1, "a1")],
            vec![ring_ended(10, "a1", true, false)]
        )
    );
    assert_eq!(n.waiting(), 1);
    n.agent_failed(t0 + s(66), &aid("a2"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (
            vec![max_wait(1, MaxWaitAction::Hangup)],
            vec![ring_ended(10, "a2", true, false), leave_cmd(10)]
        )
    );
}

// 4. Announcements.

#[test]
fn positions_are_asked_at_first_announce_after_then_every_announce_every() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    assert_eq!(advance(&mut n, t0 + s(4)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(5)),
        (vec![], vec![position_cmd(1, 10)])
    );
    n.position(CallerId(1), 3);
    assert_eq!(out(&mut n), (vec![announce(1, 3)], vec![]));
    assert_eq!(advance(&mut n, t0 + s(34)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(35)),
        (vec![], vec![position_cmd(1, 10)])
    );
    n.position(CallerId(1), 2);
    assert_eq!(out(&mut n), (vec![announce(1, 2)], vec![]));
    // Positions are 1-based: a zero from the database is read as "next".
    n.position(CallerId(1), 0);
    assert_eq!(out(&mut n), (vec![announce(1, 1)], vec![]));
    // A position for a caller this node does not hold is ignored.
    n.position(CallerId(77), 4);
    assert_eq!(out(&mut n), nothing());

    // Ringing from 60 s to 75 s: the announcement due at 65 s is skipped,
    // and a late answer to an earlier question is not played.
    offer(&mut n, t0 + s(60), 10, "a1");
    assert_eq!(advance(&mut n, t0 + s(74)), (vec![ring(1, "a1")], vec![]));
    n.position(CallerId(1), 1);
    assert_eq!(out(&mut n), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(75)),
        (
            vec![cancel(1, "a1")],
            vec![ring_ended(10, "a1", true, false)]
        )
    );
    // The rhythm goes on: next question at 95 s.
    assert_eq!(advance(&mut n, t0 + s(94)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(95)),
        (vec![], vec![position_cmd(1, 10)])
    );
    n.position(CallerId(1), 1);
    assert_eq!(out(&mut n), (vec![announce(1, 1)], vec![]));
}

#[test]
fn no_position_is_asked_before_the_database_answered_the_join() {
    let t0 = Instant::now();
    let mut n = node();
    n.join(t0, Q, CallerId(1)).unwrap();
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, None)]));
    assert_eq!(advance(&mut n, t0 + s(5)), nothing());
    n.joined(CallerId(1), 10, 1_000);
    assert_eq!(advance(&mut n, t0 + s(34)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(35)),
        (vec![], vec![position_cmd(1, 10)])
    );
}

#[test]
fn a_zero_first_announce_after_asks_at_once() {
    let t0 = Instant::now();
    let mut n = node_with(|c| {
        c.first_announce_after = Duration::ZERO;
        c.announce_every = s(10);
    });
    join_as(&mut n, t0, 1, 10, 1_000);
    assert_eq!(advance(&mut n, t0), (vec![], vec![position_cmd(1, 10)]));
    assert_eq!(advance(&mut n, t0 + s(9)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(10)),
        (vec![], vec![position_cmd(1, 10)])
    );
}

#[test]
fn a_late_timer_run_asks_once_and_keeps_the_period_from_then() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    // The runtime was late by more than a period: one question, not a
    // burst of them.
    n.handle_timeout(t0 + s(100));
    assert_eq!(out(&mut n), (vec![], vec![position_cmd(1, 10)]));
    assert_eq!(n.poll_timeout(), Some(t0 + s(130)));
    assert_eq!(advance(&mut n, t0 + s(129)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(130)),
        (vec![], vec![position_cmd(1, 10)])
    );
}

// 5. Leaving.

#[test]
fn leaving_before_the_database_answered_deletes_the_entry_when_it_arrives() {
    let t0 = Instant::now();
    let mut n = node();
    n.join(t0, Q, CallerId(1)).unwrap();
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, None)]));
    n.leave(t0 + s(2), CallerId(1));
    assert_eq!(out(&mut n), (vec![left(1)], vec![]));
    assert_eq!(n.waiting(), 0);
    // Leaving twice is acknowledged once.
    n.leave(t0 + s(3), CallerId(1));
    assert_eq!(out(&mut n), nothing());

    n.joined(CallerId(1), 10, 1_000);
    assert_eq!(out(&mut n), (vec![], vec![leave_cmd(10)]));
    offer(&mut n, t0 + s(4), 10, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(10, "a1")]));
    // No timer of the caller fires anything any more.
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
    assert_eq!(n.poll_timeout(), None);
}

#[test]
fn a_caller_who_left_before_the_database_answered_may_join_again() {
    let t0 = Instant::now();
    let mut n = node();
    n.join(t0, Q, CallerId(1)).unwrap();
    n.leave(t0 + s(1), CallerId(1));
    assert_eq!(out(&mut n), (vec![left(1)], vec![join_cmd(1, Q, None)]));
    // `*`, back to the menu, and into the queue again while the database
    // is still behind: the caller is not waiting, so it may join.
    assert_eq!(n.join(t0 + s(3), Q, CallerId(1)), Ok(()));
    assert_eq!(n.waiting(), 1);
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, None)]));
    // Both inserts answer with the same row (one per node and caller):
    // the caller waits in it.
    n.joined(CallerId(1), 10, 1_000);
    n.joined(CallerId(1), 10, 1_000);
    assert_eq!(out(&mut n), nothing());
    offer(&mut n, t0 + s(4), 10, "a1");
    assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));
    // Its timers count from the second join: the first question at 8 s.
    n.agent_failed(t0 + s(5), &aid("a1"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (vec![], vec![ring_ended(10, "a1", true, false)])
    );
    assert_eq!(advance(&mut n, t0 + s(7)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(8)),
        (vec![], vec![position_cmd(1, 10)])
    );
    // Every 30 s up to 278 s, then the maximum wait at 303 s (not 300 s).
    assert_eq!(
        advance(&mut n, t0 + s(302)),
        (vec![], vec![position_cmd(1, 10); 9])
    );
    assert_eq!(
        advance(&mut n, t0 + s(303)),
        (
            vec![max_wait(1, MaxWaitAction::Hangup)],
            vec![leave_cmd(10)]
        )
    );
}

#[test]
fn leaving_while_waiting_deletes_the_entry() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    n.leave(t0 + s(2), CallerId(1));
    assert_eq!(out(&mut n), (vec![left(1)], vec![leave_cmd(10)]));
    assert_eq!(n.waiting(), 0);
    n.leave(t0 + s(3), CallerId(1));
    n.leave(t0 + s(3), CallerId(2));
    assert_eq!(out(&mut n), nothing());
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
    // It may join again at once.
    assert_eq!(n.join(t0 + s(1_000), Q, CallerId(1)), Ok(()));
}

#[test]
fn leaving_while_ringing_cancels_every_ring() {
    let t0 = Instant::now();
    let mut n = node_with(|c| c.autopause = true);
    join_as(&mut n, t0, 1, 10, 1_000);
    offer(&mut n, t0 + s(1), 10, "a1");
    offer(&mut n, t0 + s(1), 10, "a2");
    assert_eq!(out(&mut n), (vec![ring(1, "a1"), ring(1, "a2")], vec![]));
    n.leave(t0 + s(3), CallerId(1));
    // The entry's deletion frees the agents: no RingEnded of its own.
    assert_eq!(
        out(&mut n),
        (
            vec![cancel(1, "a1"), cancel(1, "a2"), left(1)],
            vec![leave_cmd(10)]
        )
    );
    // The legs' late answers and failures, and the ring timers, change
    // nothing.
    n.agent_answered(t0 + s(4), &aid("a1"), CallerId(1));
    n.agent_failed(t0 + s(4), &aid("a2"), CallerId(1));
    assert_eq!(out(&mut n), nothing());
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

// 6. Stale and duplicate offers.

#[test]
fn an_offer_for_an_entry_that_is_not_this_nodes_hands_the_agent_back() {
    let t0 = Instant::now();
    let mut n = node();
    offer(&mut n, t0, 99, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(99, "a1")]));

    join_as(&mut n, t0, 1, 10, 1_000);
    offer(&mut n, t0, 11, "a2");
    assert_eq!(out(&mut n), (vec![], vec![released(11, "a2")]));

    // The caller left (the Leave may not be written yet): handed back.
    n.leave(t0 + s(1), CallerId(1));
    assert_eq!(out(&mut n), (vec![left(1)], vec![leave_cmd(10)]));
    offer(&mut n, t0 + s(1), 10, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(10, "a1")]));
    // Nothing of this leaves a timer that fires anything.
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

#[test]
fn an_offer_for_a_caller_leaving_before_the_database_answered_is_handed_back() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    // Lease lost: the caller joins again, and leaves before the answer.
    n.rejoin_all();
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, Some(1_000))]));
    n.leave(t0 + s(1), CallerId(1));
    assert_eq!(out(&mut n), (vec![left(1)], vec![]));
    offer(&mut n, t0 + s(1), 10, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(10, "a1")]));
    n.joined(CallerId(1), 20, 1_000);
    assert_eq!(out(&mut n), (vec![], vec![leave_cmd(20)]));
    offer(&mut n, t0 + s(1), 20, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(20, "a1")]));
}

#[test]
fn a_duplicate_offer_of_a_ringing_agent_is_ignored() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    offer(&mut n, t0 + s(1), 10, "a1");
    assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));
    // The resync after a lost notification offers it again.
    offer(&mut n, t0 + s(3), 10, "a1");
    assert_eq!(out(&mut n), nothing());
    // The ring timeout still counts from the first offer: one cancel.
    assert_eq!(advance(&mut n, t0 + s(15)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(16)),
        (
            vec![cancel(1, "a1")],
            vec![ring_ended(10, "a1", true, false)]
        )
    );
    assert_eq!(advance(&mut n, t0 + s(30)), nothing());
}

// 7. Lost lease.

#[test]
fn rejoin_all_cancels_the_rings_and_joins_everyone_again_in_join_order() {
    let t0 = Instant::now();
    let mut n = node();
    // Joined in the order 5, 3, 8, 6 (5 and 3 in the same millisecond).
    join_as(&mut n, t0, 5, 10, 1_000);
    join_as(&mut n, t0 + s(1), 3, 11, 1_000);
    join_as(&mut n, t0 + s(2), 8, 12, 2_000);
    join_as(&mut n, t0 + s(3), 6, 13, 3_000);
    offer(&mut n, t0 + s(4), 11, "a1");
    offer(&mut n, t0 + s(4), 13, "a2");
    offer(&mut n, t0 + s(4), 13, "a3");
    assert_eq!(
        out(&mut n),
        (vec![ring(3, "a1"), ring(6, "a2"), ring(6, "a3")], vec![])
    );

    n.rejoin_all();
    let (actions, store) = out(&mut n);
    // The reaper freed the agents: CancelRing, but no RingEnded.
    let mut cancels = actions.clone();
    cancels.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(
        cancels,
        vec![cancel(3, "a1"), cancel(6, "a2"), cancel(6, "a3")]
    );
    assert_eq!(
        store,
        vec![
            join_cmd(5, Q, Some(1_000)),
            join_cmd(3, Q, Some(1_000)),
            join_cmd(8, Q, Some(2_000)),
            join_cmd(6, Q, Some(3_000)),
        ]
    );
    assert_eq!(n.waiting(), 4);

    // The old entries are gone: offers for them are handed back, and the
    // cancelled legs' answers connect nothing.
    offer(&mut n, t0 + s(5), 11, "a1");
    assert_eq!(out(&mut n), (vec![], vec![released(11, "a1")]));
    n.agent_answered(t0 + s(5), &aid("a2"), CallerId(6));
    assert_eq!(out(&mut n), nothing());

    // The new entries work as before.
    for (c, e) in [(5, 20), (3, 21), (8, 22), (6, 23)] {
        n.joined(CallerId(c), e, 1_000);
    }
    assert_eq!(out(&mut n), nothing());
    offer(&mut n, t0 + s(6), 23, "a2");
    assert_eq!(out(&mut n), (vec![ring(6, "a2")], vec![]));
    n.agent_answered(t0 + s(7), &aid("a2"), CallerId(6));
    assert_eq!(
        out(&mut n),
        (vec![connect(6, "a2")], vec![connected(23, "a2")])
    );
}

#[test]
fn rejoin_all_joins_a_caller_not_answered_yet_and_drops_one_that_left() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    n.join(t0 + s(1), Q, CallerId(2)).unwrap();
    n.join(t0 + s(1), Q, CallerId(3)).unwrap();
    n.leave(t0 + s(2), CallerId(3));
    assert_eq!(
        out(&mut n),
        (
            vec![left(3)],
            vec![join_cmd(2, Q, None), join_cmd(3, Q, None)]
        )
    );
    n.rejoin_all();
    // Caller 2 has no join time yet (its first insert is still on its way;
    // both give the same row); caller 3 is out already.
    assert_eq!(
        out(&mut n),
        (
            vec![],
            vec![join_cmd(2, Q, None), join_cmd(1, Q, Some(1_000))]
        )
    );
    assert_eq!(n.waiting(), 2);
    // The first insert of caller 3 lands after all: deleted again.
    n.joined(CallerId(3), 12, 1_100);
    assert_eq!(out(&mut n), (vec![], vec![leave_cmd(12)]));
}

#[test]
fn rejoin_all_ends_a_caller_whose_maximum_wait_passed_during_a_ring() {
    let t0 = Instant::now();
    let mut n = node_with(|c| c.max_wait = s(60));
    join_as(&mut n, t0, 1, 10, 1_000);
    join_as(&mut n, t0 + s(1), 2, 11, 2_000);
    assert_eq!(
        advance(&mut n, t0 + s(50)),
        (
            vec![],
            vec![
                position_cmd(1, 10),
                position_cmd(2, 11),
                position_cmd(1, 10),
                position_cmd(2, 11)
            ]
        )
    );
    offer(&mut n, t0 + s(50), 10, "a1");
    assert_eq!(advance(&mut n, t0 + s(60)), (vec![ring(1, "a1")], vec![]));
    // Caller 1's maximum wait passed during the ring; then the lease is
    // lost and the ring cancelled: the ring is over, so is the wait (the
    // reaper deleted the entry already).
    n.rejoin_all();
    assert_eq!(
        out(&mut n),
        (
            vec![cancel(1, "a1"), max_wait(1, MaxWaitAction::Hangup)],
            vec![join_cmd(2, Q, Some(2_000))]
        )
    );
    assert_eq!(n.waiting(), 1);
    n.joined(CallerId(2), 21, 2_000);
    assert_eq!(
        advance(&mut n, t0 + s(61)),
        (
            vec![max_wait(2, MaxWaitAction::Hangup)],
            vec![leave_cmd(21)]
        )
    );
    assert_eq!(n.waiting(), 0);
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

// 8. Ring-all.

#[test]
fn ring_all_connects_the_first_answer_and_cancels_the_others() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    offer(&mut n, t0 + s(1), 10, "a1");
    offer(&mut n, t0 + s(1), 10, "a2");
    offer(&mut n, t0 + s(1), 10, "a3");
    assert_eq!(
        out(&mut n),
        (vec![ring(1, "a1"), ring(1, "a2"), ring(1, "a3")], vec![])
    );
    n.agent_answered(t0 + s(2), &aid("a2"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (
            vec![connect(1, "a2"), cancel(1, "a1"), cancel(1, "a3")],
            vec![connected(10, "a2")]
        )
    );
    // The losers' answers (a race with the CANCEL) and failures change
    // nothing; nor do their ring timers.
    n.agent_answered(t0 + s(2), &aid("a1"), CallerId(1));
    n.agent_failed(t0 + s(2), &aid("a3"), CallerId(1));
    assert_eq!(out(&mut n), nothing());
    assert_eq!(advance(&mut n, t0 + s(1_000)), nothing());
}

#[test]
fn ring_all_keeps_ringing_the_others_when_one_fails() {
    let t0 = Instant::now();
    let mut n = node();
    join_as(&mut n, t0, 1, 10, 1_000);
    offer(&mut n, t0 + s(1), 10, "a1");
    offer(&mut n, t0 + s(2), 10, "a2");
    assert_eq!(out(&mut n), (vec![ring(1, "a1"), ring(1, "a2")], vec![]));
    n.agent_failed(t0 + s(3), &aid("a1"), CallerId(1));
    assert_eq!(
        out(&mut n),
        (vec![], vec![ring_ended(10, "a1", true, false)])
    );
    // a2 rings on and times out on its own clock (17 s).
    assert_eq!(advance(&mut n, t0 + s(16)), nothing());
    assert_eq!(
        advance(&mut n, t0 + s(17)),
        (
            vec![cancel(1, "a2")],
            vec![ring_ended(10, "a2", true, false)]
        )
    );
    // An answer from an agent that is not ringing any more connects
    // nothing.
    n.agent_answered(t0 + s(18), &aid("a2"), CallerId(1));
    assert_eq!(out(&mut n), nothing());
    assert_eq!(n.waiting(), 1);
}

// 9. Errors.

#[test]
fn joining_an_unknown_queue_or_twice_is_refused() {
    let t0 = Instant::now();
    let mut n = node();
    assert_eq!(
        n.join(t0, "nope", CallerId(1)),
        Err(QueueError::UnknownQueue("nope".into()))
    );
    assert_eq!(out(&mut n), nothing());
    assert_eq!(n.waiting(), 0);
    assert_eq!(n.poll_timeout(), None);

    assert_eq!(n.join(t0, Q, CallerId(1)), Ok(()));
    assert_eq!(
        n.join(t0, Q, CallerId(1)),
        Err(QueueError::AlreadyQueued(CallerId(1)))
    );
    assert_eq!(out(&mut n), (vec![], vec![join_cmd(1, Q, None)]));
    n.joined(CallerId(1), 10, 1_000);
    assert_eq!(
        n.join(t0 + s(1), Q, CallerId(1)),
        Err(QueueError::AlreadyQueued(CallerId(1)))
    );
    // Ringing counts as waiting too.
    offer(&mut n, t0 + s(1), 10, "a1");
    assert_eq!(out(&mut n), (vec![ring(1, "a1")], vec![]));
    assert_eq!(
        n.join(t0 + s(1), Q, CallerId(1)),
        Err(QueueError::AlreadyQueued(CallerId(1)))
    );
    assert_eq!(out(&mut n), nothing());
    assert_eq!(n.waiting(), 1);
    assert_eq!(n.queues().len(), 1);
}

// 10. Random input sequences.

mod prop {
    use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
    use std::time::{Duration, Instant};

    use ivr12333::queue::shared::{QueueNode, StoreCmd};
    use ivr12333::queue::{AgentId, CallerId, MaxWaitAction, QueueAction, QueueConfig};
    use proptest::prelude::{
        ProptestConfig, TestCaseError, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
    };
    use proptest::strategy::Strategy as _;
    use proptest::test_runner::FileFailurePersistence;

    const AGENTS: [&str; 4] = ["a0", "a1", "a2", "a3"];

    #[derive(Debug, Clone)]
    enum Op {
        /// Caller, queue.
        Join(u8, u8),
        /// Apply up to this many pending database changes.
        Apply(u8),
        /// Entry pick (a row of the database, or an unknown one), agent.
        Offer(u8, u8),
        Leave(u8),
        /// Pick among the open rings.
        Answer(u8),
        Fail(u8),
        /// An answer or failure from an arbitrary caller and agent.
        StrayAnswer(u8, u8),
        StrayFail(u8, u8),
        CallEnded(u8),
        /// The lease was lost: the reaper deleted every entry.
        Rejoin,
        /// Milliseconds.
        Wait(u32),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..8, 0u8..2).prop_map(|(c, q)| Op::Join(c, q)),
            5 => (1u8..5).prop_map(Op::Apply),
            4 => (any::<u8>(), 0u8..4).prop_map(|(e, a)| Op::Offer(e, a)),
            1 => (0u8..8).prop_map(Op::Leave),
            2 => any::<u8>().prop_map(Op::Answer),
            2 => any::<u8>().prop_map(Op::Fail),
            1 => (0u8..8, 0u8..4).prop_map(|(c, a)| Op::StrayAnswer(c, a)),
            1 => (0u8..8, 0u8..4).prop_map(|(c, a)| Op::StrayFail(c, a)),
            1 => (0u8..4).prop_map(Op::CallEnded),
            2 => proptest::strategy::Just(Op::Rejoin),
            4 => (0u32..3_000).prop_map(Op::Wait),
            1 => (0u32..20_000).prop_map(Op::Wait),
        ]
    }

    fn queue_cfg(
        name: &str,
        (ring, first, every, max): (u64, u64, u64, u64),
        autopause: bool,
        hangup: bool,
    ) -> QueueConfig {
        let mut q = QueueConfig::new(name, AGENTS.iter().map(|a| AgentId::new(*a)).collect());
        q.ring_timeout = Duration::from_secs(ring);
        q.first_announce_after = Duration::from_secs(first);
        q.announce_every = Duration::from_secs(every);
        q.max_wait = Duration::from_secs(max);
        q.autopause = autopause;
        q.on_max_wait = if hangup {
            MaxWaitAction::Hangup
        } else {
            MaxWaitAction::ReturnToMenu
        };
        q
    }

    fn durations() -> impl proptest::strategy::Strategy<Value = (u64, u64, u64, u64)> {
        (1u64..9, 0u64..5, 1u64..7, 1u64..40)
    }

    fn contact(agent: &AgentId) -> String {
        format!("sip:{agent}@10.0.0.7:5070")
    }

    struct Row {
        caller: CallerId,
        queue: String,
        at: i64,
    }

    /// The node, a stand-in for the database (rows of this node's callers,
    /// applying the node's changes in order), and what the runtime knows
    /// from the actions.
    struct World {
        t0: Instant,
        now: Instant,
        cfgs: Vec<QueueConfig>,
        node: QueueNode,
        pending: VecDeque<StoreCmd>,
        rows: BTreeMap<i64, Row>,
        next_id: i64,
        handed: HashSet<i64>,
        /// Caller → (queue index, when it joined).
        waiting: HashMap<CallerId, (usize, Instant)>,
        joined_at: HashMap<CallerId, i64>,
        ringing: HashSet<(CallerId, AgentId)>,
        /// Callers asked to leave by the current input.
        leaving: HashSet<CallerId>,
    }

    impl World {
        fn new(cfgs: Vec<QueueConfig>) -> World {
            let t0 = Instant::now();
            World {
                t0,
                now: t0,
                node: QueueNode::new(cfgs.clone()),
                cfgs,
                pending: VecDeque::new(),
                rows: BTreeMap::new(),
                next_id: 1,
                handed: HashSet::new(),
                waiting: HashMap::new(),
                joined_at: HashMap::new(),
                ringing: HashSet::new(),
                leaving: HashSet::new(),
            }
        }

        fn now_ms(&self) -> i64 {
            i64::try_from((self.now - self.t0).as_millis()).unwrap()
        }

        fn rings_of(&self, caller: CallerId) -> usize {
            self.ringing.iter().filter(|(c, _)| *c == caller).count()
        }

        /// Drains the node, checks what it produced, and queues the
        /// database changes.
        fn collect(&mut self) -> Result<(Vec<QueueAction>, Vec<StoreCmd>), TestCaseError> {
            let actions: Vec<QueueAction> = std::iter::from_fn(|| self.node.poll_event()).collect();
            let store: Vec<StoreCmd> = std::iter::from_fn(|| self.node.poll_store()).collect();
            prop_assert!(!self.node.has_store_pending());
            let was_waiting: HashSet<CallerId> = self.waiting.keys().copied().collect();
            let mut ended: Vec<CallerId> = Vec::new();
            let mut connects = Vec::new();
            for a in &actions {
                match a {
                    QueueAction::RingAgent {
                        caller,
                        agent,
                        contact: c,
                    } => {
                        prop_assert!(!ended.contains(caller), "{:?} after the end", a);
                        let &(qi, at) = self.waiting.get(caller).ok_or_else(|| {
                            TestCaseError::fail(format!("ring for a caller not waiting: {a:?}"))
                        })?;
                        prop_assert!(
                            self.now < at + self.cfgs[qi].max_wait,
                            "ring after the maximum wait: {:?}",
                            a
                        );
                        prop_assert_eq!(c, &contact(agent));
                        prop_assert!(
                            self.ringing.insert((*caller, agent.clone())),
                            "second ring without an end: {:?}",
                            a
                        );
                    }
                    QueueAction::CancelRing { caller, agent } => {
                        prop_assert!(
                            self.ringing.remove(&(*caller, agent.clone())),
                            "cancel of a ring that does not exist: {:?}",
                            a
                        );
                    }
                    QueueAction::Connect { caller, agent } => {
                        prop_assert!(!ended.contains(caller), "{:?} after the end", a);
                        prop_assert!(self.waiting.contains_key(caller));
                        prop_assert!(
                            self.ringing.remove(&(*caller, agent.clone())),
                            "connect without a ring: {:?}",
                            a
                        );
                        ended.push(*caller);
                        connects.push(agent.clone());
                    }
                    QueueAction::Announce {
                        caller,
                        position,
                        estimated_wait,
                    } => {
                        prop_assert!(!ended.contains(caller), "{:?} after the end", a);
                        prop_assert!(self.waiting.contains_key(caller));
                        prop_assert_eq!(self.rings_of(*caller), 0, "announce while ringing");
                        prop_assert!(*position >= 1);
                        prop_assert_eq!(*estimated_wait, None);
                    }
                    QueueAction::MaxWait { caller, action } => {
                        prop_assert!(!ended.contains(caller), "{:?} after the end", a);
                        let &(qi, at) = self.waiting.get(caller).ok_or_else(|| {
                            TestCaseError::fail(format!("max wait of a caller not waiting: {a:?}"))
                        })?;
                        prop_assert!(self.now >= at + self.cfgs[qi].max_wait, "early {:?}", a);
                        prop_assert_eq!(*action, self.cfgs[qi].on_max_wait);
                        prop_assert_eq!(self.rings_of(*caller), 0, "max wait while ringing");
                        ended.push(*caller);
                    }
                    QueueAction::Left { caller } => {
                        prop_assert!(!ended.contains(caller), "{:?} after the end", a);
                        prop_assert!(self.waiting.contains_key(caller));
                        prop_assert!(self.leaving.contains(caller), "left unasked");
                        prop_assert_eq!(self.rings_of(*caller), 0, "left while ringing");
                        ended.push(*caller);
                    }
                }
            }
            for c in &ended {
                // A finished caller has no ring left (Connect cancels the
                // others in the same batch) and gets nothing more.
                prop_assert_eq!(self.rings_of(*c), 0, "rings outlive the caller");
                self.waiting.remove(c);
            }
            let mut connected = Vec::new();
            for cmd in &store {
                match cmd {
                    StoreCmd::Leave { entry } => {
                        prop_assert!(self.handed.contains(entry), "unknown {:?}", cmd);
                    }
                    StoreCmd::Connected { entry, agent } => {
                        prop_assert!(self.handed.contains(entry), "unknown {:?}", cmd);
                        connected.push(agent.clone());
                    }
                    StoreCmd::Position { caller, entry } => {
                        prop_assert!(self.handed.contains(entry), "unknown {:?}", cmd);
                        prop_assert!(was_waiting.contains(caller), "{:?}", cmd);
                        prop_assert_eq!(self.rings_of(*caller), 0, "position while ringing");
                    }
                    StoreCmd::Join { caller, .. } => {
                        prop_assert!(was_waiting.contains(caller), "{:?}", cmd);
                    }
                    StoreCmd::RingEnded { .. } | StoreCmd::CallEnded { .. } => {}
                }
            }
            prop_assert_eq!(connects, connected);
            prop_assert_eq!(self.node.waiting(), self.waiting.len());
            self.pending.extend(store.iter().cloned());
            Ok((actions, store))
        }

        /// Applies the oldest pending change as PostgreSQL would, feeding
        /// the answer back.
        fn apply_one(&mut self) -> Result<bool, TestCaseError> {
            let Some(cmd) = self.pending.pop_front() else {
                return Ok(false);
            };
            match cmd {
                StoreCmd::Join {
                    caller,
                    queue,
                    joined_at_ms,
                } => {
                    let existing = self.rows.iter_mut().find(|(_, r)| r.caller == caller);
                    let (entry, at) = match existing {
                        Some((&id, r)) => {
                            r.queue = queue;
                            (id, r.at)
                        }
                        None => {
                            let id = self.next_id;
                            self.next_id += 1;
                            let at = joined_at_ms.unwrap_or(self.now_ms());
                            self.rows.insert(id, Row { caller, queue, at });
                            (id, at)
                        }
                    };
                    self.handed.insert(entry);
                    if self.waiting.contains_key(&caller) {
                        self.joined_at.insert(caller, at);
                    }
                    self.node.joined(caller, entry, at);
                    let (actions, store) = self.collect()?;
                    prop_assert!(actions.is_empty());
                    prop_assert!(store.len() <= 1);
                }
                StoreCmd::Leave { entry } => {
                    self.rows.remove(&entry);
                }
                StoreCmd::Connected { entry, .. } => {
                    self.rows.remove(&entry);
                }
                StoreCmd::Position { caller, entry } => {
                    if let Some(me) = self.rows.get(&entry) {
                        let key = (me.at, entry);
                        let position = self
                            .rows
                            .iter()
                            .filter(|(id, r)| r.queue == me.queue && (r.at, **id) <= key)
                            .count();
                        let ringing = self.rings_of(caller) > 0;
                        let is_waiting = self.waiting.contains_key(&caller);
                        self.node.position(caller, position);
                        let (actions, store) = self.collect()?;
                        prop_assert!(store.is_empty());
                        if is_waiting && !ringing {
                            // Expired callers are not announced either.
                            prop_assert!(actions.len() <= 1);
                        } else {
                            prop_assert!(actions.is_empty());
                        }
                    }
                }
                StoreCmd::RingEnded { .. } | StoreCmd::CallEnded { .. } => {}
            }
            Ok(true)
        }

        fn apply_all(&mut self) -> Result<(), TestCaseError> {
            for _ in 0..100_000 {
                if !self.apply_one()? {
                    return Ok(());
                }
            }
            Err(TestCaseError::fail("changes never end"))
        }

        fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
            match op {
                Op::Join(c, q) => {
                    let caller = CallerId(u64::from(c));
                    let qi = usize::from(q) % self.cfgs.len();
                    let name = self.cfgs[qi].name.clone();
                    let r = self.node.join(self.now, &name, caller);
                    if self.waiting.contains_key(&caller) {
                        prop_assert!(r.is_err());
                        let (actions, store) = self.collect()?;
                        prop_assert!(actions.is_empty() && store.is_empty());
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        self.waiting.insert(caller, (qi, self.now));
                        self.joined_at.remove(&caller);
                        let (actions, store) = self.collect()?;
                        prop_assert!(actions.is_empty());
                        prop_assert_eq!(
                            store,
                            vec![StoreCmd::Join {
                                caller,
                                queue: name,
                                joined_at_ms: None
                            }]
                        );
                    }
                }
                Op::Apply(k) => {
                    for _ in 0..k {
                        self.apply_one()?;
                    }
                }
                Op::Offer(e, a) => {
                    let ids: Vec<i64> = self.rows.keys().copied().collect();
                    let i = usize::from(e) % (ids.len() + 1);
                    let entry = ids.get(i).copied().unwrap_or(9_999);
                    let owner = self.rows.get(&entry).map(|r| r.caller);
                    let agent = AgentId::new(AGENTS[usize::from(a)]);
                    let dup = owner.is_some_and(|c| self.ringing.contains(&(c, agent.clone())));
                    self.node
                        .offer(self.now, entry, agent.clone(), contact(&agent));
                    let (actions, store) = self.collect()?;
                    if dup {
                        prop_assert!(actions.is_empty() && store.is_empty(), "duplicate rang");
                    } else if actions.is_empty() {
                        prop_assert_eq!(
                            store,
                            vec![StoreCmd::RingEnded {
                                entry,
                                agent,
                                tried: false,
                                autopause: false
                            }]
                        );
                    } else {
                        prop_assert!(store.is_empty());
                        let caller = owner.ok_or_else(|| {
                            TestCaseError::fail("rang for an entry the database does not have")
                        })?;
                        prop_assert_eq!(
                            actions,
                            vec![QueueAction::RingAgent {
                                caller,
                                contact: contact(&agent),
                                agent,
                            }]
                        );
                    }
                }
                Op::Leave(c) => {
                    let caller = CallerId(u64::from(c));
                    let was = self.waiting.contains_key(&caller);
                    let rings = self.rings_of(caller);
                    self.leaving.insert(caller);
                    self.node.leave(self.now, caller);
                    let (actions, store) = self.collect()?;
                    self.leaving.clear();
                    if was {
                        prop_assert_eq!(actions.len(), rings + 1);
                        prop_assert_eq!(actions.last(), Some(&QueueAction::Left { caller }));
                        prop_assert!(store.len() <= 1);
                        prop_assert!(
                            store.iter().all(|s| matches!(s, StoreCmd::Leave { .. })),
                            "{:?}",
                            store
                        );
                    } else {
                        prop_assert!(actions.is_empty() && store.is_empty());
                    }
                }
                Op::Answer(i) | Op::Fail(i) => {
                    let mut open: Vec<(CallerId, AgentId)> = self.ringing.iter().cloned().collect();
                    open.sort();
                    if open.is_empty() {
                        return Ok(());
                    }
                    let (caller, agent) = open[usize::from(i) % open.len()].clone();
                    let others = self.rings_of(caller) - 1;
                    if matches!(op, Op::Answer(_)) {
                        self.node.agent_answered(self.now, &agent, caller);
                        let (actions, store) = self.collect()?;
                        prop_assert_eq!(actions.len(), others + 1);
                        prop_assert_eq!(
                            &actions[0],
                            &QueueAction::Connect {
                                caller,
                                agent: agent.clone()
                            }
                        );
                        prop_assert_eq!(store.len(), 1);
                        prop_assert!(
                            matches!(&store[0], StoreCmd::Connected { agent: a, .. } if *a == agent),
                            "{:?}",
                            store
                        );
                    } else {
                        self.ringing.remove(&(caller, agent.clone()));
                        self.node.agent_failed(self.now, &agent, caller);
                        let (actions, store) = self.collect()?;
                        prop_assert!(
                            matches!(&store[..], [StoreCmd::RingEnded { agent: a, tried: true, autopause: false, .. }, ..] if *a == agent),
                            "{:?}",
                            store
                        );
                        prop_assert!(store.len() <= 2);
                        match &actions[..] {
                            [] => prop_assert_eq!(store.len(), 1),
                            [QueueAction::MaxWait { caller: c, .. }] => prop_assert_eq!(*c, caller),
                            other => prop_assert!(false, "after a failure: {:?}", other),
                        }
                    }
                }
                Op::StrayAnswer(c, a) | Op::StrayFail(c, a) => {
                    let caller = CallerId(u64::from(c));
                    let agent = AgentId::new(AGENTS[usize::from(a)]);
                    if self.ringing.contains(&(caller, agent.clone())) {
                        return Ok(());
                    }
                    if matches!(op, Op::StrayAnswer(..)) {
                        self.node.agent_answered(self.now, &agent, caller);
                    } else {
                        self.node.agent_failed(self.now, &agent, caller);
                    }
                    let (actions, store) = self.collect()?;
                    prop_assert!(actions.is_empty() && store.is_empty(), "stray input acted");
                }
                Op::CallEnded(a) => {
                    let agent = AgentId::new(AGENTS[usize::from(a)]);
                    self.node.call_ended(self.now, &agent);
                    let (actions, store) = self.collect()?;
                    prop_assert!(actions.is_empty());
                    prop_assert_eq!(store, vec![StoreCmd::CallEnded { agent }]);
                }
                Op::Rejoin => {
                    // The runtime re-joins only once everything is written.
                    self.apply_all()?;
                    let old_entry: HashMap<CallerId, i64> =
                        self.rows.iter().map(|(&id, r)| (r.caller, id)).collect();
                    self.rows.clear();
                    let before: Vec<CallerId> = self.waiting.keys().copied().collect();
                    self.node.rejoin_all();
                    let (actions, store) = self.collect()?;
                    let mut rejoined = Vec::new();
                    for cmd in &store {
                        let StoreCmd::Join {
                            caller,
                            joined_at_ms,
                            ..
                        } = cmd
                        else {
                            return Err(TestCaseError::fail(format!("{cmd:?} on re-join")));
                        };
                        prop_assert_eq!(*joined_at_ms, self.joined_at.get(caller).copied());
                        prop_assert!(joined_at_ms.is_some());
                        rejoined.push((*joined_at_ms, old_entry.get(caller).copied(), *caller));
                    }
                    // The database's order: join time, then entry id.
                    prop_assert!(
                        rejoined
                            .windows(2)
                            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
                        "re-joined out of order: {:?}",
                        rejoined
                    );
                    for a in &actions {
                        prop_assert!(
                            matches!(
                                a,
                                QueueAction::CancelRing { .. } | QueueAction::MaxWait { .. }
                            ),
                            "{:?} on re-join",
                            a
                        );
                    }
                    prop_assert!(self.ringing.is_empty());
                    // Everyone still waiting joins again, exactly once.
                    let mut expect: Vec<CallerId> = before
                        .into_iter()
                        .filter(|c| self.waiting.contains_key(c))
                        .collect();
                    expect.sort();
                    let mut got: Vec<CallerId> = rejoined.iter().map(|&(_, _, c)| c).collect();
                    got.sort();
                    prop_assert_eq!(got, expect);
                }
                Op::Wait(ms) => {
                    self.now += Duration::from_millis(u64::from(ms));
                    self.node.handle_timeout(self.now);
                    if let Some(t) = self.node.poll_timeout() {
                        prop_assert!(t > self.now, "timer in the past");
                    }
                    self.collect()?;
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
            ..ProptestConfig::default()
        })]
        #[test]
        fn random_inputs_keep_the_node_sound(
            d0 in durations(),
            d1 in durations(),
            flags in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
            ops in proptest::collection::vec(op(), 1..160),
        ) {
            let cfgs = vec![
                queue_cfg("q0", d0, flags.0, flags.1),
                queue_cfg("q1", d1, flags.2, flags.3),
            ];
            let longest = cfgs
                .iter()
                .map(|q| q.max_wait + q.ring_timeout)
                .max()
                .unwrap_or_default();
            let mut w = World::new(cfgs);
            for op in ops {
                w.step(op)?;
            }
            // Nobody answers any more and the database catches up: within
            // the longest maximum wait plus a ring every caller is out,
            // and no entry is left behind.
            w.apply_all()?;
            w.step(Op::Wait(u32::try_from(longest.as_millis()).unwrap_or(u32::MAX) + 1_000))?;
            w.apply_all()?;
            prop_assert!(w.waiting.is_empty(), "callers lost: {:?}", w.waiting.keys());
            prop_assert_eq!(w.node.waiting(), 0);
            prop_assert!(w.ringing.is_empty());
            prop_assert!(w.rows.is_empty(), "entries left behind: {:?}", w.rows.keys());
            prop_assert!(!w.node.has_store_pending());
        }
    }
}

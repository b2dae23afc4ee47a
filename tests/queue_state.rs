//! The agent queue on virtual time: FIFO, strategies, ring timeout, agent
//! failure, wrap-up, pause, logout, announcements, leave, max wait, the
//! snapshot's JSON shape, and a proptest over random operation sequences.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ivr12333::queue::{
    AgentConfig, AgentId, AgentState, CallerId, MaxWaitAction, QueueAction, QueueConfig,
    QueueError, QueueSet, Strategy,
};

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn aid(s: &str) -> AgentId {
    AgentId::new(s)
}

fn agents(names: &[&str]) -> Vec<AgentConfig> {
    names
        .iter()
        .map(|n| {
            let mut a = AgentConfig::new(*n);
            a.contact = Some(format!("sip:{n}@127.0.0.1:5070"));
            a
        })
        .collect()
}

fn queue(strategy: Strategy, names: &[&str]) -> QueueConfig {
    let mut q = QueueConfig::new("main", names.iter().map(|n| aid(n)).collect());
    q.strategy = strategy;
    q
}

fn set(strategy: Strategy, names: &[&str]) -> QueueSet {
    QueueSet::new(vec![queue(strategy, names)], agents(names)).unwrap()
}

fn drain(q: &mut QueueSet) -> Vec<QueueAction> {
    std::iter::from_fn(|| q.poll_event()).collect()
}

/// Fires every timer up to `until`, returning what happened in order.
fn advance(q: &mut QueueSet, until: Instant) -> Vec<QueueAction> {
    let mut out = drain(q);
    for _ in 0..100_000 {
        match q.poll_timeout() {
            Some(t) if t <= until => {
                q.handle_timeout(t);
                out.extend(drain(q));
            }
            _ => break,
        }
    }
    q.handle_timeout(until);
    out.extend(drain(q));
    q.check_invariants().unwrap();
    out
}

fn ring(caller: u64, agent: &str) -> QueueAction {
    QueueAction::RingAgent {
        caller: CallerId(caller),
        agent: aid(agent),
        contact: format!("sip:{agent}@127.0.0.1:5070"),
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

fn rings(actions: &[QueueAction]) -> Vec<(u64, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            QueueAction::RingAgent { caller, agent, .. } => Some((caller.0, agent.0.clone())),
            _ => None,
        })
        .collect()
}

fn announcements(actions: &[QueueAction], who: u64) -> Vec<usize> {
    actions
        .iter()
        .filter_map(|a| match a {
            QueueAction::Announce {
                caller, position, ..
            } if caller.0 == who => Some(*position),
            _ => None,
        })
        .collect()
}

#[test]
fn callers_are_served_first_in_first_out() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    assert_eq!(q.join(t0, "main", CallerId(1)), Ok(1));
    assert_eq!(q.join(t0, "main", CallerId(2)), Ok(2));
    assert_eq!(q.join(t0, "main", CallerId(3)), Ok(3));
    assert_eq!(drain(&mut q), vec![]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    q.agent_answered(t0 + s(1), &aid("a1"), CallerId(1));
    assert_eq!(drain(&mut q), vec![connect(1, "a1")]);
    assert_eq!(q.position(CallerId(2)), Some(1));
    assert_eq!(q.position(CallerId(3)), Some(2));
    q.call_ended(t0 + s(2), &aid("a1"));
    // wrap_up 10 s
    let acts = advance(&mut q, t0 + s(12));
    assert_eq!(rings(&acts), vec![(2, "a1".to_string())]);
    q.agent_answered(t0 + s(13), &aid("a1"), CallerId(2));
    q.call_ended(t0 + s(14), &aid("a1"));
    let acts = advance(&mut q, t0 + s(24));
    assert_eq!(rings(&acts), vec![(3, "a1".to_string())]);
}

#[test]
fn poll_timeout_names_only_live_timers() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    assert_eq!(q.poll_timeout(), None);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    // Ring timeout (15 s) and first announcement (5 s) and max wait.
    assert_eq!(q.poll_timeout(), Some(t0 + s(5)));
    q.agent_answered(t0 + s(1), &aid("a1"), CallerId(1));
    // The caller's announcement and max wait are gone, and so is the ring.
    assert_eq!(q.poll_timeout(), None);
    q.call_ended(t0 + s(30), &aid("a1"));
    assert_eq!(q.poll_timeout(), Some(t0 + s(40)));
    advance(&mut q, t0 + s(40));
    assert_eq!(q.poll_timeout(), None);
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::Available));
    // A caller who leaves takes its timers along.
    q.agent_pause(t0 + s(41), &aid("a1"), true);
    q.join(t0 + s(41), "main", CallerId(2)).unwrap();
    q.leave(t0 + s(42), CallerId(2));
    assert_eq!(q.poll_timeout(), None);
}

#[test]
fn duplicate_join_and_unknown_queue_are_errors() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    q.join(t0, "main", CallerId(1)).unwrap();
    assert_eq!(
        q.join(t0, "main", CallerId(1)),
        Err(QueueError::AlreadyQueued(CallerId(1)))
    );
    assert_eq!(
        q.join(t0, "nope", CallerId(2)),
        Err(QueueError::UnknownQueue("nope".into()))
    );
    assert_eq!(
        q.agent_login(t0, &aid("ghost"), None),
        Err(QueueError::UnknownAgent("ghost".into()))
    );
}

#[test]
fn login_needs_a_contact() {
    let t0 = Instant::now();
    let mut q = QueueSet::new(
        vec![queue(Strategy::LongestIdle, &["a1"])],
        vec![AgentConfig::new("a1")],
    )
    .unwrap();
    assert_eq!(
        q.agent_login(t0, &aid("a1"), None),
        Err(QueueError::NoContact("a1".into()))
    );
    q.agent_login(t0, &aid("a1"), Some("sip:a1@10.0.0.5".into()))
        .unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    assert_eq!(
        drain(&mut q),
        vec![QueueAction::RingAgent {
            caller: CallerId(1),
            agent: aid("a1"),
            contact: "sip:a1@10.0.0.5".into()
        }]
    );
}

#[test]
fn longest_idle_picks_the_agent_idle_longest() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::LongestIdle, &["a1", "a2", "a3"]);
    qc.wrap_up = Duration::ZERO;
    let mut q = QueueSet::new(vec![qc], agents(&["a1", "a2", "a3"])).unwrap();
    // a3 logs in first, then a1, then a2.
    q.agent_login(t0, &aid("a3"), None).unwrap();
    q.agent_login(t0 + s(1), &aid("a1"), None).unwrap();
    q.agent_login(t0 + s(2), &aid("a2"), None).unwrap();
    q.join(t0 + s(3), "main", CallerId(1)).unwrap();
    assert_eq!(rings(&drain(&mut q)), vec![(1, "a3".into())]);
    q.agent_answered(t0 + s(4), &aid("a3"), CallerId(1));
    q.call_ended(t0 + s(50), &aid("a3"));
    drain(&mut q);
    // a3 just finished: a1 has been idle longest now.
    q.join(t0 + s(51), "main", CallerId(2)).unwrap();
    assert_eq!(rings(&drain(&mut q)), vec![(2, "a1".into())]);
    q.join(t0 + s(52), "main", CallerId(3)).unwrap();
    assert_eq!(rings(&drain(&mut q)), vec![(3, "a2".into())]);
}

#[test]
fn round_robin_rotates() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::RoundRobin, &["a1", "a2", "a3"]);
    qc.wrap_up = Duration::ZERO;
    let mut q = QueueSet::new(vec![qc], agents(&["a1", "a2", "a3"])).unwrap();
    for a in ["a3", "a2", "a1"] {
        q.agent_login(t0, &aid(a), None).unwrap();
    }
    let mut order = Vec::new();
    for i in 0..5u64 {
        let t = t0 + s(10 * i);
        q.join(t, "main", CallerId(i)).unwrap();
        let r = rings(&drain(&mut q));
        assert_eq!(r.len(), 1);
        let agent = r[0].1.clone();
        q.agent_answered(t + s(1), &aid(&agent), CallerId(i));
        q.call_ended(t + s(2), &aid(&agent));
        drain(&mut q);
        order.push(agent);
    }
    assert_eq!(order, vec!["a1", "a2", "a3", "a1", "a2"]);
}

#[test]
fn ring_all_rings_everyone_and_cancels_the_others() {
    let t0 = Instant::now();
    let mut q = set(Strategy::RingAll, &["a1", "a2", "a3"]);
    for a in ["a1", "a2", "a3"] {
        q.agent_login(t0, &aid(a), None).unwrap();
    }
    q.agent_pause(t0, &aid("a3"), true);
    q.join(t0, "main", CallerId(7)).unwrap();
    assert_eq!(drain(&mut q), vec![ring(7, "a1"), ring(7, "a2")]);
    // A second caller finds no free agent.
    q.join(t0, "main", CallerId(8)).unwrap();
    assert_eq!(drain(&mut q), vec![]);
    q.agent_answered(t0 + s(3), &aid("a2"), CallerId(7));
    let acts = drain(&mut q);
    assert_eq!(acts[0], connect(7, "a2"));
    assert_eq!(acts[1], cancel(7, "a1"));
    // a1 is free again and rings for caller 8.
    assert_eq!(acts[2..], [ring(8, "a1")]);
    assert_eq!(q.agent_state(&aid("a2")), Some(AgentState::OnCall));
    assert_eq!(q.agent_state(&aid("a3")), Some(AgentState::Paused));
}

#[test]
fn ring_all_survives_one_agent_failing() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::RingAll, &["a1", "a2"]);
    qc.mode = ivr12333::queue::QueueMode::Refer {
        target: "sip:desk@127.0.0.1".into(),
    };
    let mut q = QueueSet::new(vec![qc], agents(&["a1", "a2"])).unwrap();
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.agent_login(t0, &aid("a2"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1"), ring(1, "a2")]);
    q.agent_failed(t0 + s(1), &aid("a1"), CallerId(1));
    assert_eq!(drain(&mut q), vec![]);
    assert_eq!(q.agent_state(&aid("a2")), Some(AgentState::Ringing));
    assert_eq!(q.agent_call_queue(&aid("a2")), None);
    q.agent_answered(t0 + s(2), &aid("a2"), CallerId(1));
    assert_eq!(drain(&mut q), vec![connect(1, "a2")]);
    // After Connect the runtime finds the mode through the agent.
    let mode = &q.agent_call_queue(&aid("a2")).unwrap().mode;
    assert!(
        matches!(mode, ivr12333::queue::QueueMode::Refer { target } if target == "sip:desk@127.0.0.1")
    );
}

#[test]
fn ring_timeout_tries_the_next_agent() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1", "a2"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.agent_login(t0 + s(1), &aid("a2"), None).unwrap();
    q.join(t0 + s(2), "main", CallerId(1)).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    assert_eq!(q.poll_timeout(), Some(t0 + s(7))); // first announcement
    let acts = advance(&mut q, t0 + s(17));
    // Announcements are skipped while ringing; at 17 s the ring times out.
    assert_eq!(acts, vec![cancel(1, "a1"), ring(1, "a2")]);
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::Available));
    q.agent_answered(t0 + s(20), &aid("a2"), CallerId(1));
    assert_eq!(drain(&mut q), vec![connect(1, "a2")]);
}

#[test]
fn autopause_pauses_an_agent_who_does_not_answer() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::LongestIdle, &["a1", "a2"]);
    qc.autopause = true;
    let mut q = QueueSet::new(vec![qc], agents(&["a1", "a2"])).unwrap();
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.agent_login(t0 + s(1), &aid("a2"), None).unwrap();
    q.join(t0 + s(2), "main", CallerId(1)).unwrap();
    let acts = advance(&mut q, t0 + s(17));
    assert_eq!(acts, vec![ring(1, "a1"), cancel(1, "a1"), ring(1, "a2")]);
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::Paused));
}

#[test]
fn a_failing_agent_is_skipped_and_the_caller_keeps_its_place() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1", "a2"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    q.join(t0, "main", CallerId(2)).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    // a1 rejects (486/603) or is unreachable.
    q.agent_failed(t0 + s(1), &aid("a1"), CallerId(1));
    // Nobody else is free: caller 1 waits for its retry and keeps a1 for
    // itself; caller 2 does not jump ahead.
    assert_eq!(drain(&mut q), vec![]);
    assert_eq!(q.position(CallerId(1)), Some(1));
    assert_eq!(q.position(CallerId(2)), Some(2));
    // a2 logs in: caller 1 has not tried a2 yet, so it rings a2 at once.
    // Once caller 1 is being served by a2, a1 is free for caller 2.
    q.agent_login(t0 + s(2), &aid("a2"), None).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a2"), ring(2, "a1")]);
    q.agent_failed(t0 + s(3), &aid("a2"), CallerId(1));
    // Caller 1 has now tried both; a2 is kept for its retry.
    assert_eq!(drain(&mut q), vec![]);
    let acts = advance(&mut q, t0 + s(7));
    assert!(rings(&acts).is_empty());
    // After the 5 s retry (from 3 s) caller 1 starts a new round.
    let acts = advance(&mut q, t0 + s(8));
    assert_eq!(rings(&acts), vec![(1, "a2".into())]);
    assert_eq!(q.position(CallerId(1)), Some(1));
    assert_eq!(q.position(CallerId(2)), Some(2));
}

#[test]
fn wrap_up_delays_the_next_offer() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    q.agent_answered(t0 + s(1), &aid("a1"), CallerId(1));
    q.join(t0 + s(2), "main", CallerId(2)).unwrap();
    q.call_ended(t0 + s(60), &aid("a1"));
    drain(&mut q);
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::WrapUp));
    let acts = advance(&mut q, t0 + s(69));
    assert!(rings(&acts).is_empty());
    let acts = advance(&mut q, t0 + s(70));
    assert_eq!(rings(&acts), vec![(2, "a1".into())]);
}

#[test]
fn pause_and_unpause() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.agent_pause(t0, &aid("a1"), true);
    q.join(t0, "main", CallerId(1)).unwrap();
    assert_eq!(drain(&mut q), vec![]);
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::Paused));
    q.agent_pause(t0 + s(1), &aid("a1"), false);
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
}

#[test]
fn logout_while_ringing_cancels_and_tries_the_next_agent() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1", "a2"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.agent_login(t0 + s(1), &aid("a2"), None).unwrap();
    q.join(t0 + s(2), "main", CallerId(1)).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    q.agent_logout(t0 + s(3), &aid("a1"));
    assert_eq!(drain(&mut q), vec![cancel(1, "a1"), ring(1, "a2")]);
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::LoggedOut));
    // A late answer from the logged-out agent is ignored.
    q.agent_answered(t0 + s(4), &aid("a1"), CallerId(1));
    assert_eq!(drain(&mut q), vec![]);
}

#[test]
fn positions_announced_two_then_one_as_the_first_is_connected() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    q.join(t0, "main", CallerId(2)).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    // First announcement after 5 s: caller 2 is second; caller 1 is ringing
    // and hears no position prompt.
    let acts = advance(&mut q, t0 + s(5));
    assert_eq!(
        acts,
        vec![QueueAction::Announce {
            caller: CallerId(2),
            position: 2,
            estimated_wait: None
        }]
    );
    q.agent_answered(t0 + s(10), &aid("a1"), CallerId(1));
    assert_eq!(drain(&mut q), vec![connect(1, "a1")]);
    let acts = advance(&mut q, t0 + s(34));
    assert!(announcements(&acts, 2).is_empty());
    let acts = advance(&mut q, t0 + s(35));
    assert_eq!(announcements(&acts, 2), vec![1]);
}

#[test]
fn leaving_with_star_moves_the_callers_behind_forward() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    for i in 1..=3 {
        q.join(t0, "main", CallerId(i)).unwrap();
    }
    let acts = advance(&mut q, t0 + s(5));
    assert_eq!(announcements(&acts, 3), vec![3]);
    q.leave(t0 + s(6), CallerId(1));
    assert_eq!(
        drain(&mut q),
        vec![QueueAction::Left {
            caller: CallerId(1)
        }]
    );
    assert_eq!(q.position(CallerId(2)), Some(1));
    assert_eq!(q.position(CallerId(3)), Some(2));
    let acts = advance(&mut q, t0 + s(35));
    assert_eq!(announcements(&acts, 2), vec![1]);
    assert_eq!(announcements(&acts, 3), vec![2]);
    assert!(announcements(&acts, 1).is_empty());
    // Leaving twice is harmless and silent.
    q.leave(t0 + s(36), CallerId(1));
    assert_eq!(drain(&mut q), vec![]);
}

#[test]
fn no_agents_means_announcements_until_max_wait() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    q.join(t0, "main", CallerId(1)).unwrap();
    let acts = advance(&mut q, t0 + s(299));
    // 5, 35, ..., 275 s
    assert_eq!(announcements(&acts, 1), vec![1; 10]);
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, QueueAction::MaxWait { .. }))
    );
    let acts = advance(&mut q, t0 + s(300));
    assert_eq!(
        acts,
        vec![QueueAction::MaxWait {
            caller: CallerId(1),
            action: MaxWaitAction::Hangup
        }]
    );
    assert_eq!(q.waiting(), 0);
    // Nothing more for that caller, ever.
    let acts = advance(&mut q, t0 + s(1000));
    assert_eq!(acts, vec![]);
    assert_eq!(q.poll_timeout(), None);
}

#[test]
fn max_wait_can_return_to_the_menu() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::LongestIdle, &["a1"]);
    qc.max_wait = s(60);
    qc.on_max_wait = MaxWaitAction::ReturnToMenu;
    qc.first_announce_after = Duration::ZERO;
    let mut q = QueueSet::new(vec![qc], agents(&["a1"])).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    let acts = advance(&mut q, t0 + s(60));
    assert_eq!(announcements(&acts, 1), vec![1, 1]); // 0 s and 30 s
    assert_eq!(
        acts.last(),
        Some(&QueueAction::MaxWait {
            caller: CallerId(1),
            action: MaxWaitAction::ReturnToMenu
        })
    );
}

#[test]
fn max_wait_lets_a_ringing_agent_finish() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::LongestIdle, &["a1"]);
    qc.max_wait = s(20);
    let mut q = QueueSet::new(vec![qc], agents(&["a1"])).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    advance(&mut q, t0 + s(10));
    q.agent_login(t0 + s(10), &aid("a1"), None).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    let acts = advance(&mut q, t0 + s(20));
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, QueueAction::MaxWait { .. }))
    );
    // The ring (10 s → 25 s) times out, then the caller leaves.
    let acts = advance(&mut q, t0 + s(25));
    assert_eq!(
        acts,
        vec![
            cancel(1, "a1"),
            QueueAction::MaxWait {
                caller: CallerId(1),
                action: MaxWaitAction::Hangup
            }
        ]
    );
    // Same situation, but the agent answers in time.
    q.join(t0 + s(30), "main", CallerId(2)).unwrap();
    drain(&mut q);
    q.agent_logout(t0 + s(30), &aid("a1"));
    q.agent_login(t0 + s(45), &aid("a1"), None).unwrap();
    advance(&mut q, t0 + s(55));
    q.agent_answered(t0 + s(56), &aid("a1"), CallerId(2));
    assert_eq!(drain(&mut q), vec![connect(2, "a1")]);
}

#[test]
fn hang_up_while_an_agent_rings_cancels_the_ring() {
    let t0 = Instant::now();
    let mut q = set(Strategy::RingAll, &["a1", "a2"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.agent_login(t0, &aid("a2"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    drain(&mut q);
    q.leave(t0 + s(2), CallerId(1));
    assert_eq!(
        drain(&mut q),
        vec![
            cancel(1, "a1"),
            cancel(1, "a2"),
            QueueAction::Left {
                caller: CallerId(1)
            }
        ]
    );
    assert_eq!(q.agent_state(&aid("a1")), Some(AgentState::Available));
    // The agent's answer racing the CANCEL is ignored.
    q.agent_answered(t0 + s(3), &aid("a1"), CallerId(1));
    assert_eq!(drain(&mut q), vec![]);
}

#[test]
fn estimated_wait_from_average_service_time() {
    let t0 = Instant::now();
    let mut qc = queue(Strategy::LongestIdle, &["a1"]);
    qc.announce_estimated_wait = true;
    qc.wrap_up = s(10);
    let mut q = QueueSet::new(vec![qc], agents(&["a1"])).unwrap();
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.join(t0, "main", CallerId(1)).unwrap();
    q.agent_answered(t0 + s(1), &aid("a1"), CallerId(1));
    q.call_ended(t0 + s(61), &aid("a1")); // 60 s talk + 10 s wrap-up
    q.join(t0 + s(62), "main", CallerId(2)).unwrap();
    q.join(t0 + s(62), "main", CallerId(3)).unwrap();
    let acts = advance(&mut q, t0 + s(67));
    assert!(acts.contains(&QueueAction::Announce {
        caller: CallerId(3),
        position: 2,
        estimated_wait: Some(s(140))
    }));
}

#[test]
fn an_agent_in_two_queues_serves_the_longest_wait() {
    let t0 = Instant::now();
    let mut qa = queue(Strategy::LongestIdle, &["a1"]);
    qa.name = "pension".into();
    let mut qb = queue(Strategy::LongestIdle, &["a1"]);
    qb.name = "medical".into();
    let mut q = QueueSet::new(vec![qa, qb], agents(&["a1"])).unwrap();
    q.join(t0, "medical", CallerId(1)).unwrap();
    q.join(t0 + s(1), "pension", CallerId(2)).unwrap();
    q.agent_login(t0 + s(2), &aid("a1"), None).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
    assert_eq!(q.caller_queue(CallerId(2)), Some("pension"));
}

#[test]
fn configuration_errors_say_what_is_wrong() {
    let err =
        QueueSet::new(vec![queue(Strategy::LongestIdle, &["a9"])], agents(&["a1"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "queue \"main\" lists agent \"a9\", which is not defined as an [[agent]]"
    );
    let mut zero = queue(Strategy::LongestIdle, &["a1"]);
    zero.ring_timeout = Duration::ZERO;
    let err = QueueSet::new(vec![zero], agents(&["a1"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "queue \"main\": ring_timeout must be greater than zero"
    );
    let err = QueueSet::new(
        vec![
            queue(Strategy::LongestIdle, &["a1"]),
            queue(Strategy::LongestIdle, &["a1"]),
        ],
        agents(&["a1"]),
    )
    .unwrap_err();
    assert_eq!(err, QueueError::DuplicateQueue("main".into()));
    let err = QueueSet::new(vec![], agents(&["a1", "a1"])).unwrap_err();
    assert_eq!(err, QueueError::DuplicateAgent("a1".into()));
}

#[test]
fn agent_config_debug_hides_the_password() {
    let mut a = AgentConfig::new("a1");
    a.password = Some("s3cret-pw".into());
    let dbg = format!("{a:?}");
    assert!(!dbg.contains("s3cret-pw"));
    assert!(dbg.contains("redacted"));
}

#[test]
fn snapshot_json_shape() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1", "a2"]);
    q.agent_login(t0, &aid("a1"), None).unwrap();
    q.join(t0, "main", CallerId(41)).unwrap();
    q.join(t0 + s(5), "main", CallerId(42)).unwrap();
    let v = serde_json::to_value(q.snapshot(t0 + s(20))).unwrap();
    let main = &v["queues"][0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["strategy"], "longest_idle");
    assert_eq!(main["waiting_count"], 2);
    assert_eq!(main["longest_wait_secs"], 20);
    assert_eq!(main["waiting"][0]["caller"], 41);
    assert_eq!(main["waiting"][0]["position"], 1);
    assert_eq!(main["waiting"][0]["ringing"][0], "a1");
    assert_eq!(main["waiting"][1]["caller"], 42);
    assert_eq!(main["waiting"][1]["waited_secs"], 15);
    assert_eq!(main["agents"], serde_json::json!(["a1", "a2"]));
    let a1 = &v["agents"][0];
    assert_eq!(a1["id"], "a1");
    assert_eq!(a1["state"], "ringing");
    assert_eq!(a1["caller"], 41);
    assert_eq!(a1["calls_taken"], 0);
    assert_eq!(v["agents"][1]["state"], "logged_out");
}

#[test]
fn ten_thousand_waiting_callers() {
    let t0 = Instant::now();
    let mut q = set(Strategy::LongestIdle, &["a1"]);
    for i in 0..10_000 {
        q.join(t0, "main", CallerId(i)).unwrap();
    }
    for i in (0..10_000).step_by(2) {
        q.leave(t0 + s(1), CallerId(i));
    }
    assert_eq!(q.position(CallerId(9_999)), Some(5_000));
    let acts = advance(&mut q, t0 + s(5));
    let pos = announcements(&acts, 9_999);
    assert_eq!(pos, vec![5_000]);
    q.agent_login(t0 + s(6), &aid("a1"), None).unwrap();
    assert_eq!(drain(&mut q), vec![ring(1, "a1")]);
}

mod prop {
    use super::*;
    use proptest::prelude::{
        ProptestConfig, TestCaseError, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
    };
    use proptest::strategy::Strategy as _;

    #[derive(Debug, Clone)]
    enum Op {
        Join(u8, u8),
        Leave(u8),
        Login(u8),
        Logout(u8),
        Pause(u8, bool),
        Answer(u8),
        Fail(u8),
        End(u8),
        Wait(u16),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        prop_oneof![
            3 => (any::<u8>(), 0u8..2).prop_map(|(c, q)| Op::Join(c % 24, q)),
            1 => any::<u8>().prop_map(|c| Op::Leave(c % 24)),
            2 => any::<u8>().prop_map(|a| Op::Login(a % 4)),
            1 => any::<u8>().prop_map(|a| Op::Logout(a % 4)),
            1 => (any::<u8>(), any::<bool>()).prop_map(|(a, p)| Op::Pause(a % 4, p)),
            3 => any::<u8>().prop_map(|a| Op::Answer(a % 4)),
            2 => any::<u8>().prop_map(|a| Op::Fail(a % 4)),
            2 => any::<u8>().prop_map(|a| Op::End(a % 4)),
            3 => (0u16..400).prop_map(Op::Wait),
        ]
    }

    use ivr12333::queue::Strategy as QStrategy;

    fn build(strategies: (u8, u8)) -> QueueSet {
        let pick = |n: u8| match n % 3 {
            0 => QStrategy::LongestIdle,
            1 => QStrategy::RoundRobin,
            _ => QStrategy::RingAll,
        };
        let names = ["a0", "a1", "a2", "a3"];
        let mut q0 = queue(pick(strategies.0), &["a0", "a1", "a2"]);
        q0.name = "q0".into();
        q0.max_wait = s(120);
        q0.autopause = strategies.0.is_multiple_of(2);
        let mut q1 = queue(pick(strategies.1), &["a2", "a3"]);
        q1.name = "q1".into();
        q1.max_wait = s(200);
        q1.wrap_up = Duration::ZERO;
        QueueSet::new(vec![q0, q1], agents(&names)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn random_operations_keep_the_queue_sound(
            strategies in (any::<u8>(), any::<u8>()),
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut q = build(strategies);
            // caller -> agent it is ringing (as the runtime would know)
            let mut ringing: HashMap<u64, HashSet<String>> = HashMap::new();
            let mut on_call: HashMap<String, u64> = HashMap::new();
            let mut joined: HashSet<u64> = HashSet::new();
            let mut done: HashSet<u64> = HashSet::new();
            let mut waiting: HashSet<u64> = HashSet::new();

            let apply = |acts: Vec<QueueAction>,
                             ringing: &mut HashMap<u64, HashSet<String>>,
                             on_call: &mut HashMap<String, u64>,
                             done: &mut HashSet<u64>,
                             waiting: &mut HashSet<u64>| -> Result<(), TestCaseError> {
                for a in acts {
                    match a {
                        QueueAction::RingAgent { caller, agent, .. } => {
                            prop_assert!(waiting.contains(&caller.0));
                            prop_assert!(!on_call.contains_key(&agent.0), "ringing an agent on a call");
                            let fresh = ringing.entry(caller.0).or_default().insert(agent.0.clone());
                            prop_assert!(fresh);
                            prop_assert_eq!(ringing.values().filter(|s| s.contains(&agent.0)).count(), 1);
                        }
                        QueueAction::CancelRing { caller, agent } => {
                            let had = ringing.get_mut(&caller.0).is_some_and(|s| s.remove(&agent.0));
                            prop_assert!(had, "cancel of a ring that does not exist");
                        }
                        QueueAction::Connect { caller, agent } => {
                            prop_assert!(waiting.remove(&caller.0));
                            prop_assert!(!on_call.contains_key(&agent.0), "agent connected twice");
                            on_call.insert(agent.0.clone(), caller.0);
                            let had = ringing.get_mut(&caller.0).is_some_and(|s| s.remove(&agent.0));
                            prop_assert!(had);
                            prop_assert!(done.insert(caller.0));
                        }
                        QueueAction::Announce { caller, position, .. } => {
                            prop_assert!(waiting.contains(&caller.0));
                            prop_assert!(position >= 1 && position <= waiting.len());
                        }
                        QueueAction::MaxWait { caller, .. } | QueueAction::Left { caller } => {
                            prop_assert!(waiting.remove(&caller.0));
                            prop_assert!(ringing.get(&caller.0).is_none_or(|s| s.is_empty()),
                                "caller removed with rings outstanding");
                            prop_assert!(done.insert(caller.0));
                        }
                    }
                }
                Ok(())
            };

            for op in ops {
                match op {
                    Op::Join(c, qn) => {
                        let c = u64::from(c);
                        let r = q.join(now, if qn == 0 { "q0" } else { "q1" }, CallerId(c));
                        if waiting.contains(&c) {
                            prop_assert!(r.is_err());
                        } else {
                            prop_assert!(r.is_ok());
                            joined.insert(c);
                            done.remove(&c);
                            waiting.insert(c);
                            ringing.remove(&c);
                        }
                    }
                    Op::Leave(c) => q.leave(now, CallerId(u64::from(c))),
                    Op::Login(a) => { q.agent_login(now, &aid(&format!("a{a}")), None).unwrap(); }
                    Op::Logout(a) => q.agent_logout(now, &aid(&format!("a{a}"))),
                    Op::Pause(a, p) => q.agent_pause(now, &aid(&format!("a{a}")), p),
                    Op::Answer(a) | Op::Fail(a) => {
                        let name = format!("a{a}");
                        let target = ringing.iter().find(|(_, s)| s.contains(&name)).map(|(c, _)| *c);
                        // Also try a bogus caller, which must be ignored.
                        let c = target.unwrap_or(999);
                        if matches!(op, Op::Answer(_)) {
                            q.agent_answered(now, &aid(&name), CallerId(c));
                        } else {
                            q.agent_failed(now, &aid(&name), CallerId(c));
                            if let Some(s) = ringing.get_mut(&c) { s.remove(&name); }
                        }
                    }
                    Op::End(a) => {
                        let name = format!("a{a}");
                        q.call_ended(now, &aid(&name));
                        on_call.remove(&name);
                    }
                    Op::Wait(secs) => {
                        let until = now + s(u64::from(secs));
                        for _ in 0..10_000 {
                            match q.poll_timeout() {
                                Some(t) if t <= until => {
                                    now = now.max(t);
                                    q.handle_timeout(now);
                                    let acts = drain(&mut q);
                                    apply(acts, &mut ringing, &mut on_call, &mut done, &mut waiting)?;
                                }
                                _ => break,
                            }
                        }
                        now = until;
                        q.handle_timeout(now);
                    }
                }
                let acts = drain(&mut q);
                apply(acts, &mut ringing, &mut on_call, &mut done, &mut waiting)?;
                q.check_invariants().map_err(TestCaseError::fail)?;
                prop_assert_eq!(q.waiting(), waiting.len());
            }
            // Nobody answers any more: within max wait plus a ring timeout
            // every caller still waiting must come out with MaxWait.
            let until = now + s(200 + 15 + 1);
            for _ in 0..100_000 {
                match q.poll_timeout() {
                    Some(t) if t <= until => {
                        now = now.max(t);
                        q.handle_timeout(now);
                        let acts = drain(&mut q);
                        apply(acts, &mut ringing, &mut on_call, &mut done, &mut waiting)?;
                    }
                    _ => break,
                }
            }
            prop_assert!(waiting.is_empty(), "callers lost: {:?}", waiting);
            prop_assert_eq!(q.waiting(), 0);
            for c in &joined {
                prop_assert!(done.contains(c));
            }
        }
    }
}

/// `now + duration` on the call path must not overflow: absurd configured
/// durations are refused when the queues are built.
#[test]
fn absurd_durations_are_refused_at_start_up() {
    let mut q =
        ivr12333::queue::QueueConfig::new("agents", vec![ivr12333::queue::AgentId::new("a1")]);
    q.max_wait = Duration::from_secs(u64::MAX / 4);
    let agents = vec![ivr12333::queue::AgentConfig::new("a1")];
    let Err(err) = ivr12333::queue::QueueSet::new(vec![q], agents) else {
        panic!("an absurd max_wait was accepted");
    };
    assert!(
        matches!(
            err,
            ivr12333::queue::QueueError::DurationTooLong {
                field: "max_wait",
                ..
            }
        ),
        "{err}"
    );
}

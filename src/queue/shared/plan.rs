//! Which waiting caller rings which free agent, across every node: a pure
//! function over the rows read inside the dispatch transaction (see
//! `docs/cluster.md#the-shared-queue`). It is the cluster's version of
//! `QueueSet::dispatch` and keeps its rules:
//!
//! - Callers are served in join order (`joined_at`, then entry id), over all
//!   nodes. An agent in several queues therefore serves the queue whose
//!   waiting caller joined first.
//! - A caller rings one agent at a time (all free agents in ring-all), and
//!   never an agent it already tried in this round.
//! - A caller that has tried every free agent waits `retry` before the round
//!   starts again, and keeps those agents reserved meanwhile so that nobody
//!   behind it takes them.
//! - An agent is offered at most one call: it must be free (logged in, not
//!   paused, idle or past its wrap-up, with a contact) and each free agent
//!   goes to one caller.
//!
//! Times are milliseconds on the database's clock, so that nodes with
//! skewed clocks agree.

use std::collections::HashSet;

use crate::queue::{AgentId, QueueConfig, Strategy};

/// An agent as the dispatch transaction reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: AgentId,
    /// Logged in, not paused, not ringing or on a call, with a contact.
    pub ready: bool,
    /// In wrap-up until then (ready once the database clock passes it).
    pub wrap_until_ms: Option<i64>,
    /// When it last became free (login or end of wrap-up); longest idle first.
    pub idle_since_ms: i64,
    /// When it was last offered a call (round robin: least recently first).
    pub offered_at_ms: Option<i64>,
}

/// A waiting caller as the dispatch transaction reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    pub id: i64,
    pub queue: String,
    pub joined_at_ms: i64,
    /// Agents ringing for it now.
    pub ringing: u32,
    /// Agents that did not answer it in the current round.
    pub tried: Vec<AgentId>,
    /// Waiting for the next round until then.
    pub retry_at_ms: Option<i64>,
}

/// What the dispatch transaction writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ring `agent` for entry `entry` (one agent is in at most one offer).
    pub offers: Vec<Offer>,
    /// Entries whose round state changes.
    pub rounds: Vec<Round>,
    /// The earliest database time at which a retry or a wrap-up ends and
    /// dispatch should run again.
    pub next_wake_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub entry: i64,
    pub agent: AgentId,
    /// The offering queue's wrap-up, kept with the agent so that whoever
    /// ends the call (or reaps a dead node) applies the right one.
    pub wrap_up_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Every free agent was tried: wait until `retry_at_ms`.
    Wait { entry: i64, retry_at_ms: i64 },
    /// The wait is over: forget who was tried.
    Restart { entry: i64 },
}

fn earliest(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Plans one dispatch round at database time `now_ms`.
pub fn plan(
    queues: &[QueueConfig],
    agents: &[AgentRow],
    entries: &[EntryRow],
    now_ms: i64,
) -> Plan {
    let mut out = Plan::default();
    let mut free: HashSet<&AgentId> = HashSet::new();
    for a in agents {
        match a.wrap_until_ms {
            Some(t) if t > now_ms => out.next_wake_ms = earliest(out.next_wake_ms, t),
            _ if a.ready => {
                free.insert(&a.id);
            }
            _ => {}
        }
    }
    let mut order: Vec<&EntryRow> = entries.iter().collect();
    order.sort_by_key(|e| (e.joined_at_ms, e.id));
    let mut reserved: HashSet<&AgentId> = HashSet::new();
    for e in order {
        let Some(q) = queues.iter().find(|q| q.name == e.queue) else {
            continue;
        };
        let mut tried: &[AgentId] = &e.tried;
        match e.retry_at_ms {
            Some(t) if t > now_ms => {
                reserved.extend(e.tried.iter());
                out.next_wake_ms = earliest(out.next_wake_ms, t);
                continue;
            }
            Some(_) => {
                out.rounds.push(Round::Restart { entry: e.id });
                tried = &[];
            }
            None => {}
        }
        if e.ringing > 0 {
            // One ring at a time (ring-all rang every free agent at once);
            // the agents it rings are not free.
            continue;
        }
        let members: Vec<&AgentId> = q
            .agents
            .iter()
            .filter(|a| free.contains(a) && !reserved.contains(a))
            .collect();
        let candidates: Vec<&AgentId> = members
            .iter()
            .copied()
            .filter(|a| !tried.contains(a))
            .collect();
        if candidates.is_empty() {
            if !members.is_empty() {
                // Tried them all: wait `retry`, keeping them for this caller.
                let at = now_ms.saturating_add(q.retry.as_millis().min(i64::MAX as u128) as i64);
                out.rounds.retain(|r| *r != Round::Restart { entry: e.id });
                out.rounds.push(Round::Wait {
                    entry: e.id,
                    retry_at_ms: at,
                });
                out.next_wake_ms = earliest(out.next_wake_ms, at);
                reserved.extend(members);
            }
            continue;
        }
        let row = |id: &AgentId| agents.iter().find(|a| &a.id == id);
        let picked: Vec<&AgentId> = match q.strategy {
            Strategy::RingAll => candidates,
            Strategy::LongestIdle => candidates
                .into_iter()
                .min_by_key(|a| row(a).map_or(i64::MAX, |r| r.idle_since_ms))
                .into_iter()
                .collect(),
            // Least recently offered first, configuration order on ties:
            // the shared form of "remember where the last ring went".
            Strategy::RoundRobin => candidates
                .into_iter()
                .min_by_key(|a| row(a).and_then(|r| r.offered_at_ms).unwrap_or(i64::MIN))
                .into_iter()
                .collect(),
        };
        let wrap_up_ms = q.wrap_up.as_millis().min(i64::MAX as u128) as i64;
        for a in picked {
            free.remove(a);
            out.offers.push(Offer {
                entry: e.id,
                agent: a.clone(),
                wrap_up_ms,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn agent(id: &str, idle: i64) -> AgentRow {
        AgentRow {
            id: AgentId::new(id),
            ready: true,
            wrap_until_ms: None,
            idle_since_ms: idle,
            offered_at_ms: None,
        }
    }

    fn entry(id: i64, queue: &str, joined: i64) -> EntryRow {
        EntryRow {
            id,
            queue: queue.into(),
            joined_at_ms: joined,
            ringing: 0,
            tried: vec![],
            retry_at_ms: None,
        }
    }

    fn q(name: &str, agents: &[&str]) -> QueueConfig {
        QueueConfig::new(name, agents.iter().map(|a| AgentId::new(*a)).collect())
    }

    fn offered(p: &Plan) -> Vec<(i64, &str)> {
        p.offers
            .iter()
            .map(|o| (o.entry, o.agent.as_str()))
            .collect()
    }

    #[test]
    fn join_order_wins_and_each_agent_goes_to_one_caller() {
        let queues = [q("main", &["a", "b"])];
        let agents = [agent("a", 50), agent("b", 10)];
        // Entry 7 joined before entry 3 (another node's clock order).
        let entries = [
            entry(3, "main", 200),
            entry(7, "main", 100),
            entry(9, "main", 300),
        ];
        let p = plan(&queues, &agents, &entries, 1_000);
        assert_eq!(offered(&p), vec![(7, "b"), (3, "a")]);
        assert!(p.rounds.is_empty());
    }

    #[test]
    fn busy_paused_or_wrapping_agents_are_not_offered() {
        let queues = [q("main", &["a", "b", "c"])];
        let mut a = agent("a", 0);
        a.ready = false;
        let mut b = agent("b", 0);
        b.wrap_until_ms = Some(2_000);
        let mut c = agent("c", 0);
        c.wrap_until_ms = Some(500);
        let p = plan(
            &queues,
            &[a, b, c],
            &[entry(1, "main", 0), entry(2, "main", 1)],
            1_000,
        );
        assert_eq!(offered(&p), vec![(1, "c")]);
        assert_eq!(p.next_wake_ms, Some(2_000));
    }

    #[test]
    fn a_ringing_caller_rings_one_agent_and_the_next_caller_gets_the_other() {
        let queues = [q("main", &["a", "b"])];
        let mut first = entry(1, "main", 0);
        first.ringing = 1;
        let p = plan(&queues, &[agent("b", 0)], &[first, entry(2, "main", 5)], 10);
        assert_eq!(offered(&p), vec![(2, "b")]);
    }

    #[test]
    fn tried_everyone_waits_retry_and_keeps_them_reserved() {
        let mut main = q("main", &["a"]);
        main.retry = Duration::from_millis(5_000);
        let queues = [main];
        let mut first = entry(1, "main", 0);
        first.tried = vec![AgentId::new("a")];
        let p = plan(
            &queues,
            &[agent("a", 0)],
            &[first.clone(), entry(2, "main", 1)],
            100,
        );
        assert!(
            p.offers.is_empty(),
            "the caller behind must not jump the queue"
        );
        assert_eq!(
            p.rounds,
            vec![Round::Wait {
                entry: 1,
                retry_at_ms: 5_100
            }]
        );
        assert_eq!(p.next_wake_ms, Some(5_100));
        // Still waiting: still reserved.
        first.retry_at_ms = Some(5_100);
        let p = plan(
            &queues,
            &[agent("a", 0)],
            &[first.clone(), entry(2, "main", 1)],
            3_000,
        );
        assert!(p.offers.is_empty());
        // The wait is over: a new round starts with the same agent.
        let p = plan(
            &queues,
            &[agent("a", 0)],
            &[first, entry(2, "main", 1)],
            5_100,
        );
        assert_eq!(offered(&p), vec![(1, "a")]);
        assert_eq!(p.rounds, vec![Round::Restart { entry: 1 }]);
    }

    #[test]
    fn an_untried_agent_is_rung_at_once() {
        let queues = [q("main", &["a", "b"])];
        let mut first = entry(1, "main", 0);
        first.tried = vec![AgentId::new("a")];
        let p = plan(&queues, &[agent("a", 0), agent("b", 9)], &[first], 10);
        assert_eq!(offered(&p), vec![(1, "b")]);
    }

    #[test]
    fn an_agent_in_two_queues_serves_the_longest_waiting_caller() {
        let queues = [q("pension", &["a"]), q("medical", &["a"])];
        let entries = [entry(1, "pension", 50), entry(2, "medical", 20)];
        let p = plan(&queues, &[agent("a", 0)], &entries, 100);
        assert_eq!(offered(&p), vec![(2, "a")]);
    }

    #[test]
    fn strategies() {
        let mut ring_all = q("all", &["a", "b"]);
        ring_all.strategy = Strategy::RingAll;
        let p = plan(
            &[ring_all],
            &[agent("a", 0), agent("b", 0)],
            &[entry(1, "all", 0)],
            1,
        );
        assert_eq!(offered(&p), vec![(1, "a"), (1, "b")]);

        let mut rr = q("rr", &["a", "b"]);
        rr.strategy = Strategy::RoundRobin;
        let mut a = agent("a", 0);
        a.offered_at_ms = Some(50);
        let mut b = agent("b", 0);
        b.offered_at_ms = Some(40);
        let p = plan(&[rr], &[a, b], &[entry(1, "rr", 0)], 100);
        assert_eq!(offered(&p), vec![(1, "b")]);

        let longest = q("idle", &["a", "b"]);
        let p = plan(
            &[longest],
            &[agent("a", 30), agent("b", 20)],
            &[entry(1, "idle", 0)],
            100,
        );
        assert_eq!(offered(&p), vec![(1, "b")]);
    }

    #[test]
    fn unknown_queues_and_empty_input_plan_nothing() {
        let p = plan(&[], &[agent("a", 0)], &[entry(1, "gone", 0)], 1);
        assert_eq!(p, Plan::default());
    }
}

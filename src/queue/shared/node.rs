//! One node's part of the shared queue: the callers it holds. A sans-IO core
//! like [`crate::queue::QueueSet`]: inputs with `now`, then drain
//! [`QueueNode::poll_event`] (actions for this node's calls, exactly the
//! [`QueueAction`]s a single-node queue produces) and
//! [`QueueNode::poll_store`] (what must change in PostgreSQL, in order).
//!
//! The node owns every timer of its callers (announcements, maximum wait,
//! the ring timeout of the agent legs it places); who rings whom is decided
//! by the dispatch transaction ([`super::plan`]) and arrives here as
//! [`QueueNode::offer`]. An agent's state lives in the database only.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use crate::queue::{AgentId, CallerId, QueueAction, QueueConfig, QueueError};

/// A change the node owes the database, applied in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCmd {
    /// Insert the entry (answer: [`QueueNode::joined`]). `joined_at_ms`: a
    /// re-join after the node's lease was lost keeps its original place.
    Join {
        caller: CallerId,
        queue: String,
        joined_at_ms: Option<i64>,
    },
    /// The caller is out (left, hung up, maximum wait): delete the entry and
    /// free the agents still ringing for it.
    Leave { entry: i64 },
    /// `agent` rang for `entry` without taking the call: free it (paused with
    /// `autopause`), and count it as tried when `tried`.
    RingEnded {
        entry: i64,
        agent: AgentId,
        tried: bool,
        autopause: bool,
    },
    /// `agent` answered: on a call; the entry is gone; other agents ringing
    /// for it are freed.
    Connected { entry: i64, agent: AgentId },
    /// `agent`'s call is over: wrap-up (the offering queue's), then free.
    CallEnded { agent: AgentId },
    /// Count who is ahead (answer: [`QueueNode::position`]).
    Position { caller: CallerId, entry: i64 },
}

#[derive(Debug)]
struct Local {
    queue: usize,
    entry: Option<i64>,
    joined_at_ms: Option<i64>,
    /// Agents ringing for this caller, with their ring generation.
    ringing: Vec<(AgentId, u64)>,
    /// Maximum wait reached while ringing: out when the ring ends.
    expired: bool,
    /// Left before the database answered the join.
    leaving: bool,
    epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    MaxWait { caller: CallerId, epoch: u64 },
    Announce { caller: CallerId, epoch: u64 },
    Ring { caller: CallerId, ring: u64 },
}

/// The callers one node holds in the shared queue. See the module docs.
#[derive(Debug)]
pub struct QueueNode {
    queues: Vec<QueueConfig>,
    callers: HashMap<CallerId, Local>,
    by_entry: HashMap<i64, CallerId>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    actions: VecDeque<QueueAction>,
    store: VecDeque<StoreCmd>,
    next_epoch: u64,
}

impl QueueNode {
    pub fn new(queues: Vec<QueueConfig>) -> QueueNode {
        QueueNode {
            queues,
            callers: HashMap::new(),
            by_entry: HashMap::new(),
            timers: BinaryHeap::new(),
            actions: VecDeque::new(),
            store: VecDeque::new(),
            next_epoch: 1,
        }
    }

    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    /// Callers of this node in the queue (joined or joining).
    pub fn waiting(&self) -> usize {
        self.callers.values().filter(|c| !c.leaving).count()
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Puts `caller` in `queue`. The database insert follows
    /// ([`StoreCmd::Join`]); announcements and the maximum wait count from
    /// now.
    pub fn join(&mut self, now: Instant, queue: &str, caller: CallerId) -> Result<(), QueueError> {
        let qi = self
            .queues
            .iter()
            .position(|q| q.name == queue)
            .ok_or_else(|| QueueError::UnknownQueue(queue.to_owned()))?;
        // A caller that left before the database answered its join is out
        // of the queue (it got `Left`): it may join again, in a fresh
        // `Local` (its old timers no longer match the epoch). Both inserts
        // answer with the same row (one per node and caller).
        if self.callers.get(&caller).is_some_and(|c| !c.leaving) {
            return Err(QueueError::AlreadyQueued(caller));
        }
        let epoch = self.epoch();
        let cfg = &self.queues[qi];
        let (first, max) = (now + cfg.first_announce_after, now + cfg.max_wait);
        self.timers
            .push(Reverse((first, Timer::Announce { caller, epoch })));
        self.timers
            .push(Reverse((max, Timer::MaxWait { caller, epoch })));
        self.callers.insert(
            caller,
            Local {
                queue: qi,
                entry: None,
                joined_at_ms: None,
                ringing: Vec::new(),
                expired: false,
                leaving: false,
                epoch,
            },
        );
        self.store.push_back(StoreCmd::Join {
            caller,
            queue: queue.to_owned(),
            joined_at_ms: None,
        });
        Ok(())
    }

    /// The database holds `caller` as `entry`, joined at `joined_at_ms`.
    pub fn joined(&mut self, caller: CallerId, entry: i64, joined_at_ms: i64) {
        let Some(c) = self.callers.get_mut(&caller) else {
            // Gone meanwhile (maximum wait before the answer, or dropped
            // by `rejoin_all` while leaving).
            self.store.push_back(StoreCmd::Leave { entry });
            return;
        };
        c.entry = Some(entry);
        c.joined_at_ms = Some(joined_at_ms);
        if c.leaving {
            self.callers.remove(&caller);
            self.store.push_back(StoreCmd::Leave { entry });
        } else {
            self.by_entry.insert(entry, caller);
        }
    }

    /// This node's lease was lost and its entries deleted by another node
    /// (it could not reach the database for a lease time): the rings it
    /// placed are cancelled (the reaper freed those agents) and its callers
    /// are inserted again at their original join time, so nobody loses
    /// their place.
    pub fn rejoin_all(&mut self) {
        self.by_entry.clear();
        let mut again = Vec::new();
        let mut cancels = Vec::new();
        let queues = &self.queues;
        self.callers.retain(|&caller, c| {
            if c.leaving {
                return false;
            }
            for (agent, _) in c.ringing.drain(..) {
                cancels.push(QueueAction::CancelRing { caller, agent });
            }
            if c.expired {
                // Its maximum wait passed during the ring that just ended:
                // out, as when the ring ends otherwise (the reaper deleted
                // the entry already).
                cancels.push(QueueAction::MaxWait {
                    caller,
                    action: queues[c.queue].on_max_wait,
                });
                return false;
            }
            again.push((c.joined_at_ms, c.entry.take(), c.epoch, caller, c.queue));
            true
        });
        self.actions.extend(cancels);
        // The database's order (join time, then entry id); callers not
        // answered yet in local join order.
        again.sort_by_key(|&(at, entry, epoch, ..)| (at, entry, epoch));
        for (joined_at_ms, _, _, caller, qi) in again {
            self.store.push_back(StoreCmd::Join {
                caller,
                queue: self.queues[qi].name.clone(),
                joined_at_ms,
            });
        }
    }

    /// Whether changes wait to be written (the database is then behind
    /// this node: what it says is ringing may already have ended here).
    pub fn has_store_pending(&self) -> bool {
        !self.store.is_empty()
    }

    /// The dispatch transaction offered `agent` (at `contact`) to `entry`.
    /// Offers for callers that left are handed back.
    pub fn offer(&mut self, now: Instant, entry: i64, agent: AgentId, contact: String) {
        let release = StoreCmd::RingEnded {
            entry,
            agent: agent.clone(),
            tried: false,
            autopause: false,
        };
        let Some(&caller) = self.by_entry.get(&entry) else {
            self.store.push_back(release);
            return;
        };
        let ring = self.epoch();
        let Some(c) = self.callers.get_mut(&caller) else {
            self.store.push_back(release);
            return;
        };
        if c.ringing.iter().any(|(a, _)| *a == agent) {
            // The same offer again (a resync after a lost notification).
            return;
        }
        if c.expired || c.leaving {
            self.store.push_back(release);
            return;
        }
        c.ringing.push((agent.clone(), ring));
        let at = now + self.queues[c.queue].ring_timeout;
        self.timers
            .push(Reverse((at, Timer::Ring { caller, ring })));
        self.actions.push_back(QueueAction::RingAgent {
            caller,
            agent,
            contact,
        });
    }

    /// `*` or hang-up while waiting (a caller not waiting is ignored).
    pub fn leave(&mut self, _now: Instant, caller: CallerId) {
        let Some(c) = self.callers.get_mut(&caller) else {
            return;
        };
        if c.leaving {
            return;
        }
        for (agent, _) in std::mem::take(&mut c.ringing) {
            self.actions
                .push_back(QueueAction::CancelRing { caller, agent });
        }
        self.actions.push_back(QueueAction::Left { caller });
        match c.entry {
            Some(entry) => {
                self.by_entry.remove(&entry);
                self.callers.remove(&caller);
                self.store.push_back(StoreCmd::Leave { entry });
            }
            None => c.leaving = true,
        }
    }

    /// `agent` answered for `caller`: connect them, cancel the other rings.
    pub fn agent_answered(&mut self, _now: Instant, agent: &AgentId, caller: CallerId) {
        let Some(c) = self.callers.get(&caller) else {
            return;
        };
        if !c.ringing.iter().any(|(a, _)| a == agent) {
            return;
        }
        let Some(c) = self.callers.remove(&caller) else {
            return;
        };
        let Some(entry) = c.entry else {
            return;
        };
        self.by_entry.remove(&entry);
        self.actions.push_back(QueueAction::Connect {
            caller,
            agent: agent.clone(),
        });
        for (other, _) in c.ringing.into_iter().filter(|(a, _)| a != agent) {
            self.actions.push_back(QueueAction::CancelRing {
                caller,
                agent: other,
            });
        }
        self.store.push_back(StoreCmd::Connected {
            entry,
            agent: agent.clone(),
        });
    }

    /// The agent rejected the ring, was busy or unreachable: the caller
    /// keeps its place and the next agent is tried.
    pub fn agent_failed(&mut self, _now: Instant, agent: &AgentId, caller: CallerId) {
        self.end_ring(caller, agent, false);
    }

    /// The bridged (or transferred) call of `agent` is over: wrap-up.
    pub fn call_ended(&mut self, _now: Instant, agent: &AgentId) {
        self.store.push_back(StoreCmd::CallEnded {
            agent: agent.clone(),
        });
    }

    /// Answer to [`StoreCmd::Position`]: `position` is 1-based across nodes.
    pub fn position(&mut self, caller: CallerId, position: usize) {
        if let Some(c) = self.callers.get(&caller)
            && c.ringing.is_empty()
            && !c.expired
            && !c.leaving
        {
            self.actions.push_back(QueueAction::Announce {
                caller,
                position: position.max(1),
                estimated_wait: None,
            });
        }
    }

    fn end_ring(&mut self, caller: CallerId, agent: &AgentId, timed_out: bool) {
        let Some(c) = self.callers.get_mut(&caller) else {
            return;
        };
        let Some(i) = c.ringing.iter().position(|(a, _)| a == agent) else {
            return;
        };
        c.ringing.remove(i);
        let autopause = timed_out && self.queues[c.queue].autopause;
        if let Some(entry) = c.entry {
            self.store.push_back(StoreCmd::RingEnded {
                entry,
                agent: agent.clone(),
                tried: true,
                autopause,
            });
        }
        if c.expired && c.ringing.is_empty() {
            self.finish_max_wait(caller);
        }
    }

    fn finish_max_wait(&mut self, caller: CallerId) {
        let Some(c) = self.callers.remove(&caller) else {
            return;
        };
        if let Some(entry) = c.entry {
            self.by_entry.remove(&entry);
            self.store.push_back(StoreCmd::Leave { entry });
        }
        self.actions.push_back(QueueAction::MaxWait {
            caller,
            action: self.queues[c.queue].on_max_wait,
        });
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, t))) = self.timers.pop() else {
                break;
            };
            self.fire(now, at, t);
        }
    }

    fn fire(&mut self, now: Instant, at: Instant, t: Timer) {
        match t {
            Timer::Announce { caller, epoch } => {
                let Some(c) = self.callers.get(&caller) else {
                    return;
                };
                if c.epoch != epoch || c.leaving {
                    return;
                }
                let every = self.queues[c.queue].announce_every;
                let next = if at + every > now {
                    at + every
                } else {
                    now + every
                };
                self.timers
                    .push(Reverse((next, Timer::Announce { caller, epoch })));
                if let (Some(entry), true, false) = (c.entry, c.ringing.is_empty(), c.expired) {
                    self.store.push_back(StoreCmd::Position { caller, entry });
                }
            }
            Timer::MaxWait { caller, epoch } => {
                let Some(c) = self.callers.get_mut(&caller) else {
                    return;
                };
                if c.epoch != epoch || c.leaving {
                    return;
                }
                if c.ringing.is_empty() {
                    self.finish_max_wait(caller);
                } else {
                    // Let the ring finish: dropping a caller a second before
                    // the agent picks up is the worst outcome.
                    c.expired = true;
                }
            }
            Timer::Ring { caller, ring } => {
                let Some(agent) = self.callers.get(&caller).and_then(|c| {
                    c.ringing
                        .iter()
                        .find(|(_, r)| *r == ring)
                        .map(|(a, _)| a.clone())
                }) else {
                    return;
                };
                self.actions.push_back(QueueAction::CancelRing {
                    caller,
                    agent: agent.clone(),
                });
                self.end_ring(caller, &agent, true);
            }
        }
    }

    /// The next action for this node's calls.
    pub fn poll_event(&mut self) -> Option<QueueAction> {
        self.actions.pop_front()
    }

    /// The next database change, in order.
    pub fn poll_store(&mut self) -> Option<StoreCmd> {
        self.store.pop_front()
    }
}

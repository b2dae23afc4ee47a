//! The shared agent queue's PostgreSQL side ([`crate::queue::shared`]): every statement the nodes use to
//! coordinate (tables in `migrations/postgres/20261203000004_shared_queue.sql`).
//!
//! - Dispatch is one transaction under a transaction-level advisory lock,
//!   so two nodes never offer the same agent: read agents and entries, run
//!   [`plan`], write the offers, and `pg_notify` each offer to the node
//!   holding the caller (delivered at commit, never for a rolled-back plan).
//! - Every other change is a short statement keyed by entry and agent, and
//!   idempotent, so a node can repeat it after a failed round trip.
//! - Liveness is a lease per node; any node reaps a dead node's rows.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};

use crate::queue::shared::StoreCmd;
use crate::queue::shared::plan::{AgentRow, EntryRow, Plan, Round, plan};
use crate::queue::{AgentId, CallerId, QueueConfig};

/// The advisory lock key of the dispatch transaction ("12333" in the
/// high word, "queue" in the low one).
const DISPATCH_LOCK: i64 = (12333 << 32) | 0x5155;

/// The channel offers are announced on (payload: [`OfferNote`]).
pub const OFFER_CHANNEL: &str = "ivr12333_offer";

/// An offer as `pg_notify` carries it to the node holding the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferNote {
    pub node: String,
    pub entry: i64,
    pub agent: String,
    pub contact: String,
    /// The Path the agent registered through (RFC 3327), as a Route set.
    #[serde(default)]
    pub path: Vec<String>,
}

/// What a [`StoreCmd`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    Joined {
        caller: CallerId,
        entry: i64,
        joined_at_ms: i64,
    },
    Position {
        caller: CallerId,
        position: usize,
    },
}

/// The outcome of one dispatch transaction.
#[derive(Debug, Clone, Default)]
pub struct Dispatched {
    /// Offers to this node's callers (the others went out by NOTIFY).
    pub local: Vec<OfferNote>,
    /// All offers made, for figures.
    pub offers: usize,
    /// Free agents left per queue (for "transfer only if an agent is free").
    pub free_per_queue: HashMap<String, usize>,
    /// Run dispatch again this long from now (a retry or wrap-up ends).
    pub wake_in: Option<Duration>,
}

/// One node's handle on the shared tables.
#[derive(Clone)]
pub struct PgQueueStore {
    pool: PgPool,
    node: String,
    queues: Vec<QueueConfig>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgQueueStore {
    pub fn new(pool: PgPool, node: impl Into<String>, queues: Vec<QueueConfig>) -> PgQueueStore {
        PgQueueStore {
            pool,
            node: node.into(),
            queues,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// At start-up: take the lease, drop what an earlier run of this node
    /// left (its callers are gone with it), make sure every configured
    /// agent has a row, and log in the agents with a static contact.
    pub async fn start(
        &self,
        lease: Duration,
        agents: &[(AgentId, Option<String>)],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        release_nodes(&mut tx, std::slice::from_ref(&self.node)).await?;
        sqlx::query(
            "INSERT INTO queue_nodes (node, lease_until_ms, started_at_ms)
             VALUES ($1, ivr_now_ms() + $2, ivr_now_ms())
             ON CONFLICT (node) DO UPDATE
               SET lease_until_ms = EXCLUDED.lease_until_ms, started_at_ms = EXCLUDED.started_at_ms",
        )
        .bind(&self.node)
        .bind(ms(lease))
        .execute(&mut *tx)
        .await?;
        for (agent, contact) in agents {
            sqlx::query(
                "INSERT INTO queue_agents (agent, idle_since_ms, state_since_ms)
                 VALUES ($1, ivr_now_ms(), ivr_now_ms()) ON CONFLICT (agent) DO NOTHING",
            )
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?;
            if let Some(c) = contact {
                sqlx::query(
                    "UPDATE queue_agents SET static_contact = $2,
                       idle_since_ms = CASE WHEN logged_in THEN idle_since_ms ELSE ivr_now_ms() END,
                       logged_in = true
                     WHERE agent = $1",
                )
                .bind(agent.as_str())
                .bind(c)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    }

    /// Renews this node's lease. `true`: the lease had lapsed and another
    /// node reaped this node's entries (they must be inserted again).
    pub async fn renew(&self, lease: Duration) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "INSERT INTO queue_nodes (node, lease_until_ms, started_at_ms)
             VALUES ($1, ivr_now_ms() + $2, ivr_now_ms())
             ON CONFLICT (node) DO UPDATE SET lease_until_ms = EXCLUDED.lease_until_ms
             RETURNING (xmax = 0) AS inserted",
        )
        .bind(&self.node)
        .bind(ms(lease))
        .fetch_one(&self.pool)
        .await?;
        row.try_get("inserted")
    }

    /// Gives up the lease (clean shutdown): this node's entries go at once.
    pub async fn stop(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        release_nodes(&mut tx, std::slice::from_ref(&self.node)).await?;
        sqlx::query("DELETE FROM queue_nodes WHERE node = $1")
            .bind(&self.node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Reaps nodes whose lease ran out. Returns their names.
    pub async fn reap(&self) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let dead: Vec<String> = sqlx::query_scalar(
            "DELETE FROM queue_nodes WHERE lease_until_ms < ivr_now_ms() RETURNING node",
        )
        .fetch_all(&mut *tx)
        .await?;
        if !dead.is_empty() {
            release_nodes(&mut tx, &dead).await?;
        }
        tx.commit().await?;
        Ok(dead)
    }

    /// Applies one change; `Ok(None)` for changes that answer nothing.
    pub async fn apply(&self, cmd: &StoreCmd) -> Result<Option<StoreReply>, sqlx::Error> {
        match cmd {
            StoreCmd::Join {
                caller,
                queue,
                joined_at_ms,
            } => {
                let row = sqlx::query(
                    "INSERT INTO queue_entries (queue, node, caller, joined_at_ms)
                     VALUES ($1, $2, $3, COALESCE($4, ivr_now_ms()))
                     ON CONFLICT (node, caller) DO UPDATE SET queue = EXCLUDED.queue
                     RETURNING id, joined_at_ms",
                )
                .bind(queue)
                .bind(&self.node)
                .bind(caller.0 as i64)
                .bind(*joined_at_ms)
                .fetch_one(&self.pool)
                .await?;
                Ok(Some(StoreReply::Joined {
                    caller: *caller,
                    entry: row.try_get("id")?,
                    joined_at_ms: row.try_get("joined_at_ms")?,
                }))
            }
            StoreCmd::Leave { entry } => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM queue_entries WHERE id = $1")
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
                free_ringing(&mut tx, *entry, None).await?;
                tx.commit().await?;
                Ok(None)
            }
            StoreCmd::RingEnded {
                entry,
                agent,
                tried,
                autopause,
            } => {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "UPDATE queue_agents
                       SET state = 'idle', entry = NULL, node = NULL, caller = NULL,
                           state_since_ms = ivr_now_ms(), paused = paused OR $3
                     WHERE agent = $1 AND state = 'ringing' AND entry = $2",
                )
                .bind(agent.as_str())
                .bind(entry)
                .bind(autopause)
                .execute(&mut *tx)
                .await?;
                if *tried {
                    sqlx::query(
                        "UPDATE queue_entries SET tried = array_append(tried, $2)
                         WHERE id = $1 AND NOT ($2 = ANY (tried))",
                    )
                    .bind(entry)
                    .bind(agent.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(None)
            }
            StoreCmd::Connected { entry, agent } => {
                let mut tx = self.pool.begin().await?;
                // The call is real whatever the row says (a reaper may have
                // freed a ring this node could not confirm in time).
                sqlx::query(
                    "UPDATE queue_agents
                       SET state = 'on_call', entry = $2, node = $3, wrap_until_ms = NULL,
                           caller = COALESCE((SELECT e.caller FROM queue_entries e WHERE e.id = $2),
                                             caller),
                           calls_taken = calls_taken + 1, state_since_ms = ivr_now_ms()
                     WHERE agent = $1",
                )
                .bind(agent.as_str())
                .bind(entry)
                .bind(&self.node)
                .execute(&mut *tx)
                .await?;
                free_ringing(&mut tx, *entry, Some(agent.as_str())).await?;
                sqlx::query("DELETE FROM queue_entries WHERE id = $1")
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(None)
            }
            StoreCmd::CallEnded { agent } => {
                sqlx::query(
                    "UPDATE queue_agents
                       SET state = CASE WHEN wrap_up_ms > 0 AND logged_in THEN 'wrap_up' ELSE 'idle' END,
                           wrap_until_ms = CASE WHEN wrap_up_ms > 0 AND logged_in
                                                THEN ivr_now_ms() + wrap_up_ms END,
                           idle_since_ms = ivr_now_ms() + wrap_up_ms,
                           entry = NULL, node = NULL, caller = NULL, state_since_ms = ivr_now_ms()
                     WHERE agent = $1 AND state = 'on_call' AND node = $2",
                )
                .bind(agent.as_str())
                .bind(&self.node)
                .execute(&self.pool)
                .await?;
                Ok(None)
            }
            StoreCmd::Position { caller, entry } => {
                let n: Option<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM queue_entries e, queue_entries me
                     WHERE me.id = $1 AND e.queue = me.queue
                       AND (e.joined_at_ms, e.id) <= (me.joined_at_ms, me.id)",
                )
                .bind(entry)
                .fetch_one(&self.pool)
                .await?;
                Ok(match n {
                    Some(n) if n > 0 => Some(StoreReply::Position {
                        caller: *caller,
                        position: usize::try_from(n).unwrap_or(usize::MAX),
                    }),
                    _ => None,
                })
            }
        }
    }

    /// One dispatch round (see the module docs).
    pub async fn dispatch(&self) -> Result<Dispatched, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DISPATCH_LOCK)
            .execute(&mut *tx)
            .await?;
        let now_ms: i64 = sqlx::query_scalar("SELECT ivr_now_ms()")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT a.agent, a.logged_in, a.paused, a.state, a.wrap_until_ms, a.idle_since_ms,
                    a.offered_at_ms,
                    COALESCE(CASE WHEN b.expires_at_ms > $1 THEN b.contact END, a.static_contact)
                      AS contact,
                    CASE WHEN b.expires_at_ms > $1 THEN b.path END AS path
               FROM queue_agents a LEFT JOIN agent_bindings b USING (agent)",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut agents = Vec::with_capacity(rows.len());
        let mut contacts: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for r in &rows {
            let id: String = r.try_get("agent")?;
            let state: String = r.try_get("state")?;
            let contact: Option<String> = r.try_get("contact")?;
            let path: Option<Vec<String>> = r.try_get("path")?;
            let ready = r.try_get::<bool, _>("logged_in")?
                && !r.try_get::<bool, _>("paused")?
                && (state == "idle" || state == "wrap_up")
                && contact.is_some();
            if let Some(c) = contact {
                contacts.insert(id.clone(), (c, path.unwrap_or_default()));
            }
            agents.push(AgentRow {
                id: AgentId(id),
                ready,
                wrap_until_ms: if state == "wrap_up" {
                    r.try_get("wrap_until_ms")?
                } else {
                    None
                },
                idle_since_ms: r.try_get("idle_since_ms")?,
                offered_at_ms: r.try_get("offered_at_ms")?,
            });
        }
        let mut out = Dispatched::default();
        let any_ready = agents.iter().any(|a| a.ready || a.wrap_until_ms.is_some());
        let entries = if any_ready {
            let rows = sqlx::query(
                "SELECT e.id, e.queue, e.joined_at_ms, e.tried, e.retry_at_ms,
                        (SELECT count(*) FROM queue_agents a
                          WHERE a.state = 'ringing' AND a.entry = e.id) AS ringing
                   FROM queue_entries e",
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in rows {
                let tried: Vec<String> = r.try_get("tried")?;
                v.push(EntryRow {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    joined_at_ms: r.try_get("joined_at_ms")?,
                    ringing: u32::try_from(r.try_get::<i64, _>("ringing")?).unwrap_or(u32::MAX),
                    tried: tried.into_iter().map(AgentId).collect(),
                    retry_at_ms: r.try_get("retry_at_ms")?,
                });
            }
            v
        } else {
            Vec::new()
        };
        let Plan {
            offers,
            rounds,
            next_wake_ms,
        } = plan(&self.queues, &agents, &entries, now_ms);
        for r in &rounds {
            match r {
                Round::Wait { entry, retry_at_ms } => {
                    sqlx::query("UPDATE queue_entries SET retry_at_ms = $2 WHERE id = $1")
                        .bind(entry)
                        .bind(retry_at_ms)
                        .execute(&mut *tx)
                        .await?
                }
                Round::Restart { entry } => {
                    sqlx::query(
                        "UPDATE queue_entries SET retry_at_ms = NULL, tried = '{}' WHERE id = $1",
                    )
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?
                }
            };
        }
        for o in &offers {
            let node: String = sqlx::query_scalar(
                "UPDATE queue_agents a
                   SET state = 'ringing', entry = e.id, node = e.node, caller = e.caller,
                       wrap_up_ms = $3,
                       offered_at_ms = $4, state_since_ms = $4, wrap_until_ms = NULL,
                       idle_since_ms = CASE WHEN a.state = 'wrap_up'
                                            THEN COALESCE(a.wrap_until_ms, a.idle_since_ms)
                                            ELSE a.idle_since_ms END
                  FROM queue_entries e
                 WHERE a.agent = $1 AND e.id = $2
                 RETURNING e.node",
            )
            .bind(o.agent.as_str())
            .bind(o.entry)
            .bind(o.wrap_up_ms)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            let (contact, path) = contacts.remove(o.agent.as_str()).unwrap_or_default();
            let note = OfferNote {
                node,
                entry: o.entry,
                agent: o.agent.0.clone(),
                contact,
                path,
            };
            if note.node == self.node {
                out.local.push(note);
            } else {
                let payload = serde_json::to_string(&note).unwrap_or_default();
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(OFFER_CHANNEL)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        out.offers = offers.len();
        let offered: Vec<&AgentId> = offers.iter().map(|o| &o.agent).collect();
        for q in &self.queues {
            let free = q
                .agents
                .iter()
                .filter(|a| {
                    !offered.contains(a)
                        && agents.iter().any(|r| {
                            &r.id == *a && r.ready && r.wrap_until_ms.is_none_or(|t| t <= now_ms)
                        })
                })
                .count();
            out.free_per_queue.insert(q.name.clone(), free);
        }
        out.wake_in =
            next_wake_ms.map(|t| Duration::from_millis(t.saturating_sub(now_ms).max(0) as u64));
        Ok(out)
    }

    /// Agents ringing for this node's callers now, as the database has
    /// them: the node compares them with its own (a notification lost
    /// while the listener reconnected is found here).
    pub async fn ringing_for_node(&self) -> Result<Vec<OfferNote>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT a.agent, a.entry,
                    COALESCE(CASE WHEN b.expires_at_ms > ivr_now_ms() THEN b.contact END,
                             a.static_contact) AS contact,
                    CASE WHEN b.expires_at_ms > ivr_now_ms() THEN b.path END AS path
               FROM queue_agents a LEFT JOIN agent_bindings b USING (agent)
              WHERE a.state = 'ringing' AND a.node = $1",
        )
        .bind(&self.node)
        .fetch_all(&self.pool)
        .await?;
        let mut v = Vec::with_capacity(rows.len());
        for r in rows {
            let contact: Option<String> = r.try_get("contact")?;
            let path: Option<Vec<String>> = r.try_get("path")?;
            let Some(entry) = r.try_get::<Option<i64>, _>("entry")? else {
                continue;
            };
            v.push(OfferNote {
                node: self.node.clone(),
                entry,
                agent: r.try_get("agent")?,
                contact: contact.unwrap_or_default(),
                path: path.unwrap_or_default(),
            });
        }
        Ok(v)
    }

    /// A REGISTER for `agent` succeeded on this node.
    pub async fn register(
        &self,
        agent: &AgentId,
        contact: &str,
        path: &[String],
        expires: Duration,
        received: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_bindings (agent, contact, path, expires_at_ms, received, via_node)
             VALUES ($1, $2, $3, ivr_now_ms() + $4, $5, $6)
             ON CONFLICT (agent) DO UPDATE SET contact = EXCLUDED.contact, path = EXCLUDED.path,
               expires_at_ms = EXCLUDED.expires_at_ms, received = EXCLUDED.received,
               via_node = EXCLUDED.via_node",
        )
        .bind(agent.as_str())
        .bind(contact)
        .bind(path)
        .bind(ms(expires))
        .bind(received)
        .bind(&self.node)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO queue_agents (agent, logged_in, idle_since_ms, state_since_ms)
             VALUES ($1, true, ivr_now_ms(), ivr_now_ms())
             ON CONFLICT (agent) DO UPDATE SET logged_in = true,
               idle_since_ms = CASE WHEN queue_agents.logged_in THEN queue_agents.idle_since_ms
                                    ELSE ivr_now_ms() END",
        )
        .bind(agent.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The agent unregistered (or logged out).
    pub async fn unregister(&self, agent: &AgentId) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM agent_bindings WHERE agent = $1")
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE queue_agents SET logged_in = (static_contact IS NOT NULL) WHERE agent = $1",
        )
        .bind(agent.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Pause or resume an agent (admin API).
    pub async fn pause(&self, agent: &AgentId, paused: bool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE queue_agents SET paused = $2 WHERE agent = $1")
            .bind(agent.as_str())
            .bind(paused)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A waiting caller in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEntry {
    pub queue: String,
    pub node: String,
    pub caller: i64,
    pub joined_at_ms: i64,
    pub ringing: Vec<String>,
}

/// An agent in [`ClusterView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewAgent {
    pub agent: String,
    pub logged_in: bool,
    pub paused: bool,
    pub state: String,
    pub caller: Option<i64>,
    pub since_ms: i64,
    pub idle_since_ms: i64,
    pub calls_taken: i64,
    pub contact: Option<String>,
}

/// The whole cluster's queue as the database has it (for the admin API and
/// the console), read at database time `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub now_ms: i64,
    pub entries: Vec<ViewEntry>,
    pub agents: Vec<ViewAgent>,
}

impl PgQueueStore {
    /// Reads [`ClusterView`]: waiting callers in join order, every agent.
    pub async fn view(&self) -> Result<ClusterView, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let now_ms: i64 = sqlx::query_scalar("SELECT ivr_now_ms()")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT e.queue, e.node, e.caller, e.joined_at_ms,
                    ARRAY(SELECT a.agent FROM queue_agents a
                           WHERE a.state = 'ringing' AND a.entry = e.id ORDER BY a.agent) AS ringing
               FROM queue_entries e ORDER BY e.joined_at_ms, e.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            entries.push(ViewEntry {
                queue: r.try_get("queue")?,
                node: r.try_get("node")?,
                caller: r.try_get("caller")?,
                joined_at_ms: r.try_get("joined_at_ms")?,
                ringing: r.try_get("ringing")?,
            });
        }
        let rows = sqlx::query(
            "SELECT a.agent, a.logged_in, a.paused, a.state, a.state_since_ms, a.idle_since_ms,
                    a.calls_taken,
                    a.caller,
                    COALESCE(CASE WHEN b.expires_at_ms > $1 THEN b.contact END, a.static_contact)
                      AS contact
               FROM queue_agents a LEFT JOIN agent_bindings b USING (agent) ORDER BY a.agent",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut agents = Vec::with_capacity(rows.len());
        for r in rows {
            agents.push(ViewAgent {
                agent: r.try_get("agent")?,
                logged_in: r.try_get("logged_in")?,
                paused: r.try_get("paused")?,
                state: r.try_get("state")?,
                caller: r.try_get("caller")?,
                since_ms: r.try_get("state_since_ms")?,
                idle_since_ms: r.try_get("idle_since_ms")?,
                calls_taken: r.try_get("calls_taken")?,
                contact: r.try_get("contact")?,
            });
        }
        Ok(ClusterView {
            now_ms,
            entries,
            agents,
        })
    }

    /// An operator logs `agent` in (at `contact`, else its registration or
    /// static contact) or out.
    pub async fn set_login(
        &self,
        agent: &AgentId,
        logged_in: bool,
        contact: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE queue_agents
               SET idle_since_ms = CASE WHEN $2 AND NOT logged_in THEN ivr_now_ms()
                                        ELSE idle_since_ms END,
                   logged_in = $2, static_contact = COALESCE($3, static_contact)
             WHERE agent = $1",
        )
        .bind(agent.as_str())
        .bind(logged_in)
        .bind(contact)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Removes `nodes`' entries and releases the agents they rang or bridged:
/// to wrap-up (the offering queue's), since their call just ended.
async fn release_nodes(
    tx: &mut Transaction<'_, Postgres>,
    nodes: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM queue_entries WHERE node = ANY ($1)")
        .bind(nodes)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE queue_agents
           SET state = CASE WHEN wrap_up_ms > 0 THEN 'wrap_up' ELSE 'idle' END,
               wrap_until_ms = CASE WHEN wrap_up_ms > 0 THEN ivr_now_ms() + wrap_up_ms END,
               idle_since_ms = ivr_now_ms() + wrap_up_ms,
               entry = NULL, node = NULL, caller = NULL, state_since_ms = ivr_now_ms()
         WHERE node = ANY ($1) AND state IN ('ringing', 'on_call')",
    )
    .bind(nodes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Frees the agents still ringing for `entry` (but `except`).
async fn free_ringing(
    tx: &mut Transaction<'_, Postgres>,
    entry: i64,
    except: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue_agents SET state = 'idle', entry = NULL, node = NULL, caller = NULL,
                state_since_ms = ivr_now_ms()
          WHERE state = 'ringing' AND entry = $1 AND agent IS DISTINCT FROM $2",
    )
    .bind(entry)
    .bind(except)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

-- The agent queue shared by several nodes (docs/cluster.md). PostgreSQL
-- only: with SQLite there is one node and the queue stays in its memory.
-- Times are milliseconds on the database's clock (ivr_now_ms), so that
-- nodes with skewed clocks agree. No caller number, ID or digit is stored:
-- a caller is its node's call number.

CREATE FUNCTION ivr_now_ms() RETURNS BIGINT
    LANGUAGE SQL VOLATILE
    AS $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

-- Each node renews its lease; a node whose lease ran out is dead: its
-- waiting callers' entries go, the agents it rang or bridged go to wrap-up.
CREATE TABLE queue_nodes (
    node           TEXT PRIMARY KEY,
    lease_until_ms BIGINT NOT NULL,
    started_at_ms  BIGINT NOT NULL
);

-- Waiting callers, served in (joined_at_ms, id) order across nodes.
CREATE TABLE queue_entries (
    id            BIGSERIAL PRIMARY KEY,
    queue         TEXT NOT NULL,
    node          TEXT NOT NULL,
    caller        BIGINT NOT NULL,
    joined_at_ms  BIGINT NOT NULL,
    -- Agents that did not answer in the current round, and the end of the
    -- wait before the next round (see QueueConfig::retry).
    tried         TEXT[] NOT NULL DEFAULT '{}',
    retry_at_ms   BIGINT,
    UNIQUE (node, caller)
);
CREATE INDEX queue_entries_order ON queue_entries (queue, joined_at_ms, id);
CREATE INDEX queue_entries_node ON queue_entries (node);

-- Agent state. An agent rings for (or talks to) at most one entry; `node`
-- is the node holding that caller, `caller` that node's call number (kept
-- while on the call, for the console). wrap_up_ms is the offering queue's.
CREATE TABLE queue_agents (
    agent          TEXT PRIMARY KEY,
    logged_in      BOOLEAN NOT NULL DEFAULT false,
    paused         BOOLEAN NOT NULL DEFAULT false,
    state          TEXT NOT NULL DEFAULT 'idle'
                   CHECK (state IN ('idle', 'ringing', 'on_call', 'wrap_up')),
    entry          BIGINT,
    node           TEXT,
    caller         BIGINT,
    wrap_up_ms     BIGINT NOT NULL DEFAULT 0,
    wrap_until_ms  BIGINT,
    idle_since_ms  BIGINT NOT NULL DEFAULT 0,
    offered_at_ms  BIGINT,
    state_since_ms BIGINT NOT NULL DEFAULT 0,
    calls_taken    BIGINT NOT NULL DEFAULT 0,
    static_contact TEXT
);
CREATE INDEX queue_agents_node ON queue_agents (node) WHERE node IS NOT NULL;
CREATE INDEX queue_agents_entry ON queue_agents (entry) WHERE entry IS NOT NULL;

-- REGISTER bindings: they belong to the agent, not to the node that took
-- the REGISTER, and outlive it. path: the Path (RFC 3327) it came through.
CREATE TABLE agent_bindings (
    agent         TEXT PRIMARY KEY,
    contact       TEXT NOT NULL,
    path          TEXT[] NOT NULL DEFAULT '{}',
    expires_at_ms BIGINT NOT NULL,
    received      TEXT,
    via_node      TEXT NOT NULL
);

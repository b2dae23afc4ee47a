-- ivr12333 ledger schema (SQLite). Money is BIGINT fen, months are 'YYYY-MM' text,
-- times are Unix milliseconds. Keep in step with migrations/postgres.

-- Who may authenticate, and the lockout state (DOMAIN.md "PIN and lockout").
CREATE TABLE person (
    id_number          TEXT PRIMARY KEY NOT NULL,
    name               TEXT NOT NULL,
    pin_hash           TEXT,                          -- NULL: no PIN set, never verifies
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    fail_count         BIGINT NOT NULL DEFAULT 0,
    fail_window_start  BIGINT,                        -- first failure of the current window
    locked_until       BIGINT                         -- locked while now < locked_until
);

-- The per-insurance records (one row per person). A NULL pension/medical balance means
-- "no record" for that insurance.
CREATE TABLE account (
    id_number               TEXT PRIMARY KEY NOT NULL REFERENCES person (id_number) ON DELETE CASCADE,
    data_as_of              TEXT NOT NULL,
    pension_balance_fen     BIGINT,
    pension_months          BIGINT,
    pension_last_paid       TEXT,
    medical_balance_fen     BIGINT,
    unemployment_status     TEXT NOT NULL DEFAULT 'none' CHECK (unemployment_status IN ('active', 'suspended', 'none')),
    unemployment_last_paid  TEXT,
    work_injury_status      TEXT NOT NULL DEFAULT 'none' CHECK (work_injury_status IN ('active', 'suspended', 'none')),
    work_injury_last_paid   TEXT,
    maternity_status        TEXT NOT NULL DEFAULT 'none' CHECK (maternity_status IN ('active', 'suspended', 'none')),
    maternity_last_paid     TEXT
);

-- Append-only, hash-chained audit log: no balances, no PINs, no clear ID numbers.
CREATE TABLE audit_log (
    seq            BIGINT PRIMARY KEY NOT NULL,
    at_ms          BIGINT NOT NULL,
    call_id        TEXT NOT NULL,
    caller_masked  TEXT NOT NULL,
    id_hash        TEXT,
    action         TEXT NOT NULL,
    insurance      TEXT,
    queue          TEXT,
    outcome        TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    row_hash       TEXT NOT NULL
);

-- The chain head: the single row every append locks, so appends from several
-- processes form one chain.
CREATE TABLE audit_head (
    id         BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    seq        BIGINT NOT NULL,
    head_hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, head_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Call detail records (domain::CallRecord; Vec fields as JSON text).
CREATE TABLE call_records (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id        TEXT NOT NULL,
    caller_masked  TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    answered_at_ms BIGINT,
    ended_at_ms    BIGINT NOT NULL,
    end_reason     TEXT NOT NULL,
    states_json    TEXT NOT NULL,
    prompts_json   TEXT NOT NULL,
    menu_keys      TEXT NOT NULL
);
CREATE INDEX call_records_started ON call_records (started_at_ms);

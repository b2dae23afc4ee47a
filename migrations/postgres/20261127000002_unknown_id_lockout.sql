-- Lockout state for ID numbers that are NOT in the ledger, keyed by the
-- keyed ID hash (no clear ID). Unknown IDs then count failures and lock
-- exactly like real accounts, so "Locked" after N tries does not reveal
-- which IDs exist (DOMAIN.md: the line must not reveal which IDs exist).
CREATE TABLE unknown_id_lock (
    id_hash            TEXT PRIMARY KEY NOT NULL,
    fail_count         BIGINT NOT NULL DEFAULT 0,
    fail_window_start  BIGINT,
    locked_until       BIGINT
);

-- Indexes for the operators' console (docs/console.md). Keep in step with
-- migrations/postgres.
-- CDR pages filtered by end reason, newest first (SQLite indexes carry the
-- rowid, so (end_reason, started_at_ms) also orders by id).
CREATE INDEX IF NOT EXISTS call_records_reason_started ON call_records (end_reason, started_at_ms);
-- A call's audit rows (verified? which queue? what was played?).
CREATE INDEX IF NOT EXISTS audit_log_call ON audit_log (call_id, action, seq);
-- Authentication outcomes over time (failed PINs and lockouts per hour).
CREATE INDEX IF NOT EXISTS audit_log_action_at ON audit_log (action, at_ms);

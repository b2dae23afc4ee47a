-- Indexes for the operators' console (docs/console.md). Keep in step with
-- migrations/sqlite.
-- CDR pages, newest first, keyset-paged on (started_at_ms, id).
CREATE INDEX IF NOT EXISTS call_records_started_id ON call_records (started_at_ms, id);
-- The same filtered by end reason.
CREATE INDEX IF NOT EXISTS call_records_reason_started ON call_records (end_reason, started_at_ms, id);
-- A call's audit rows (verified? which queue? what was played?).
CREATE INDEX IF NOT EXISTS audit_log_call ON audit_log (call_id, action, seq);
-- Authentication outcomes over time (failed PINs and lockouts per hour).
CREATE INDEX IF NOT EXISTS audit_log_action_at ON audit_log (action, at_ms);

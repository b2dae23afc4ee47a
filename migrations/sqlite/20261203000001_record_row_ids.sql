-- Row ids for the records writer (docs/records.md): a CDR or audit row that
-- waited in the local spool may be written twice after a crash or an
-- ambiguous timeout; the unique row id makes the second write a no-op.
-- Rows written before this migration keep a NULL row id.
ALTER TABLE call_records ADD COLUMN row_id TEXT;
CREATE UNIQUE INDEX call_records_row_id ON call_records (row_id);
ALTER TABLE audit_log ADD COLUMN row_id TEXT;
CREATE UNIQUE INDEX audit_log_row_id ON audit_log (row_id);

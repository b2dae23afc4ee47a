-- Callback bookings (预约回拨): a caller who would wait long for an agent
-- leaves a number; agents list the open bookings in the admin API and mark
-- them done. Nothing is dialled automatically. The verified ID is stored
-- only as the keyed hash and the masked form (110105********002X).
-- row_id: made when the booking is queued for the records writer; a
-- booking replayed from the spool after a crash is stored once.
CREATE TABLE callbacks (
    id             BIGSERIAL PRIMARY KEY,
    created_at_ms  BIGINT NOT NULL,
    call_id        TEXT NOT NULL,
    caller_number  TEXT NOT NULL,
    id_hash        TEXT,
    id_masked      TEXT,
    queue          TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    done_by        TEXT,
    done_at_ms     BIGINT,
    row_id         TEXT UNIQUE
);
CREATE INDEX callbacks_status_created ON callbacks (status, created_at_ms);

-- Notifications waiting to be delivered to WEBHOOK_URL. An event is written in
-- the same transaction as what it reports (an email sent or failed), so a
-- crash can neither lose it nor announce something that did not happen.

CREATE TABLE webhook_events (
    id                TEXT    PRIMARY KEY,
    event_type        TEXT    NOT NULL,
    data              TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    next_attempt_at   BIGINT  NOT NULL,
    claimed_by        TEXT,
    claim_expires_at  BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    delivered_at      BIGINT
);
CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);

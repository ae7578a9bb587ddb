-- The first schema: just enough for /api/stats. The email outbox and the
-- generations history grow from here in later, additive migrations.
--
-- Portable on purpose (SQLite and PostgreSQL run the same file): TEXT ids made
-- by the application, BIGINT Unix milliseconds for time.

CREATE TABLE emails (
    id          TEXT    PRIMARY KEY,
    status      TEXT    NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX emails_created_at ON emails (created_at);

CREATE TABLE generations (
    id          TEXT    PRIMARY KEY,
    status      TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed')),
    created_at  BIGINT  NOT NULL
);
CREATE INDEX generations_created_at ON generations (created_at);

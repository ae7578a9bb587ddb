-- Accounts, sessions, API keys and the audit trail. Additive.
--
-- Secrets are never stored: passwords as argon2id PHC strings, session
-- tokens and API keys as SHA-256 digests (they are random, so a fast digest
-- is enough; only a low-entropy password needs a slow hash).

CREATE TABLE users (
    id             TEXT    PRIMARY KEY,
    -- Lower-cased, so `Admin` and `admin` are one account.
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL UNIQUE,
    -- The first characters of the key, so people can tell keys apart.
    prefix      TEXT    NOT NULL,
    -- Comma-separated: email, ai, admin.
    scopes      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

-- Append-only for the API: no route updates or deletes a row. Ids are UUIDv7,
-- so they sort by time and serve as the pagination cursor.
CREATE TABLE audit_log (
    id          TEXT    PRIMARY KEY,
    at          BIGINT  NOT NULL,
    -- `user:<id>`, `key:<id>`, `anonymous` or `system`.
    actor       TEXT    NOT NULL,
    -- The user name or key name at the time, for people reading the trail.
    actor_name  TEXT,
    action      TEXT    NOT NULL,
    target      TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    ip          TEXT,
    request_id  TEXT,
    detail      TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

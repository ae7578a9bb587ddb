-- The email outbox: an accepted email is a row here before the API answers,
-- and the delivery workers claim rows from it. Additive to the first schema.

ALTER TABLE emails ADD COLUMN sender TEXT;
ALTER TABLE emails ADD COLUMN recipients TEXT NOT NULL DEFAULT '{}';
ALTER TABLE emails ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE emails ADD COLUMN body_text TEXT;
ALTER TABLE emails ADD COLUMN body_html TEXT;
ALTER TABLE emails ADD COLUMN reply_to TEXT;
ALTER TABLE emails ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';
ALTER TABLE emails ADD COLUMN idempotency_key TEXT;
ALTER TABLE emails ADD COLUMN request_hash TEXT;
ALTER TABLE emails ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE emails ADD COLUMN last_error TEXT;
ALTER TABLE emails ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE emails ADD COLUMN claimed_by TEXT;
ALTER TABLE emails ADD COLUMN claim_expires_at BIGINT;
ALTER TABLE emails ADD COLUMN sent_at BIGINT;

-- Both SQLite and PostgreSQL treat NULLs as distinct here: only requests
-- that carry an Idempotency-Key are constrained.
CREATE UNIQUE INDEX emails_idempotency_key ON emails (idempotency_key);
CREATE INDEX emails_due ON emails (status, next_attempt_at);

-- What the web console shows beyond the API's first needs. Additive.

-- Who sent an email or asked for a generation (`user:<id>` or `key:<id>`):
-- members see their own in the console, administrators see all. NULL for
-- rows written before this migration.
ALTER TABLE emails ADD COLUMN created_by TEXT;
ALTER TABLE generations ADD COLUMN created_by TEXT;

-- Every delivery attempt with the SMTP server's answer, as a JSON array of
-- {at, outcome, answer, duration_ms}, newest last and bounded in length.
-- A column rather than a table: only the worker holding the email's claim
-- writes it, and backups keep working column by column.
ALTER TABLE emails ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]';

-- A disabled account cannot sign in; its sessions end when it is disabled.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- The console's email list filters by status and pages by creation time;
-- members' lists by author; the overview counts, hour by hour, emails sent,
-- emails failed (a partial index: failures are few) and generations by
-- outcome, each count a range of one index.
CREATE INDEX emails_status_created ON emails (status, created_at);
CREATE INDEX emails_created_by ON emails (created_by, created_at);
CREATE INDEX emails_sent_at ON emails (sent_at);
CREATE INDEX emails_failed_at ON emails (updated_at) WHERE status = 'failed';
CREATE INDEX generations_created_by ON generations (created_by, created_at);
CREATE INDEX generations_status_created ON generations (status, created_at);

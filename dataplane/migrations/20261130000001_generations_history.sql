-- The history of generations: what was asked and what the model answered,
-- kept for the user's own history (never logged). Additive to the first
-- schema, whose `generations` table only counted them for /api/stats.

ALTER TABLE generations ADD COLUMN model TEXT NOT NULL DEFAULT '';
-- The messages sent (JSON), system text first.
ALTER TABLE generations ADD COLUMN messages TEXT NOT NULL DEFAULT '[]';
ALTER TABLE generations ADD COLUMN output TEXT;
ALTER TABLE generations ADD COLUMN finish_reason TEXT;
ALTER TABLE generations ADD COLUMN prompt_tokens BIGINT;
ALTER TABLE generations ADD COLUMN completion_tokens BIGINT;
ALTER TABLE generations ADD COLUMN duration_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE generations ADD COLUMN error TEXT;

-- Usage per key, per account, per model and per day (`GET /api/usage`):
-- each generation names the account it was charged to (the user's own for a
-- session, the owner's for an API key), and says whether its token counts
-- are the server's or our estimate (a server that reports no usage).
-- Additive; older rows get their account from their author.
ALTER TABLE generations ADD COLUMN account_id TEXT;
-- 1: the counts are our estimate; 0: the server's.
ALTER TABLE generations ADD COLUMN tokens_estimated INTEGER NOT NULL DEFAULT 0;

UPDATE generations SET account_id = substr(created_by, 6)
WHERE created_by LIKE 'user:%';
UPDATE generations SET account_id =
    (SELECT owner_id FROM api_keys WHERE 'key:' || api_keys.id = generations.created_by)
WHERE created_by LIKE 'key:%';

CREATE INDEX generations_account_created ON generations (account_id, created_at);

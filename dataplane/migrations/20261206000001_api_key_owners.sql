-- API keys die with their owner: each key acts for one account, the user
-- who created it or, for a key created by a key, that key's owner, and is
-- refused while that account is disabled or missing. Keys may expire, and
-- remember (coarsely) when they were last used. Additive.

-- The `users.id` the key acts for. Filled for existing keys by the next
-- migration; NULL only for a key whose chain of creators ends at no user,
-- which is refused.
ALTER TABLE api_keys ADD COLUMN owner_id TEXT;
-- When the key stops working (Unix ms); NULL: never.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
-- When it was last used (Unix ms): written when the key is looked up in the
-- store and this is minutes old, so at most once per few minutes per key,
-- never once per request.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;

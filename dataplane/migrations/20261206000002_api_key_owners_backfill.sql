-- Owners for the keys made before owners were recorded: the user named in
-- `created_by`, or, following `key:<id>` links from key to creating key,
-- the user at the start of the chain. A separate migration because it only
-- fills data and may run again: it touches rows whose owner is still NULL,
-- and `dataplane restore` runs it after restoring a backup older than it
-- (store/backup.rs), whose keys come without owners.
--
-- Portable: SQLite and PostgreSQL both take a recursive CTE before UPDATE.
-- UNION (not UNION ALL) ends the recursion even on a cycle, which no key
-- can form anyway (a key's creator exists before it).
WITH RECURSIVE chain (id, owner_id) AS (
    SELECT id, SUBSTR(created_by, 6) FROM api_keys WHERE created_by LIKE 'user:%'
    UNION
    SELECT k.id, c.owner_id FROM api_keys k JOIN chain c ON k.created_by = 'key:' || c.id
)
UPDATE api_keys
SET owner_id = (SELECT c.owner_id FROM chain c WHERE c.id = api_keys.id)
WHERE owner_id IS NULL;

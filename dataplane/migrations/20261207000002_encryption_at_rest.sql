-- Encryption at rest (store/sealed.rs): sealed values fit the existing text
-- columns, so only two things are new. Additive.

-- The blind index of each recipient (to, cc, bcc): HMAC digests, space
-- separated, so the console finds an email by recipient without reading
-- the sealed recipients. Empty for emails written before.
ALTER TABLE emails ADD COLUMN recipient_index TEXT NOT NULL DEFAULT '';

-- Every key id that has sealed a value here. A data plane refuses to start
-- when one of them is neither its SECRET_KEY nor its SECRET_KEY_PREVIOUS:
-- serving with the wrong key would answer garbage or errors, row by row.
-- `dataplane reencrypt` removes the ids no value uses any more.
CREATE TABLE encryption_keys (
    id            TEXT    PRIMARY KEY,
    first_used_at BIGINT  NOT NULL
);

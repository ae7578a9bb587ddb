-- Addresses SecureVault no longer sends to: one that bounced for good (a
-- permanent SMTP answer about the mailbox), or one added through the API
-- after a complaint, an unsubscribe or by hand. One list per SecureVault,
-- shared by its replicas through the store. Lifting an entry deletes it
-- (the audit trail keeps who did it and when). Additive.
CREATE TABLE suppressions (
    -- Lower-cased: mailbox names are case-insensitive in practice, and a
    -- list that can be dodged by `Bob@` is no list.
    address     TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL CHECK (reason IN ('bounce', 'complaint', 'unsubscribe', 'manual')),
    -- For a bounce the SMTP server's answer; otherwise the caller's note.
    detail      TEXT,
    -- For a bounce, the email that bounced.
    email_id    TEXT,
    created_at  BIGINT  NOT NULL,
    -- `user:<id>`, `key:<id>` or `system` (a bounce).
    created_by  TEXT    NOT NULL
);
CREATE INDEX suppressions_created_at ON suppressions (created_at);

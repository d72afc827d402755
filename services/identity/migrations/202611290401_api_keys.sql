-- The identity crate's table: API keys, stored as a keyed hash of their secret (never the
-- secret). Written in the common dialect of SQLite and PostgreSQL. Times are microseconds
-- since the Unix epoch.

CREATE TABLE IF NOT EXISTS api_keys (
    -- The public part of the key (`phk_<id>_<secret>`), shown by `auth key list`.
    id           TEXT   NOT NULL PRIMARY KEY,
    tenant       TEXT   NOT NULL,
    -- Scope names separated by commas (`scans:read,findings:read`).
    scopes       TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    -- HMAC-SHA256 under the server's key secret of the key's id and secret, in hex.
    hash         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);

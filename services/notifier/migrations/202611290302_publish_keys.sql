-- Idempotent publishing: the key a publisher gave, and the sequence its notification got, so
-- that a Publish retried with the same key (after a timeout, say) answers the first one and
-- stores nothing new. Kept as long as the notifications (pruned by age with them).
CREATE TABLE IF NOT EXISTS publish_keys (
    tenant     TEXT   NOT NULL,
    room       TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    sequence   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, room, key)
);
CREATE INDEX IF NOT EXISTS publish_keys_created ON publish_keys (created_at);

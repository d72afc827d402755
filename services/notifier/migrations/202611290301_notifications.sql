-- The notifier's tables: each room's notifications, numbered by a per-room counter. Written in
-- the common dialect of SQLite and PostgreSQL. Every table carries the tenant; every query
-- filters on it. Times are microseconds since the Unix epoch.
--
-- Until each service owned its tables, one migration history (versions 1-7, no longer shipped)
-- created these. This baseline is their final shape, column for column, and idempotent: on a
-- database that history built, it changes nothing; on a new one, it builds the same schema.

CREATE TABLE IF NOT EXISTS room_sequences (
    tenant   TEXT   NOT NULL,
    room     TEXT   NOT NULL,
    sequence BIGINT NOT NULL,
    PRIMARY KEY (tenant, room)
);

CREATE TABLE IF NOT EXISTS notifications (
    tenant     TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    sequence   BIGINT  NOT NULL,
    id         TEXT    NOT NULL,
    priority   BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    -- Notifications about findings carry the finding's severity, so subscribers can filter
    -- on it.
    severity   BIGINT  NOT NULL DEFAULT 0,
    -- The bytes of a notification's text (NotificationRecord::footprint without its fixed
    -- part), so that a replay page stops at its byte budget by summing this column, without
    -- reading the payloads.
    text_bytes BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, room, sequence)
);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at);

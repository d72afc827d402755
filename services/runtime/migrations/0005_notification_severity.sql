-- Notifications about findings carry the finding's severity, so subscribers can filter on it.
ALTER TABLE notifications ADD COLUMN severity BIGINT NOT NULL DEFAULT 0;

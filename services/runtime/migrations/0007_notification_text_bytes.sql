-- The bytes of a notification's text (NotificationRecord::footprint without its fixed part),
-- so that a replay page stops at its byte budget by summing this column, without reading the
-- payloads. Rows written before it are counted in characters, as LENGTH does.
ALTER TABLE notifications ADD COLUMN text_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE notifications
SET text_bytes = LENGTH(tenant) + LENGTH(room) + LENGTH(id) + LENGTH(kind) + LENGTH(payload);

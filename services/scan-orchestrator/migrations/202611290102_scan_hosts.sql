-- The addresses a scan covers, counted when it is created: what a tenant's daily hosts quota
-- adds up without reading every scan's resolved targets. Scans created before this count 0.
ALTER TABLE scans ADD COLUMN hosts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS scans_tenant_created ON scans (tenant, created_at);

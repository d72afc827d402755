-- Alert rules: per tenant, on the new or reopened findings of assets' scans. A rule fires at
-- most once for a finding in a given state (the firing's key), whichever replica evaluates it;
-- a firing is an outbox row until the notifier took it.

CREATE TABLE IF NOT EXISTS alert_rules (
    id            TEXT    NOT NULL PRIMARY KEY,   -- UUIDv7
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    min_severity  BIGINT  NOT NULL,               -- Severity
    ports         TEXT    NOT NULL DEFAULT '[]',  -- JSON array; empty: any
    services      TEXT    NOT NULL DEFAULT '[]',  -- JSON array; empty: any
    text          TEXT    NOT NULL DEFAULT '',    -- case-insensitive substring; empty: any
    changes       BIGINT  NOT NULL,               -- FindingChange bit mask (NEW, REOPENED)
    created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_rules_tenant_name ON alert_rules (tenant, name);

-- One row per (rule, finding, state): epoch is how many times the finding had reopened, so a
-- finding that comes back alerts again, and an unchanged scan never does.
CREATE TABLE IF NOT EXISTS alert_firings (
    tenant       TEXT    NOT NULL,
    rule_id      TEXT    NOT NULL,
    asset_id     TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    epoch        BIGINT  NOT NULL,
    scan_id      TEXT    NOT NULL,
    finding_id   TEXT    NOT NULL,
    change       BIGINT  NOT NULL,
    notified     BIGINT  NOT NULL DEFAULT 0,      -- 1 once the notifier accepted it
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (rule_id, asset_id, fingerprint, epoch)
);
CREATE INDEX IF NOT EXISTS alert_firings_pending ON alert_firings (notified, created_at);

-- A succeeded scan of an asset whose changes the alert rules have seen.
ALTER TABLE scans ADD COLUMN alerted BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS scans_to_alert ON scans (alerted, state);

-- The daily digest of each tenant, once per day (UTC) across replicas.
CREATE TABLE IF NOT EXISTS alert_digests (
    tenant     TEXT    NOT NULL,
    day        TEXT    NOT NULL,                   -- YYYY-MM-DD (UTC)
    notified   BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, day)
);

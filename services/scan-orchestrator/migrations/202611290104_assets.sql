-- Assets: a named set of targets scanned on a schedule, and what the scans of an asset found
-- over time. Written in the common dialect of SQLite and PostgreSQL; times in microseconds.

CREATE TABLE IF NOT EXISTS assets (
    id             TEXT    NOT NULL PRIMARY KEY,   -- UUIDv7
    tenant         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    targets        TEXT    NOT NULL,               -- JSON array of the targets as given
    ports          TEXT    NOT NULL,               -- normalized port specification
    scanner        TEXT    NOT NULL,
    -- The schedule: a cron pattern in a time zone, or a fixed interval (exactly one is set).
    cron           TEXT    NOT NULL DEFAULT '',
    time_zone      TEXT    NOT NULL DEFAULT 'UTC',
    every_micros   BIGINT  NOT NULL DEFAULT 0,
    jitter_micros  BIGINT  NOT NULL DEFAULT 0,
    missed         TEXT    NOT NULL DEFAULT 'run_once',  -- what a late due time does: run_once, skip
    paused         BIGINT  NOT NULL DEFAULT 0,
    -- The next due time as the schedule gives it, and when it runs (plus the jitter). A replica
    -- fires a due time by moving next_due on from it (compare and set): only one can.
    next_due       BIGINT  NOT NULL,
    next_run       BIGINT  NOT NULL,
    last_scan_id   TEXT,
    runs           BIGINT  NOT NULL DEFAULT 0,
    skipped        BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS assets_tenant_name ON assets (tenant, name);
CREATE INDEX IF NOT EXISTS assets_due ON assets (paused, next_run);

-- A scan of an asset, and the due time it ran for: one scan per due time, whichever replica
-- fired it (the index refuses a second).
ALTER TABLE scans ADD COLUMN asset_id TEXT;
ALTER TABLE scans ADD COLUMN due_at BIGINT;
CREATE UNIQUE INDEX IF NOT EXISTS scans_asset_due ON scans (asset_id, due_at)
    WHERE asset_id IS NOT NULL;

-- An asset's findings, one record per fingerprint across its scans: when it was first and last
-- seen, whether the latest scan saw it, and the triage a person gave it (which sticks).
CREATE TABLE IF NOT EXISTS asset_findings (
    tenant          TEXT    NOT NULL,
    asset_id        TEXT    NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    fingerprint     TEXT    NOT NULL,
    finding_id      TEXT    NOT NULL,              -- the finding as last seen
    present         BIGINT  NOT NULL,              -- 1: the latest scan saw it
    change          BIGINT  NOT NULL,              -- FindingChange at the latest scan that changed it
    first_seen      BIGINT  NOT NULL,
    last_seen       BIGINT  NOT NULL,
    times_seen      BIGINT  NOT NULL,
    first_scan_id   TEXT    NOT NULL,
    last_scan_id    TEXT    NOT NULL,
    reopened        BIGINT  NOT NULL DEFAULT 0,    -- times it came back after a fix
    severity        BIGINT  NOT NULL,
    triage          BIGINT  NOT NULL DEFAULT 1,    -- TriageState
    triage_reason   TEXT    NOT NULL DEFAULT '',
    triage_by       TEXT    NOT NULL DEFAULT '',
    triage_at       BIGINT  NOT NULL DEFAULT 0,
    accepted_until  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (asset_id, fingerprint)
);
CREATE INDEX IF NOT EXISTS asset_findings_tenant ON asset_findings (tenant, asset_id, fingerprint);
CREATE INDEX IF NOT EXISTS asset_findings_expiry ON asset_findings (triage, accepted_until);

-- What each finished scan of an asset changed, by fingerprint (kept: the diff of any scan can
-- be read later). A fixed finding points at the finding as last seen, in an earlier scan.
CREATE TABLE IF NOT EXISTS scan_changes (
    tenant       TEXT    NOT NULL,
    scan_id      TEXT    NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    fingerprint  TEXT    NOT NULL,
    change       BIGINT  NOT NULL,                 -- FindingChange
    finding_id   TEXT    NOT NULL,
    PRIMARY KEY (scan_id, fingerprint)
);
CREATE INDEX IF NOT EXISTS scan_changes_finding ON scan_changes (finding_id);

-- Who changed a finding's triage, when, and why (the record keeps only the latest).
CREATE TABLE IF NOT EXISTS triage_events (
    id           TEXT    NOT NULL PRIMARY KEY,     -- UUIDv7
    tenant       TEXT    NOT NULL,
    asset_id     TEXT    NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    fingerprint  TEXT    NOT NULL,
    triage       BIGINT  NOT NULL,
    reason       TEXT    NOT NULL,
    principal    TEXT    NOT NULL,
    accepted_until BIGINT NOT NULL DEFAULT 0,
    at           BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS triage_events_finding ON triage_events (asset_id, fingerprint, id);

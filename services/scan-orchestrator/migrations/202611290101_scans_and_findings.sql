-- The scan-orchestrator's tables: scans (jobs with a lease) and their findings. Written in the
-- common dialect of SQLite and PostgreSQL. Every table carries the tenant; every query filters
-- on it. Times are microseconds since the Unix epoch (the same type on both backends).
--
-- Until each service owned its tables, one migration history (versions 1-7, no longer shipped)
-- created these. This baseline is their final shape, column for column, and idempotent: on a
-- database that history built, it changes nothing; on a new one, it builds the same schema.

CREATE TABLE IF NOT EXISTS scans (
    id               TEXT    NOT NULL PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    state            BIGINT  NOT NULL,
    targets          TEXT    NOT NULL,  -- JSON array of the targets as given
    resolved         TEXT    NOT NULL,  -- JSON array of [hostname, address] pairs to scan
    ports            TEXT    NOT NULL,
    scanner          TEXT    NOT NULL,
    progress_percent BIGINT  NOT NULL DEFAULT 0,
    findings_count   BIGINT  NOT NULL DEFAULT 0,
    probes_total     BIGINT  NOT NULL DEFAULT 0,
    probes_done      BIGINT  NOT NULL DEFAULT 0,
    idempotency_key  TEXT,
    error            TEXT    NOT NULL DEFAULT '',
    request_id       TEXT    NOT NULL DEFAULT '',
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    -- Scans are jobs: a replica claims one by taking its lease, renews it while it runs, and a
    -- scan whose lease ran out (its holder died) is claimed again by any replica.
    owner            TEXT    NOT NULL DEFAULT '',
    lease_until      BIGINT  NOT NULL DEFAULT 0,
    claims           BIGINT  NOT NULL DEFAULT 0,
    -- The W3C trace context of the CreateScan call: the scan's own span is its child, on
    -- whichever replica runs it, so one CreateScan is one trace.
    trace_context    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS scans_tenant_id ON scans (tenant, id);
CREATE INDEX IF NOT EXISTS scans_state ON scans (state);
CREATE UNIQUE INDEX IF NOT EXISTS scans_idempotency ON scans (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS scans_claimable ON scans (state, lease_until);

CREATE TABLE IF NOT EXISTS findings (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    scan_id     TEXT    NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    target      TEXT    NOT NULL,
    hostname    TEXT    NOT NULL DEFAULT '',
    port        BIGINT  NOT NULL,
    protocol    TEXT    NOT NULL,
    service     TEXT    NOT NULL DEFAULT '',
    banner      TEXT    NOT NULL DEFAULT '',
    engine      TEXT    NOT NULL,
    check_id    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    severity    BIGINT  NOT NULL,
    cvss_score  DOUBLE PRECISION NOT NULL DEFAULT 0,
    cvss_vector TEXT    NOT NULL DEFAULT '',
    cve_ids     TEXT    NOT NULL DEFAULT '[]',
    fingerprint TEXT    NOT NULL,
    analysis    TEXT,                 -- JSON of the analysis, once analyzed
    created_at  BIGINT  NOT NULL
);
-- A re-run of an interrupted scan must not store the same finding twice.
CREATE UNIQUE INDEX IF NOT EXISTS findings_scan_fingerprint ON findings (scan_id, fingerprint);
CREATE INDEX IF NOT EXISTS findings_tenant_scan ON findings (tenant, scan_id, id);

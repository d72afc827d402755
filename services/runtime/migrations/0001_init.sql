-- PHANTOM schema v1 (SQLite and PostgreSQL: the DDL is written in their common dialect). Every table carries the tenant; every query filters on it.
-- Times are microseconds since the Unix epoch (the same type on both backends).

CREATE TABLE scans (
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
    finished_at      BIGINT
);
CREATE INDEX scans_tenant_id ON scans (tenant, id);
CREATE INDEX scans_state ON scans (state);
CREATE UNIQUE INDEX scans_idempotency ON scans (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE findings (
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
CREATE UNIQUE INDEX findings_scan_fingerprint ON findings (scan_id, fingerprint);
CREATE INDEX findings_tenant_scan ON findings (tenant, scan_id, id);

CREATE TABLE analyses (
    tenant      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    severity    BIGINT  NOT NULL,
    analyzer    TEXT    NOT NULL,
    confidence  BIGINT  NOT NULL,
    summary     TEXT    NOT NULL,
    remediation TEXT    NOT NULL,
    degraded    BIGINT  NOT NULL,
    analyzed_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, fingerprint)
);

CREATE TABLE room_sequences (
    tenant   TEXT   NOT NULL,
    room     TEXT   NOT NULL,
    sequence BIGINT NOT NULL,
    PRIMARY KEY (tenant, room)
);

CREATE TABLE notifications (
    tenant     TEXT    NOT NULL,
    room       TEXT    NOT NULL,
    sequence   BIGINT  NOT NULL,
    id         TEXT    NOT NULL,
    priority   BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, room, sequence)
);
CREATE INDEX notifications_created ON notifications (created_at);

-- The vuln-analyzer's tables: analyses (one per tenant and fingerprint) and the queue of
-- findings waiting for LLM enrichment. Written in the common dialect of SQLite and PostgreSQL.
-- Every table carries the tenant; every query filters on it. Times are microseconds since the
-- Unix epoch.
--
-- Until each service owned its tables, one migration history (versions 1-7, no longer shipped)
-- created these. This baseline is their final shape, column for column, and idempotent: on a
-- database that history built, it changes nothing; on a new one, it builds the same schema.

CREATE TABLE IF NOT EXISTS analyses (
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
    -- LLM triage: an impact statement and a suppression suggestion.
    impact                TEXT   NOT NULL DEFAULT '',
    suppression_suggested BIGINT NOT NULL DEFAULT 0,
    suppression_reason    TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, fingerprint)
);
CREATE INDEX IF NOT EXISTS analyses_degraded ON analyses (degraded, analyzed_at);

-- Findings whose analysis was degraded (the LLM could not answer in time) wait here to be
-- enriched later. A row is claimed by pushing its next_attempt_at into the future (a lease);
-- a replica that dies mid-attempt leaves the row to be claimed again when that passes.
CREATE TABLE IF NOT EXISTS enrichment_queue (
    tenant          TEXT   NOT NULL,
    fingerprint     TEXT   NOT NULL,
    payload         TEXT   NOT NULL,  -- the finding, as the analyzer encoded it
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    enqueued_at     BIGINT NOT NULL,
    last_error      TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, fingerprint)
);
CREATE INDEX IF NOT EXISTS enrichment_queue_due ON enrichment_queue (next_attempt_at);

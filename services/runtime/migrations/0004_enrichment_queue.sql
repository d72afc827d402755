-- Findings whose analysis was degraded (the LLM could not answer in time) wait here to be
-- enriched later. A row is claimed by pushing its next_attempt_at into the future (a lease);
-- a replica that dies mid-attempt leaves the row to be claimed again when that passes.
CREATE TABLE enrichment_queue (
    tenant          TEXT   NOT NULL,
    fingerprint     TEXT   NOT NULL,
    payload         TEXT   NOT NULL,  -- the finding, as the analyzer encoded it
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    enqueued_at     BIGINT NOT NULL,
    last_error      TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, fingerprint)
);
CREATE INDEX enrichment_queue_due ON enrichment_queue (next_attempt_at);

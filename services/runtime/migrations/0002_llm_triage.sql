-- LLM triage adds an impact statement and a suppression suggestion to analyses.
ALTER TABLE analyses ADD COLUMN impact TEXT NOT NULL DEFAULT '';
ALTER TABLE analyses ADD COLUMN suppression_suggested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE analyses ADD COLUMN suppression_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX analyses_degraded ON analyses (degraded, analyzed_at);

-- The W3C trace context of the CreateScan call: the scan's own span is its child, on
-- whichever replica runs it, so one CreateScan is one trace.
ALTER TABLE scans ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';

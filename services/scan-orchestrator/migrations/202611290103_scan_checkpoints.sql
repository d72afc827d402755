-- A running scan's checkpoint: which chunks of its probes are done (JSON, see
-- scanner::Plan), stored with their findings. A replica that takes the scan over continues
-- from it. Empty: none yet (the scan starts from its first probe).
ALTER TABLE scans ADD COLUMN checkpoint TEXT NOT NULL DEFAULT '';

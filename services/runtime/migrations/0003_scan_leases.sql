-- Scans are jobs: a replica claims one by taking its lease, renews it while it runs, and a
-- scan whose lease ran out (its holder died) is claimed again by any replica.
ALTER TABLE scans ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE scans ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
CREATE INDEX scans_claimable ON scans (state, lease_until);

-- The CVSS vector an analysis was scored from (canonical form; '' when none applied), so that
-- a stored analysis answers with every score of its vector (base, temporal, environmental;
-- v4.0's CVSS-BT/BE/BTE). The scores themselves are not stored: the analyzer recomputes them
-- from the vector when it reads the row, so a stored analysis never disagrees with the
-- calculator. Rows stored before this column read as '' (no scores), as they did.
-- Written in the common dialect of SQLite and PostgreSQL.
ALTER TABLE analyses ADD COLUMN cvss_vector TEXT NOT NULL DEFAULT '';

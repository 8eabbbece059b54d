-- Purge deletes the rows of replaced files after their objects are gone, so
-- `changes_since` can no longer report those removals. The highest
-- removed_version among forgotten rows is kept here: a reader whose version is
-- below it gets the whole live manifest instead of a delta (issue 12).
ALTER TABLE manifest_version ADD COLUMN forgotten_version INTEGER NOT NULL DEFAULT 0;

-- Leveled LSM (docs/decisions/0003-level-layout-and-claims.md).
--
-- `level` already exists: 0 = WAL files, 1..N = sorted runs. A trivial move
-- changes a live file's level in place and records the version that did it,
-- so a reader catching up sees the file again with its new level.
ALTER TABLE files ADD COLUMN level_version INTEGER;
CREATE INDEX files_level_version ON files (level_version);
-- Room for tables (separate key spaces): every file belongs to table 0 until
-- tables exist, so adding them needs no second change of this layout.
ALTER TABLE files ADD COLUMN table_id INTEGER NOT NULL DEFAULT 0;

-- What running compactions hold: per level, an inclusive key range
-- (max_key NULL = unbounded). Two jobs never hold overlapping ranges on one
-- level; a job renews its rows while it runs and its swap checks and drops
-- them in the same transaction. Rows past expires_at_ms belong to nobody.
CREATE TABLE compaction_claims (
    job           TEXT    NOT NULL,
    table_id      INTEGER NOT NULL DEFAULT 0,
    level         INTEGER NOT NULL,
    min_key       BLOB    NOT NULL,
    max_key       BLOB,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX compaction_claims_job ON compaction_claims (job);

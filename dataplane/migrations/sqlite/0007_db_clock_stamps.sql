-- Every timestamp that decides deletion or ownership now comes from the
-- database's clock (docs/decisions/0009-one-clock.md). Rows stamped by an
-- older binary's process clock keep 0 in these columns, and purge allows them
-- an extra margin (meta::LEGACY_CLOCK_MARGIN) for that clock's skew.
ALTER TABLE files ADD COLUMN removed_by_db_clock INTEGER NOT NULL DEFAULT 0;
ALTER TABLE compaction_claims ADD COLUMN db_clock INTEGER NOT NULL DEFAULT 0;

-- Tombstones per file, from its properties block (docs/format.md), so the
-- picker can find last-level files that are mostly tombstones and rewrite
-- them (deletion-triggered compaction, docs/decisions/0003). Rows written
-- before this migration keep 0: they are never picked for their tombstones.
ALTER TABLE files ADD COLUMN tombstone_count BIGINT NOT NULL DEFAULT 0;

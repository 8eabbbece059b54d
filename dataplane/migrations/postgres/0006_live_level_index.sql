-- Every batcher polls the live WAL-tier and L0 counts four times a second
-- (write stalls and the WAL flush, docs/decisions/0008-wal-tier.md): a
-- partial index over live rows keeps that a short range scan however many
-- replaced rows wait for purge.
CREATE INDEX files_live_level ON files (level, kind) WHERE removed_version IS NULL;

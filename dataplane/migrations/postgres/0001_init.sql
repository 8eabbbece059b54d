-- The manifest: which immutable files exist and in what order.
-- Column-for-column the same as migrations/sqlite so both backends answer the
-- same queries; every integer is BIGINT so both decode as i64.

-- One row. Every manifest change (a WAL commit, a compaction swap) takes the
-- next version inside its transaction; the row lock serialises committers
-- until they commit, so version order is commit order and has no gaps
-- (invariant 4, docs/decisions/0001-commit-sequence.md).
CREATE TABLE manifest_version (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO manifest_version (id, version) VALUES (1, 0);

CREATE TABLE files (
    -- Identity only: taken at insert time, so it is NOT commit order.
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object          TEXT   NOT NULL UNIQUE,
    kind            TEXT   NOT NULL CHECK (kind IN ('wal', 'run')),
    level           BIGINT NOT NULL,
    -- Data recency: newer wins. A WAL file's seq is the version that committed
    -- it; a compacted run's seq is the highest seq among its inputs.
    seq             BIGINT NOT NULL,
    min_key         BYTEA  NOT NULL,
    max_key         BYTEA  NOT NULL,
    entry_count     BIGINT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    added_version   BIGINT NOT NULL,
    -- Set when compaction replaces the file; the object is purged after a grace period.
    removed_version BIGINT,
    created_at_ms   BIGINT NOT NULL,
    removed_at_ms   BIGINT
);
CREATE INDEX files_added_version ON files (added_version);
CREATE INDEX files_removed_version ON files (removed_version);

-- Mutual exclusion for jobs (compaction): a named lease with an expiry, so a
-- holder that died stops blocking others once its lease runs out.
CREATE TABLE leases (
    name          TEXT   PRIMARY KEY,
    holder        TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

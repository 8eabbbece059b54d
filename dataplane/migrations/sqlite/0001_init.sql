-- The manifest: which immutable files exist and in what order.
-- Kept column-for-column identical to migrations/postgres so both backends
-- answer the same queries (INTEGER here is SQLite's 64-bit integer).

-- One row. Every manifest change (a WAL commit, a compaction swap) takes the
-- next version inside its transaction; the row lock serialises committers, so
-- version order is commit order and has no gaps (invariant 4).
CREATE TABLE manifest_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO manifest_version (id, version) VALUES (1, 0);

CREATE TABLE files (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    object          TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL CHECK (kind IN ('wal', 'run')),
    level           INTEGER NOT NULL,
    -- Data recency: newer wins. A WAL file's seq is the version that committed
    -- it; a compacted run's seq is the highest seq among its inputs.
    seq             INTEGER NOT NULL,
    min_key         BLOB    NOT NULL,
    max_key         BLOB    NOT NULL,
    entry_count     INTEGER NOT NULL,
    size_bytes      INTEGER NOT NULL,
    added_version   INTEGER NOT NULL,
    -- Set when compaction replaces the file; the object is purged after a grace period.
    removed_version INTEGER,
    created_at_ms   INTEGER NOT NULL,
    removed_at_ms   INTEGER
);
CREATE INDEX files_added_version ON files (added_version);
CREATE INDEX files_removed_version ON files (removed_version);

-- Mutual exclusion for jobs (compaction): a named lease with an expiry, so a
-- holder that died stops blocking others once its lease runs out.
CREATE TABLE leases (
    name          TEXT    PRIMARY KEY,
    holder        TEXT    NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

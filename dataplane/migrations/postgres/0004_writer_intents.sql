-- Writer intents (issue 12 item 1; dataplane/src/writer_intent.rs). A process
-- that PUTs objects before committing their rows (a batcher's flushes) holds
-- one row here, renewed while it runs; its objects' names carry `writer`.
-- Purge keeps the unreferenced objects of a live intent, and a commit of such
-- an object checks in its transaction that the intent is still live. A row
-- past expires_at_ms is never renewed again.
CREATE TABLE writer_intents (
    writer        TEXT   PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);

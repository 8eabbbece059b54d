-- The store's identity (issue 14; dataplane/src/store_identity.rs). One row,
-- written once by the first process to start; the same id is in the marker
-- object `_skyvault/identity` under the object-store prefix. Every role and
-- job refuses to run when the two disagree, so a database pointed at another
-- store's bucket (or the reverse) cannot make purge delete that store's data.
CREATE TABLE store_identity (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    store_id      TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);

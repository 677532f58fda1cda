-- The embedded event store: one row per event, written by sqlite-es. SQLite has one writer
-- at a time and rows are never deleted, so `rowid` is the commit order.
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

-- Required by sqlite-es; unused while the event store is the source of truth.
CREATE TABLE snapshots
(
    aggregate_type   text                                  NOT NULL,
    aggregate_id     text                                  NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

-- The first answer to each (caller, Idempotency-Key). A row without a response is a claim
-- held by the request executing now.
CREATE TABLE idempotency_keys
(
    subject         text    NOT NULL,
    key             text    NOT NULL,
    fingerprint     text    NOT NULL,
    claimed_at_ms   integer NOT NULL,
    response_status integer,
    response_body   text,
    PRIMARY KEY (subject, key)
) STRICT;
CREATE INDEX idempotency_keys_age ON idempotency_keys (claimed_at_ms);

-- The event store: one row per event, written by postgres-es.
-- `position` and `xid` let a relay read committed events in commit order without skipping a
-- transaction that commits late: read only below pg_snapshot_xmin(pg_current_snapshot()),
-- ordered by (xid, position).
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        jsonb                        NOT NULL,
    metadata       jsonb                        NOT NULL,
    position       bigserial                    NOT NULL,
    xid            xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_commit_order ON events (xid, position);

-- Required by postgres-es; unused while the event store is the source of truth.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          jsonb                                NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The first answer to each (caller, Idempotency-Key). A row without a response is a claim
-- held by the request executing now.
CREATE TABLE idempotency_keys
(
    subject         text    NOT NULL,
    key             text    NOT NULL,
    fingerprint     text    NOT NULL,
    claimed_at_ms   bigint  NOT NULL,
    response_status integer,
    response_body   text,
    PRIMARY KEY (subject, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (claimed_at_ms);

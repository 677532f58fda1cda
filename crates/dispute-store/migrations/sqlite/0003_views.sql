-- The read side, built by the projector from the log. Rebuildable at any time.
CREATE TABLE view_disputes
(
    order_id              text    PRIMARY KEY,
    sequence              integer  NOT NULL,
    buyer_id              text    NOT NULL,
    merchant_id           text    NOT NULL,
    status                text    NOT NULL,
    round                 integer NOT NULL,
    reason                text,
    outcome               text,
    assignee              text,
    currency              text    NOT NULL,
    requested_minor       integer  NOT NULL,
    refunded_minor        integer  NOT NULL,
    -- The merchant's soonest running deadline; i64::MAX when none (sorts last).
    merchant_due_ms       integer  NOT NULL,
    requested_at_ms       integer,
    escalated_at_ms       integer,
    assignment_due_ms     integer,
    resolved_at_ms        integer,
    merchant_wins         integer NOT NULL,
    merchant_losses       integer NOT NULL,
    view                  text    NOT NULL
) STRICT;
CREATE INDEX view_disputes_buyer ON view_disputes (buyer_id);
CREATE INDEX view_disputes_merchant ON view_disputes (merchant_id, merchant_due_ms, order_id);
CREATE INDEX view_disputes_queue ON view_disputes (status, escalated_at_ms);

CREATE TABLE view_timeline
(
    order_id   text   NOT NULL,
    sequence   integer NOT NULL,
    event_type text   NOT NULL,
    actor_role text   NOT NULL,
    actor_id   text   NOT NULL,
    time       text   NOT NULL,
    data       text   NOT NULL,
    PRIMARY KEY (order_id, sequence)
) STRICT;

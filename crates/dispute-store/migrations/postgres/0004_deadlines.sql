-- The timer's work list: per order, the status-changing deadline it waits on, kept from the log
-- by the timer service (checkpoint `timer` in relay_checkpoints). A row whose deadline is NULL
-- has none running. `sequence` is the event that last set or cleared it, so replaying an older
-- event never brings back a deadline a later one ended. An instance firing a deadline claims
-- its row until `claimed_until_ms`; another instance takes it over only after that.
CREATE TABLE deadlines
(
    order_id         text    PRIMARY KEY,
    sequence         bigint  NOT NULL,
    deadline         text,
    round            integer,
    due_at_ms        bigint,
    claimed_until_ms bigint
);
CREATE INDEX deadlines_due ON deadlines (due_at_ms) WHERE due_at_ms IS NOT NULL;

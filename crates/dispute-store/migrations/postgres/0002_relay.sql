-- Where each relay has published up to, in commit order: (transaction id, position).
CREATE TABLE relay_checkpoints
(
    name     text   PRIMARY KEY,
    xid      bigint NOT NULL,
    position bigint NOT NULL
);

-- Wakes relays as soon as events commit; they also poll, so a missed notification only delays.
CREATE FUNCTION notify_events_committed() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('disputes_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_committed AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_committed();

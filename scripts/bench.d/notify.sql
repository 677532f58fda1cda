-- The former wake-up of the log's readers (migration 0002, dropped by 0006): every statement
-- that inserts into `events` notifies `disputes_events` from the appending transaction.
CREATE FUNCTION notify_events_committed() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('disputes_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_committed AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_committed();

-- No NOTIFY on the append path. A transaction that notifies takes a lock for the whole cluster
-- from its pre-commit until its commit is flushed, so the trigger made every append in the
-- cluster commit one at a time. Readers of the log wake on their own process's commits and
-- poll for other instances' (see dispute-store's follow.rs).
DROP TRIGGER IF EXISTS events_committed ON events;
DROP FUNCTION IF EXISTS notify_events_committed();

-- The session that listened for the former wake-up. Between two of these (a no-op once
-- listening) the session is idle, and PostgreSQL delivers each notification as it comes.
LISTEN disputes_events;

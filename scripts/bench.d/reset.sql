-- Takes `events` back to what load.sql loaded, so that every pgbench run starts from the same
-- table: deletes the rows earlier runs appended (all after the last loaded position).
-- Variables (psql -v): loaded = the highest position load.sql wrote.
DELETE FROM events WHERE position > :loaded;
VACUUM ANALYZE events;

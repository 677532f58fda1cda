-- One poll of a log follower (the relay, the in-process projector, the timer's tracking), as
-- the service runs it: Store::events_after's PostgreSQL query (crates/dispute-store/src/log.rs),
-- at most one batch (follow.rs's BATCH). \aset keeps the last row's columns, so the cursor moves
-- to the last event read and each poll reads what was appended since the one before, as a
-- follower's does; a poll that finds nothing leaves it where it was.
-- Variables (pgbench -D): xid, position = the cursor to start from (the log's end).
SELECT aggregate_id, sequence, event_type, event_version, payload::text, metadata::text,
       xid::text::bigint, position
  FROM events
 WHERE (xid, position) > (:xid::text::xid8, :position)
   AND xid < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.xid, events.position LIMIT 512
\aset

-- One command's storage work, as PostgreSQL alone does it: read one stream's events in
-- sequence order, then append the next event, in one transaction.
-- Variables (pgbench -D): streams = streams loaded, templates = rows in `templates`.
\set n random(1, :streams)
\set e random(1, :templates)
BEGIN;
SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
  FROM events
 WHERE aggregate_type = 'dispute' AND aggregate_id = 'bench-' || lpad(:n::text, 18, '0')
 ORDER BY sequence;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'dispute', 'bench-' || lpad(:n::text, 18, '0'),
       (SELECT coalesce(max(sequence), 0) + 1 FROM events
         WHERE aggregate_type = 'dispute' AND aggregate_id = 'bench-' || lpad(:n::text, 18, '0')),
       event_type, event_version, payload::text::jsonb, metadata::text::jsonb
  FROM templates WHERE i = :e
    ON CONFLICT DO NOTHING;
END;

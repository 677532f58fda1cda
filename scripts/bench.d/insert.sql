-- For orientation: one event row inserted per transaction (autocommit), nothing read.
\set r random(1, 9000000000000000)
\set e random(1, :templates)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'dispute', 'insert-' || :r, 1, event_type, event_version, payload::text::jsonb, metadata::text::jsonb
  FROM templates WHERE i = :e
    ON CONFLICT DO NOTHING;

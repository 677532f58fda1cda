-- `deadlines` keeps only the deadlines that run: a deadline that ends loses its row. What kept an
-- event read twice from bringing back a deadline a later one ended was the ended row's
-- `sequence`; it is now the checkpoint `deadlines`, which tracking moves in the transaction that
-- records a batch and which covers every event recorded so far. It starts where tracking has
-- read up to (the checkpoint `timer`), or at the log's start.
INSERT INTO relay_checkpoints (name, xid, position)
SELECT 'deadlines', xid, position FROM relay_checkpoints WHERE name = 'timer'
UNION ALL
SELECT 'deadlines', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM relay_checkpoints WHERE name = 'timer');

DELETE FROM deadlines WHERE due_at_ms IS NULL;

-- Fills the scratch database's `events` table (created by the service's own migration, so
-- its columns and indexes are the real ones) from real events copied into `sample`.
-- Variables (psql -v): streams = how many streams to create.
--
-- Every stream takes the events of one sampled lifecycle up to a random point (0 … all but
-- the last), so a read returns as many rows as a command in the middle of a lifecycle sees.
-- Rows are inserted sequence by sequence across all streams, so one stream's events are
-- spread over the table as they are when lifecycles run side by side.
\set ON_ERROR_STOP on

CREATE TABLE lifecycles AS
SELECT dense_rank() OVER (ORDER BY aggregate_id) AS l, sequence, event_type, event_version,
       payload, metadata
  FROM sample;
CREATE TABLE lifecycle_lengths AS SELECT l, max(sequence) AS len FROM lifecycles GROUP BY l;

-- What a transaction appends: any sampled event.
CREATE TABLE templates AS
SELECT row_number() OVER (ORDER BY aggregate_id, sequence) AS i, event_type, event_version,
       payload, metadata
  FROM sample;
ALTER TABLE templates ADD PRIMARY KEY (i);

CREATE TABLE streams AS
SELECT n, 1 + n % (SELECT count(*) FROM lifecycle_lengths) AS l
  FROM generate_series(1, :streams) AS n;
ALTER TABLE streams ADD COLUMN upto integer;
UPDATE streams s SET upto = floor(random() * ll.len) FROM lifecycle_lengths ll WHERE ll.l = s.l;

INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'dispute', 'bench-' || lpad(s.n::text, 18, '0'), t.sequence, t.event_type, t.event_version,
       t.payload, t.metadata
  FROM streams s
  JOIN lifecycles t ON t.l = s.l AND t.sequence <= s.upto
 ORDER BY t.sequence, s.n;

ANALYZE;

-- When a key was first claimed. `claimed_at_ms` moves forward when an unfinished claim is taken
-- over; `created_at_ms` stays, so that a resumed claim looks in the log only for events committed
-- since its own first request (a key reused after its record was purged is a new request).
ALTER TABLE idempotency_keys ADD COLUMN created_at_ms bigint;
UPDATE idempotency_keys SET created_at_ms = claimed_at_ms;
ALTER TABLE idempotency_keys ALTER COLUMN created_at_ms SET NOT NULL;
DROP INDEX idempotency_keys_age;
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at_ms);

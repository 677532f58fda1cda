//! Idempotency records: the first answer to each (caller, key), replayed for a retry.
//!
//! Semantics follow Stripe's: the same key and request replay the first answer and write
//! nothing; the same key with another request is refused; the same key sent concurrently runs
//! once — the first request claims the key, the others wait for its answer.

use std::time::Duration;

use chrono::Utc;

use crate::{Store, StoreError, on_pool};

/// A claim older than this whose request never answered (its process died) may be taken over.
const ABANDONED_AFTER_MS: i64 = 30_000;

/// The answer recorded for a key: opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: execute, then [`Store::complete_idempotency`] or [`Store::release_idempotency`].
    Acquired,
    /// The key was used for this request before: answer this again.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// Another request with this key is executing now and did not answer in time.
    InFlight,
}

impl Store {
    /// Claims `key` for `subject`'s request with `fingerprint`, waiting up to `wait` for a
    /// concurrent request with the same key to answer.
    pub async fn claim_idempotency(
        &self,
        subject: &str,
        key: &str,
        fingerprint: &str,
        wait: Duration,
    ) -> Result<Claim, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now_ms = Utc::now().timestamp_millis();
            let inserted = on_pool!(&self.backend, pool => sqlx::query(
                "INSERT INTO idempotency_keys (subject, key, fingerprint, claimed_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (subject, key) DO NOTHING",
            )
            .bind(subject)
            .bind(key)
            .bind(fingerprint)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
            if inserted == 1 {
                return Ok(Claim::Acquired);
            }
            let row: Option<(String, i64, Option<i32>, Option<String>)> = on_pool!(&self.backend, pool => sqlx::query_as(
                "SELECT fingerprint, claimed_at_ms, response_status, response_body FROM idempotency_keys \
                 WHERE subject = $1 AND key = $2",
            )
            .bind(subject)
            .bind(key)
            .fetch_optional(pool)
            .await?);
            let Some((stored_fingerprint, claimed_at_ms, status, body)) = row else {
                continue; // released between our insert and select: try again
            };
            if stored_fingerprint != fingerprint {
                return Ok(Claim::Mismatch);
            }
            if let (Some(status), Some(body)) = (status, body) {
                return Ok(Claim::Replay(StoredResponse { status: status as u16, body }));
            }
            if now_ms - claimed_at_ms > ABANDONED_AFTER_MS {
                let taken = on_pool!(&self.backend, pool => sqlx::query(
                    "UPDATE idempotency_keys SET claimed_at_ms = $3 \
                     WHERE subject = $1 AND key = $2 AND claimed_at_ms = $4 AND response_status IS NULL",
                )
                .bind(subject)
                .bind(key)
                .bind(now_ms)
                .bind(claimed_at_ms)
                .execute(pool)
                .await?
                .rows_affected());
                if taken == 1 {
                    return Ok(Claim::Acquired);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Claim::InFlight);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Records the answer to a claimed key.
    pub async fn complete_idempotency(
        &self,
        subject: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        on_pool!(&self.backend, pool => sqlx::query(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4 WHERE subject = $1 AND key = $2",
        )
        .bind(subject)
        .bind(key)
        .bind(i32::from(response.status))
        .bind(&response.body)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Gives a claimed key up without an answer (the request failed in a way worth retrying).
    pub async fn release_idempotency(&self, subject: &str, key: &str) -> Result<(), StoreError> {
        on_pool!(&self.backend, pool => sqlx::query(
            "DELETE FROM idempotency_keys WHERE subject = $1 AND key = $2 AND response_status IS NULL",
        )
        .bind(subject)
        .bind(key)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Forgets answers older than `older_than` (kept at least 24 hours by the caller's choice).
    pub async fn purge_idempotency(&self, older_than: chrono::Duration) -> Result<u64, StoreError> {
        let cutoff = (Utc::now() - older_than).timestamp_millis();
        let purged = on_pool!(&self.backend, pool => sqlx::query(
            "DELETE FROM idempotency_keys WHERE claimed_at_ms < $1 AND response_status IS NOT NULL",
        )
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(purged)
    }
}

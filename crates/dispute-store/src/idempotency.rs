//! Idempotency records: the first answer to each (caller, key), replayed for a retry.
//!
//! Semantics follow Stripe's: the same key and request replay the first answer and write
//! nothing; the same key with another request is refused; the same key sent concurrently runs
//! once. A command that writes events commits its answer in the same commit
//! ([`Store::execute_answered`]), so a command takes effect at most once whatever crashes
//! around it. Every other request with a key goes through a claim: the request claims the
//! key, others with it wait for its answer, and a claim left without an answer (its request's
//! process died) is taken over ([`Held::resumed_since`]); a claimed command's events commit
//! only with its answer and while its claim is still its own ([`Store::execute_claimed`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Backend, Store, StoreError, on_pool};

/// The two statements of a claimed key, claim and answer, in each dialect.
///
/// On PostgreSQL both commit without waiting for their WAL to reach the disk
/// (`synchronous_commit` off for their own transaction only). That loses nothing a command
/// relies on: the WAL is flushed in order, so the command's events, committed after the
/// claim and waiting for their flush, make the claim durable too; and an answer lost in a
/// crash of the database leaves an unanswered claim, which a retry takes over and resolves
/// from the log (`docs/ARCHITECTURE.md`, "Concurrency and idempotency").
struct Sql {
    /// $1 subject, $2 key, $3 fingerprint, $4 now (ms); inserts nothing if the key is held.
    claim: &'static str,
    /// $1 subject, $2 key, $3 status, $4 body, $5 the claim's `claimed_at_ms`.
    answer: &'static str,
}

/// In PostgreSQL's dialect, the rows `FROM` this turn `synchronous_commit` off until the
/// statement's transaction ends.
macro_rules! unflushed {
    () => {
        "(SELECT set_config('synchronous_commit', 'off', true)) AS unflushed"
    };
}

const POSTGRES: Sql = Sql {
    claim: concat!(
        "INSERT INTO idempotency_keys (subject, key, fingerprint, claimed_at_ms, created_at_ms) \
         SELECT $1, $2, $3, $4, $4 FROM ",
        unflushed!(),
        " ON CONFLICT (subject, key) DO NOTHING"
    ),
    answer: concat!(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4 FROM ",
        unflushed!(),
        " WHERE subject = $1 AND key = $2 AND claimed_at_ms = $5"
    ),
};

const SQLITE: Sql = Sql {
    claim: "INSERT INTO idempotency_keys (subject, key, fingerprint, claimed_at_ms, created_at_ms) \
            VALUES ($1, $2, $3, $4, $4) ON CONFLICT (subject, key) DO NOTHING",
    answer: "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
             WHERE subject = $1 AND key = $2 AND claimed_at_ms = $5",
};

impl Backend {
    fn idempotency_sql(&self) -> &'static Sql {
        match self {
            Backend::Postgres(_) => &POSTGRES,
            Backend::Sqlite(_) => &SQLITE,
        }
    }
}

/// How long the claims of a key last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimTimes {
    /// How long a request waits for a concurrent request with the same key to answer.
    pub wait: Duration,
    /// After how long without an answer a claim counts as abandoned (its request's process
    /// died) and may be taken over.
    pub takeover_after: Duration,
}

impl Default for ClaimTimes {
    fn default() -> Self {
        Self { wait: Duration::from_secs(10), takeover_after: Duration::from_secs(30) }
    }
}

/// The answer recorded for a key: opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// fingerprint, claimed_at_ms, created_at_ms, response_status, response_body
type ClaimRow = (String, i64, i64, Option<i32>, Option<String>);

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: run the command with [`Store::execute_claimed`], then
    /// [`Store::complete_idempotency`], [`Store::release_idempotency`] or
    /// [`Store::abandon_idempotency`].
    Held(Held),
    /// The key was used for this request before: answer this again.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// Another request with this key is executing now and did not answer in time.
    InFlight {
        /// When a retry may find an answer, or take the claim over.
        retry_after: Duration,
    },
}

/// A request's claim on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// When this request claimed the key: the claim is its own while the record still says so.
    pub(crate) claimed_at_ms: i64,
    /// For a claim taken over from a request that never recorded its answer: when the key was
    /// first claimed. Only events committed since then can be that request's.
    pub resumed_since: Option<DateTime<Utc>>,
}

impl Store {
    /// Claims `key` for `subject`'s request with `fingerprint`, waiting up to `times.wait` for a
    /// concurrent request with the same key to answer.
    pub async fn claim_idempotency(
        &self,
        subject: &str,
        key: &str,
        fingerprint: &str,
        times: ClaimTimes,
    ) -> Result<Claim, StoreError> {
        let takeover_ms = i64::try_from(times.takeover_after.as_millis()).unwrap_or(i64::MAX);
        let deadline = tokio::time::Instant::now() + times.wait;
        loop {
            let now_ms = self.services.clock.now().timestamp_millis();
            let turn = self.backend.turn().await;
            let inserted = on_pool!(&self.backend, pool => sqlx::query(self.backend.idempotency_sql().claim)
            .bind(subject)
            .bind(key)
            .bind(fingerprint)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
            drop(turn);
            if inserted == 1 {
                return Ok(Claim::Held(Held { claimed_at_ms: now_ms, resumed_since: None }));
            }
            let row: Option<ClaimRow> = on_pool!(&self.backend, pool => sqlx::query_as(
                "SELECT fingerprint, claimed_at_ms, created_at_ms, response_status, response_body \
                 FROM idempotency_keys WHERE subject = $1 AND key = $2",
            )
            .bind(subject)
            .bind(key)
            .fetch_optional(pool)
            .await?);
            let Some((stored_fingerprint, claimed_at_ms, created_at_ms, status, body)) = row else {
                continue; // released between our insert and select: try again
            };
            if stored_fingerprint != fingerprint {
                return Ok(Claim::Mismatch);
            }
            if let (Some(status), Some(body)) = (status, body) {
                return Ok(Claim::Replay(StoredResponse { status: status as u16, body }));
            }
            let takeover_at_ms = claimed_at_ms.saturating_add(takeover_ms);
            if now_ms >= takeover_at_ms {
                let _turn = self.backend.turn().await;
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
                    let since = DateTime::from_timestamp_millis(created_at_ms).unwrap_or_default();
                    return Ok(Claim::Held(Held { claimed_at_ms: now_ms, resumed_since: Some(since) }));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let wait_ms = u64::try_from(takeover_at_ms.saturating_sub(now_ms)).unwrap_or(0);
                return Ok(Claim::InFlight { retry_after: Duration::from_millis(wait_ms.max(1_000)) });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Records the answer to a key this request holds.
    pub async fn complete_idempotency(
        &self,
        subject: &str,
        key: &str,
        held: &Held,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let _turn = self.backend.turn().await;
        on_pool!(&self.backend, pool => sqlx::query(self.backend.idempotency_sql().answer)
        .bind(subject)
        .bind(key)
        .bind(i32::from(response.status))
        .bind(&response.body)
        .bind(held.claimed_at_ms)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Gives a claimed key up without an answer, when its command certainly wrote nothing (a
    /// lost race): a retry with the key, or another request with it, starts afresh.
    pub async fn release_idempotency(&self, subject: &str, key: &str, held: &Held) -> Result<(), StoreError> {
        self.unanswered_claim(
            "DELETE FROM idempotency_keys \
             WHERE subject = $1 AND key = $2 AND claimed_at_ms = $3 AND response_status IS NULL",
            subject,
            key,
            held,
        )
        .await
    }

    /// Leaves a claimed key without an answer when its command may or may not have committed
    /// (the store failed): the next retry takes the claim over at once ([`Held::resumed_since`]),
    /// and finds out from the log.
    pub async fn abandon_idempotency(&self, subject: &str, key: &str, held: &Held) -> Result<(), StoreError> {
        self.unanswered_claim(
            "UPDATE idempotency_keys SET claimed_at_ms = 0 \
             WHERE subject = $1 AND key = $2 AND claimed_at_ms = $3 AND response_status IS NULL",
            subject,
            key,
            held,
        )
        .await
    }

    /// Runs `statement` on this request's claim of (`$1` subject, `$2` key), `$3` its
    /// `claimed_at_ms`: a claim taken over is another request's and is left alone.
    async fn unanswered_claim(
        &self,
        statement: &str,
        subject: &str,
        key: &str,
        held: &Held,
    ) -> Result<(), StoreError> {
        let _turn = self.backend.turn().await;
        on_pool!(&self.backend, pool => sqlx::query(statement)
            .bind(subject)
            .bind(key)
            .bind(held.claimed_at_ms)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Forgets answers first claimed longer than `older_than` ago (kept at least 24 hours by
    /// the caller's choice). Unfinished claims stay until a retry resolves them.
    pub async fn purge_idempotency(&self, older_than: chrono::Duration) -> Result<u64, StoreError> {
        let cutoff = (self.services.clock.now() - older_than).timestamp_millis();
        let _turn = self.backend.turn().await;
        let purged = on_pool!(&self.backend, pool => sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at_ms < $1 AND response_status IS NOT NULL",
        )
        .bind(cutoff)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(purged)
    }
}

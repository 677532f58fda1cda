//! The deadline timer: fires the aggregate's `ExpireDeadline` command when a dispute's running
//! deadline comes due, within about a second, also after a restart, once however many
//! instances run.
//!
//! Two loops share one table, `deadlines`, with a row per order:
//! - **tracking** follows the log in commit order from the checkpoint `timer` and records, per
//!   order, the deadline the latest event started or ended ([`DisputeEvent::timer_change`]); the
//!   row keeps the sequence of that event, so an event read twice never undoes a later one;
//! - **firing** claims rows that have come due by the injected clock (`FOR UPDATE SKIP LOCKED`
//!   on PostgreSQL, so two instances never claim one row), sends the command as the `system`
//!   role, and clears the row. It sleeps until the next due time, at most [`MAX_SLEEP`].
//!
//! Exactly one effect: a claim keeps other instances off a row for [`CLAIM`]; if the claiming
//! instance dies, another fires the row once the claim lapses. Should a deadline still be fired
//! twice, the aggregate has already moved on and refuses the second as stale; the timer counts
//! that and drops the row without an error.
//!
//! Invariant: the timer never decides a rule. The aggregate checks that the deadline is due and
//! is still the current one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dispute_domain::{
    Action, Actor, Deadline, DisputeCommand, DisputeError, DisputeEvent, Role, TimerChange,
};
use dispute_store::{Backend, CommandMetadata, Cursor, ExecuteError, Store, StoreError, on_pool};
use futures_util::future::join_all;
use tokio::sync::{Notify, watch};

const CHECKPOINT: &str = "timer";
/// Events read from the log per step.
const BATCH: i64 = 512;
/// Due rows claimed per step.
const CLAIM_BATCH: i64 = 64;
/// How long a claim keeps other instances off a row.
pub const CLAIM: Duration = Duration::from_secs(30);
/// How soon a row whose command hit a concurrent write or a store failure is tried again.
const RETRY: Duration = Duration::from_millis(200);
/// The longest the firing loop sleeps without looking at the table.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The system actor's id on the events the timer causes.
pub const ACTOR_ID: &str = "timer";

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("deadline query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("event {order_id}#{sequence} cannot be read: {source}")]
    Event { order_id: String, sequence: u64, source: serde_json::Error },
}

/// What one round of firing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Deadlines whose command the aggregate accepted.
    pub fired: usize,
    /// Deadlines the aggregate had already moved past (closed in time, or fired elsewhere).
    pub stale: usize,
    /// Deadlines left for a retry: a concurrent write, a store failure, or not yet due by the
    /// aggregate's clock.
    pub retried: usize,
}

/// What became of one claimed row.
enum Outcome {
    Fired,
    Stale,
    Retry,
}

/// One due row, as claimed.
struct Due {
    order_id: String,
    sequence: i64,
    deadline: Deadline,
    round: u32,
}

pub struct DeadlineTimer {
    store: Arc<Store>,
    /// Signalled when tracking recorded a change, so firing looks at the table again.
    tracked: Notify,
    /// Where tracking has read up to; loaded from the checkpoint on the first pass.
    cursor: tokio::sync::Mutex<Option<Cursor>>,
}

impl DeadlineTimer {
    pub fn new(store: Arc<Store>) -> Arc<Self> {
        Arc::new(Self { store, tracked: Notify::new(), cursor: tokio::sync::Mutex::new(None) })
    }

    /// Tracks the log and fires deadlines until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let tracking = tokio::spawn(self.clone().track_loop(shutdown.clone()));
        self.fire_loop(shutdown).await;
        let _ = tracking.await;
    }

    /// Records the deadlines of every event committed since the checkpoint. Returns how many
    /// events were read.
    pub async fn track(&self) -> Result<usize, TimerError> {
        let mut read = 0;
        let mut position = self.cursor.lock().await;
        let mut cursor = match *position {
            Some(cursor) => cursor,
            None => self.store.checkpoint(CHECKPOINT).await?,
        };
        *position = Some(cursor);
        loop {
            let batch = self.store.events_after(cursor, BATCH).await?;
            let Some(last) = batch.last() else { return Ok(read) };
            // Only the latest change of each order matters.
            let mut changes: HashMap<&str, (u64, TimerChange)> = HashMap::new();
            for stored in &batch {
                let event: DisputeEvent =
                    serde_json::from_value(stored.payload.clone()).map_err(|source| TimerError::Event {
                        order_id: stored.order_id.clone(),
                        sequence: stored.sequence,
                        source,
                    })?;
                let change = event.timer_change();
                if change == TimerChange::Unchanged {
                    continue;
                }
                let latest = changes.entry(&stored.order_id).or_insert((stored.sequence, change));
                if stored.sequence >= latest.0 {
                    *latest = (stored.sequence, change);
                }
            }
            if !changes.is_empty() {
                self.record(&changes).await?;
                self.tracked.notify_one();
            }
            cursor = last.cursor;
            self.store.save_checkpoint(CHECKPOINT, cursor).await?;
            *position = Some(cursor);
            read += batch.len();
        }
    }

    async fn record(&self, changes: &HashMap<&str, (u64, TimerChange)>) -> Result<(), TimerError> {
        const UPSERT: &str = "INSERT INTO deadlines (order_id, sequence, deadline, round, due_at_ms, claimed_until_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL) \
             ON CONFLICT (order_id) DO UPDATE SET sequence = excluded.sequence, deadline = excluded.deadline, \
               round = excluded.round, due_at_ms = excluded.due_at_ms, claimed_until_ms = NULL \
             WHERE deadlines.sequence < excluded.sequence";
        on_pool!(self.store.backend(), pool => {
            let mut tx = pool.begin().await?;
            for (order_id, (sequence, change)) in changes {
                let (deadline, round, due) = match change {
                    TimerChange::Set(timer) => {
                        (Some(timer.deadline.as_str()), Some(timer.round as i64), Some(timer.due.timestamp_millis()))
                    }
                    _ => (None, None, None),
                };
                sqlx::query(UPSERT)
                    .bind(*order_id)
                    .bind(*sequence as i64)
                    .bind(deadline)
                    .bind(round)
                    .bind(due)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Fires every deadline that is due by the store's clock and not claimed elsewhere.
    pub async fn fire_due(&self) -> Result<Fired, TimerError> {
        let mut report = Fired::default();
        loop {
            let claimed = self.claim().await?;
            // The claimed rows belong to different orders: fire them side by side.
            let outcomes = join_all(claimed.iter().map(|due| self.fire(due))).await;
            for outcome in outcomes {
                match outcome? {
                    Outcome::Fired => report.fired += 1,
                    Outcome::Stale => report.stale += 1,
                    Outcome::Retry => report.retried += 1,
                }
            }
            if (claimed.len() as i64) < CLAIM_BATCH {
                return Ok(report);
            }
        }
    }

    /// Claims up to [`CLAIM_BATCH`] due rows that no live claim holds.
    async fn claim(&self) -> Result<Vec<Due>, TimerError> {
        let now = self.now_ms();
        let claim_until = now + CLAIM.as_millis() as i64;
        let rows: Vec<(String, i64, String, i64)> = match self.store.backend() {
            Backend::Postgres(pool) => {
                sqlx::query_as(
                    "UPDATE deadlines SET claimed_until_ms = $2 WHERE order_id IN ( \
                       SELECT order_id FROM deadlines \
                       WHERE due_at_ms <= $1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1) \
                       ORDER BY due_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     RETURNING order_id, sequence, deadline, round::bigint",
                )
                .bind(now)
                .bind(claim_until)
                .bind(CLAIM_BATCH)
                .fetch_all(pool)
                .await?
            }
            // One writer at a time: the statement itself is the claim.
            Backend::Sqlite(pool) => {
                sqlx::query_as(
                    "UPDATE deadlines SET claimed_until_ms = $2 WHERE order_id IN ( \
                       SELECT order_id FROM deadlines \
                       WHERE due_at_ms <= $1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1) \
                       ORDER BY due_at_ms LIMIT $3) \
                     RETURNING order_id, sequence, deadline, round",
                )
                .bind(now)
                .bind(claim_until)
                .bind(CLAIM_BATCH)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|(order_id, sequence, deadline, round)| {
                let Some(deadline) = parse_deadline(&deadline) else {
                    tracing::error!(%order_id, %deadline, "unknown deadline in the deadlines table");
                    return None;
                };
                Some(Due { order_id, sequence, deadline, round: round as u32 })
            })
            .collect())
    }

    async fn fire(&self, due: &Due) -> Result<Outcome, TimerError> {
        let command = DisputeCommand {
            actor: Actor::new(Role::System, ACTOR_ID),
            action: Action::ExpireDeadline { deadline: due.deadline, round: due.round },
        };
        let metadata = CommandMetadata {
            correlation_id: format!("deadline:{}:{}:{}", due.order_id, due.deadline.as_str(), due.round),
            idempotency_key: None,
        };
        match self.store.execute(&due.order_id, command, None, &metadata).await {
            Ok(outcome) => {
                tracing::info!(order_id = %due.order_id, deadline = due.deadline.as_str(), round = due.round,
                    status = outcome.status.as_str(), "deadline fired");
                self.clear(due).await?;
                Ok(Outcome::Fired)
            }
            Err(ExecuteError::Refused(DisputeError::DeadlineNotReached)) => {
                // The aggregate's clock is behind this row's due time: look again shortly.
                self.retry_later(due).await?;
                Ok(Outcome::Retry)
            }
            Err(ExecuteError::Refused(refusal)) => {
                tracing::debug!(order_id = %due.order_id, %refusal, "deadline already passed by; dropped");
                self.clear(due).await?;
                Ok(Outcome::Stale)
            }
            Err(e @ (ExecuteError::Conflict | ExecuteError::Store(_))) => {
                tracing::warn!(order_id = %due.order_id, error = %e, "deadline not fired; retrying");
                self.retry_later(due).await?;
                Ok(Outcome::Retry)
            }
        }
    }

    /// Ends the row's deadline, unless a later event has set another since it was claimed.
    async fn clear(&self, due: &Due) -> Result<(), TimerError> {
        on_pool!(self.store.backend(), pool => sqlx::query(
            "UPDATE deadlines SET deadline = NULL, round = NULL, due_at_ms = NULL, claimed_until_ms = NULL \
             WHERE order_id = $1 AND sequence = $2",
        )
        .bind(&due.order_id)
        .bind(due.sequence)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    async fn retry_later(&self, due: &Due) -> Result<(), TimerError> {
        on_pool!(self.store.backend(), pool => sqlx::query(
            "UPDATE deadlines SET claimed_until_ms = $3 WHERE order_id = $1 AND sequence = $2",
        )
        .bind(&due.order_id)
        .bind(due.sequence)
        .bind(self.now_ms() + RETRY.as_millis() as i64)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// When the next row may be fired: its due time, or its claim's end if later.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, TimerError> {
        let sql = match self.store.backend() {
            Backend::Postgres(_) => {
                "SELECT min(GREATEST(due_at_ms, COALESCE(claimed_until_ms, 0))) FROM deadlines \
                 WHERE due_at_ms IS NOT NULL"
            }
            Backend::Sqlite(_) => {
                "SELECT min(max(due_at_ms, COALESCE(claimed_until_ms, 0))) FROM deadlines \
                 WHERE due_at_ms IS NOT NULL"
            }
        };
        let next: Option<i64> =
            on_pool!(self.store.backend(), pool => sqlx::query_scalar(sql).fetch_one(pool).await)?;
        Ok(next)
    }

    fn now_ms(&self) -> i64 {
        self.store.services().clock.now().timestamp_millis()
    }

    async fn track_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let committed = self.store.committed().notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            // Cancelling a pass is safe: each batch's records and checkpoint are idempotent.
            let tracked = tokio::select! {
                tracked = self.track() => tracked,
                _ = shutdown.changed() => return,
            };
            let pause = match tracked {
                Ok(_) => Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %e, "deadline tracking interrupted; retrying");
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = committed => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn fire_loop(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let wait = match self.fire_due().await {
                Ok(_) => match self.next_due_ms().await {
                    Ok(Some(next)) => Duration::from_millis((next - self.now_ms()).max(0) as u64),
                    Ok(None) => MAX_SLEEP,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the next deadline");
                        MAX_SLEEP
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "firing deadlines interrupted; retrying");
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
                _ = self.tracked.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn parse_deadline(name: &str) -> Option<Deadline> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

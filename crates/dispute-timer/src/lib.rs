//! The deadline timer: fires the aggregate's `ExpireDeadline` command when a dispute's running
//! deadline comes due, within about a second, also after a restart, once however many
//! instances run.
//!
//! Two loops share one table, `deadlines`, with a row per order:
//! - **tracking** follows the log in commit order from the checkpoint `timer` and records, per
//!   order, the deadline the latest event started ([`DisputeEvent::timer_change`]); a deadline
//!   that ends loses its row. The store records each event once (its checkpoint `deadlines`
//!   moves with each batch), so an event read twice never undoes a later one;
//! - **firing** claims rows that have come due by the injected clock (`FOR UPDATE SKIP LOCKED`
//!   on PostgreSQL, so two instances never claim one row), sends the command as the `system`
//!   role, and deletes the row. It sleeps until the next due time, at most [`MAX_SLEEP`].
//!
//! Exactly one effect: a claim keeps other instances off a row for [`CLAIM`]; if the claiming
//! instance dies, another fires the row once the claim lapses. Should a deadline still be fired
//! twice, the aggregate has already moved on and refuses the second as stale; the timer counts
//! that and drops the row without an error.
//!
//! Invariant: the timer never decides a rule. The aggregate checks that the deadline is due and
//! is still the current one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dispute_domain::{
    Action, Actor, Deadline, DisputeCommand, DisputeError, DisputeEvent, Role, TimerChange,
};
use dispute_store::deadlines::{Claimed, Tracked};
use dispute_store::{
    Batch, CommandMetadata, Consumer, ExecuteError, Follower, Store, StoreError, StoredEvent,
};
use futures_util::future::join_all;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const CHECKPOINT: &str = "timer";
/// Due rows claimed per step.
const CLAIM_BATCH: i64 = 64;
/// How far tracking may lag the log: a commit wakes it no sooner than this after its last read,
/// so that a busy log costs it one read and one write per pace rather than per commit. A small
/// part of the second a deadline may fire late by.
pub const TRACKING_PACE: Duration = Duration::from_millis(100);
/// How long a claim keeps other instances off a row.
pub const CLAIM: Duration = Duration::from_secs(30);
/// How soon a row whose command hit a concurrent write or a store failure is tried again.
const RETRY: Duration = Duration::from_millis(200);
/// The longest the firing loop sleeps without looking at the table.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);
/// The system actor's id on the events the timer causes.
pub const ACTOR_ID: &str = "timer";

/// Deadlines running (due or not), as of the firing loop's last look at the table.
pub const PENDING_DEADLINES: &str = "disputes_timer_pending_deadlines";
/// How late deadlines fired: the command's time less the due time, on the service clock.
pub const LATENESS_SECONDS: &str = "disputes_timer_lateness_seconds";
/// Deadlines whose command the aggregate accepted, by deadline.
pub const FIRED_TOTAL: &str = "disputes_timer_fired_total";
/// Deadlines the aggregate had already moved past, dropped, by deadline.
pub const STALE_TOTAL: &str = "disputes_timer_stale_total";

/// The bucket bounds of [`LATENESS_SECONDS`]: on time is within [`MAX_SLEEP`]; a deadline that
/// came due while no instance ran fires minutes or hours late.
pub const LATENESS_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// Describes the timer's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_gauge!(PENDING_DEADLINES, "Deadlines running, due or not.");
    metrics::describe_histogram!(
        LATENESS_SECONDS,
        metrics::Unit::Seconds,
        "How late deadlines fired: fired time less due time, on the service clock."
    );
    metrics::describe_counter!(
        FIRED_TOTAL,
        "Deadlines fired whose command the aggregate accepted, by deadline."
    );
    metrics::describe_counter!(
        STALE_TOTAL,
        "Deadlines dropped because the dispute had moved past them, by deadline."
    );
}

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    row: Claimed,
    deadline: Deadline,
}

pub struct DeadlineTimer {
    store: Arc<Store>,
    /// Signalled when tracking set a deadline due before firing's next look at the table.
    tracked: Notify,
    /// When firing looks at the table next (ms, by the store's clock); `i64::MAX` while it is
    /// looking, so that whatever tracking sets then is looked at again.
    next_look_ms: AtomicI64,
    /// Tracking's reader of the log, from the checkpoint `timer`.
    tracking: Follower,
}

impl DeadlineTimer {
    pub fn new(store: Arc<Store>) -> Arc<Self> {
        let tracking = Follower::new(store.clone(), CHECKPOINT).paced(TRACKING_PACE);
        Arc::new(Self { store, tracked: Notify::new(), next_look_ms: AtomicI64::new(i64::MAX), tracking })
    }

    /// Tracks the log and fires deadlines until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let tracking = tokio::spawn(self.clone().track_loop(stop.clone()));
        self.fire_loop(stop).await;
        let _ = tracking.await;
    }

    /// Records the deadlines of every event committed since the checkpoint. Returns how many
    /// events were read.
    pub async fn track(&self) -> Result<usize, TimerError> {
        Ok(self.tracking.catch_up(&mut Tracking(self)).await? as usize)
    }

    /// Records the deadlines a batch of the log starts or ends (each order's last change, in
    /// one transaction), and wakes the firing loop if one it set is due before the loop's next
    /// look at the table. Most deadlines are days away: the loop sleeps on.
    async fn track_batch(&self, batch: &[StoredEvent]) -> Result<(), TimerError> {
        let mut changes = Vec::new();
        for stored in batch {
            let event = DisputeEvent::deserialize(&stored.payload).map_err(|source| TimerError::Event {
                order_id: stored.order_id.clone(),
                sequence: stored.sequence,
                source,
            })?;
            let running = match event.timer_change() {
                TimerChange::Unchanged => continue,
                TimerChange::Set(timer) => Some(timer),
                TimerChange::Cleared => None,
            };
            changes.push(Tracked {
                order_id: &stored.order_id,
                sequence: stored.sequence,
                cursor: stored.cursor,
                running,
            });
        }
        let earliest = self.store.deadlines().record(&changes).await?;
        if earliest.is_some_and(|due| due < self.next_look_ms.load(Ordering::Acquire)) {
            self.tracked.notify_one();
        }
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
        let rows = self.store.deadlines().claim_due(now, claim_until, CLAIM_BATCH).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let Some(deadline) = parse_deadline(&row.deadline) else {
                    tracing::error!(order_id = %row.order_id, deadline = %row.deadline,
                        "unknown deadline in the deadlines table");
                    return None;
                };
                Some(Due { row, deadline })
            })
            .collect())
    }

    async fn fire(&self, due: &Due) -> Result<Outcome, TimerError> {
        let command = DisputeCommand {
            actor: Actor::new(Role::System, ACTOR_ID),
            action: Action::ExpireDeadline { deadline: due.deadline, round: due.row.round },
        };
        let order_id = &due.row.order_id;
        let metadata = CommandMetadata {
            correlation_id: format!("deadline:{}:{}:{}", order_id, due.deadline.as_str(), due.row.round),
            idempotency_key: None,
        };
        match self.store.execute(order_id, command, None, &metadata).await {
            Ok(outcome) => {
                tracing::info!(order_id = %order_id, deadline = due.deadline.as_str(), round = due.row.round,
                    status = outcome.status.as_str(), "deadline fired");
                let late_ms = (self.now_ms() - due.row.due_at_ms).max(0);
                metrics::histogram!(LATENESS_SECONDS).record(late_ms as f64 / 1000.0);
                metrics::counter!(FIRED_TOTAL, "deadline" => due.deadline.as_str()).increment(1);
                self.clear(due).await?;
                Ok(Outcome::Fired)
            }
            Err(ExecuteError::Refused(DisputeError::DeadlineNotReached)) => {
                // The aggregate's clock is behind this row's due time: look again shortly.
                self.retry_later(due).await?;
                Ok(Outcome::Retry)
            }
            Err(ExecuteError::Refused(refusal)) => {
                tracing::debug!(order_id = %order_id, %refusal, "deadline already passed by; dropped");
                metrics::counter!(STALE_TOTAL, "deadline" => due.deadline.as_str()).increment(1);
                self.clear(due).await?;
                Ok(Outcome::Stale)
            }
            // A lost race or a store failure (a claim is never lost: the timer sends no key).
            Err(e) => {
                tracing::warn!(order_id = %order_id, error = %e, "deadline not fired; retrying");
                self.retry_later(due).await?;
                Ok(Outcome::Retry)
            }
        }
    }

    /// Ends the row's deadline, unless a later event has set another since it was claimed.
    async fn clear(&self, due: &Due) -> Result<(), TimerError> {
        self.store.deadlines().clear(&due.row).await?;
        Ok(())
    }

    async fn retry_later(&self, due: &Due) -> Result<(), TimerError> {
        self.store.deadlines().retry_at(&due.row, self.now_ms() + RETRY.as_millis() as i64).await?;
        Ok(())
    }

    /// When the next row may be fired: its due time, or its claim's end if later. Sets the
    /// pending deadlines gauge from the same look at the table.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, TimerError> {
        let schedule = self.store.deadlines().schedule().await?;
        metrics::gauge!(PENDING_DEADLINES).set(schedule.pending as f64);
        Ok(schedule.next_due_ms)
    }

    fn now_ms(&self) -> i64 {
        self.store.services().clock.now().timestamp_millis()
    }

    async fn track_loop(self: Arc<Self>, stop: CancellationToken) {
        self.tracking.run(&mut Tracking(&self), "deadline tracking", &stop).await;
    }

    async fn fire_loop(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            self.next_look_ms.store(i64::MAX, Ordering::Release);
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
            let wait = wait.min(MAX_SLEEP);
            self.next_look_ms.store(self.now_ms().saturating_add(wait.as_millis() as i64), Ordering::Release);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.tracked.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Tracking's side of following the log.
struct Tracking<'a>(&'a DeadlineTimer);

impl Consumer for Tracking<'_> {
    type Error = TimerError;

    async fn apply(&mut self, batch: &Batch) -> Result<(), TimerError> {
        self.0.track_batch(batch).await
    }
}

fn parse_deadline(name: &str) -> Option<Deadline> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

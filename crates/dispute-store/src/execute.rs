//! Executing one command: load the order's stream, let the aggregate decide, commit the events
//! with their metadata, and report the resulting state.

use std::collections::HashMap;

use chrono::SecondsFormat;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore as _};
use dispute_domain::{CloseReason, Dispute, DisputeCommand, DisputeError, DisputeServices, Money, Status};

use crate::{EventStore, Store};

/// Who and what caused a command, recorded in every event's metadata.
#[derive(Debug, Clone, Default)]
pub struct CommandMetadata {
    /// Ties the events to the request that caused them (the `X-Correlation-Id` header, or new).
    pub correlation_id: String,
    /// The caller's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

/// The state after a command, as the command's answer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub dispute_id: String,
    /// The sequence of the stream's last event after the command.
    pub sequence: u64,
    pub status: Status,
    pub close_reason: Option<CloseReason>,
    pub round: u32,
    pub refunded_total: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// A rule refused the command; nothing was written.
    #[error(transparent)]
    Refused(#[from] DisputeError),
    /// `If-Match` named another sequence, or another command committed first; nothing was written.
    #[error("the dispute changed concurrently")]
    Conflict,
    /// The database failed; the command may be retried.
    #[error("event store failure: {0}")]
    Store(String),
}

impl From<AggregateError<DisputeError>> for ExecuteError {
    fn from(err: AggregateError<DisputeError>) -> Self {
        match err {
            AggregateError::UserError(e) => Self::Refused(e),
            AggregateError::AggregateConflict => Self::Conflict,
            AggregateError::DatabaseConnectionError(e) => Self::Store(e.to_string()),
            AggregateError::DeserializationError(e) => Self::Store(e.to_string()),
            AggregateError::UnexpectedError(e) if is_busy(&*e) => Self::Conflict,
            AggregateError::UnexpectedError(e) => Self::Store(e.to_string()),
        }
    }
}

/// SQLite's "database is locked": another writer held the lock past the busy timeout.
fn is_busy(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let text = err.to_string();
    text.contains("database is locked") || text.contains("(code: 5)")
}

impl Store {
    /// Executes `command` on the stream of `order_id`.
    ///
    /// With `expected_sequence` (from `If-Match`) the command runs only if the stream's last
    /// sequence is exactly that. Returns after the events are durably committed. A command the
    /// rules accept but that changes nothing (an order registered again with the same facts)
    /// writes nothing and reports the current state.
    pub async fn execute(
        &self,
        order_id: &str,
        command: DisputeCommand,
        expected_sequence: Option<u64>,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, ExecuteError> {
        let event_metadata = self.event_metadata(&command, metadata);
        let outcome = match &self.events {
            EventStore::Postgres(store) => {
                execute_on(store, &self.services, order_id, command, expected_sequence, event_metadata).await
            }
            EventStore::Sqlite(store) => {
                execute_on(store, &self.services, order_id, command, expected_sequence, event_metadata).await
            }
        }?;
        self.committed.notify_waiters();
        Ok(outcome)
    }

    /// Loads the current state of a dispute and the sequence it reflects.
    pub async fn load(&self, order_id: &str) -> Result<(Dispute, u64), ExecuteError> {
        let context = match &self.events {
            EventStore::Postgres(store) => store.load_aggregate(order_id).await?,
            EventStore::Sqlite(store) => store.load_aggregate(order_id).await?,
        };
        Ok((context.aggregate, context.current_sequence as u64))
    }

    fn event_metadata(
        &self,
        command: &DisputeCommand,
        metadata: &CommandMetadata,
    ) -> HashMap<String, String> {
        let mut map = HashMap::with_capacity(6);
        map.insert("actor_role".to_string(), command.actor.role.as_str().to_string());
        map.insert("actor_id".to_string(), command.actor.id.clone());
        map.insert("command".to_string(), command.action.name().to_string());
        map.insert(
            "time".to_string(),
            self.services.clock.now().to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        map.insert("correlation_id".to_string(), metadata.correlation_id.clone());
        if let Some(key) = &metadata.idempotency_key {
            map.insert("idempotency_key".to_string(), key.clone());
        }
        map
    }
}

async fn execute_on<R: PersistedEventRepository>(
    store: &PersistedEventStore<R, Dispute>,
    services: &DisputeServices,
    order_id: &str,
    command: DisputeCommand,
    expected_sequence: Option<u64>,
    metadata: HashMap<String, String>,
) -> Result<Outcome, ExecuteError> {
    let mut context = store.load_aggregate(order_id).await?;
    let loaded_sequence = context.current_sequence as u64;
    if expected_sequence.is_some_and(|expected| expected != loaded_sequence) {
        return Err(ExecuteError::Conflict);
    }
    let sink = EventSink::default();
    context.aggregate.handle(command, services, &sink).await?;
    let events = sink.collect().await;
    let dispute = &context.aggregate;
    let outcome = Outcome {
        dispute_id: order_id.to_string(),
        sequence: loaded_sequence + events.len() as u64,
        status: dispute.status(),
        close_reason: dispute.close_reason(),
        round: dispute.round(),
        refunded_total: dispute.refunded_total().expect("an accepted command leaves a registered order"),
    };
    if !events.is_empty() {
        store.commit(events, context, metadata).await?;
    }
    Ok(outcome)
}

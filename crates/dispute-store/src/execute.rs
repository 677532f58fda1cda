//! Executing one command: load the order's stream, let the aggregate decide, commit the events
//! with their metadata, and report the resulting state.
//!
//! Each event is committed with metadata of its own: the command's metadata plus `prevhash`
//! (the stream's previous hash) and `hash` (see [`crate::chain`]), computed before the commit.

use chrono::{DateTime, Utc};
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, DomainEvent};
use dispute_domain::{Action, Actor, CloseReason, Dispute, DisputeCommand, DisputeError, Money, Status};
use serde::Deserialize;
use serde_json::Value;

use crate::append::{Appended, Record, RecordKind, append};
use crate::cache::Head;
use crate::chain::{self, Unlinked};
use crate::idempotency::Held;
use crate::{Batch, Cursor, EventMetadata, Store, StoredEvent, StoredResponse};

/// Runs the same expression against whichever cqrs-es repository the store holds.
macro_rules! on_repository {
    ($events:expr, $repo:ident => $body:expr) => {
        match $events {
            crate::EventStore::Postgres($repo) => $body,
            crate::EventStore::Sqlite($repo) => $body,
        }
    };
}

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
    /// `If-Match` named another sequence, or another command committed first (or, on SQLite,
    /// held the write lock past the busy timeout); nothing was written.
    #[error("the dispute changed concurrently")]
    Conflict,
    /// The request's claim on its key was taken over by another request with the key, which
    /// executes the command now; nothing was written.
    #[error("the idempotency key's claim was taken over by another request")]
    ClaimLost,
    /// The store failed; the command may be retried.
    #[error("event store failure: {0}")]
    Store(#[source] StoreFailure),
}

impl ExecuteError {
    /// The database did not answer: see [`crate::unavailable`].
    pub fn is_unavailable(&self) -> bool {
        match self {
            ExecuteError::Store(StoreFailure::Database(e)) => {
                e.downcast_ref().is_some_and(crate::unavailable)
            }
            _ => false,
        }
    }
}

/// Why the store could not execute a command.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The database failed (as the event repository reports it).
    #[error("the database failed: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored event is not a dispute event this version can read.
    #[error("event {order_id}#{sequence} cannot be read: {source}")]
    Unreadable { order_id: String, sequence: u64, source: serde_json::Error },
    /// An event could not be encoded for storage.
    #[error("an event cannot be encoded: {0}")]
    Encode(#[source] serde_json::Error),
}

impl From<AggregateError<DisputeError>> for ExecuteError {
    fn from(err: AggregateError<DisputeError>) -> Self {
        match err {
            AggregateError::UserError(e) => Self::Refused(e),
            AggregateError::AggregateConflict => Self::Conflict,
            AggregateError::UnexpectedError(e) if e.downcast_ref().is_some_and(is_busy) => Self::Conflict,
            AggregateError::DatabaseConnectionError(e)
            | AggregateError::DeserializationError(e)
            | AggregateError::UnexpectedError(e) => Self::Store(StoreFailure::Database(e)),
        }
    }
}

/// SQLite's `SQLITE_BUSY` (5) or `SQLITE_LOCKED` (6), extended codes included: another writer
/// held the lock past the busy timeout. Read from the database's error code, not its message.
pub(crate) fn is_busy(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else { return false };
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        && db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

impl From<PersistenceError> for ExecuteError {
    fn from(err: PersistenceError) -> Self {
        AggregateError::<DisputeError>::from(err).into()
    }
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
        match self.execute_once(order_id, &command, expected_sequence, metadata, Keying::None, None).await? {
            Ran::Appended(outcome) | Ran::Unchanged(outcome) => Ok(outcome),
            Ran::Before(_) | Ran::Deferred => {
                unreachable!("only a keyed command is found earlier or deferred")
            }
        }
    }

    /// Executes a keyed command whose key this request has not claimed, as [`Store::execute`],
    /// committing the key's record, answered, in the same commit as the events: one commit
    /// for the whole command.
    ///
    /// Returns `None` when nothing was written and the command must go through a claim
    /// ([`Store::claim_idempotency`]): the key is in use (answered, claimed, or sent with
    /// another request), or the command writes no events now (a rule refuses it, it changes
    /// nothing, `If-Match` names another sequence, or another command committed first). Each of
    /// those answers may depend on an earlier request with the key, which the claim finds.
    pub async fn execute_answered(
        &self,
        order_id: &str,
        command: &DisputeCommand,
        expected_sequence: Option<u64>,
        metadata: &CommandMetadata,
        request: &KeyedRequest<'_>,
    ) -> Result<Option<Outcome>, ExecuteError> {
        match self
            .execute_once(order_id, command, expected_sequence, metadata, Keying::New(request), None)
            .await?
        {
            Ran::Appended(outcome) => Ok(Some(outcome)),
            Ran::Deferred => Ok(None),
            Ran::Unchanged(_) | Ran::Before(_) => {
                unreachable!("under a new key only an append is not deferred")
            }
        }
    }

    /// Executes a keyed command under the claim this request holds on its key. Its events
    /// commit together with its answer, and only while the claim is still this request's
    /// (unanswered, not taken over): otherwise nothing is written and the error is
    /// [`ExecuteError::ClaimLost`]. A command that writes no events has its answer recorded
    /// after it; if that write fails, the answer still stands and the claim stays unanswered,
    /// for a retry to resolve. So every outcome but an error leaves the claim answered.
    ///
    /// A claim taken over ([`Held::resumed_since`]) belonged to an earlier request that may
    /// have committed the command before its answer was recorded (a process of an earlier
    /// version, which wrote the two in separate commits, killed between them). So the stream
    /// is searched first for events the same actor committed with the same key since the key
    /// was first claimed: if there are any, the command took effect then and is not run again;
    /// the answer is the state right after those events, as the first request would have
    /// answered ([`Executed::Before`]).
    pub async fn execute_claimed(
        &self,
        order_id: &str,
        command: &DisputeCommand,
        expected_sequence: Option<u64>,
        metadata: &CommandMetadata,
        request: &KeyedRequest<'_>,
        held: &Held,
    ) -> Result<Executed, ExecuteError> {
        let earlier = held.resumed_since.map(|since| EarlierRequest {
            key: request.key.to_string(),
            actor: command.actor.clone(),
            since,
        });
        let keying = Keying::Claimed(request, held.claimed_at_ms);
        match self
            .execute_once(order_id, command, expected_sequence, metadata, keying, earlier.as_ref())
            .await?
        {
            Ran::Appended(outcome) => Ok(Executed::Now(outcome)),
            Ran::Unchanged(outcome) => {
                self.answer_claim(request, held, &outcome).await;
                Ok(Executed::Now(outcome))
            }
            Ran::Before(outcome) => {
                self.answer_claim(request, held, &outcome).await;
                Ok(Executed::Before(outcome))
            }
            Ran::Deferred => unreachable!("only a command under a new key is deferred"),
        }
    }

    /// Records the answer to `outcome` on the claim `held`, where no append carried it.
    async fn answer_claim(&self, request: &KeyedRequest<'_>, held: &Held, outcome: &Outcome) {
        let answer = (request.answer)(outcome);
        if let Err(error) = self.complete_idempotency(request.subject, request.key, held, &answer).await {
            tracing::warn!(%error, key = request.key, "the idempotency record was not updated; a retry resolves it from the log");
        }
    }

    async fn execute_once(
        &self,
        order_id: &str,
        command: &DisputeCommand,
        expected_sequence: Option<u64>,
        metadata: &CommandMetadata,
        keying: Keying<'_>,
        earlier: Option<&EarlierRequest>,
    ) -> Result<Ran, ExecuteError> {
        let event_metadata = self.event_metadata(command, metadata);
        let ran = on_repository!(&self.events, repo => execute_on(
            self,
            repo,
            order_id,
            command,
            expected_sequence,
            event_metadata,
            keying,
            earlier,
        )
        .await)?;
        if let Ran::Appended(_) = ran {
            self.committed.notify_waiters();
        }
        Ok(ran)
    }

    /// Loads the current state of a dispute and the sequence it reflects, from the log (not
    /// from the cache of recent heads, which may be behind it).
    pub async fn load(&self, order_id: &str) -> Result<(Dispute, u64), ExecuteError> {
        let loaded = on_repository!(&self.events, repo => load(repo, order_id, None).await)?;
        Ok((loaded.head.dispute, loaded.head.sequence))
    }

    /// The metadata of the events `command` causes, before the chain adds their hashes.
    fn event_metadata(&self, command: &DisputeCommand, metadata: &CommandMetadata) -> EventMetadata {
        EventMetadata {
            actor_role: command.actor.role,
            actor_id: command.actor.id.clone(),
            command: command.action.name().to_string(),
            time: self.services.clock.now(),
            correlation_id: metadata.correlation_id.clone(),
            idempotency_key: metadata.idempotency_key.clone(),
            prevhash: None,
            hash: None,
        }
    }
}

/// A request sent with an `Idempotency-Key`, as its key's record holds it.
pub struct KeyedRequest<'a> {
    /// Whose key it is: keys are scoped to the caller.
    pub subject: &'a str,
    pub key: &'a str,
    /// What makes two requests with the key the same request.
    pub fingerprint: &'a str,
    /// The answer the record keeps for the state after the command's events.
    pub answer: &'a (dyn Fn(&Outcome) -> StoredResponse + Send + Sync),
}

/// What [`Store::execute_claimed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// The command ran now; this is the state after its events (if it caused any).
    Now(Outcome),
    /// An earlier request with the same key had committed the command; this is the state right
    /// after its events, and nothing was written now.
    Before(Outcome),
}

/// Under which idempotency record a command's events commit.
#[derive(Clone, Copy)]
enum Keying<'a> {
    /// None: the command carries no key.
    None,
    /// A key this request has not claimed: its record is created with the events.
    New(&'a KeyedRequest<'a>),
    /// A key this request claimed at this `claimed_at_ms`: the claim is answered with the events.
    Claimed(&'a KeyedRequest<'a>, i64),
}

/// What executing a command did, short of a failure; each with the state it answers.
enum Ran {
    /// Its events are committed (with the key's answer, under a key).
    Appended(Outcome),
    /// The rules accepted it and it changes nothing: nothing was written.
    Unchanged(Outcome),
    /// A take-over found the earlier request's events: nothing was written now.
    Before(Outcome),
    /// Under a new key only: nothing was written, and the command goes through a claim.
    Deferred,
}

/// The request whose claim was taken over: its events carry its key and actor.
struct EarlierRequest {
    key: String,
    actor: Actor,
    since: DateTime<Utc>,
}

impl EarlierRequest {
    /// Whether an event with this stored metadata was committed by the earlier request.
    fn committed(&self, metadata: &Value) -> bool {
        EventMetadata::deserialize(metadata).is_ok_and(|metadata| {
            metadata.idempotency_key.as_deref() == Some(self.key.as_str())
                && metadata.actor_role == self.actor.role
                && metadata.actor_id == self.actor.id
                && metadata.time >= self.since
        })
    }
}

/// A stream as read from the log for a command.
struct Loaded {
    head: Head,
    /// The state right after the last event of the earlier request looked for, if any.
    earlier: Option<Outcome>,
}

async fn load<R: PersistedEventRepository>(
    repo: &R,
    order_id: &str,
    earlier: Option<&EarlierRequest>,
) -> Result<Loaded, ExecuteError> {
    let stored = repo.get_events::<Dispute>(order_id).await?;
    let mut head = Head::empty();
    let mut earlier_outcome = None;
    for event in stored {
        let sequence = event.sequence as u64;
        let payload = serde_json::from_value(event.payload).map_err(|source| {
            ExecuteError::Store(StoreFailure::Unreadable { order_id: order_id.to_string(), sequence, source })
        })?;
        head.dispute.apply(payload);
        head.sequence = sequence;
        // An event without a hash (written before the chain existed) links as an empty hash;
        // `disputes audit verify` reports it.
        head.hash = event.metadata.get(chain::HASH_KEY).and_then(Value::as_str).unwrap_or("").to_string();
        if earlier.is_some_and(|earlier| earlier.committed(&event.metadata)) {
            earlier_outcome = Some(head.outcome(order_id));
        }
    }
    Ok(Loaded { head, earlier: earlier_outcome })
}

/// What one attempt at a command on a head did, short of a failure.
enum Attempt {
    /// Its events are committed; the head after them, and the events as committed.
    Appended(Head, Vec<SerializedEvent>),
    /// The rules accepted it and it changes nothing: nothing was written.
    Unchanged(Head),
    /// The head is behind the stream, or `If-Match` names another sequence: nothing was written.
    Behind,
    /// The key's record could not be written with the events: nothing was written.
    RecordRefused,
}

#[allow(clippy::too_many_arguments)]
async fn execute_on<R: PersistedEventRepository>(
    store: &Store,
    repo: &R,
    order_id: &str,
    command: &DisputeCommand,
    expected_sequence: Option<u64>,
    metadata: EventMetadata,
    keying: Keying<'_>,
    earlier: Option<&EarlierRequest>,
) -> Result<Ran, ExecuteError> {
    let new_key = matches!(keying, Keying::New(_));
    let record_refused = || match keying {
        Keying::Claimed(..) => Err(ExecuteError::ClaimLost),
        Keying::New(_) | Keying::None => Ok(Ran::Deferred),
    };
    let run = |head| attempt(store, order_id, head, command, expected_sequence, &metadata, keying);
    // A cached head is trusted only for an append, which the stream's primary key refuses if
    // the head is behind. Any other outcome (a refusal, an `If-Match` mismatch, a lost race,
    // no change) may be the stale head's, so it is decided again on the stream as stored, or,
    // under a new key, through the claim, which decides it on the stream as stored. A take-over
    // searches the log for its earlier request's events, so it never starts here. An order
    // registered with no head cached is most often new: its registration is tried on the empty
    // stream first, by the same rule.
    let heads = &store.heads;
    let registration = matches!(command.action, Action::RegisterOrder(_));
    let cached =
        earlier.is_none().then(|| heads.get(order_id).or_else(|| registration.then(Head::empty))).flatten();
    if let Some(head) = cached {
        match run(head).await {
            Ok(Attempt::Appended(head, events)) => {
                return Ok(Ran::Appended(store.appended(order_id, head, events)));
            }
            Ok(Attempt::RecordRefused) => return record_refused(),
            Ok(Attempt::Behind) => heads.evict(order_id),
            Ok(Attempt::Unchanged(_)) | Err(ExecuteError::Refused(_)) => {
                heads.evict(order_id);
                if new_key {
                    return Ok(Ran::Deferred);
                }
            }
            Err(e) => {
                heads.evict(order_id);
                return Err(e);
            }
        }
    }
    let loaded = load(repo, order_id, earlier).await.inspect_err(|_| heads.evict(order_id))?;
    if let Some(outcome) = loaded.earlier {
        return Ok(Ran::Before(outcome));
    }
    heads.offer(order_id, loaded.head.clone());
    // Under a new key, what is not an append goes through the claim; a failure does not.
    match run(loaded.head).await {
        Ok(Attempt::Appended(head, events)) => Ok(Ran::Appended(store.appended(order_id, head, events))),
        Ok(Attempt::RecordRefused) => record_refused(),
        Ok(Attempt::Unchanged(_)) | Err(ExecuteError::Refused(_)) if new_key => Ok(Ran::Deferred),
        Ok(Attempt::Unchanged(head)) => Ok(Ran::Unchanged(head.outcome(order_id))),
        Ok(Attempt::Behind) => {
            heads.evict(order_id);
            if new_key { Ok(Ran::Deferred) } else { Err(ExecuteError::Conflict) }
        }
        Err(e @ ExecuteError::Refused(_)) => Err(e),
        Err(e) => {
            // A store failure leaves the stream's state unknown.
            heads.evict(order_id);
            Err(e)
        }
    }
}

/// Decides `command` on `head` and appends its events after it, with the key's record if it
/// carries one. `head` is this attempt's own: a refused or failed command leaves no trace
/// outside it.
async fn attempt(
    store: &Store,
    order_id: &str,
    mut head: Head,
    command: &DisputeCommand,
    expected_sequence: Option<u64>,
    metadata: &EventMetadata,
    keying: Keying<'_>,
) -> Result<Attempt, ExecuteError> {
    if expected_sequence.is_some_and(|expected| expected != head.sequence) {
        return Ok(Attempt::Behind);
    }
    let events = head.dispute.decide(command, &store.services)?;
    if events.is_empty() {
        return Ok(Attempt::Unchanged(head));
    }
    let serialized = chained(order_id, head.sequence, &head.hash, &events, metadata)?;
    for event in events {
        head.dispute.apply(event);
    }
    head.sequence += serialized.len() as u64;
    head.hash = serialized
        .last()
        .and_then(|event| event.metadata.get(chain::HASH_KEY))
        .and_then(Value::as_str)
        .expect("a chained event carries its hash")
        .to_string();
    let record = match keying {
        Keying::None => None,
        Keying::New(request) | Keying::Claimed(request, _) => {
            let answer = (request.answer)(&head.outcome(order_id));
            let kind = match keying {
                Keying::Claimed(_, claimed_at_ms) => RecordKind::Claimed { claimed_at_ms },
                _ => RecordKind::New {
                    fingerprint: request.fingerprint.to_string(),
                    now_ms: metadata.time.timestamp_millis(),
                },
            };
            Some(Record {
                subject: request.subject.to_string(),
                key: request.key.to_string(),
                status: i32::from(answer.status),
                body: answer.body,
                kind,
            })
        }
    };
    match append(&store.backend, &serialized, record.as_ref()).await? {
        Appended::Committed => Ok(Attempt::Appended(head, serialized)),
        Appended::Behind => Ok(Attempt::Behind),
        Appended::RecordRefused => Ok(Attempt::RecordRefused),
    }
}

impl Store {
    /// After a command's `events` committed on `order_id`: the cache holds the `head` after
    /// them, and they are handed to this process's reader of its own commits, if any.
    fn appended(&self, order_id: &str, head: Head, events: Vec<SerializedEvent>) -> Outcome {
        let outcome = head.outcome(order_id);
        self.heads.offer(order_id, head);
        if let Some(to) = self.handed.get() {
            let last = events.last().map(|e| e.sequence as u64);
            let batch: Batch = events
                .into_iter()
                .map(|e| StoredEvent {
                    order_id: e.aggregate_id,
                    sequence: e.sequence as u64,
                    event_type: e.event_type,
                    event_version: e.event_version,
                    payload: e.payload,
                    metadata: e.metadata,
                    cursor: Cursor::default(),
                })
                .collect();
            if to.try_send(batch).is_ok()
                && let Some(last) = last
            {
                self.projected.handing(order_id, last);
            }
        }
        outcome
    }
}

/// The events to commit, each with the command's metadata plus its `prevhash` and `hash`.
fn chained(
    order_id: &str,
    last_sequence: u64,
    last_hash: &str,
    events: &[dispute_domain::DisputeEvent],
    metadata: &EventMetadata,
) -> Result<Vec<SerializedEvent>, ExecuteError> {
    let unlinked = events
        .iter()
        .map(|event| {
            Ok(Unlinked {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(event)
                    .map_err(|e| ExecuteError::Store(StoreFailure::Encode(e)))?,
                metadata: metadata.clone(),
            })
        })
        .collect::<Result<Vec<_>, ExecuteError>>()?;
    Ok(chain::link(order_id, last_sequence, last_hash, unlinked)
        .into_iter()
        .map(|linked| {
            SerializedEvent::new(
                order_id.to_string(),
                linked.sequence as usize,
                Dispute::TYPE.to_string(),
                linked.event_type,
                linked.event_version,
                linked.payload,
                linked.metadata,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;

    #[tokio::test]
    async fn a_sqlite_write_lock_held_past_the_busy_timeout_is_a_conflict_by_its_code() {
        let dir = std::env::temp_dir().join(format!("disputes-busy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::new().filename(dir.join("busy.db")).create_if_missing(true);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS t (x integer)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
        let mut waiter =
            SqliteConnection::connect_with(&options.clone().busy_timeout(Duration::ZERO)).await.unwrap();
        let busy = sqlx::query("BEGIN IMMEDIATE").execute(&mut waiter).await.unwrap_err();
        let other = sqlx::query("SELECT * FROM missing").execute(&mut waiter).await.unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);

        let as_aggregate = |e: sqlx::Error| AggregateError::<DisputeError>::UnexpectedError(Box::new(e));
        assert!(matches!(ExecuteError::from(as_aggregate(busy)), ExecuteError::Conflict));
        assert!(matches!(
            ExecuteError::from(as_aggregate(other)),
            ExecuteError::Store(StoreFailure::Database(_))
        ));
    }
}

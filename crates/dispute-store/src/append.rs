//! The one writer of events: a command's events appended to its order's stream, in one commit
//! with its idempotency record when the command carries a key.
//!
//! On PostgreSQL the append is one statement in its own transaction: a multi-row `INSERT … SELECT
//! FROM unnest(…)`, after a data-modifying `WITH` that writes the key's record when there is
//! one. The events are inserted only if the record was written, so a key in use by another
//! request, or a claim taken over, writes nothing at all. postgres-es's own append (BEGIN, one
//! INSERT per event, COMMIT) took three round trips and could not take the record into its
//! transaction (`docs/BENCHMARKS.md`, "One commit per command"). On SQLite the same rows are
//! written in one transaction on the events' connections, whose commit is flushed: the appends
//! queued meanwhile together, as one script with its `BEGIN` and `COMMIT` when no key is in use
//! and no sequence taken, else a statement at a time.
//!
//! A duplicate `(order, sequence)` is the optimistic lock: another command committed first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::SerializedEvent;
use serde_json::Value;
use sqlx::Acquire;
use tokio::sync::oneshot;

use crate::execute::{ExecuteError, StoreFailure};
use crate::{Backend, Sqlite, unpoisoned};

/// The idempotency record committed with a command's events.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub subject: String,
    pub key: String,
    /// The answer to store: its HTTP status and body.
    pub status: i32,
    pub body: String,
    pub kind: RecordKind,
}

#[derive(Debug, Clone)]
pub(crate) enum RecordKind {
    /// The key is not claimed: the record is created, answered, unless the key is in use.
    New { fingerprint: String, now_ms: i64 },
    /// The request claimed the key at `claimed_at_ms`: the claim is answered if it is still
    /// this request's (not answered, not taken over).
    Claimed { claimed_at_ms: i64 },
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Appended {
    /// The events, and the record if any, are committed.
    Committed,
    /// Another command committed at the same sequence first: nothing was written.
    Behind,
    /// The key's record could not be written (in use, or the claim is no longer this
    /// request's): nothing was written.
    RecordRefused,
}

/// The events' columns, each an array: `$1` aggregate type, `$2` aggregate id, then one array
/// per column. Followed by `WHERE …` when a record goes with them.
macro_rules! insert_events {
    () => {
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata \
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
         AS e(sequence, event_type, event_version, payload, metadata)"
    };
}

const POSTGRES_EVENTS: &str = insert_events!();

/// `$8` subject, `$9` key, `$10` status, `$11` body, `$12` fingerprint, `$13` now (ms).
const POSTGRES_NEW: &str = concat!(
    "WITH record AS (INSERT INTO idempotency_keys \
     (subject, key, response_status, response_body, fingerprint, claimed_at_ms, created_at_ms) \
     VALUES ($8, $9, $10, $11, $12, $13, $13) ON CONFLICT (subject, key) DO NOTHING RETURNING 1) ",
    insert_events!(),
    " WHERE EXISTS (SELECT FROM record)"
);

/// `$8` subject, `$9` key, `$10` status, `$11` body, `$12` the claim's `claimed_at_ms`.
const POSTGRES_CLAIMED: &str = concat!(
    "WITH record AS (UPDATE idempotency_keys SET response_status = $10, response_body = $11 \
     WHERE subject = $8 AND key = $9 AND claimed_at_ms = $12 AND response_status IS NULL RETURNING 1) ",
    insert_events!(),
    " WHERE EXISTS (SELECT FROM record)"
);

/// The events of a group of appends, their rows bound one value each: `VALUES` follows.
const SQLITE_EVENTS: &str = "INSERT INTO events \
     (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ";

/// The new records of a group of appends, their rows bound one value each (`VALUES` and
/// [`SQLITE_NEW_RECORDS_END`] follow); answers with the keys of those written (the others' keys
/// are in use).
const SQLITE_NEW_RECORDS: &str = "INSERT INTO idempotency_keys \
     (subject, key, response_status, response_body, fingerprint, claimed_at_ms, created_at_ms) ";
const SQLITE_NEW_RECORDS_END: &str = " ON CONFLICT (subject, key) DO NOTHING RETURNING subject, key";

/// Rows per statement of a group, each row seven values.
const SQLITE_ROWS: usize = crate::SQLITE_BOUND_VALUES / 7;

/// A claim's answer: `$1` subject, `$2` key, `$3` status, `$4` body, `$5` the claim's
/// `claimed_at_ms`.
const SQLITE_CLAIMED: &str = "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
     WHERE subject = $1 AND key = $2 AND claimed_at_ms = $5 AND response_status IS NULL";

/// Appends `events` (all of one stream, in sequence) with `record`, in one commit.
pub(crate) async fn append(
    backend: &Backend,
    events: &[SerializedEvent],
    record: Option<&Record>,
) -> Result<Appended, ExecuteError> {
    let appended = match backend {
        Backend::Postgres(postgres) => append_postgres(postgres, events, record).await,
        Backend::Sqlite(sqlite) => append_sqlite(sqlite, events, record).await,
    };
    match appended {
        Err(e) if is_duplicate_event(&e) => Ok(Appended::Behind),
        Err(e) if crate::execute::is_busy(&e) => Err(ExecuteError::Conflict),
        Err(e) => Err(ExecuteError::Store(StoreFailure::Database(Box::new(e)))),
        Ok(appended) => Ok(appended),
    }
}

async fn append_postgres(
    postgres: &crate::Postgres,
    events: &[SerializedEvent],
    record: Option<&Record>,
) -> Result<Appended, sqlx::Error> {
    let Some(first) = events.first() else { return Ok(Appended::Committed) };
    let column = |f: fn(&SerializedEvent) -> &str| events.iter().map(f).collect::<Vec<_>>();
    let json = |f: fn(&SerializedEvent) -> &Value| events.iter().map(f).collect::<Vec<_>>();
    let statement = match record.map(|r| &r.kind) {
        None => POSTGRES_EVENTS,
        Some(RecordKind::New { .. }) => POSTGRES_NEW,
        Some(RecordKind::Claimed { .. }) => POSTGRES_CLAIMED,
    };
    let mut query = sqlx::query(statement)
        .bind(first.aggregate_type.as_str())
        .bind(first.aggregate_id.as_str())
        .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
        .bind(column(|e| &e.event_type))
        .bind(column(|e| &e.event_version))
        .bind(json(|e| &e.payload))
        .bind(json(|e| &e.metadata));
    if let Some(record) = record {
        query = query.bind(&record.subject).bind(&record.key).bind(record.status).bind(&record.body);
        query = match &record.kind {
            RecordKind::New { fingerprint, now_ms } => query.bind(fingerprint).bind(now_ms),
            RecordKind::Claimed { claimed_at_ms } => query.bind(claimed_at_ms),
        };
    }
    // The answer to a claim updates the claim's row, found through an index that a generic
    // plan made on a small table might not use: planned afresh, as any scan.
    let inserted = match record.map(|r| &r.kind) {
        Some(RecordKind::Claimed { .. }) => query.execute(&postgres.pool).await?,
        _ => {
            let mut connection = postgres.inserts.acquire().await?;
            let inserted = query.execute(&mut *connection).await;
            connection.done(inserted)?
        }
    }
    .rows_affected();
    Ok(if inserted == 0 { Appended::RecordRefused } else { Appended::Committed })
}

/// An append waiting for the embedded store's writer that commits it.
#[derive(Debug)]
pub(crate) struct Queued {
    events: Vec<SerializedEvent>,
    record: Option<Record>,
    done: oneshot::Sender<Result<Appended, sqlx::Error>>,
}

/// The appends waiting for the embedded store's next commit.
pub(crate) type Queue = Arc<Mutex<Waiting>>;

#[derive(Debug, Default)]
pub(crate) struct Waiting {
    appends: Vec<Queued>,
    /// A committer is running: it takes every append queued before it finds none.
    committing: bool,
}

/// On SQLite every commit waits for its own flush, one writer at a time: the appends that
/// queue meanwhile are committed together, in one transaction and one flush. One committer at
/// a time takes them: the first append that finds none running starts it, in a task of its
/// own (a request dropped while waiting cancels nobody's commit), and it commits whatever has
/// queued, a group per writers' turn, until nothing has. Every other append only waits for its
/// answer: were each request to wait for the writers' turn itself, the turns of requests already
/// answered would each commit the one append that came since, and groups would stay small.
async fn append_sqlite(
    sqlite: &Sqlite,
    events: &[SerializedEvent],
    record: Option<&Record>,
) -> Result<Appended, sqlx::Error> {
    let (done, answer) = oneshot::channel();
    let start = {
        let mut waiting = unpoisoned(&sqlite.appends);
        waiting.appends.push(Queued { events: events.to_vec(), record: record.cloned(), done });
        !std::mem::replace(&mut waiting.committing, true)
    };
    if start {
        tokio::spawn(commit_queued(sqlite.clone()));
    }
    answer.await.unwrap_or(Err(sqlx::Error::WorkerCrashed))
}

/// The committer: a group per writers' turn, until no append is waiting.
async fn commit_queued(sqlite: Sqlite) {
    let _unwinding = Unwinding(&sqlite.appends);
    loop {
        let turn = sqlite.turn.clone().lock_owned().await;
        let queued = {
            let mut waiting = unpoisoned(&sqlite.appends);
            if waiting.appends.is_empty() {
                waiting.committing = false;
                return;
            }
            std::mem::take(&mut waiting.appends)
        };
        commit_together(&sqlite.events, queued).await;
        drop(turn);
    }
}

/// Should the committer panic, the next append starts another: the appends it had taken are
/// told the commit failed when their answers are dropped.
struct Unwinding<'a>(&'a Queue);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            unpoisoned(self.0).committing = false;
        }
    }
}

/// Commits `queued` in one transaction and answers each. If the commit fails, each is told so.
async fn commit_together(pool: &sqlx::SqlitePool, queued: Vec<Queued>) {
    let committed: Result<Vec<Appended>, sqlx::Error> = async {
        let mut connection = pool.acquire().await?;
        if commit_at_once(&mut connection, &queued).await? {
            return Ok(vec![Appended::Committed; queued.len()]);
        }
        let mut transaction = connection.begin().await?;
        if let Some(outcomes) = write_together(&mut transaction, &queued).await? {
            transaction.commit().await?;
            return Ok(outcomes);
        }
        // An event's sequence was taken: the appends one at a time, each in a savepoint so
        // that the one behind takes back only its own rows.
        transaction.rollback().await?;
        let mut transaction = connection.begin().await?;
        let mut outcomes = Vec::with_capacity(queued.len());
        for append in queued.chunks(1) {
            sqlx::query("SAVEPOINT append").execute(&mut *transaction).await?;
            let written = write_together(&mut transaction, append).await?;
            let outcome =
                written.and_then(|outcomes| outcomes.into_iter().next()).unwrap_or(Appended::Behind);
            if outcome != Appended::Committed {
                sqlx::query("ROLLBACK TO append").execute(&mut *transaction).await?;
            }
            sqlx::query("RELEASE append").execute(&mut *transaction).await?;
            outcomes.push(outcome);
        }
        transaction.commit().await?;
        Ok(outcomes)
    }
    .await;
    match committed {
        Ok(outcomes) => {
            for (append, outcome) in queued.into_iter().zip(outcomes) {
                let _ = append.done.send(Ok(outcome));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for append in queued {
                let failed = sqlx::Error::Protocol(format!("the appends' commit failed: {message}"));
                let _ = append.done.send(Err(failed));
            }
        }
    }
}

/// Commits a group in one exchange with SQLite's worker thread ([`crate::sqlite_script`]).
/// Only for the common group: no claim to answer, and every key new. Its records are inserted
/// as such, not as "unless the key is in use": a key in use, like an event's sequence taken,
/// fails the script, which rolls it back. Returns `false` with nothing written when the group
/// is not that one, or failed so: [`write_together`] sorts those out.
async fn commit_at_once(
    connection: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    queued: &[Queued],
) -> Result<bool, sqlx::Error> {
    let mut new = Vec::new();
    for append in queued {
        match &append.record {
            Some(record @ Record { kind: RecordKind::New { fingerprint, now_ms }, .. }) => {
                new.push((record, fingerprint, now_ms));
            }
            Some(Record { kind: RecordKind::Claimed { .. }, .. }) => return Ok(false),
            None => {}
        }
    }
    let mut script = sqlx::QueryBuilder::new("BEGIN IMMEDIATE");
    for rows in new.chunks(SQLITE_ROWS) {
        script.push("; ").push(SQLITE_NEW_RECORDS);
        push_new_records(&mut script, rows);
    }
    let events: Vec<&SerializedEvent> = queued.iter().flat_map(|append| &append.events).collect();
    for rows in events.chunks(SQLITE_ROWS) {
        script.push("; ").push(SQLITE_EVENTS);
        push_events(&mut script, rows);
    }
    script.push("; COMMIT");
    match crate::sqlite_script(connection, script.build_query_as::<()>()).await {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.kind() == sqlx::error::ErrorKind::UniqueViolation => Ok(false),
        Err(e) => Err(e),
    }
}

/// A key's new record: the record, its fingerprint and the time of its request (ms).
type NewRecord<'a> = (&'a Record, &'a String, &'a i64);

/// Appends the `VALUES` of `rows` to an insert of records.
fn push_new_records<'a>(statement: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>, rows: &'a [NewRecord<'a>]) {
    statement.push_values(rows, |mut row, (record, fingerprint, now_ms)| {
        row.push_bind(&record.subject)
            .push_bind(&record.key)
            .push_bind(record.status)
            .push_bind(&record.body)
            .push_bind(*fingerprint)
            .push_bind(**now_ms)
            .push_bind(**now_ms);
    });
}

/// Appends the `VALUES` of `rows` to an insert of events.
fn push_events<'a>(statement: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>, rows: &[&'a SerializedEvent]) {
    statement.push_values(rows, |mut row, event| {
        row.push_bind(&event.aggregate_type)
            .push_bind(&event.aggregate_id)
            .push_bind(event.sequence as i64)
            .push_bind(&event.event_type)
            .push_bind(&event.event_version)
            .push_bind(event.payload.to_string())
            .push_bind(event.metadata.to_string());
    });
}

/// Writes a group's rows with a statement per table, not per row: each statement is an exchange
/// with SQLite's worker thread, and the writers' turn waits for every one. The new records
/// first (a key taken twice in the group is in use for the second), then each claim's answer,
/// then the events of every append whose record was written. `None`, with the rows possibly
/// half written, if an event's sequence was taken.
async fn write_together(
    transaction: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    queued: &[Queued],
) -> Result<Option<Vec<Appended>>, sqlx::Error> {
    let mut refused = vec![false; queued.len()];
    let mut new = Vec::new();
    let mut keys = HashSet::new();
    for (n, append) in queued.iter().enumerate() {
        if let Some(record @ Record { kind: RecordKind::New { fingerprint, now_ms }, .. }) = &append.record {
            if keys.insert((record.subject.as_str(), record.key.as_str())) {
                new.push((record, fingerprint, now_ms));
            } else {
                refused[n] = true;
            }
        }
    }
    let mut written: Vec<(String, String)> = Vec::new();
    for rows in new.chunks(SQLITE_ROWS) {
        let mut statement = sqlx::QueryBuilder::new(SQLITE_NEW_RECORDS);
        push_new_records(&mut statement, rows);
        statement.push(SQLITE_NEW_RECORDS_END);
        written.extend(statement.build_query_as::<(String, String)>().fetch_all(&mut **transaction).await?);
    }
    let written: HashSet<(&str, &str)> = written.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
    for (n, append) in queued.iter().enumerate() {
        if let Some(record @ Record { kind: RecordKind::New { .. }, .. }) = &append.record {
            refused[n] |= !written.contains(&(record.subject.as_str(), record.key.as_str()));
        }
    }
    for (n, append) in queued.iter().enumerate() {
        if let Some(record @ Record { kind: RecordKind::Claimed { claimed_at_ms }, .. }) = &append.record {
            let answered = sqlx::query(SQLITE_CLAIMED)
                .bind(&record.subject)
                .bind(&record.key)
                .bind(record.status)
                .bind(&record.body)
                .bind(claimed_at_ms)
                .execute(&mut **transaction)
                .await?;
            refused[n] = answered.rows_affected() == 0;
        }
    }
    let events: Vec<&SerializedEvent> = queued
        .iter()
        .zip(&refused)
        .filter(|(_, refused)| !**refused)
        .flat_map(|(append, _)| &append.events)
        .collect();
    for rows in events.chunks(SQLITE_ROWS) {
        let mut statement = sqlx::QueryBuilder::new(SQLITE_EVENTS);
        push_events(&mut statement, rows);
        match statement.build().execute(&mut **transaction).await {
            Err(e) if is_duplicate_event(&e) => return Ok(None),
            written => written?,
        };
    }
    let outcome = |refused| if refused { Appended::RecordRefused } else { Appended::Committed };
    Ok(Some(refused.into_iter().map(outcome).collect()))
}

/// The stream's primary key refused an event: PostgreSQL's `unique_violation` on the events'
/// key, or SQLite's `SQLITE_CONSTRAINT_PRIMARYKEY` (1555).
fn is_duplicate_event(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else { return false };
    match db.code().as_deref() {
        Some("23505") => db.constraint() == Some("events_pkey"),
        Some("1555") => true,
        _ => false,
    }
}

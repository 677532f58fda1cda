//! The one writer of events: a command's events appended to its order's stream, in one commit
//! with its idempotency record when the command carries a key.
//!
//! On PostgreSQL the append is one statement in its own transaction: a multi-row `INSERT … SELECT
//! FROM unnest(…)`, after a data-modifying `WITH` that writes the key's record when there is
//! one. The events are inserted only if the record was written, so a key in use by another
//! request, or a claim taken over, writes nothing at all. postgres-es's own append (BEGIN, one
//! INSERT per event, COMMIT) took three round trips and could not take the record into its
//! transaction (`docs/BENCHMARKS.md`, "One commit per command"). On SQLite the same rows are
//! written in one transaction on the events' connections, whose commit is flushed.
//!
//! A duplicate `(order, sequence)` is the optimistic lock: another command committed first.

use cqrs_es::persist::SerializedEvent;
use serde_json::Value;
use sqlx::Acquire;

use crate::execute::{ExecuteError, StoreFailure};
use crate::{Backend, Sqlite};

/// The idempotency record committed with a command's events.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub subject: &'a str,
    pub key: &'a str,
    /// The answer to store: its HTTP status and body.
    pub status: i32,
    pub body: String,
    pub kind: RecordKind<'a>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RecordKind<'a> {
    /// The key is not claimed: the record is created, answered, unless the key is in use.
    New { fingerprint: &'a str, now_ms: i64 },
    /// The request claimed the key at `claimed_at_ms`: the claim is answered if it is still
    /// this request's (not answered, not taken over).
    Claimed { claimed_at_ms: i64 },
}

/// What an append did.
#[derive(Debug, PartialEq, Eq)]
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

const SQLITE_EVENT: &str = "INSERT INTO events \
     (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// `$1` subject, `$2` key, `$3` status, `$4` body, `$5` fingerprint, `$6` now (ms).
const SQLITE_NEW: &str = "INSERT INTO idempotency_keys \
     (subject, key, response_status, response_body, fingerprint, claimed_at_ms, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (subject, key) DO NOTHING";

/// `$1` subject, `$2` key, `$3` status, `$4` body, `$5` the claim's `claimed_at_ms`.
const SQLITE_CLAIMED: &str = "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
     WHERE subject = $1 AND key = $2 AND claimed_at_ms = $5 AND response_status IS NULL";

/// Appends `events` (all of one stream, in sequence) with `record`, in one commit.
pub(crate) async fn append(
    backend: &Backend,
    events: &[SerializedEvent],
    record: Option<&Record<'_>>,
) -> Result<Appended, ExecuteError> {
    let appended = match backend {
        Backend::Postgres(postgres) => {
            // The answer to a claim updates the claim's row, found through an index that a
            // generic plan made on a small table might not use: planned afresh, as any scan.
            let claimed = matches!(record.map(|r| r.kind), Some(RecordKind::Claimed { .. }));
            let pool = if claimed { &postgres.pool } else { &postgres.appends };
            append_postgres(pool, events, record).await
        }
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
    pool: &sqlx::PgPool,
    events: &[SerializedEvent],
    record: Option<&Record<'_>>,
) -> Result<Appended, sqlx::Error> {
    let Some(first) = events.first() else { return Ok(Appended::Committed) };
    let column = |f: fn(&SerializedEvent) -> &str| events.iter().map(f).collect::<Vec<_>>();
    let json = |f: fn(&SerializedEvent) -> &Value| events.iter().map(f).collect::<Vec<_>>();
    let statement = match record.map(|r| r.kind) {
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
        query = query.bind(record.subject).bind(record.key).bind(record.status).bind(record.body.as_str());
        query = match record.kind {
            RecordKind::New { fingerprint, now_ms } => query.bind(fingerprint).bind(now_ms),
            RecordKind::Claimed { claimed_at_ms } => query.bind(claimed_at_ms),
        };
    }
    let inserted = query.execute(pool).await?.rows_affected();
    Ok(if inserted == 0 { Appended::RecordRefused } else { Appended::Committed })
}

async fn append_sqlite(
    sqlite: &Sqlite,
    events: &[SerializedEvent],
    record: Option<&Record<'_>>,
) -> Result<Appended, sqlx::Error> {
    let _turn = sqlite.turn.clone().lock_owned().await;
    let mut connection = sqlite.events.acquire().await?;
    let mut transaction = connection.begin().await?;
    if let Some(record) = record {
        let query = match record.kind {
            RecordKind::New { fingerprint, now_ms } => sqlx::query(SQLITE_NEW)
                .bind(record.subject)
                .bind(record.key)
                .bind(record.status)
                .bind(record.body.as_str())
                .bind(fingerprint)
                .bind(now_ms),
            RecordKind::Claimed { claimed_at_ms } => sqlx::query(SQLITE_CLAIMED)
                .bind(record.subject)
                .bind(record.key)
                .bind(record.status)
                .bind(record.body.as_str())
                .bind(claimed_at_ms),
        };
        if query.execute(&mut *transaction).await?.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(Appended::RecordRefused);
        }
    }
    for event in events {
        sqlx::query(SQLITE_EVENT)
            .bind(event.aggregate_type.as_str())
            .bind(event.aggregate_id.as_str())
            .bind(event.sequence as i64)
            .bind(event.event_type.as_str())
            .bind(event.event_version.as_str())
            .bind(&event.payload)
            .bind(&event.metadata)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(Appended::Committed)
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

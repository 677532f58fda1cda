//! Reading the log in commit order, for the relay and for rebuilds: every committed event
//! exactly once, never skipping one whose transaction commits late. And in stream order,
//! for audits.

use std::sync::Arc;

use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{Backend, EventMetadata, Store, StoreError, on_pool};

/// A position in the commit order. PostgreSQL: (transaction id, position); SQLite: (0, rowid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub xid: i64,
    pub position: i64,
}

/// One committed event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub order_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    /// The event, externally tagged: `{"RefundRequested": {…}}`.
    pub payload: Value,
    /// The stored metadata object; [`StoredEvent::typed_metadata`] reads it.
    pub metadata: Value,
    pub cursor: Cursor,
}

impl StoredEvent {
    /// This event's link in its stream's chain, its own hash checked. Consumes the event, so
    /// that the order id and the stored hashes move instead of being copied.
    pub fn into_link(mut self) -> crate::chain::Link {
        let content_intact = match (self.hash(), self.prevhash()) {
            (Some(hash), Some(prevhash)) => crate::chain::event_hash(prevhash, &self.hashed()) == hash,
            _ => false,
        };
        let mut take = |key: &str| match self.metadata.as_object_mut().and_then(|m| m.remove(key)) {
            Some(Value::String(text)) => Some(text),
            _ => None,
        };
        let (hash, prevhash) = (take(crate::chain::HASH_KEY), take(crate::chain::PREVHASH_KEY));
        crate::chain::Link {
            order_id: self.order_id,
            sequence: self.sequence,
            hash,
            prevhash,
            content_intact,
        }
    }

    /// The fields its hash covers (see [`crate::chain`]).
    pub fn hashed(&self) -> crate::chain::Hashed<'_> {
        crate::chain::Hashed {
            order_id: &self.order_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }

    /// The payload as `T`.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.payload)
    }

    /// The metadata, typed: who caused the event, when, under which request, its hashes.
    pub fn typed_metadata(&self) -> Result<EventMetadata, serde_json::Error> {
        EventMetadata::deserialize(&self.metadata)
    }

    /// When the event was committed, by the service clock (its metadata's `time`), even when
    /// the rest of its metadata is incomplete.
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        EventMetadata::time_of(&self.metadata)
    }

    /// The stored `hash`, if any.
    pub fn hash(&self) -> Option<&str> {
        self.metadata.get(crate::chain::HASH_KEY).and_then(Value::as_str)
    }

    /// The stored `prevhash`, if any.
    pub fn prevhash(&self) -> Option<&str> {
        self.metadata.get(crate::chain::PREVHASH_KEY).and_then(Value::as_str)
    }
}

/// One event as read, its JSON still text: [`RawEvent::parse`] makes it a [`StoredEvent`].
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub order_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
}

type RawRow = (String, i64, String, String, String, String);

impl From<RawRow> for RawEvent {
    fn from((order_id, sequence, event_type, event_version, payload, metadata): RawRow) -> Self {
        Self { order_id, sequence: sequence as u64, event_type, event_version, payload, metadata }
    }
}

impl RawEvent {
    /// Parses the payload and metadata (the cursor is left at zero).
    pub fn parse(self) -> Result<StoredEvent, StoreError> {
        let RawEvent { order_id, sequence, event_type, event_version, payload, metadata } = self;
        stored_event((order_id, sequence as i64, event_type, event_version, payload, metadata, 0, 0))
    }

    /// The fields its hash covers, as stored.
    pub fn hashed(&self) -> crate::chain::HashedText<'_> {
        crate::chain::HashedText {
            order_id: &self.order_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }

    /// [`StoredEvent::time`], read from the text.
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        EventMetadata::time_in_text(&self.metadata)
    }

    /// The payload as `T`, read from the text; through the parsed payload when that fails (a
    /// repeated key, which parsing collapses), so that it reads as [`StoredEvent::payload_as`]
    /// does.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.payload)
            .or_else(|_| serde_json::from_str::<Value>(&self.payload).and_then(serde_json::from_value))
    }

    /// [`StoredEvent::into_link`], checked straight from the text when it can be, else parsed
    /// (which also reports text that is not JSON).
    pub fn into_link(self) -> Result<crate::chain::Link, StoreError> {
        let checked = self.hashed().check().map(|c| {
            let own = |text: Option<&str>| text.map(str::to_string);
            (own(c.hash), own(c.prevhash), c.content_intact)
        });
        match checked {
            Some((hash, prevhash, content_intact)) => Ok(crate::chain::Link {
                order_id: self.order_id,
                sequence: self.sequence,
                hash,
                prevhash,
                content_intact,
            }),
            None => Ok(self.parse()?.into_link()),
        }
    }
}

type Row = (String, i64, String, String, String, String, i64, i64);

impl Store {
    /// Up to `limit` events committed after `after`, in commit order.
    ///
    /// PostgreSQL assigns transaction ids at first write and commits them in any order, so
    /// only transactions older than the oldest still running (`pg_snapshot_xmin`) are read:
    /// a transaction that commits late is read later, never skipped. The row comparison
    /// starts the index scan at the cursor (an `OR` of the two columns would scan the index
    /// from the log's beginning on every call). `ORDER BY` names the table's columns: a bare
    /// `xid` would mean the output column `xid::text::bigint`, which no index is sorted by.
    pub async fn events_after(&self, after: Cursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        match &self.backend {
            Backend::Postgres(crate::Postgres { pool, .. }) => pg_events_after(pool, after, limit).await,
            Backend::Sqlite(sqlite) => {
                let readers = sqlite.readers.clone();
                match tokio::task::spawn_blocking(move || {
                    readers.read(|connection| sqlite_events_after(connection, after.position, limit))
                })
                .await
                {
                    Ok(events) => events,
                    Err(e) => match e.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        // The runtime is shutting down.
                        Err(_) => Err(StoreError::Query(sqlx::Error::PoolClosed)),
                    },
                }
            }
        }
    }

    /// The events of one order with sequence in `from..=to`, in sequence order.
    pub async fn stream_events(
        &self,
        order_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = match &self.backend {
            Backend::Postgres(_) => {
                "SELECT aggregate_id, sequence, event_type, event_version, payload::text, metadata::text, \
                        xid::text::bigint, position \
                 FROM events WHERE aggregate_type = 'dispute' AND aggregate_id = $1 \
                   AND sequence >= $2 AND sequence <= $3 ORDER BY sequence"
            }
            Backend::Sqlite(_) => {
                "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, 0, rowid \
                 FROM events WHERE aggregate_type = 'dispute' AND aggregate_id = $1 \
                   AND sequence >= $2 AND sequence <= $3 ORDER BY sequence"
            }
        };
        let rows: Vec<Row> = on_pool!(&self.backend, pool => sqlx::query_as(sql)
            .bind(order_id)
            .bind(from as i64)
            .bind(to as i64)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(stored_event).collect()
    }

    /// Reads the whole log in stream order (by order id, then sequence) with one query and
    /// hands the events over in batches of `batch`, unparsed, as they arrive: the database
    /// turns rows into text while the receiver checks the batch before. The one query reads
    /// one consistent snapshot. An error ends the batches.
    pub fn scan_in_stream_order(self: &Arc<Self>, batch: usize) -> Scan {
        let (sender, receiver) = mpsc::channel(8);
        let reader = match &self.backend {
            Backend::Postgres(crate::Postgres { pool, .. }) => {
                let pool = pool.clone();
                tokio::spawn(async move {
                    if let Err(e) = pg_scan_in_stream_order(&pool, batch, &sender).await {
                        let _ = sender.send(Err(e)).await;
                    }
                })
            }
            Backend::Sqlite(sqlite) => {
                let readers = sqlite.readers.clone();
                tokio::task::spawn_blocking(move || {
                    let scan =
                        readers.read(|connection| sqlite_scan_in_stream_order(connection, batch, &sender));
                    if let Err(e) = scan {
                        let _ = sender.blocking_send(Err(e));
                    }
                })
            }
        };
        Scan { batches: receiver, reader: Some(reader) }
    }

    /// Every event of one order, in sequence order.
    pub async fn whole_stream(&self, order_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.stream_events(order_id, 1, i64::MAX as u64).await
    }

    /// How many events the log holds.
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        let count: i64 = on_pool!(&self.backend, pool => sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await?);
        Ok(count as u64)
    }

    /// How many events of type `event_type` the orders whose id starts with `order_prefix` hold.
    pub async fn count_events_of(&self, event_type: &str, order_prefix: &str) -> Result<u64, StoreError> {
        let pattern =
            format!("{}%", order_prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let count: i64 = on_pool!(&self.backend, pool => sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = $1 AND aggregate_id LIKE $2 ESCAPE '\\'",
        )
        .bind(event_type)
        .bind(&pattern)
        .fetch_one(pool)
        .await?);
        Ok(count as u64)
    }

    /// The cursor of the last event committed so far, whether or not [`Store::events_after`]
    /// reads it yet; `None` for an empty log.
    pub async fn last_cursor(&self) -> Result<Option<Cursor>, StoreError> {
        let sql = match &self.backend {
            Backend::Postgres(_) => {
                "SELECT xid::text::bigint, position FROM events \
                 ORDER BY events.xid DESC, events.position DESC LIMIT 1"
            }
            Backend::Sqlite(_) => "SELECT 0, rowid FROM events ORDER BY rowid DESC LIMIT 1",
        };
        let last: Option<(i64, i64)> =
            on_pool!(&self.backend, pool => sqlx::query_as(sql).fetch_optional(pool).await?);
        Ok(last.map(|(xid, position)| Cursor { xid, position }))
    }

    /// The cursor a relay named `name` has published up to (the start when new).
    pub async fn checkpoint(&self, name: &str) -> Result<Cursor, StoreError> {
        let row: Option<(i64, i64)> = on_pool!(&self.backend, pool => sqlx::query_as(
            "SELECT xid, position FROM relay_checkpoints WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?);
        Ok(row.map(|(xid, position)| Cursor { xid, position }).unwrap_or_default())
    }

    pub async fn save_checkpoint(&self, name: &str, cursor: Cursor) -> Result<(), StoreError> {
        let _turn = self.backend.turn().await;
        on_pool!(&self.backend, pool => sqlx::query(
            "INSERT INTO relay_checkpoints (name, xid, position) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET xid = excluded.xid, position = excluded.position",
        )
        .bind(name)
        .bind(cursor.xid)
        .bind(cursor.position)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }
}

/// The batches of [`Store::scan_in_stream_order`], read on a task of their own. They end where
/// the log ends only if that task finished: a task that panicked passes its panic on to
/// [`Scan::next`] (an audit must never take a log cut short for the whole log).
pub struct Scan {
    batches: mpsc::Receiver<Result<Vec<RawEvent>, StoreError>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Scan {
    /// The next batch; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Vec<RawEvent>, StoreError>> {
        if let Some(batch) = self.batches.recv().await {
            return Some(batch);
        }
        match self.reader.take()?.await {
            Ok(()) => None,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // The runtime is shutting down.
                Err(_) => Some(Err(StoreError::Query(sqlx::Error::PoolClosed))),
            },
        }
    }
}

/// [`Store::events_after`] on PostgreSQL, through any connection.
pub(crate) async fn pg_events_after<'c>(
    connection: impl sqlx::PgExecutor<'c>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT aggregate_id, sequence, event_type, event_version, payload::text, metadata::text, \
                xid::text::bigint, position \
         FROM events \
         WHERE (xid, position) > ($1::text::xid8, $2) \
           AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.xid, events.position LIMIT $3",
    )
    .bind(after.xid.to_string())
    .bind(after.position)
    .bind(limit)
    .fetch_all(connection)
    .await?;
    rows.into_iter().map(stored_event).collect()
}

type Batches = mpsc::Sender<Result<Vec<RawEvent>, StoreError>>;

/// As rows arrive from one query, which reads one snapshot. The planner is told not to sort:
/// it reads the primary key in order rather than sort the whole log first (which turns every
/// row to text before the sort, spills it to disk and, with parallel workers, takes every core
/// the audit itself needs). Not a cursor: a `FETCH` is a utility statement, whose rows the
/// server stores aside (past `work_mem`, in a file) before it sends them. Not pages either: on
/// PostgreSQL 15 a page's lower bound is compared with every row it reads, in the column's
/// collation.
async fn pg_scan_in_stream_order(
    pool: &sqlx::PgPool,
    batch: usize,
    batches: &Batches,
) -> Result<(), StoreError> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SET LOCAL enable_sort = off").execute(&mut *transaction).await?;
    let mut rows = sqlx::query_as::<_, RawRow>(
        "SELECT aggregate_id, sequence, event_type, event_version, payload::text, metadata::text \
         FROM events WHERE aggregate_type = 'dispute' ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch(&mut *transaction);
    let mut events = Vec::with_capacity(batch);
    while let Some(row) = rows.try_next().await? {
        events.push(RawEvent::from(row));
        if events.len() == batch {
            let full = std::mem::replace(&mut events, Vec::with_capacity(batch));
            if batches.send(Ok(full)).await.is_err() {
                return Ok(());
            }
        }
    }
    drop(rows);
    if !events.is_empty() {
        let _ = batches.send(Ok(events)).await;
    }
    transaction.rollback().await?;
    Ok(())
}

/// As rows arrive from one query, which reads one snapshot, in a blocking thread ([`Readers`]):
/// a row's text is read in place and the receiver is woken once a batch.
fn sqlite_scan_in_stream_order(
    connection: &rusqlite::Connection,
    batch: usize,
    batches: &Batches,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata FROM events \
         WHERE aggregate_type = 'dispute' ORDER BY aggregate_type, aggregate_id, sequence",
    )?;
    let mut rows = statement.query([])?;
    let mut events = Vec::with_capacity(batch);
    while let Some(row) = rows.next()? {
        events.push(RawEvent {
            order_id: text(row, 0)?,
            sequence: row.get::<_, i64>(1)? as u64,
            event_type: text(row, 2)?,
            event_version: text(row, 3)?,
            payload: text(row, 4)?,
            metadata: text(row, 5)?,
        });
        if events.len() == batch {
            let full = std::mem::replace(&mut events, Vec::with_capacity(batch));
            if batches.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !events.is_empty() {
        let _ = batches.blocking_send(Ok(events));
    }
    Ok(())
}

/// The SQLite side of [`Store::events_after`], in a blocking thread ([`Readers`]).
fn sqlite_events_after(
    connection: &rusqlite::Connection,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, rowid \
         FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let mut rows = statement.query((after, limit))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(stored_event((
            text(row, 0)?,
            row.get(1)?,
            text(row, 2)?,
            text(row, 3)?,
            text(row, 4)?,
            text(row, 5)?,
            0,
            row.get(6)?,
        ))?);
    }
    Ok(events)
}

/// Read-only connections to the SQLite store's file for the log's bulk reads, which bypass
/// sqlx: its SQLite connections copy every value of every row and hand each row to the async
/// side on its own, which cost three quarters of an audit's time (docs/BENCHMARKS.md, "The
/// SQLite log read in one pass"). Kept between reads; one is opened when none is free.
#[derive(Debug)]
pub(crate) struct Readers {
    path: std::path::PathBuf,
    kept: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    pub(crate) fn new(path: std::path::PathBuf) -> Self {
        Self { path, kept: std::sync::Mutex::default() }
    }

    /// Runs `read` on a kept connection or a new one. Blocks: for a blocking thread.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let kept = crate::unpoisoned(&self.kept).pop();
        let connection = match kept {
            Some(connection) => connection,
            None => rusqlite::Connection::open_with_flags(
                &self.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let read = read(&connection);
        crate::unpoisoned(&self.kept).push(connection);
        read
    }

    /// Closes the kept connections.
    pub(crate) fn close(&self) {
        crate::unpoisoned(&self.kept).clear();
    }
}

/// Column `i` of `row` as text, read in place.
fn text(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    Ok(row.get_ref(i)?.as_str()?.to_owned())
}

fn stored_event(row: Row) -> Result<StoredEvent, StoreError> {
    let (order_id, sequence, event_type, event_version, payload, metadata, xid, position) = row;
    let parse = |text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| StoreError::Query(sqlx::Error::Decode(Box::new(e))))
    };
    Ok(StoredEvent {
        order_id,
        sequence: sequence as u64,
        event_type,
        event_version,
        payload: parse(&payload)?,
        metadata: parse(&metadata)?,
        cursor: Cursor { xid, position },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(order_id: &str) -> RawEvent {
        RawEvent {
            order_id: order_id.to_string(),
            sequence: 1,
            event_type: "OrderRegistered".to_string(),
            event_version: "1".to_string(),
            payload: "{}".to_string(),
            metadata: "{}".to_string(),
        }
    }

    #[tokio::test]
    async fn a_scan_whose_reader_panics_does_not_end_as_if_the_log_had() {
        let (sender, receiver) = mpsc::channel(8);
        let reader = tokio::spawn(async move {
            sender.send(Ok(vec![raw("o-1")])).await.expect("the scan is read");
            panic!("the reader failed half way");
        });
        let mut scan = Scan { batches: receiver, reader: Some(reader) };
        let first = scan.next().await.expect("a batch").expect("read");
        assert_eq!(first[0].order_id, "o-1");
        let rest = tokio::spawn(async move { scan.next().await.map(|batch| batch.map(|b| b.len())) }).await;
        let panic = rest.expect_err("the reader's panic reaches the scan's reader").into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the reader failed half way"));
    }

    #[tokio::test]
    async fn a_scan_whose_reader_finished_ends() {
        let (sender, receiver) = mpsc::channel(8);
        let reader = tokio::spawn(async move {
            sender.send(Ok(vec![raw("o-1"), raw("o-2")])).await.expect("the scan is read");
        });
        let mut scan = Scan { batches: receiver, reader: Some(reader) };
        assert_eq!(scan.next().await.expect("a batch").expect("read").len(), 2);
        assert!(scan.next().await.is_none());
        assert!(scan.next().await.is_none(), "and stays ended");
    }
}

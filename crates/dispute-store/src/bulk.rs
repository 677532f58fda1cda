//! Loading many chained events at once, for benchmarks (`disputes bench --preload`, the audit
//! benchmark): one statement per batch on PostgreSQL (the rows travel as arrays), one
//! transaction per batch on SQLite. Nothing checks the events: the caller chains them
//! ([`crate::chain::link`]) and loads only into a store set aside for measuring.

use crate::chain::Linked;
use crate::{Backend, Store, StoreError};

/// One stream's events, as [`crate::chain::link`] made them, to insert as they are.
pub type BulkStream = (String, Vec<Linked>);

/// An insert into `events` of the given rows.
macro_rules! insert_events {
    ($rows:literal) => {
        concat!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
            $rows
        )
    };
}

/// The batch as arrays, one per column.
const POSTGRES_INSERT: &str = insert_events!(
    "SELECT 'dispute', id, seq, typ, ver, payload::jsonb, metadata::jsonb \
     FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) \
       AS t(id, seq, typ, ver, payload, metadata)"
);

/// One row.
const SQLITE_INSERT: &str = insert_events!("VALUES ('dispute', $1, $2, $3, $4, $5, $6)");

impl Store {
    /// Inserts the events of `streams` in one transaction.
    pub async fn insert_bulk(&self, streams: &[BulkStream]) -> Result<(), StoreError> {
        let events =
            || streams.iter().flat_map(|(order_id, events)| events.iter().map(move |e| (order_id, e)));
        match &self.backend {
            Backend::Postgres(crate::Postgres { pool, .. }) => {
                let column = |f: fn(&Linked) -> String| events().map(|(_, e)| f(e)).collect::<Vec<String>>();
                sqlx::query(POSTGRES_INSERT)
                    .bind(events().map(|(order_id, _)| order_id.clone()).collect::<Vec<String>>())
                    .bind(events().map(|(_, e)| e.sequence as i64).collect::<Vec<i64>>())
                    .bind(column(|e| e.event_type.clone()))
                    .bind(column(|e| e.event_version.clone()))
                    .bind(column(|e| e.payload.to_string()))
                    .bind(column(|e| e.metadata.to_string()))
                    .execute(pool)
                    .await?;
            }
            Backend::Sqlite(sqlite) => {
                let _turn = self.backend.turn().await;
                let mut tx = sqlite.events.begin().await?;
                for (order_id, event) in events() {
                    sqlx::query(SQLITE_INSERT)
                        .bind(order_id)
                        .bind(event.sequence as i64)
                        .bind(&event.event_type)
                        .bind(&event.event_version)
                        .bind(event.payload.to_string())
                        .bind(event.metadata.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Brings the planner's statistics of the events table up to date after a bulk load
    /// (PostgreSQL; SQLite plans without them).
    pub async fn analyze_events(&self) -> Result<(), StoreError> {
        if let Backend::Postgres(crate::Postgres { pool, .. }) = &self.backend {
            sqlx::query("ANALYZE events").execute(pool).await?;
        }
        Ok(())
    }
}

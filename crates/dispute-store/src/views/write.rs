//! The projector's writes: a batch is at most three statements whatever its size (read and
//! lock the views the batch continues, insert the timeline entries, upsert the changed views),
//! each taking its rows as one JSON array, in one transaction. A batch that reads no stored
//! view (every order from its first event, as in a catch-up, or from a view the projector
//! kept) skips the first; on PostgreSQL the other two are then one statement, its own
//! transaction.

use sqlx::{Postgres, Sqlite, Transaction};

use super::{DISPUTES, Dialect, DisputeRow, TIMELINE, TimelineRow, ViewShape, ViewTables, json_array};
use crate::{Backend, Store, StoreError};

/// The statements that write one set of view tables, built once for the store's dialect.
#[derive(Debug, Clone)]
struct WriteStatements {
    begin: &'static str,
    lock: String,
    insert_timeline: String,
    upsert_disputes: String,
    /// PostgreSQL: both in one statement, the timeline's rows bound as `$1`, the views' as
    /// `$2`, answering as `insert_timeline` does.
    insert_both: Option<String>,
}

impl WriteStatements {
    fn new(dialect: Dialect, tables: &ViewTables) -> Self {
        let ViewTables { disputes, timeline } = tables;
        let insert = |shape: &ViewShape, table: &str, param: &str| {
            format!(
                "INSERT INTO {table} ({}) {} ON CONFLICT ({}) ",
                ViewShape::names(shape.columns),
                dialect.json_rows(shape.columns, param),
                ViewShape::names(shape.key_columns()),
            )
        };
        let set = DISPUTES
            .value_columns()
            .iter()
            .map(|c| format!("{0} = excluded.{0}", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let insert_timeline =
            |param| insert(&TIMELINE, timeline, param) + "DO NOTHING RETURNING order_id, sequence";
        let upsert_disputes = |param| {
            insert(&DISPUTES, disputes, param)
                + &format!("DO UPDATE SET {set} WHERE {disputes}.sequence < excluded.sequence")
        };
        // The entries are inserted as the outer SELECT reads them, then the views upserted (a
        // data-modifying WITH that nothing reads runs to its end after the statement's): the
        // order of the transaction's two statements, so two projectors never deadlock.
        // SQLite has no data-modifying WITH.
        let insert_both = (dialect == Dialect::Postgres).then(|| {
            format!(
                "WITH entries AS ({}), views AS ({}) SELECT order_id, sequence FROM entries",
                insert_timeline("$1"),
                upsert_disputes("$2")
            )
        });
        Self {
            begin: dialect.begin_write(),
            // In order-id order, so two projectors never deadlock.
            lock: format!(
                "SELECT order_id, sequence, view FROM {disputes} WHERE order_id IN ({}) ORDER BY order_id{}",
                dialect.json_strings(),
                dialect.for_update()
            ),
            insert_timeline: insert_timeline("$1"),
            upsert_disputes: upsert_disputes("$1"),
            insert_both,
        }
    }
}

/// Writes one set of view tables: the projector's only way to the database.
#[derive(Debug, Clone)]
pub struct ViewWriter {
    backend: Backend,
    statements: WriteStatements,
}

/// A view as stored before the batch, read under the batch's lock.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LockedView {
    pub order_id: String,
    pub sequence: i64,
    /// The `DisputeView` as JSON text.
    pub view: String,
}

/// An open batch: its transaction holds the locks on the views it read.
pub struct ViewBatch<'a> {
    tx: Tx,
    statements: &'a WriteStatements,
    /// SQLite: this process's turn to write, until the batch commits.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs the same sqlx expression on whichever transaction the batch holds.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            Tx::Postgres($conn) => $body,
            Tx::Sqlite($conn) => $body,
        }
    };
}

impl ViewWriter {
    pub fn new(store: &Store, tables: &ViewTables) -> Self {
        let backend = store.backend.clone();
        let statements = WriteStatements::new(Dialect::of(&backend), tables);
        Self { backend, statements }
    }

    /// Opens a batch: begins its transaction and reads and locks the stored views of
    /// `order_ids` (those that exist), in order-id order; with no ids, reads nothing.
    pub async fn lock(&self, order_ids: &[&str]) -> Result<(ViewBatch<'_>, Vec<LockedView>), StoreError> {
        let begin = self.statements.begin;
        let turn = self.backend.turn().await;
        let mut tx = match &self.backend {
            Backend::Postgres(crate::Postgres { pool, .. }) => Tx::Postgres(pool.begin_with(begin).await?),
            Backend::Sqlite(sqlite) => Tx::Sqlite(sqlite.pool.begin_with(begin).await?),
        };
        let mut views = Vec::new();
        if !order_ids.is_empty() {
            let ids = json_array(&order_ids)?;
            views = on_tx!(&mut tx, tx => {
                sqlx::query_as(&self.statements.lock).bind(&ids).fetch_all(&mut **tx).await?
            });
        }
        Ok((ViewBatch { tx, statements: &self.statements, _turn: turn }, views))
    }
}

impl ViewWriter {
    /// Writes a batch that read no stored view: inserts the timeline entries the store does
    /// not hold yet and upserts the changed views (a stored view already ahead, or as far, is
    /// left alone), in one transaction. Returns the (order, sequence) of the entries that were
    /// new.
    pub async fn write(
        &self,
        timeline: &[TimelineRow],
        disputes: &[DisputeRow],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if timeline.is_empty() {
            return Ok(Vec::new());
        }
        match (&self.backend, &self.statements.insert_both) {
            (Backend::Postgres(crate::Postgres { inserts, .. }), Some(both)) => {
                let (timeline, disputes) = (json_array(&timeline)?, json_array(&disputes)?);
                let mut connection = inserts.acquire().await?;
                let new =
                    sqlx::query_as(both).bind(timeline).bind(disputes).fetch_all(&mut *connection).await;
                Ok(connection.done(new)?)
            }
            _ => self.lock(&[]).await?.0.commit(timeline, disputes).await,
        }
    }
}

impl ViewBatch<'_> {
    /// Inserts the timeline entries the store does not hold yet, upserts the changed views (a
    /// stored view already ahead, or as far, is left alone) and commits. Returns the (order,
    /// sequence) of the entries that were new.
    pub async fn commit(
        mut self,
        timeline: &[TimelineRow],
        disputes: &[DisputeRow],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut new = Vec::new();
        if !timeline.is_empty() {
            let (timeline, disputes) = (json_array(&timeline)?, json_array(&disputes)?);
            on_tx!(&mut self.tx, tx => {
                new = sqlx::query_as(&self.statements.insert_timeline).bind(timeline).fetch_all(&mut **tx).await?;
                sqlx::query(&self.statements.upsert_disputes).bind(disputes).execute(&mut **tx).await?;
            });
        }
        on_tx!(self.tx, tx => tx.commit().await?);
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_name_every_declared_column() {
        let statements = WriteStatements::new(Dialect::Postgres, &ViewTables::live());
        for column in DISPUTES.columns {
            assert!(statements.upsert_disputes.contains(&format!("{} {}", column.name, column.postgres)));
        }
        for column in DISPUTES.value_columns() {
            assert!(statements.upsert_disputes.contains(&format!("{0} = excluded.{0}", column.name)));
        }
        assert!(statements.upsert_disputes.ends_with("WHERE view_disputes.sequence < excluded.sequence"));
        let statements = WriteStatements::new(Dialect::Sqlite, &ViewTables::live());
        for column in TIMELINE.columns {
            assert!(statements.insert_timeline.contains(&format!("value ->> '{}'", column.name)));
        }
        assert!(
            statements
                .insert_timeline
                .ends_with("ON CONFLICT (order_id, sequence) DO NOTHING RETURNING order_id, sequence")
        );
    }
}

//! The projector's writes: a batch is at most three statements whatever its size (read and
//! lock the views the batch continues, insert the timeline entries, upsert the changed views),
//! each taking its rows as one array per column on PostgreSQL, as bound `VALUES` on SQLite, in one
//! transaction. A batch that reads no stored view (every order from its first event, as in a
//! catch-up, or from a view the projector kept) skips the first; on PostgreSQL the other two
//! are then one statement, its own transaction, and on SQLite one script with its `BEGIN` and
//! `COMMIT`, sent to the connection's worker thread at once.

use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use super::{
    BindColumns, BindRow, DISPUTES, Dialect, DisputeRow, TIMELINE, TimelineRow, ViewShape, ViewTables,
    json_array,
};
use crate::{Backend, SQLITE_BOUND_VALUES, Store, StoreError};

/// The statements that write one set of view tables, built once for the store's dialect.
#[derive(Debug, Clone)]
struct WriteStatements {
    begin: &'static str,
    lock: String,
    rows: Rows,
}

/// How a batch's rows reach the database.
#[derive(Debug, Clone)]
enum Rows {
    /// PostgreSQL: each table's rows as one array per column, bound from `$1` on.
    Arrays {
        insert_timeline: String,
        upsert_disputes: String,
        /// Both in one statement, the timeline's arrays bound first, then the views', answering
        /// as `insert_timeline` does.
        insert_both: String,
    },
    /// SQLite: `VALUES`, bound one value each, between each statement's two halves.
    Values { insert_timeline: Halves, upsert_disputes: Halves },
}

/// A statement's text before and after its rows.
#[derive(Debug, Clone)]
struct Halves {
    head: String,
    tail: String,
}

impl Halves {
    /// The statement with its rows the arrays bound from `$first` on.
    fn arrays(&self, shape: &ViewShape, first: usize) -> String {
        format!("{}{} {}", self.head, Dialect::unnest_rows(shape.columns, first), self.tail)
    }
}

impl WriteStatements {
    fn new(dialect: Dialect, tables: &ViewTables) -> Self {
        let ViewTables { disputes, timeline } = tables;
        let halves = |shape: &ViewShape, table: &str, on_conflict: String| Halves {
            head: format!("INSERT INTO {table} ({}) ", ViewShape::names(shape.columns)),
            tail: format!("ON CONFLICT ({}) {on_conflict}", ViewShape::names(shape.key_columns())),
        };
        let set = DISPUTES
            .value_columns()
            .iter()
            .map(|c| format!("{0} = excluded.{0}", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let insert_timeline =
            halves(&TIMELINE, timeline, "DO NOTHING RETURNING order_id, sequence".to_string());
        let upsert_disputes = halves(
            &DISPUTES,
            disputes,
            format!("DO UPDATE SET {set} WHERE {disputes}.sequence < excluded.sequence"),
        );
        let rows = match dialect {
            Dialect::Postgres => Rows::Arrays {
                // The entries are inserted as the outer SELECT reads them, then the views
                // upserted (a data-modifying WITH that nothing reads runs to its end after the
                // statement's): the order of the transaction's two statements, so two
                // projectors never deadlock.
                insert_both: format!(
                    "WITH entries AS ({}), views AS ({}) SELECT order_id, sequence FROM entries",
                    insert_timeline.arrays(&TIMELINE, 1),
                    upsert_disputes.arrays(&DISPUTES, 1 + TIMELINE.columns.len())
                ),
                insert_timeline: insert_timeline.arrays(&TIMELINE, 1),
                upsert_disputes: upsert_disputes.arrays(&DISPUTES, 1),
            },
            Dialect::Sqlite => Rows::Values { insert_timeline, upsert_disputes },
        };
        Self {
            begin: dialect.begin_write(),
            // In order-id order, so two projectors never deadlock.
            lock: format!(
                "SELECT order_id, sequence, view FROM {disputes} WHERE order_id IN ({}) ORDER BY order_id{}",
                dialect.json_strings(),
                dialect.for_update()
            ),
            rows,
        }
    }
}

/// Runs `halves` with `rows` as its `VALUES` and returns what the statements answer: one
/// exchange with the connection's worker thread, however many statements the rows need.
async fn write_values<R: BindRow>(
    tx: &mut Transaction<'static, Sqlite>,
    halves: &Halves,
    shape: &ViewShape,
    rows: &[R],
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut statements = QueryBuilder::new("");
    push_rows(&mut statements, halves, shape, rows);
    Ok(statements.build_query_as().fetch_all(&mut **tx).await?)
}

/// Appends `halves` with `rows` as its `VALUES` to a script, each statement after a `;`, as many
/// rows a statement as SQLite binds.
fn push_rows<'a, R: BindRow>(
    script: &mut QueryBuilder<'a, Sqlite>,
    halves: &Halves,
    shape: &ViewShape,
    rows: &'a [R],
) {
    for rows in rows.chunks(SQLITE_BOUND_VALUES / shape.columns.len()) {
        script.push("; ").push(&halves.head);
        script.push_values(rows, |mut row, values| values.bind(&mut row));
        script.push(" ").push(&halves.tail);
    }
}

/// A batch that reads no stored view, on SQLite: its transaction as one script
/// ([`crate::sqlite_script`]).
async fn write_script(
    sqlite: &crate::Sqlite,
    halves: (&Halves, &Halves),
    timeline: &[TimelineRow],
    disputes: &[DisputeRow],
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut script = QueryBuilder::new(Dialect::Sqlite.begin_write());
    push_rows(&mut script, halves.0, &TIMELINE, timeline);
    push_rows(&mut script, halves.1, &DISPUTES, disputes);
    script.push("; COMMIT");
    let _turn = sqlite.turn.clone().lock_owned().await;
    let mut connection = sqlite.pool.acquire().await?;
    Ok(crate::sqlite_script(&mut connection, script.build_query_as()).await?)
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
        match (&self.backend, &self.statements.rows) {
            (Backend::Postgres(crate::Postgres { inserts, .. }), Rows::Arrays { insert_both, .. }) => {
                let statement = TimelineRow::bind_columns(timeline, sqlx::query_as(insert_both));
                let statement = DisputeRow::bind_columns(disputes, statement);
                let mut connection = inserts.acquire().await?;
                let new = statement.fetch_all(&mut *connection).await;
                Ok(connection.done(new)?)
            }
            (Backend::Sqlite(sqlite), Rows::Values { insert_timeline, upsert_disputes }) => {
                write_script(sqlite, (insert_timeline, upsert_disputes), timeline, disputes).await
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
            match (&mut self.tx, &self.statements.rows) {
                (Tx::Postgres(tx), Rows::Arrays { insert_timeline, upsert_disputes, .. }) => {
                    new = TimelineRow::bind_columns(timeline, sqlx::query_as(insert_timeline))
                        .fetch_all(&mut **tx)
                        .await?;
                    // It answers no rows: read as `()`, the binding is the same as for a
                    // statement that answers some.
                    DisputeRow::bind_columns(disputes, sqlx::query_as::<_, ()>(upsert_disputes))
                        .fetch_all(&mut **tx)
                        .await?;
                }
                (Tx::Sqlite(tx), Rows::Values { insert_timeline, upsert_disputes }) => {
                    new = write_values(tx, insert_timeline, &TIMELINE, timeline).await?;
                    write_values(tx, upsert_disputes, &DISPUTES, disputes).await?;
                }
                _ => unreachable!("the statements are built for the store's dialect"),
            }
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
        let Rows::Arrays { upsert_disputes, .. } =
            WriteStatements::new(Dialect::Postgres, &ViewTables::live()).rows
        else {
            panic!("PostgreSQL takes arrays")
        };
        for (i, column) in DISPUTES.columns.iter().enumerate() {
            assert!(upsert_disputes.contains(&format!("${}::{}[]", i + 1, column.postgres)));
        }
        for column in DISPUTES.value_columns() {
            assert!(upsert_disputes.contains(&format!("{0} = excluded.{0}", column.name)));
        }
        assert!(upsert_disputes.ends_with("WHERE view_disputes.sequence < excluded.sequence"));
        let Rows::Values { insert_timeline, .. } =
            WriteStatements::new(Dialect::Sqlite, &ViewTables::live()).rows
        else {
            panic!("SQLite takes VALUES")
        };
        assert_eq!(
            insert_timeline.head,
            "INSERT INTO view_timeline (order_id, sequence, event_type, actor_role, actor_id, time, data) "
        );
        assert_eq!(
            insert_timeline.tail,
            "ON CONFLICT (order_id, sequence) DO NOTHING RETURNING order_id, sequence"
        );
    }
}

//! Tables built aside: a rebuild's `*_next` tables and their swap, drift's `*_audit` tables,
//! and every row of a view table as text, for drift to compare.

use sqlx::Row;

use super::{ViewShape, ViewTables};
use crate::{Backend, Store, StoreError, on_pool};

/// Reads a live table's DDL on SQLite (tables first, then indexes).
const SQLITE_DDL: &str = "SELECT sql FROM sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL \
     ORDER BY type = 'index'";

fn drop_table(table: &str) -> String {
    format!("DROP TABLE IF EXISTS {table}")
}

/// SQLite: `live`'s own DDL statement, made to create `aside` instead (indexes renamed, and
/// created only if missing).
fn sqlite_renamed_ddl(sql: &str, live: &str, aside: &str) -> String {
    // A renamed table's DDL names it in quotes.
    let sql = sql.replace(&format!("\"{live}\""), live);
    let sql = sql.replacen(&format!("TABLE {live}"), &format!("TABLE {aside}"), 1);
    let sql = sql.replace(&format!("ON {live} "), &format!("ON {aside} "));
    sql.replacen("INDEX ", "INDEX IF NOT EXISTS rebuilt_", 1)
}

impl Store {
    /// Empty `aside` tables with the `live` tables' columns, keys and indexes (replacing any
    /// left over from an earlier run): one definition of each view's shape, the migrations'.
    pub async fn create_aside_views(&self, live: &ViewTables, aside: &ViewTables) -> Result<(), StoreError> {
        for (live, aside) in [(&live.disputes, &aside.disputes), (&live.timeline, &aside.timeline)] {
            on_pool!(&self.backend, pool => sqlx::query(&drop_table(aside)).execute(pool).await.map(|_| ()))?;
            match &self.backend {
                Backend::Postgres(crate::Postgres { pool, .. }) => {
                    sqlx::query(&format!("CREATE TABLE {aside} (LIKE {live} INCLUDING ALL)"))
                        .execute(pool)
                        .await?;
                }
                Backend::Sqlite(crate::Sqlite { pool, .. }) => {
                    let ddl: Vec<(String,)> = sqlx::query_as(SQLITE_DDL).bind(live).fetch_all(pool).await?;
                    for (sql,) in ddl {
                        sqlx::query(&sqlite_renamed_ddl(&sql, live, aside)).execute(pool).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops `tables` where they exist.
    pub async fn drop_view_tables(&self, tables: &ViewTables) -> Result<(), StoreError> {
        for table in [&tables.disputes, &tables.timeline] {
            on_pool!(&self.backend, pool => sqlx::query(&drop_table(table)).execute(pool).await.map(|_| ()))?;
        }
        Ok(())
    }

    /// In one transaction: each `(live, next)` of `swaps` replaces the live table with the
    /// next one, and the tables of `discard` are dropped. Readers see the old tables or the
    /// new ones, never a mix.
    pub async fn swap_view_tables(&self, swaps: &[(&str, &str)], discard: &[&str]) -> Result<(), StoreError> {
        let mut statements = Vec::new();
        for (live, next) in swaps {
            statements.push(format!("DROP TABLE {live}"));
            statements.push(format!("ALTER TABLE {next} RENAME TO {live}"));
        }
        statements.extend(discard.iter().map(|table| format!("DROP TABLE {table}")));
        on_pool!(&self.backend, pool => {
            let mut tx = pool.begin().await?;
            for statement in &statements {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every row of `table`, shaped as `shape`, each column cast to text in the shape's order.
    pub async fn view_rows_as_text(
        &self,
        shape: &ViewShape,
        table: &str,
    ) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        let select = shape.columns.iter().map(|c| format!("CAST({} AS text)", c.name)).collect::<Vec<_>>();
        let sql = format!("SELECT {} FROM {table}", select.join(", "));
        let width = shape.columns.len();
        let rows = on_pool!(&self.backend, pool => {
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| (0..width).map(|i| row.try_get::<Option<String>, _>(i)).collect::<Result<Vec<_>, _>>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}

//! Rebuilding the views from the log, aside, then swapping them in: readers never see a
//! half-built view, and the service may keep running.
//!
//! 1. Fresh `*_next` tables, shaped like the live ones, are filled from the whole log.
//! 2. One transaction replaces the live tables with them.
//! 3. The events committed meanwhile are applied again from where the build stopped; the
//!    projector skips what it has, so this only fills what the build had not seen.

use std::sync::Arc;

use dispute_store::{Backend, Cursor, Store, on_pool};

use crate::{Incoming, Projector, ViewError, ViewTables};

/// The views a rebuild can swap in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewName {
    Disputes,
    Timeline,
}

impl ViewName {
    pub const ALL: [ViewName; 2] = [ViewName::Disputes, ViewName::Timeline];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "disputes" => Some(ViewName::Disputes),
            "timeline" => Some(ViewName::Timeline),
            _ => None,
        }
    }

    fn tables(self, tables: &ViewTables) -> &str {
        match self {
            ViewName::Disputes => &tables.disputes,
            ViewName::Timeline => &tables.timeline,
        }
    }
}

/// Rebuilds `views` from the log; `progress(done, total)` is called as events are applied.
/// Returns the number of events replayed.
pub async fn rebuild(
    store: Arc<Store>,
    views: &[ViewName],
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ViewError> {
    let live = ViewTables::live();
    let next = ViewTables::next();
    let (done, cursor) = build_aside(&store, &next, &mut progress).await?;
    swap(&store, views, &live, &next).await?;
    // What committed during the build, applied to the tables now live.
    let live_projector = Projector::new(store.clone());
    replay(&store, &live_projector, cursor, |_| {}).await?;
    Ok(done)
}

/// Fills fresh `aside` tables, shaped like the live ones, from the whole log, leaving the
/// live views alone. Returns the events replayed and the cursor the build stopped at.
pub async fn build_aside(
    store: &Arc<Store>,
    aside: &ViewTables,
    mut progress: impl FnMut(u64, u64),
) -> Result<(u64, Cursor), ViewError> {
    create_next_tables(store, &ViewTables::live(), aside).await?;
    let total = store.count_events().await?;
    let projector = Projector::with_tables(store.clone(), aside);
    replay(store, &projector, Cursor::default(), |done| progress(done, total)).await
}

/// Drops tables made by [`build_aside`].
pub async fn drop_aside(store: &Store, aside: &ViewTables) -> Result<(), ViewError> {
    for table in [&aside.disputes, &aside.timeline] {
        on_pool!(store.backend(), pool => sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(pool)
            .await
            .map(|_| ()))?;
    }
    Ok(())
}

async fn replay(
    store: &Store,
    projector: &Projector,
    mut cursor: Cursor,
    mut progress: impl FnMut(u64),
) -> Result<(u64, Cursor), ViewError> {
    let mut done = 0u64;
    loop {
        let batch = store.events_after(cursor, 1000).await?;
        let Some(last) = batch.last() else { return Ok((done, cursor)) };
        for event in &batch {
            projector.apply(&Incoming::from(event)).await?;
        }
        done += batch.len() as u64;
        cursor = last.cursor;
        progress(done);
    }
}

/// Empty `*_next` tables with the live tables' columns, keys and indexes.
async fn create_next_tables(store: &Store, live: &ViewTables, next: &ViewTables) -> Result<(), ViewError> {
    for (live, next) in [(&live.disputes, &next.disputes), (&live.timeline, &next.timeline)] {
        match store.backend() {
            Backend::Postgres(pool) => {
                sqlx::query(&format!("DROP TABLE IF EXISTS {next}")).execute(pool).await?;
                sqlx::query(&format!("CREATE TABLE {next} (LIKE {live} INCLUDING ALL)"))
                    .execute(pool)
                    .await?;
            }
            Backend::Sqlite(pool) => {
                sqlx::query(&format!("DROP TABLE IF EXISTS {next}")).execute(pool).await?;
                // The live table's own DDL, renamed: one definition of each view's shape.
                let ddl: Vec<(String,)> = sqlx::query_as(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL \
                     ORDER BY type = 'index'",
                )
                .bind(live)
                .fetch_all(pool)
                .await?;
                for (sql,) in ddl {
                    // A renamed table's DDL names it in quotes.
                    let sql = sql.replace(&format!("\"{live}\""), live);
                    let sql = sql.replacen(&format!("TABLE {live}"), &format!("TABLE {next}"), 1);
                    let sql = sql.replace(&format!("ON {live} "), &format!("ON {next} "));
                    let sql = sql.replacen("INDEX ", "INDEX IF NOT EXISTS rebuilt_", 1);
                    sqlx::query(&sql).execute(pool).await?;
                }
            }
        }
    }
    Ok(())
}

/// Replaces the live tables of `views` with the rebuilt ones in one transaction.
async fn swap(
    store: &Store,
    views: &[ViewName],
    live: &ViewTables,
    next: &ViewTables,
) -> Result<(), ViewError> {
    on_pool!(store.backend(), pool => {
        let mut tx = pool.begin().await?;
        for view in views {
            let (live, next) = (view.tables(live), view.tables(next));
            sqlx::query(&format!("DROP TABLE {live}")).execute(&mut *tx).await?;
            sqlx::query(&format!("ALTER TABLE {next} RENAME TO {live}")).execute(&mut *tx).await?;
        }
        for view in ViewName::ALL.iter().filter(|v| !views.contains(v)) {
            sqlx::query(&format!("DROP TABLE {}", view.tables(next))).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

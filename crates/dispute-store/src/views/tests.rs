//! The view statements against the migrated tables of both dialects: a fresh PostgreSQL
//! database (`TEST_DATABASE_URL`, default the local server) and a fresh SQLite file.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use dispute_domain::{DisputeServices, Policy, SystemClock};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::*;
use crate::{Store, StoreConfig, on_pool};

/// A store on a database made for one test, removed when dropped.
struct TestStore {
    store: Arc<Store>,
    /// `(admin connection options, database name)` on PostgreSQL.
    postgres: Option<(PgConnectOptions, String)>,
    /// The directory of the SQLite file.
    sqlite: Option<PathBuf>,
}

impl TestStore {
    /// One store of each dialect.
    async fn each_dialect() -> [TestStore; 2] {
        [Self::postgres().await, Self::sqlite().await]
    }

    async fn postgres() -> Self {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string());
        let name = format!("disputes_store_views_{}", unique());
        let admin = PgConnectOptions::from_str(&admin_url).expect("a PostgreSQL URL");
        let mut conn = PgConnection::connect_with(&admin).await.expect("PostgreSQL is reachable");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let (base, query) =
            admin_url.split_once('?').map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = format!("{base}/{name}{}", query.map(|q| format!("?{q}")).unwrap_or_default());
        let store = Store::open(&StoreConfig::Postgres { url, max_connections: 4 }, services())
            .await
            .expect("open the PostgreSQL store");
        Self { store, postgres: Some((admin, name)), sqlite: None }
    }

    async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("disputes-store-views-{}", unique()));
        let store = Store::open(&StoreConfig::Sqlite { path: dir.join("disputes.db") }, services())
            .await
            .expect("open the SQLite store");
        Self { store, postgres: None, sqlite: Some(dir) }
    }

    fn dialect(&self) -> Dialect {
        Dialect::of(&self.store.backend)
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(dir) = &self.sqlite {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime: drop the database from a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn services() -> DisputeServices {
    DisputeServices::new(Arc::new(SystemClock), Arc::new(Policy::builtin()))
}

fn unique() -> String {
    let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().expect("a clock after 1970").as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// `(name, type, nullable)` of each column, in order.
type Described = Vec<(String, String, bool)>;

/// The columns of `table` as migrated.
async fn migrated(store: &Store, table: &str) -> Described {
    let rows: Vec<(String, String, bool)> = on_pool!(&store.backend, pool => sqlx::query_as(
        match Dialect::of(&store.backend) {
            Dialect::Postgres => "SELECT column_name::text, data_type::text, is_nullable = 'YES' \
                FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 \
                ORDER BY ordinal_position",
            // A primary key column is NOT NULL in a STRICT table, whatever `notnull` says.
            Dialect::Sqlite => "SELECT name, lower(type), \"notnull\" = 0 AND pk = 0 \
                FROM pragma_table_info($1) ORDER BY cid",
        },
    )
    .bind(table)
    .fetch_all(pool)
    .await)
    .expect("describe the table");
    rows
}

#[tokio::test]
async fn the_declared_columns_are_the_migrated_columns() {
    for test in TestStore::each_dialect().await {
        for (shape, table) in ViewTables::live().shaped() {
            let declared: Described = shape
                .columns
                .iter()
                .map(|c| {
                    let sql_type = match test.dialect() {
                        Dialect::Postgres => c.postgres,
                        Dialect::Sqlite => c.sqlite,
                    };
                    (c.name.to_string(), sql_type.to_string(), c.nullable)
                })
                .collect();
            assert_eq!(declared, migrated(&test.store, table).await, "{table} on {:?}", test.dialect());
        }
    }
}

fn dispute_row(sequence: i64, status: &str) -> DisputeRow {
    DisputeRow {
        order_id: "o-1".to_string(),
        sequence,
        buyer_id: "b-1".to_string(),
        merchant_id: "m-1".to_string(),
        status: status.to_string(),
        round: 1,
        reason: Some("quality_issue".to_string()),
        outcome: None,
        assignee: None,
        currency: "EUR".to_string(),
        requested_minor: 2_500,
        refunded_minor: 0,
        merchant_due_ms: i64::MAX,
        requested_at_ms: Some(1_780_000_000_000),
        escalated_at_ms: None,
        assignment_due_ms: None,
        resolved_at_ms: None,
        merchant_wins: 0,
        merchant_losses: 0,
        view: format!(r#"{{"sequence":{sequence}}}"#),
    }
}

fn timeline_row(sequence: i64) -> TimelineRow {
    TimelineRow {
        order_id: "o-1".to_string(),
        sequence,
        event_type: "RefundRequested".to_string(),
        actor_role: "buyer".to_string(),
        actor_id: "b-1".to_string(),
        time: "2026-06-01T08:00:00Z".to_string(),
        data: r#"{"amount":2500}"#.to_string(),
    }
}

/// Every stored `view_disputes` row, read as declared.
async fn dispute_rows(store: &Store) -> Vec<DisputeRow> {
    let sql = format!("SELECT {} FROM view_disputes ORDER BY order_id", ViewShape::names(DISPUTES.columns));
    on_pool!(&store.backend, pool => sqlx::query_as(&sql).fetch_all(pool).await).expect("read view_disputes")
}

#[tokio::test]
async fn a_batch_writes_every_declared_column_and_never_moves_a_view_back() {
    for test in TestStore::each_dialect().await {
        let store = &test.store;
        let writer = ViewWriter::new(store, &ViewTables::live());
        let (batch, locked) = writer.lock(&["o-1"]).await.expect("lock");
        assert!(locked.is_empty());
        batch
            .commit(&[timeline_row(1), timeline_row(2)], &[dispute_row(2, "awaiting_merchant")])
            .await
            .expect("commit");
        assert_eq!(dispute_rows(store).await, vec![dispute_row(2, "awaiting_merchant")]);
        assert_eq!(
            store.timeline_rows("o-1").await.expect("timeline"),
            vec![timeline_row(1), timeline_row(2)]
        );

        let (batch, locked) = writer.lock(&["o-1", "o-2"]).await.expect("lock");
        assert_eq!(
            locked.iter().map(|v| (v.order_id.as_str(), v.sequence, v.view.as_str())).collect::<Vec<_>>(),
            vec![("o-1", 2, r#"{"sequence":2}"#)]
        );
        // A stale view and a timeline entry already there change nothing.
        batch.commit(&[timeline_row(1)], &[dispute_row(1, "open")]).await.expect("commit");
        assert_eq!(dispute_rows(store).await, vec![dispute_row(2, "awaiting_merchant")]);

        let (batch, _) = writer.lock(&["o-1"]).await.expect("lock");
        batch.commit(&[timeline_row(3)], &[dispute_row(3, "refunded")]).await.expect("commit");
        assert_eq!(dispute_rows(store).await, vec![dispute_row(3, "refunded")]);
        assert_eq!(store.dispute_view("o-1").await.expect("view").as_deref(), Some(r#"{"sequence":3}"#));
        assert_eq!(store.timeline_rows("o-1").await.expect("timeline").len(), 3);
    }
}

#[tokio::test]
async fn views_built_aside_swap_in_and_read_as_text() {
    for test in TestStore::each_dialect().await {
        let store = &test.store;
        let (live, next) = (ViewTables::live(), ViewTables::next());
        store.create_aside_views(&live, &next).await.expect("create aside");
        // Twice: left-over tables are replaced.
        store.create_aside_views(&live, &next).await.expect("create aside again");
        let writer = ViewWriter::new(store, &next);
        let (batch, _) = writer.lock(&["o-1"]).await.expect("lock");
        batch.commit(&[timeline_row(1)], &[dispute_row(1, "open")]).await.expect("commit");
        let text = store.view_rows_as_text(&DISPUTES, &next.disputes).await.expect("rows");
        assert_eq!(text.len(), 1);
        assert_eq!(text[0].len(), DISPUTES.columns.len());
        assert_eq!(
            (text[0][0].as_deref(), text[0][1].as_deref(), text[0][7].as_deref()),
            (Some("o-1"), Some("1"), None)
        );

        store.swap_view_tables(&[(&live.disputes, &next.disputes)], &[&next.timeline]).await.expect("swap");
        assert_eq!(dispute_rows(store).await, vec![dispute_row(1, "open")]);
        assert_eq!(store.timeline_rows("o-1").await.expect("timeline"), vec![]);
        // The swapped-in table kept the live one's key and indexes: the upsert still works.
        let writer = ViewWriter::new(store, &live);
        let (batch, _) = writer.lock(&["o-1"]).await.expect("lock");
        batch.commit(&[timeline_row(2)], &[dispute_row(2, "awaiting_merchant")]).await.expect("commit");
        assert_eq!(dispute_rows(store).await, vec![dispute_row(2, "awaiting_merchant")]);
        store.drop_view_tables(&next).await.expect("nothing left to drop");
    }
}

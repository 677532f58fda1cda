//! The columns of the view tables, each declared once: its name and Rust type. The SQL type
//! in each dialect follows from the Rust type ([`SqlType`]), the row structs and their
//! reading (`sqlx::FromRow`) from the declaration, and from the column lists every statement
//! that names them: the projector's insert and upsert, the JSON row typing, drift's
//! comparison. A test holds each list equal to the migrated tables of both dialects.

use serde::Serialize;

/// One column of a view table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// Its type in PostgreSQL's DDL (as `information_schema` names it).
    pub postgres: &'static str,
    /// Its type in SQLite's STRICT DDL.
    pub sqlite: &'static str,
    pub nullable: bool,
}

/// The SQL type a Rust field is stored as.
pub trait SqlType {
    const POSTGRES: &'static str;
    const SQLITE: &'static str;
    const NULLABLE: bool = false;
}

impl SqlType for String {
    const POSTGRES: &'static str = "text";
    const SQLITE: &'static str = "text";
}

impl SqlType for i64 {
    const POSTGRES: &'static str = "bigint";
    const SQLITE: &'static str = "integer";
}

impl SqlType for i32 {
    const POSTGRES: &'static str = "integer";
    const SQLITE: &'static str = "integer";
}

impl<T: SqlType> SqlType for Option<T> {
    const POSTGRES: &'static str = T::POSTGRES;
    const SQLITE: &'static str = T::SQLITE;
    const NULLABLE: bool = true;
}

/// A view table's shape: its columns, the key columns first.
#[derive(Debug, Clone, Copy)]
pub struct ViewShape {
    /// How reports name the view: `disputes` or `timeline`.
    pub name: &'static str,
    /// How many of the first columns make the primary key.
    pub key: usize,
    pub columns: &'static [Column],
}

impl ViewShape {
    pub fn key_columns(&self) -> &'static [Column] {
        &self.columns[..self.key]
    }

    /// The columns an upsert sets: all but the key.
    pub fn value_columns(&self) -> &'static [Column] {
        &self.columns[self.key..]
    }

    /// `a, b, c`
    pub(crate) fn names(columns: &[Column]) -> String {
        columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }
}

/// Declares a view table's row struct and its shape from one list of `name: Type` fields.
macro_rules! view_table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident as $shape:ident ($name:literal, key $key:literal) {
            $( $(#[$field_meta:meta])* $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
        pub struct $row {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        pub const $shape: ViewShape = ViewShape {
            name: $name,
            key: $key,
            columns: &[$(Column {
                name: stringify!($field),
                postgres: <$ty as SqlType>::POSTGRES,
                sqlite: <$ty as SqlType>::SQLITE,
                nullable: <$ty as SqlType>::NULLABLE,
            }),*],
        };
    };
}

view_table! {
    /// One `view_disputes` row: the view as JSON and the columns lists sort and filter on.
    pub struct DisputeRow as DISPUTES ("disputes", key 1) {
        order_id: String,
        /// The last event reflected.
        sequence: i64,
        buyer_id: String,
        merchant_id: String,
        status: String,
        round: i32,
        reason: Option<String>,
        outcome: Option<String>,
        assignee: Option<String>,
        currency: String,
        requested_minor: i64,
        refunded_minor: i64,
        /// The merchant's soonest running deadline; `i64::MAX` when none (sorts last).
        merchant_due_ms: i64,
        requested_at_ms: Option<i64>,
        escalated_at_ms: Option<i64>,
        assignment_due_ms: Option<i64>,
        resolved_at_ms: Option<i64>,
        merchant_wins: i32,
        merchant_losses: i32,
        /// The whole `DisputeView`, as JSON text.
        view: String,
    }
}

view_table! {
    /// One `view_timeline` row: one event as a dispute's timeline shows it.
    pub struct TimelineRow as TIMELINE ("timeline", key 2) {
        order_id: String,
        sequence: i64,
        event_type: String,
        actor_role: String,
        actor_id: String,
        time: String,
        /// The event's fields without the type tag, as JSON text.
        data: String,
    }
}

#[cfg(test)]
mod tests {
    //! The declared columns are the migrated tables' columns, in both dialects.

    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::sqlite::SqlitePoolOptions;
    use sqlx::{Connection, PgConnection, PgPool};

    use super::*;

    /// `(name, type, nullable)` of each column, in order.
    type Described = Vec<(String, String, bool)>;

    fn declared(shape: &ViewShape, sql_type: fn(&Column) -> &'static str) -> Described {
        shape.columns.iter().map(|c| (c.name.to_string(), sql_type(c).to_string(), c.nullable)).collect()
    }

    fn tables() -> [(&'static ViewShape, &'static str); 2] {
        [(&DISPUTES, "view_disputes"), (&TIMELINE, "view_timeline")]
    }

    #[tokio::test]
    async fn the_declared_columns_are_the_migrated_columns_on_sqlite() {
        let pool =
            SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await.expect("sqlite");
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.expect("migrate");
        for (shape, table) in tables() {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                "SELECT name, lower(type), \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
            )
            .bind(table)
            .fetch_all(&pool)
            .await
            .expect("table info");
            let migrated: Described = rows
                .into_iter()
                .map(|(name, ty, not_null, pk)| (name, ty, not_null == 0 && pk == 0))
                .collect();
            assert_eq!(declared(shape, |c| c.sqlite), migrated, "{table}");
        }
    }

    #[tokio::test]
    async fn the_declared_columns_are_the_migrated_columns_on_postgres() {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string());
        let admin = PgConnectOptions::from_str(&admin_url).expect("a PostgreSQL URL");
        let name = format!(
            "disputes_store_columns_{}_{}",
            std::process::id(),
            std::time::SystemTime::UNIX_EPOCH.elapsed().expect("a clock after 1970").as_nanos()
        );
        let mut conn = PgConnection::connect_with(&admin).await.expect("PostgreSQL is reachable");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let result = async {
            let pool = PgPool::connect_with(admin.clone().database(&name)).await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(sqlx::Error::from)?;
            let mut described = Vec::new();
            for (shape, table) in tables() {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&pool)
                .await?;
                let migrated: Described =
                    rows.into_iter().map(|(name, ty, nullable)| (name, ty, nullable == "YES")).collect();
                described.push((declared(shape, |c| c.postgres), migrated, table));
            }
            pool.close().await;
            Ok::<_, sqlx::Error>(described)
        }
        .await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
        for (declared, migrated, table) in result.expect("migrate and describe") {
            assert_eq!(declared, migrated, "{table}");
        }
    }
}

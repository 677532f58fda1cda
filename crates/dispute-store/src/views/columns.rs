//! The columns of the view tables, each declared once: its name and Rust type. The SQL type
//! in each dialect follows from the Rust type ([`SqlType`]), the row structs, their reading
//! (`sqlx::FromRow`) and their binding ([`BindRow`], [`BindColumns`]) from the declaration, and
//! from the column lists every statement that names them: the projector's insert and upsert,
//! the arrays' typing, drift's comparison. A test holds each list equal to the migrated tables
//! of both dialects.

use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::query_builder::Separated;
use sqlx::{Postgres, Sqlite};

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

/// A row bound one value per column, in the declared order, for a statement's `VALUES`.
pub(crate) trait BindRow {
    fn bind<'q>(&'q self, row: &mut Separated<'_, 'q, Sqlite, &'static str>);
}

/// Rows bound one array per column, in the declared order, for PostgreSQL's `unnest`: each
/// value travels in the protocol's binary form, where one JSON array of the rows had the
/// server lex every value again (a view's whole JSON text as an escaped string).
pub(crate) trait BindColumns: Sized {
    fn bind_columns<'q, O>(
        rows: &'q [Self],
        query: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> QueryAs<'q, Postgres, O, PgArguments>;
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

        impl BindRow for $row {
            fn bind<'q>(&'q self, row: &mut Separated<'_, 'q, Sqlite, &'static str>) {
                $( row.push_bind(&self.$field); )*
            }
        }

        impl BindColumns for $row {
            fn bind_columns<'q, O>(
                rows: &'q [Self],
                query: QueryAs<'q, Postgres, O, PgArguments>,
            ) -> QueryAs<'q, Postgres, O, PgArguments> {
                $( let query = query.bind(rows.iter().map(|row| &row.$field).collect::<Vec<_>>()); )*
                query
            }
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

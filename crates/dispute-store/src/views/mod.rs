//! The read side's tables (`view_disputes`, `view_timeline`) and every statement on them: the
//! projector's batch writes, the queries behind the view routes, the rebuild's aside tables
//! and swap, and the rows drift compares. The views crate holds the logic (what a view is,
//! what a batch changes); this module only moves rows.
//!
//! Each statement is written once: as one shared text where the dialects agree, with the
//! few tokens they do not agree on taken from [`Dialect`].

mod columns;
mod read;
mod rebuild;
mod write;

#[cfg(test)]
mod tests;

pub(crate) use columns::{BindColumns, BindRow};
pub use columns::{Column, DISPUTES, DisputeRow, SqlType, TIMELINE, TimelineRow, ViewShape};
pub use read::{MerchantRow, QueueFilter, QueueRow, StatsRow, SummaryRow};
pub use write::{LockedView, ViewBatch, ViewWriter};

use crate::{Backend, StoreError};

/// The tables one set of views lives in: the live ones, or a set built aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewTables {
    pub disputes: String,
    pub timeline: String,
}

impl ViewTables {
    pub fn live() -> Self {
        Self { disputes: "view_disputes".to_string(), timeline: "view_timeline".to_string() }
    }

    /// The tables a rebuild fills before swapping them in.
    pub fn next() -> Self {
        Self { disputes: "view_disputes_next".to_string(), timeline: "view_timeline_next".to_string() }
    }

    /// Each table with its shape.
    pub fn shaped(&self) -> [(&ViewShape, &str); 2] {
        [(&DISPUTES, &self.disputes), (&TIMELINE, &self.timeline)]
    }
}

/// Where the two SQL dialects part, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn of(backend: &Backend) -> Self {
        match backend {
            Backend::Postgres(_) => Dialect::Postgres,
            Backend::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Opens a transaction that will write. SQLite takes the write lock up front: upgrading a
    /// read transaction fails at once (SQLITE_BUSY) when another connection wrote in between.
    fn begin_write(self) -> &'static str {
        match self {
            Dialect::Postgres => "BEGIN",
            Dialect::Sqlite => "BEGIN IMMEDIATE",
        }
    }

    /// The strings of the JSON array bound as `$1`, one row each.
    fn json_strings(self) -> &'static str {
        match self {
            Dialect::Postgres => "SELECT json_array_elements_text($1::json)",
            Dialect::Sqlite => "SELECT value FROM json_each($1)",
        }
    }

    /// Locks the rows a SELECT reads until the transaction ends (SQLite's write lock already
    /// covers the whole database).
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// PostgreSQL: the arrays bound from `$first` on, one per column ([`BindColumns`]), as
    /// rows of `columns`, typed as the table is. SQLite takes a batch's rows as `VALUES`, bound
    /// one value each ([`BindRow`]): through `json_each` it rendered each row's object as text
    /// and parsed it again for every column.
    fn unnest_rows(columns: &[Column], first: usize) -> String {
        let arrays = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", first + i, c.postgres))
            .collect::<Vec<_>>();
        let names = ViewShape::names(columns);
        format!("SELECT {names} FROM unnest({}) AS r({names})", arrays.join(", "))
    }
}

/// Rows passed as one JSON array.
pub(crate) fn json_array<T: serde::Serialize>(rows: &T) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Query(sqlx::Error::Encode(Box::new(e))))
}

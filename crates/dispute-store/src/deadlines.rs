//! The deadline timer's work list, the table `deadlines` (migrations `0004_deadlines.sql`,
//! `0007_deadlines_running_only.sql`): a row per order whose deadline runs, with the event at
//! `sequence` that set it and who has claimed it for firing. A deadline that ends loses its row.
//! The timer decides what to record and when to fire; this module only reads and writes rows.
//!
//! An event is recorded once: each batch moves the checkpoint `deadlines` (in
//! `relay_checkpoints`) to its last change in the same transaction, under a lock on that row,
//! and leaves out what the checkpoint already covers. So an event read twice (after a crash, or
//! by an instance behind another) never brings back a deadline a later event ended, though
//! ended deadlines keep no row.
//!
//! Each statement is written once per dialect in [`Sql`]; text the dialects share is written
//! once in a macro. They differ in locking (PostgreSQL locks rows; SQLite has one writer at a
//! time, so a write transaction or a statement is the lock by itself), in how a JSON array
//! becomes rows, and in the name of the two-argument maximum.

use std::collections::BTreeMap;

use dispute_domain::Timer;
use serde::Serialize;

use crate::views::json_array;
use crate::{Backend, Cursor, Store, StoreError, on_pool};

/// The deadlines of [`Store::deadlines`].
pub struct Deadlines<'a> {
    backend: &'a Backend,
}

/// What one event did to its order's deadline, as tracking records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked<'a> {
    pub order_id: &'a str,
    /// The event that set or ended the deadline.
    pub sequence: u64,
    /// Its place in the log: changes the checkpoint `deadlines` covers are left out.
    pub cursor: Cursor,
    /// The deadline running after it; `None` when it ended the running one.
    pub running: Option<Timer>,
}

/// A due row, claimed for firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub order_id: String,
    /// The event that set the deadline: clearing the row is conditional on it.
    pub sequence: u64,
    /// The deadline's name as stored ([`dispute_domain::Deadline::as_str`]).
    pub deadline: String,
    pub round: u32,
    /// When it came due (ms), by the service clock.
    pub due_at_ms: i64,
}

/// The rows still running, as the firing loop plans its next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// When the next row may be fired: its due time, or its claim's end if later.
    pub next_due_ms: Option<i64>,
    /// How many deadlines are running (due or not, claimed or not).
    pub pending: i64,
}

/// A row to set, as one object of the JSON array [`Sql::set`] reads.
#[derive(Serialize)]
struct SetRow<'a> {
    order_id: &'a str,
    sequence: i64,
    deadline: &'a str,
    round: i64,
    due_at_ms: i64,
}

/// What a batch of changes writes once each order's last change is kept.
#[derive(Default)]
struct Folded<'a> {
    set: Vec<SetRow<'a>>,
    /// Orders whose deadline ended.
    ended: Vec<&'a str>,
}

/// Every statement on `deadlines` in one dialect.
struct Sql {
    /// Opens the transaction that records a batch.
    begin: &'static str,
    /// → the checkpoint `deadlines`, locked until the transaction ends.
    recorded: &'static str,
    /// $1, $2: the checkpoint's new (xid, position).
    mark: &'static str,
    /// $1 a JSON array of [`SetRow`], one per order: replaces an older row only.
    set: &'static str,
    /// $1 a JSON array of order ids whose deadline ended.
    end: &'static str,
    /// `set`, `end` and `mark` as one statement, where the dialect has data-modifying `WITH`:
    /// $1 as `set`'s, $2 as `end`'s, $3, $4 as `mark`'s → how many rows were set.
    set_end_mark: Option<&'static str>,
    /// $1 now (ms), $2 claimed until (ms), $3 limit → (order, sequence, deadline, round, due).
    claim_due: &'static str,
    /// $1 order, $2 sequence.
    clear: &'static str,
    /// $1 order, $2 sequence, $3 claimed until (ms).
    retry_at: &'static str,
    /// → the earliest of every row's due time or claim end, whichever is later, and how many
    /// rows run.
    next_due: &'static str,
}

const MARK: &str = "UPDATE relay_checkpoints SET xid = $1, position = $2 WHERE name = 'deadlines'";

/// Sets each order's row from `$rows`, the JSON array as rows of (order, sequence, deadline,
/// round, due).
macro_rules! set {
    ($rows:expr) => {
        concat!(
            "INSERT INTO deadlines (order_id, sequence, deadline, round, due_at_ms, claimed_until_ms) ",
            $rows,
            " ON CONFLICT (order_id) DO UPDATE SET sequence = excluded.sequence, deadline = excluded.deadline, \
               round = excluded.round, due_at_ms = excluded.due_at_ms, claimed_until_ms = NULL \
             WHERE deadlines.sequence < excluded.sequence"
        )
    };
}

/// Deletes the rows of the order ids `$ids` selects from the JSON array.
macro_rules! end {
    ($ids:literal) => {
        concat!("DELETE FROM deadlines WHERE order_id IN (", $ids, ")")
    };
}

const CLEAR: &str = "DELETE FROM deadlines WHERE order_id = $1 AND sequence = $2";

const RETRY_AT: &str = "UPDATE deadlines SET claimed_until_ms = $3 WHERE order_id = $1 AND sequence = $2";

/// Claims due rows no live claim holds; `$lock` locks the chosen rows, `$round` reads the round
/// as a 64-bit integer.
macro_rules! claim_due {
    ($lock:literal, $round:literal) => {
        concat!(
            "UPDATE deadlines SET claimed_until_ms = $2 WHERE order_id IN ( \
               SELECT order_id FROM deadlines \
               WHERE due_at_ms <= $1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1) \
               ORDER BY due_at_ms LIMIT $3",
            $lock,
            ") RETURNING order_id, sequence, deadline, ",
            $round,
            ", due_at_ms"
        )
    };
}

/// The next time a row may be fired; `$greatest` is the dialect's two-argument maximum.
macro_rules! next_due {
    ($greatest:literal) => {
        concat!(
            "SELECT min(",
            $greatest,
            "(due_at_ms, COALESCE(claimed_until_ms, 0))), count(*) FROM deadlines WHERE due_at_ms IS NOT NULL"
        )
    };
}

/// The rows `set` writes on PostgreSQL, from `$param`.
macro_rules! postgres_set_rows {
    ($param:literal) => {
        concat!(
            "SELECT order_id, sequence, deadline, round, due_at_ms, NULL FROM json_to_recordset(",
            $param,
            "::json) AS r(order_id text, sequence bigint, deadline text, round integer, due_at_ms bigint)"
        )
    };
}

const POSTGRES: Sql = Sql {
    begin: "BEGIN",
    recorded: "SELECT xid, position FROM relay_checkpoints WHERE name = 'deadlines' FOR UPDATE",
    mark: MARK,
    set: set!(postgres_set_rows!("$1")),
    end: end!("SELECT json_array_elements_text($1::json)"),
    set_end_mark: Some(concat!(
        "WITH set AS (",
        set!(postgres_set_rows!("$1")),
        " RETURNING 1), ended AS (",
        end!("SELECT json_array_elements_text($2::json)"),
        "), mark AS (UPDATE relay_checkpoints SET xid = $3, position = $4 WHERE name = 'deadlines') \
         SELECT count(*) FROM set"
    )),
    claim_due: claim_due!(" FOR UPDATE SKIP LOCKED", "round::bigint"),
    clear: CLEAR,
    retry_at: RETRY_AT,
    next_due: next_due!("GREATEST"),
};

const SQLITE: Sql = Sql {
    // The write lock up front: the checkpoint read below must still hold when the batch writes.
    begin: "BEGIN IMMEDIATE",
    recorded: "SELECT xid, position FROM relay_checkpoints WHERE name = 'deadlines'",
    mark: MARK,
    // `WHERE true` tells SQLite's parser that the ON CONFLICT that follows is an upsert.
    set: set!(
        "SELECT value ->> 'order_id', value ->> 'sequence', value ->> 'deadline', value ->> 'round', \
           value ->> 'due_at_ms', NULL FROM json_each($1) WHERE true"
    ),
    end: end!("SELECT value FROM json_each($1)"),
    set_end_mark: None,
    claim_due: claim_due!("", "round"),
    clear: CLEAR,
    retry_at: RETRY_AT,
    next_due: next_due!("max"),
};

impl Store {
    /// The deadline timer's table.
    pub fn deadlines(&self) -> Deadlines<'_> {
        Deadlines { backend: &self.backend }
    }
}

impl<'a> Folded<'a> {
    /// Each order's last change among `changes` (in log order) after `recorded`.
    fn after(recorded: Cursor, changes: &'a [Tracked<'a>]) -> Self {
        let mut last: BTreeMap<&str, &Tracked> = BTreeMap::new();
        for change in changes.iter().filter(|c| c.cursor > recorded) {
            last.insert(change.order_id, change);
        }
        let mut folded = Folded::default();
        for (order_id, change) in last {
            match change.running {
                Some(timer) => folded.set.push(SetRow {
                    order_id,
                    sequence: change.sequence as i64,
                    deadline: timer.deadline.as_str(),
                    round: timer.round as i64,
                    due_at_ms: timer.due.timestamp_millis(),
                }),
                None => folded.ended.push(order_id),
            }
        }
        folded
    }
}

impl Deadlines<'_> {
    fn sql(&self) -> &'static Sql {
        match self.backend {
            Backend::Postgres(_) => &POSTGRES,
            Backend::Sqlite(_) => &SQLITE,
        }
    }

    /// Records what events, in log order, did to their orders' deadlines, in one transaction:
    /// each order's last change, as one statement for the deadlines set and one for those
    /// ended, leaving out changes the checkpoint `deadlines` already covers; the checkpoint
    /// then moves to the last change. On PostgreSQL the three writes are one statement, after
    /// the statement that reads and locks the checkpoint: its snapshot is taken once the lock
    /// is held, so it sees what another instance's batch committed before it. A new deadline is unclaimed. Returns the earliest due time
    /// (ms) among the deadlines set, if any was.
    pub async fn record(&self, changes: &[Tracked<'_>]) -> Result<Option<i64>, StoreError> {
        let Some(through) = changes.iter().map(|c| c.cursor).max() else { return Ok(None) };
        let sql = self.sql();
        let _turn = self.backend.turn().await;
        on_pool!(self.backend, pool => {
            let mut tx = pool.begin_with(sql.begin).await?;
            let (xid, position): (i64, i64) = sqlx::query_as(sql.recorded).fetch_one(&mut *tx).await?;
            let recorded = Cursor { xid, position };
            if through <= recorded {
                return Ok(None);
            }
            let folded = Folded::after(recorded, changes);
            let mut set = 0;
            if let Some(set_end_mark) = sql.set_end_mark {
                let (rows, ended) = (json_array(&folded.set)?, json_array(&folded.ended)?);
                let query = sqlx::query_scalar::<_, i64>(set_end_mark).bind(rows).bind(ended);
                set = query.bind(through.xid).bind(through.position).fetch_one(&mut *tx).await? as u64;
            } else {
                if !folded.set.is_empty() {
                    let rows = json_array(&folded.set)?;
                    set = sqlx::query(sql.set).bind(rows).execute(&mut *tx).await?.rows_affected();
                }
                if !folded.ended.is_empty() {
                    sqlx::query(sql.end).bind(json_array(&folded.ended)?).execute(&mut *tx).await?;
                }
                sqlx::query(sql.mark).bind(through.xid).bind(through.position).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok((set > 0).then(|| folded.set.iter().map(|row| row.due_at_ms).min()).flatten())
        })
    }

    /// Claims until `claim_until_ms` up to `limit` rows due by `now_ms` that no live claim
    /// holds, soonest first. On PostgreSQL rows another instance is claiming are skipped.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let turn = self.backend.turn().await;
        let rows: Vec<(String, i64, String, i64, i64)> = on_pool!(self.backend, pool => sqlx::query_as(self.sql().claim_due)
            .bind(now_ms)
            .bind(claim_until_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?);
        drop(turn);
        Ok(rows
            .into_iter()
            .map(|(order_id, sequence, deadline, round, due_at_ms)| Claimed {
                order_id,
                sequence: sequence as u64,
                deadline,
                round: round as u32,
                due_at_ms,
            })
            .collect())
    }

    /// Deletes the claimed row, unless a later event has set another deadline since.
    pub async fn clear(&self, claimed: &Claimed) -> Result<(), StoreError> {
        let _turn = self.backend.turn().await;
        on_pool!(self.backend, pool => sqlx::query(self.sql().clear)
            .bind(&claimed.order_id)
            .bind(claimed.sequence as i64)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Keeps the claimed row until `at_ms`, when it may be claimed again, unless a later event
    /// has set another deadline since.
    pub async fn retry_at(&self, claimed: &Claimed, at_ms: i64) -> Result<(), StoreError> {
        let _turn = self.backend.turn().await;
        on_pool!(self.backend, pool => sqlx::query(self.sql().retry_at)
            .bind(&claimed.order_id)
            .bind(claimed.sequence as i64)
            .bind(at_ms)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// When the next row may be fired: its due time, or its claim's end if later.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.schedule().await?.next_due_ms)
    }

    /// When the next row may be fired, and how many run: one statement, one scan.
    pub async fn schedule(&self) -> Result<Schedule, StoreError> {
        let (next_due_ms, pending): (Option<i64>, i64) =
            on_pool!(self.backend, pool => sqlx::query_as(self.sql().next_due).fetch_one(pool).await?);
        Ok(Schedule { next_due_ms, pending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialects_differ_only_in_the_claims_lock_and_the_maximum() {
        assert_eq!(
            POSTGRES.claim_due,
            "UPDATE deadlines SET claimed_until_ms = $2 WHERE order_id IN ( \
               SELECT order_id FROM deadlines \
               WHERE due_at_ms <= $1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1) \
               ORDER BY due_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING order_id, sequence, deadline, round::bigint, due_at_ms"
        );
        assert_eq!(
            SQLITE.claim_due,
            POSTGRES.claim_due.replace(" FOR UPDATE SKIP LOCKED", "").replace("round::bigint", "round")
        );
        assert_eq!(
            POSTGRES.next_due,
            "SELECT min(GREATEST(due_at_ms, COALESCE(claimed_until_ms, 0))), count(*) FROM deadlines \
             WHERE due_at_ms IS NOT NULL"
        );
        assert_eq!(SQLITE.next_due, POSTGRES.next_due.replace("GREATEST", "max"));
        assert_eq!(
            (POSTGRES.mark, POSTGRES.clear, POSTGRES.retry_at),
            (SQLITE.mark, SQLITE.clear, SQLITE.retry_at)
        );
    }
}

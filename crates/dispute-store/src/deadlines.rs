//! The deadline timer's work list, the table `deadlines` (migration `0004_deadlines.sql`): per
//! order, the deadline running after the event at `sequence`, and who has claimed it for firing.
//! The timer decides what to record and when to fire; this module only reads and writes rows.
//!
//! Each statement is written once per dialect in [`Sql`]; text the dialects share is written
//! once in a macro. They differ in the claim (PostgreSQL skips rows another transaction has
//! locked; SQLite has one writer at a time, so its statement is the claim by itself) and in the
//! name of the two-argument maximum.

use dispute_domain::Timer;

use crate::{Backend, Store, StoreError, on_pool};

/// The deadlines of [`Store::deadlines`].
pub struct Deadlines<'a> {
    backend: &'a Backend,
}

/// What one event did to its order's deadline, as tracking records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked<'a> {
    pub order_id: &'a str,
    /// The event that set or ended the deadline: a row is only ever replaced by a later one.
    pub sequence: u64,
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

/// Every statement on `deadlines` in one dialect.
struct Sql {
    /// $1 order, $2 sequence, $3 deadline, $4 round, $5 due (ms): replaces an older row only.
    record: &'static str,
    /// $1 now (ms), $2 claimed until (ms), $3 limit → (order, sequence, deadline, round, due).
    claim_due: &'static str,
    /// $1 order, $2 sequence.
    clear: &'static str,
    /// $1 order, $2 sequence, $3 claimed until (ms).
    retry_at: &'static str,
    /// → the earliest of every running row's due time or claim end, whichever is later, and
    /// how many rows run.
    next_due: &'static str,
}

const RECORD: &str = "INSERT INTO deadlines (order_id, sequence, deadline, round, due_at_ms, claimed_until_ms) \
     VALUES ($1, $2, $3, $4, $5, NULL) \
     ON CONFLICT (order_id) DO UPDATE SET sequence = excluded.sequence, deadline = excluded.deadline, \
       round = excluded.round, due_at_ms = excluded.due_at_ms, claimed_until_ms = NULL \
     WHERE deadlines.sequence < excluded.sequence";

const CLEAR: &str = "UPDATE deadlines SET deadline = NULL, round = NULL, due_at_ms = NULL, claimed_until_ms = NULL \
     WHERE order_id = $1 AND sequence = $2";

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

const POSTGRES: Sql = Sql {
    record: RECORD,
    claim_due: claim_due!(" FOR UPDATE SKIP LOCKED", "round::bigint"),
    clear: CLEAR,
    retry_at: RETRY_AT,
    next_due: next_due!("GREATEST"),
};

const SQLITE: Sql = Sql {
    record: RECORD,
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

impl Deadlines<'_> {
    fn sql(&self) -> &'static Sql {
        match self.backend {
            Backend::Postgres(_) => &POSTGRES,
            Backend::Sqlite(_) => &SQLITE,
        }
    }

    /// Records what events did to their orders' deadlines, in one transaction. A row already
    /// set by a later event is left as it is; a new deadline is unclaimed.
    pub async fn record(&self, changes: &[Tracked<'_>]) -> Result<(), StoreError> {
        let sql = self.sql().record;
        on_pool!(self.backend, pool => {
            let mut tx = pool.begin().await?;
            for &Tracked { order_id, sequence, running } in changes {
                let (deadline, round, due) = match running {
                    Some(timer) => (
                        Some(timer.deadline.as_str()),
                        Some(timer.round as i64),
                        Some(timer.due.timestamp_millis()),
                    ),
                    None => (None, None, None),
                };
                sqlx::query(sql)
                    .bind(order_id)
                    .bind(sequence as i64)
                    .bind(deadline)
                    .bind(round)
                    .bind(due)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims until `claim_until_ms` up to `limit` rows due by `now_ms` that no live claim
    /// holds, soonest first. On PostgreSQL rows another instance is claiming are skipped.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let rows: Vec<(String, i64, String, i64, i64)> = on_pool!(self.backend, pool => sqlx::query_as(self.sql().claim_due)
            .bind(now_ms)
            .bind(claim_until_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?);
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

    /// Ends the claimed row's deadline, unless a later event has set another since.
    pub async fn clear(&self, claimed: &Claimed) -> Result<(), StoreError> {
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
            (POSTGRES.record, POSTGRES.clear, POSTGRES.retry_at),
            (SQLITE.record, SQLITE.clear, SQLITE.retry_at)
        );
    }
}

//! What a relay needs from the database besides the log: a lease, so that one relay per stream
//! publishes at a time, and a wake-up when events commit.
//!
//! On PostgreSQL the lease is a session advisory lock held on a connection of its own, taken
//! out of the pool: when the holder's process dies, its connection closes and the lock goes
//! with it. The wake-up is `LISTEN` on the channel the events table's trigger notifies
//! (migration `0002_relay.sql`). SQLite has neither: its lease is granted at once and its
//! listener never wakes, so a relay there relies on the commit signal and its polling.

use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};

use crate::{Backend, Store, StoreError};

/// The channel `notify_events_committed()` notifies after every insert into `events`.
const COMMITS_CHANNEL: &str = "disputes_events";

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";

/// A held lease; dropping it releases it.
pub struct Lease {
    /// The connection holding the advisory lock; `None` on SQLite.
    connection: Option<PgConnection>,
}

/// Notifications of commits from any instance.
pub struct CommitListener {
    /// `None` on SQLite.
    listener: Option<PgListener>,
}

impl Store {
    /// Takes the lease `key` unless another session holds it.
    pub async fn try_lease(&self, key: i64) -> Result<Option<Lease>, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(Some(Lease { connection: None }));
        };
        let mut connection = pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar(TRY_LOCK).bind(key).fetch_one(&mut connection).await?;
        Ok(locked.then_some(Lease { connection: Some(connection) }))
    }

    /// Starts listening for commits.
    pub async fn listen_for_commits(&self) -> Result<CommitListener, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(CommitListener { listener: None });
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(COMMITS_CHANNEL).await?;
        Ok(CommitListener { listener: Some(listener) })
    }
}

impl Lease {
    /// Checks that the lease's connection is alive; an error means the lease is lost.
    pub async fn ping(&mut self) -> Result<(), StoreError> {
        if let Some(connection) = &mut self.connection {
            connection.ping().await?;
        }
        Ok(())
    }
}

impl CommitListener {
    /// Completes at the next commit notification (never on SQLite).
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        match &mut self.listener {
            Some(listener) => {
                listener.recv().await?;
                Ok(())
            }
            None => std::future::pending().await,
        }
    }
}

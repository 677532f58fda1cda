//! What a relay needs from the database besides the log: a lease, so that one relay per stream
//! publishes at a time.
//!
//! On PostgreSQL the lease is a session advisory lock held on a connection of its own, taken
//! out of the pool: when the holder's process dies, its connection closes and the lock goes
//! with it. SQLite has one process: its lease is granted at once.

use sqlx::{Connection, PgConnection};

use crate::{Backend, Store, StoreError};

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";

/// A held lease; dropping it releases it.
pub struct Lease {
    /// The connection holding the advisory lock; `None` on SQLite.
    connection: Option<PgConnection>,
}

impl Store {
    /// Takes the lease `key` unless another session holds it.
    pub async fn try_lease(&self, key: i64) -> Result<Option<Lease>, StoreError> {
        let Backend::Postgres(crate::Postgres { pool, .. }) = &self.backend else {
            return Ok(Some(Lease { connection: None }));
        };
        let mut connection = pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar(TRY_LOCK).bind(key).fetch_one(&mut connection).await?;
        Ok(locked.then_some(Lease { connection: Some(connection) }))
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

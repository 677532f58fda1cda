//! Connections kept out of their pool between statements.
//!
//! sqlx tests every connection given back to its pool with a round trip (a `Sync` and the
//! server's `ReadyForQuery`), whatever the pool's options say: on the appends' path that was a
//! second round trip for every command. A connection taken from [`Parked`] goes back to
//! [`Parked`], untested; the next statement on it first reads whatever an interrupted one left
//! unread, as sqlx does before every statement. A connection whose statement failed other than
//! by the database's refusal goes back to the pool, whose test closes it if it is broken.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgDatabaseError, PgSeverity};
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::Notify;

/// A pool and the connections taken from it that wait, untested, for their next statement.
#[derive(Debug, Clone)]
pub(crate) struct Parked {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pool: PgPool,
    state: Mutex<State>,
    /// Signalled when a connection is parked, or one taken is given back to the pool: a
    /// request waiting may take the one or ask the pool for another.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    parked: Vec<PoolConnection<Postgres>>,
    /// The connections taken from the pool and not given back: parked or in use. At most the
    /// pool's size; the pool itself is asked only when this is below it, so that no request
    /// waits on the pool for a connection that is parked.
    taken: u32,
    /// Nothing is parked once closing.
    closing: bool,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::unpoisoned(&self.state)
    }

    /// A taken connection goes back to the pool (dropped), or is forgotten.
    fn given_back(&self) {
        self.state().taken -= 1;
        self.changed.notify_one();
    }
}

impl Parked {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { shared: Arc::new(Shared { pool, state: Mutex::default(), changed: Notify::new() }) }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// A parked connection, else a new one from the pool while it has room, else the next one
    /// parked.
    pub(crate) async fn acquire(&self) -> Result<Connection, sqlx::Error> {
        let size = self.shared.pool.options().get_max_connections();
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.shared.state();
                if let Some(connection) = state.parked.pop() {
                    return Ok(Connection { connection: Some(connection), shared: self.shared.clone() });
                }
                if state.taken < size {
                    state.taken += 1;
                    break;
                }
            }
            changed.await;
        }
        // Counted as taken from here: a failure, or this request dropped while it waits, gives
        // its place back.
        let mut taking = Connection { connection: None, shared: self.shared.clone() };
        taking.connection = Some(self.shared.pool.acquire().await?);
        Ok(taking)
    }

    /// Closes the pool: the parked connections go back to it first, and none is parked after.
    pub(crate) async fn close(&self) {
        let parked = {
            let mut state = self.shared.state();
            state.closing = true;
            state.taken -= state.parked.len() as u32;
            std::mem::take(&mut state.parked)
        };
        drop(parked);
        self.shared.pool.close().await;
    }

    /// The connections parked now.
    pub(crate) fn parked(&self) -> u32 {
        self.shared.state().parked.len() as u32
    }
}

/// A place among the connections taken from [`Parked`]'s pool, with its connection once it
/// has one; the connection is parked when this is dropped.
pub(crate) struct Connection {
    connection: Option<PoolConnection<Postgres>>,
    shared: Arc<Shared>,
}

impl Connection {
    /// Gives back the connection after `result`, its statement's: parked, unless the failure
    /// was not the database refusing the statement (an I/O or protocol error, or the server
    /// ending the session), when it goes back to the pool to be tested.
    pub(crate) fn done<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(e) = &result
            && !is_refusal(e)
        {
            self.connection.take();
        }
        result
    }
}

/// The server refused the statement and the session goes on.
fn is_refusal(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::RowNotFound => true,
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|e| !matches!(e.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        _ => false,
    }
}

impl Deref for Connection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("a connection until dropped")
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A request dropped mid-statement parks its connection too: the next statement reads
        // what is left first.
        if let Some(connection) = self.connection.take() {
            let mut state = self.shared.state();
            if !state.closing {
                state.parked.push(connection);
                drop(state);
                self.shared.changed.notify_one();
                return;
            }
        }
        // No connection (it was lost, or the pool gave none), or closing: it goes back to the
        // pool, and its place is free.
        self.shared.given_back();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::TryStreamExt;
    use sqlx::postgres::PgPoolOptions;

    use super::*;

    /// A pool of `max` connections to the local server (`TEST_DATABASE_URL`).
    async fn pool(max: u32) -> PgPool {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string());
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(120))
            .connect(&url)
            .await
            .expect("PostgreSQL is reachable")
    }

    async fn backend_pid(connection: &mut PgConnection) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(connection).await
    }

    #[tokio::test]
    async fn a_connection_given_back_is_parked_for_the_next_statement_not_returned_to_the_pool() {
        let parked = Parked::new(pool(2).await);
        let mut connection = parked.acquire().await.unwrap();
        let pid = backend_pid(&mut connection).await;
        let pid = connection.done(pid).unwrap();
        assert_eq!(parked.parked(), 1);
        assert_eq!(parked.pool().num_idle(), 0, "the pool has not had it back");
        let mut again = parked.acquire().await.unwrap();
        assert_eq!(parked.parked(), 0);
        assert_eq!(backend_pid(&mut again).await.unwrap(), pid, "the same connection");
        // A refusal by the database leaves the connection as good as it was.
        let refused = sqlx::query("SELECT 1/0").execute(&mut *again).await;
        assert!(again.done(refused).is_err());
        assert_eq!(parked.parked(), 1);
        parked.close().await;
    }

    #[tokio::test]
    async fn a_request_waiting_for_the_pool_takes_the_connection_parked_meanwhile() {
        let parked = Parked::new(pool(1).await);
        let first = parked.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let parked = parked.clone();
            async move { backend_pid(&mut *parked.acquire().await?).await }
        });
        tokio::task::yield_now().await;
        // The pool has no connection to give until it is given one back, which parking is not.
        drop(first);
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the waiting request is not left waiting for the pool")
            .unwrap()
            .unwrap();
        assert_eq!(parked.parked(), 1);
        parked.close().await;
    }

    #[tokio::test]
    async fn a_statement_dropped_midway_leaves_its_connection_usable() {
        let parked = Parked::new(pool(1).await);
        let mut connection = parked.acquire().await.unwrap();
        {
            let mut rows =
                sqlx::query_scalar::<_, i32>("SELECT generate_series(1, 100000)").fetch(&mut *connection);
            assert_eq!(rows.try_next().await.unwrap(), Some(1));
        }
        drop(connection);
        assert_eq!(parked.parked(), 1);
        let mut connection = parked.acquire().await.unwrap();
        let two: i32 = sqlx::query_scalar("SELECT 2").fetch_one(&mut *connection).await.unwrap();
        assert_eq!(two, 2, "the rows left unread were read past, not taken for this answer");
        drop(connection);
        parked.close().await;
    }

    #[tokio::test]
    async fn a_connection_lost_goes_back_to_the_pool_and_the_next_statement_gets_a_new_one() {
        let admin = pool(1).await;
        let parked = Parked::new(pool(1).await);
        let mut connection = parked.acquire().await.unwrap();
        let pid = backend_pid(&mut connection).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&admin).await.unwrap();
        // The server's FATAL answer, or the closed socket.
        let lost = backend_pid(&mut connection).await;
        assert!(connection.done(lost).is_err());
        assert_eq!(parked.parked(), 0, "a lost connection is not parked");
        let mut fresh = parked.acquire().await.unwrap();
        let new_pid = backend_pid(&mut fresh).await.unwrap();
        assert_ne!(new_pid, pid);
        drop(fresh);
        parked.close().await;
    }

    #[tokio::test]
    async fn closing_takes_the_parked_connections_back_and_parks_none_after() {
        let parked = Parked::new(pool(2).await);
        let first = parked.acquire().await.unwrap();
        let second = parked.acquire().await.unwrap();
        drop(first);
        assert_eq!(parked.parked(), 1);
        let closing = tokio::spawn({
            let parked = parked.clone();
            async move { parked.close().await }
        });
        // Closing has begun: the parked one is back in the pool, which now waits for the other.
        while !parked.pool().is_closed() {
            tokio::task::yield_now().await;
        }
        drop(second);
        tokio::time::timeout(Duration::from_secs(30), closing)
            .await
            .expect("closing waits for no parked connection")
            .unwrap();
        assert_eq!(parked.parked(), 0);
        assert!(parked.pool().is_closed());
    }
}

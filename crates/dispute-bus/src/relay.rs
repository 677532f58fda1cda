//! The relay: reads committed events in commit order from a durable checkpoint and publishes
//! them, so commands never wait for the bus and an outage only delays publishing.
//!
//! With PostgreSQL, one relay publishes at a time: it holds a session advisory lock on a
//! connection of its own; when its process dies the lock is released and another instance
//! takes over from the shared checkpoint. Re-published messages are dropped by JetStream's
//! de-duplication on the message id.

use std::sync::Arc;
use std::time::Duration;

use dispute_store::{Backend, Store};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::{BusError, NatsBus};

const BATCH: i64 = 512;
/// How often the relay looks for events when no notification arrives.
const POLL: Duration = Duration::from_millis(250);

pub struct Relay {
    store: Arc<Store>,
    bus: NatsBus,
    /// The checkpoint's name; one per stream.
    name: String,
}

/// The checkpoint of the relay publishing to `stream`.
pub fn checkpoint_name(stream: &str) -> String {
    format!("nats:{stream}")
}

/// The advisory lock key of the relays publishing to `stream`: one lease per stream, so relays
/// of different streams on one database do not wait for each other. FNV-1a of the checkpoint
/// name, stable across builds.
pub fn lease_key(stream: &str) -> i64 {
    let hash = checkpoint_name(stream)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash >> 1) as i64 // non-negative: reads as two oids in pg_locks
}

impl Relay {
    pub fn new(store: Arc<Store>, bus: NatsBus) -> Self {
        let name = checkpoint_name(bus.stream_name());
        Self { store, bus, name }
    }

    /// Runs until `shutdown` turns true. Failures are logged and retried, never fatal.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        const FIRST_BACKOFF: Duration = Duration::from_millis(100);
        let mut backoff = FIRST_BACKOFF;
        while !*shutdown.borrow() {
            let started = tokio::time::Instant::now();
            match self.lead(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    // A failure after a good run starts the backoff afresh.
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::warn!(error = %e, "relay interrupted; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Takes the lease, then publishes until shutdown or an error.
    async fn lead(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), BusError> {
        let mut lease = match self.store.backend() {
            Backend::Postgres(pool) => {
                Some(acquire_lease(pool, lease_key(self.bus.stream_name()), shutdown).await?)
            }
            Backend::Sqlite(_) => None,
        };
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut listener = match self.store.backend() {
            Backend::Postgres(pool) => {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen("disputes_events").await?;
                Some(listener)
            }
            Backend::Sqlite(_) => None,
        };
        self.bus.ensure_stream().await?;
        let mut cursor = self.store.checkpoint(&self.name).await?;
        tracing::info!(stream = self.bus.stream_name(), "relay publishing");
        // A backlog is published batch by batch; a stop is honoured between batches.
        while !*shutdown.borrow() {
            let committed = self.store.committed().notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            let batch = self.store.events_after(cursor, BATCH).await?;
            if let Some(last) = batch.last() {
                self.bus.publish(&batch).await?;
                cursor = last.cursor;
                self.store.save_checkpoint(&self.name, cursor).await?;
                continue;
            }
            if let Some(lease) = &mut lease {
                lease.ping().await?; // lost lease connection: stop and re-acquire
            }
            let notified = async {
                match &mut listener {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = committed => {}
                result = notified => result?,
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        Ok(())
    }
}

/// A dedicated connection holding the relay's advisory lock; waits while another holds it.
async fn acquire_lease(
    pool: &sqlx::PgPool,
    key: i64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<PgConnection, BusError> {
    loop {
        let mut conn = pool.acquire().await?.detach();
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
        if locked {
            return Ok(conn);
        }
        drop(conn);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return Err(BusError::ShuttingDown),
        }
    }
}

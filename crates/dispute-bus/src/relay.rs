//! The relay: reads committed events in commit order from a durable checkpoint and publishes
//! them, so commands never wait for the bus and an outage only delays publishing.
//!
//! With PostgreSQL, one relay publishes at a time: it holds a session advisory lock on a
//! connection of its own; when its process dies the lock is released and another instance
//! takes over from the shared checkpoint. Re-published messages are dropped by JetStream's
//! de-duplication on the message id.

use std::sync::Arc;
use std::time::Duration;

use dispute_store::{Lease, Store};
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
        let mut lease = self.acquire_lease(shutdown).await?;
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut listener = self.store.listen_for_commits().await?;
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
            lease.ping().await?; // lost lease connection: stop and re-acquire
            tokio::select! {
                _ = committed => {}
                result = listener.recv() => result?,
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        Ok(())
    }

    /// The lease of this relay's stream (on PostgreSQL, an advisory lock held on a dedicated
    /// connection); waits while another holds it.
    async fn acquire_lease(&self, shutdown: &mut watch::Receiver<bool>) -> Result<Lease, BusError> {
        let key = lease_key(self.bus.stream_name());
        loop {
            if let Some(lease) = self.store.try_lease(key).await? {
                return Ok(lease);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return Err(BusError::ShuttingDown),
            }
        }
    }
}

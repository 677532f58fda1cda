//! The relay: reads committed events in commit order from a durable checkpoint and publishes
//! them, so commands never wait for the bus and an outage only delays publishing.
//!
//! With PostgreSQL, one relay publishes at a time: it holds a session advisory lock on a
//! connection of its own; when its process dies the lock is released and another instance
//! takes over from the shared checkpoint. Re-published messages are dropped by JetStream's
//! de-duplication on the message id.
//!
//! The relay can also hand each batch it reads to a reader in its own process (the projector),
//! just before publishing it: that reader need not wait for JetStream's round trips, and has
//! each copy in hand before JetStream can deliver the same event.

use std::sync::Arc;
use std::time::Duration;

use dispute_store::{Backoff, Batch, Consumer, Follower, Lease, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{BusError, NatsBus};

/// How long a relay waits before asking again for a lease another relay holds.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often a publishing relay checks that its lease's connection is alive, at most. A lost
/// connection is noticed this much later: meanwhile another relay may publish too, which
/// JetStream's de-duplication and the commit order of both keep harmless.
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// The longest a batch waits for room among the copies handed to this process's reader.
const COPY_WAIT: Duration = Duration::from_millis(500);
/// The least time between two reads of the log that this process's commits wake: at a few
/// hundred commits a second, a read and a publication per commit cost more than the commands
/// themselves. The projector of this process is handed its commits as they are made, so only
/// other instances' views and the bus's readers wait for this.
pub const PUBLISH_PACE: Duration = Duration::from_millis(5);

/// How long events took from their commit to JetStream's acknowledgement of their publication.
pub const RELAY_LAG_SECONDS: &str = "disputes_relay_lag_seconds";

/// Describes the relay's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        RELAY_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Time from an event's commit (its time on the service clock) to JetStream's ack of its publication."
    );
}

pub struct Relay {
    store: Arc<Store>,
    bus: NatsBus,
    /// The checkpoint's name; one per stream.
    name: String,
    /// Where each batch is also handed, in this process; see [`Relay::with_copies`].
    copies: Option<mpsc::Sender<Batch>>,
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
        Self { store, bus, name, copies: None }
    }

    /// Hands each batch to `copies` too, before publishing it. A batch that finds the channel
    /// full waits up to [`COPY_WAIT`] for room, so that a reader catching up on a long log
    /// takes every batch from here (from JetStream it would parse each event again); after a
    /// wait that ran out, batches that find it full are not handed over, without waiting,
    /// until one finds room. The reader of `copies` has JetStream to fall back on: what it
    /// misses reaches it there.
    pub fn with_copies(self, copies: mpsc::Sender<Batch>) -> Self {
        Self { copies: Some(copies), ..self }
    }

    /// Runs until `stop` is cancelled. Failures are logged and retried, never fatal.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            backoff.attempt();
            match self.lead(&stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "relay interrupted; retrying");
                    if !backoff.wait(&stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Takes the lease, then publishes until the stop or an error.
    async fn lead(&self, stop: &CancellationToken) -> Result<(), BusError> {
        let Some(lease) = self.acquire_lease(stop).await? else { return Ok(()) };
        self.bus.ensure_stream().await?;
        tracing::info!(stream = self.bus.stream_name(), "relay publishing");
        let follower = Follower::new(self.store.clone(), &self.name).paced(PUBLISH_PACE);
        let mut publisher = Publisher {
            bus: &self.bus,
            lease,
            checked: Instant::now(),
            store: &self.store,
            copies: self.copies.as_ref(),
            copies_stalled: false,
        };
        follower.follow(&mut publisher, stop).await
    }

    /// The lease of this relay's stream (on PostgreSQL, an advisory lock held on a dedicated
    /// connection); waits while another holds it. `None` if stopped first.
    async fn acquire_lease(&self, stop: &CancellationToken) -> Result<Option<Lease>, BusError> {
        let key = lease_key(self.bus.stream_name());
        loop {
            if let Some(lease) = self.store.try_lease(key).await? {
                return Ok(Some(lease));
            }
            tokio::select! {
                _ = tokio::time::sleep(LEASE_RETRY) => {}
                _ = stop.cancelled() => return Ok(None),
            }
        }
    }
}

/// The relay's side of following the log: publish each batch; while idle, check the lease now
/// and then.
struct Publisher<'a> {
    bus: &'a NatsBus,
    lease: Lease,
    /// When the lease was last known alive.
    checked: Instant,
    /// The clock events' times were taken on, for the lag.
    store: &'a Store,
    copies: Option<&'a mpsc::Sender<Batch>>,
    /// A wait for room among the copies ran out, and no batch has found room since.
    copies_stalled: bool,
}

impl Publisher<'_> {
    /// Hands `batch` to the reader of the copies: see [`Relay::with_copies`].
    async fn copy(&mut self, batch: &Batch) {
        let Some(copies) = self.copies else { return };
        match copies.try_send(batch.clone()) {
            Ok(()) => self.copies_stalled = false,
            Err(mpsc::error::TrySendError::Full(batch)) if !self.copies_stalled => {
                let waited = tokio::time::timeout(COPY_WAIT, copies.send(batch)).await;
                self.copies_stalled = waited.is_err();
            }
            Err(_) => {}
        }
    }
}

impl Consumer for Publisher<'_> {
    type Error = BusError;

    async fn apply(&mut self, batch: &Batch) -> Result<(), BusError> {
        self.copy(batch).await;
        self.bus.publish(batch).await?;
        // Every event of the batch is acknowledged now: its lag is now less its commit time.
        let now = self.store.now();
        let lag = metrics::histogram!(RELAY_LAG_SECONDS);
        for event in batch.iter() {
            if let Some(time) = event.time() {
                lag.record((now - time).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6);
            }
        }
        Ok(())
    }

    async fn idle(&mut self) -> Result<(), BusError> {
        // A lost lease connection ends the follow: the relay re-acquires the lease.
        if self.checked.elapsed() >= LEASE_CHECK {
            self.lease.ping().await?;
            self.checked = Instant::now();
        }
        Ok(())
    }
}

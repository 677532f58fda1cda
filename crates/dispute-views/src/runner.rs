//! What feeds the projector: a durable JetStream consumer (with NATS), or the log itself
//! through the in-process bus (the embedded default, and PostgreSQL without NATS).
//!
//! With NATS, the instance whose relay publishes also projects each batch the relay read, as it
//! reads it ([`run_copies`]): a view is visible without waiting for JetStream. The JetStream
//! consumer of that instance acknowledges those events without a transaction ([`Projected`]);
//! it projects whatever the copies missed, and in every other instance all it receives (the
//! projector is idempotent, so an event applied twice changes nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use dispute_bus::{Batch, CloudEvent, NatsBus, NatsFailure};
use dispute_store::{Consumer, Follower, Store, StoredEvent};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Incoming, Projector, ViewError};

const CHECKPOINT: &str = "views";
const DURABLE: &str = "views";
/// The most JetStream messages projected in one transaction.
const BATCH: usize = 256;
/// The most orders [`Projected`] remembers; past it, it forgets them all and starts again.
const REMEMBERED: usize = 4096;

/// What this process's projector applied from the relay's batches lately: per order, the
/// highest sequence. Views never move back, so an event at or below it is in the views already.
#[derive(Clone, Default)]
pub struct Projected(Arc<Mutex<HashMap<String, u64>>>);

impl Projected {
    fn record(&self, events: &[Incoming]) {
        let mut orders = self.0.lock().expect("projected orders");
        if orders.len() + events.len() > REMEMBERED {
            orders.clear();
        }
        for event in events {
            let sequence = orders.entry(event.order_id.clone()).or_default();
            *sequence = (*sequence).max(event.sequence);
        }
    }

    fn holds(&self, event: &Incoming) -> bool {
        let orders = self.0.lock().expect("projected orders");
        orders.get(&event.order_id).is_some_and(|&sequence| sequence >= event.sequence)
    }
}

/// Projects straight from the log, in commit order, from a durable checkpoint, until `stop`.
pub async fn run_local(store: Arc<Store>, stop: CancellationToken) {
    let mut projector = Projector::new(store.clone());
    Follower::new(store, CHECKPOINT).run(&mut projector, "projection", &stop).await;
}

/// The projector follows the log: each batch of the log is one view transaction.
impl Consumer for Projector {
    type Error = ViewError;

    async fn apply(&mut self, batch: &[StoredEvent]) -> Result<(), ViewError> {
        let incoming: Vec<Incoming> = batch.iter().map(Incoming::from).collect();
        self.apply_batch(&incoming).await?;
        Ok(())
    }
}

/// Projects the batches this process's relay hands over ([`dispute_bus::Relay::with_copies`]),
/// until `stop` or until the relay is gone, and records them in `projected`. A failed batch is
/// logged and left to JetStream.
pub async fn run_copies(
    store: Arc<Store>,
    mut copies: mpsc::Receiver<Batch>,
    projected: Projected,
    stop: CancellationToken,
) {
    let projector = Projector::new(store);
    loop {
        let batch = tokio::select! {
            batch = copies.recv() => match batch {
                Some(batch) => batch,
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        let incoming: Vec<Incoming> = batch.iter().map(Incoming::from).collect();
        match projector.apply_batch(&incoming).await {
            Ok(_) => projected.record(&incoming),
            Err(e) => {
                tracing::warn!(error = %e, events = incoming.len(), "projecting the relay's batch failed; JetStream will bring it");
            }
        }
    }
}

/// Projects from the JetStream stream with a durable consumer and explicit acks: an event is
/// acknowledged only after its view transaction commits (or at once if `projected` holds it);
/// a failure is retried by redelivery.
pub async fn run_nats(store: Arc<Store>, bus: NatsBus, projected: Projected, stop: CancellationToken) {
    let projector = Projector::new(store);
    while !stop.is_cancelled() {
        if let Err(e) = consume(&bus, &projector, &projected, &stop).await {
            tracing::warn!(error = %e, "projection consumer interrupted; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

async fn consume(
    bus: &NatsBus,
    projector: &Projector,
    projected: &Projected,
    stop: &CancellationToken,
) -> Result<(), ViewError> {
    bus.ensure_stream().await.map_err(NatsFailure::of("creating the stream"))?;
    let stream = bus
        .jetstream()
        .get_stream(bus.stream_name())
        .await
        .map_err(NatsFailure::of("looking up the stream"))?;
    let consumer = stream
        .get_or_create_consumer(
            DURABLE,
            pull::Config {
                durable_name: Some(DURABLE.to_string()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                // Messages a crashed instance had taken come back after this long.
                ack_wait: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .await
        .map_err(NatsFailure::of("creating the consumer"))?;
    // Whatever has arrived is projected together: one transaction, then the acks.
    let mut messages =
        consumer.messages().await.map_err(NatsFailure::of("pulling messages"))?.ready_chunks(BATCH);
    loop {
        let chunk = tokio::select! {
            next = messages.next() => match next {
                Some(chunk) => chunk,
                None => return Err(NatsFailure::new("pulling messages", "the consumer ended").into()),
            },
            _ = stop.cancelled() => return Ok(()),
        };
        let mut batch = Vec::with_capacity(chunk.len());
        let mut events = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = message.map_err(NatsFailure::of("receiving a message"))?;
            match serde_json::from_slice::<CloudEvent>(&message.payload) {
                Ok(event) => {
                    let event = Incoming::from(&event);
                    if !projected.holds(&event) {
                        events.push(event);
                    }
                    batch.push(message);
                }
                Err(e) => {
                    // Not ours to read: log it and move on rather than block the stream.
                    tracing::error!(error = %e, subject = %message.subject, "unreadable message on the stream");
                    message.ack().await.map_err(NatsFailure::of("acknowledging a message"))?;
                }
            }
        }
        match projector.apply_batch(&events).await {
            Ok(_) => {
                for message in batch {
                    message.ack().await.map_err(NatsFailure::of("acknowledging a message"))?;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, events = events.len(), "projection failed; will be redelivered");
                for message in batch {
                    let _ = message
                        .ack_with(async_nats::jetstream::AckKind::Nak(Some(Duration::from_millis(200))))
                        .await;
                }
            }
        }
    }
}

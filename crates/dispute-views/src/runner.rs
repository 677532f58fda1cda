//! What feeds the projector: a durable JetStream consumer (with NATS), or the log itself
//! through the in-process bus (the embedded default, and PostgreSQL without NATS).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use dispute_bus::{CloudEvent, NatsBus, NatsFailure};
use dispute_store::{Consumer, Follower, Store, StoredEvent};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{Incoming, Projector, ViewError};

const CHECKPOINT: &str = "views";
const DURABLE: &str = "views";
/// The most JetStream messages projected in one transaction.
const BATCH: usize = 256;

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

/// Projects from the JetStream stream with a durable consumer and explicit acks: an event is
/// acknowledged only after its view transaction commits; a failure is retried by redelivery.
pub async fn run_nats(store: Arc<Store>, bus: NatsBus, stop: CancellationToken) {
    let projector = Projector::new(store);
    while !stop.is_cancelled() {
        if let Err(e) = consume(&bus, &projector, &stop).await {
            tracing::warn!(error = %e, "projection consumer interrupted; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

async fn consume(bus: &NatsBus, projector: &Projector, stop: &CancellationToken) -> Result<(), ViewError> {
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
                    events.push(Incoming::from(&event));
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

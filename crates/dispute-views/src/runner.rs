//! What feeds the projector: a durable JetStream consumer (with NATS), or the log itself
//! through the in-process bus (the embedded default, and PostgreSQL without NATS).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use dispute_bus::{CloudEvent, NatsBus};
use dispute_store::Store;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::{Incoming, Projector, ViewError};

const CHECKPOINT: &str = "views";
const DURABLE: &str = "views";
/// The most events projected in one transaction.
const BATCH: usize = 256;

/// Projects straight from the log, in commit order, from a durable checkpoint.
pub async fn run_local(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let projector = Projector::new(store.clone());
    while !*shutdown.borrow() {
        if let Err(e) = project_log(&store, &projector, &mut shutdown).await {
            tracing::warn!(error = %e, "projection interrupted; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn project_log(
    store: &Store,
    projector: &Projector,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ViewError> {
    let mut cursor = store.checkpoint(CHECKPOINT).await?;
    // A backlog is projected batch by batch; a stop is honoured between batches.
    while !*shutdown.borrow() {
        let committed = store.committed().notified();
        tokio::pin!(committed);
        committed.as_mut().enable();
        let batch = store.events_after(cursor, 512).await?;
        if let Some(last) = batch.last() {
            let incoming: Vec<Incoming> = batch.iter().map(Incoming::from).collect();
            projector.apply_batch(&incoming).await?;
            cursor = last.cursor;
            store.save_checkpoint(CHECKPOINT, cursor).await?;
            continue;
        }
        tokio::select! {
            _ = committed => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
    Ok(())
}

/// Projects from the JetStream stream with a durable consumer and explicit acks: an event is
/// acknowledged only after its view transaction commits; a failure is retried by redelivery.
pub async fn run_nats(store: Arc<Store>, bus: NatsBus, mut shutdown: watch::Receiver<bool>) {
    let projector = Projector::new(store);
    while !*shutdown.borrow() {
        if let Err(e) = consume(&bus, &projector, &mut shutdown).await {
            tracing::warn!(error = %e, "projection consumer interrupted; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn consume(
    bus: &NatsBus,
    projector: &Projector,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ViewError> {
    bus.ensure_stream().await.map_err(|e| ViewError::Bus(e.to_string()))?;
    let stream =
        bus.jetstream().get_stream(bus.stream_name()).await.map_err(|e| ViewError::Bus(e.to_string()))?;
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
        .map_err(|e| ViewError::Bus(e.to_string()))?;
    // Whatever has arrived is projected together: one transaction, then the acks.
    let mut messages =
        consumer.messages().await.map_err(|e| ViewError::Bus(e.to_string()))?.ready_chunks(BATCH);
    loop {
        let chunk = tokio::select! {
            next = messages.next() => match next {
                Some(chunk) => chunk,
                None => return Err(ViewError::Bus("the consumer ended".to_string())),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let mut batch = Vec::with_capacity(chunk.len());
        let mut events = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = message.map_err(|e| ViewError::Bus(e.to_string()))?;
            match serde_json::from_slice::<CloudEvent>(&message.payload) {
                Ok(event) => {
                    events.push(Incoming::from(&event));
                    batch.push(message);
                }
                Err(e) => {
                    // Not ours to read: log it and move on rather than block the stream.
                    tracing::error!(error = %e, subject = %message.subject, "unreadable message on the stream");
                    message.ack().await.map_err(|e| ViewError::Bus(e.to_string()))?;
                }
            }
        }
        match projector.apply_batch(&events).await {
            Ok(_) => {
                for message in batch {
                    message.ack().await.map_err(|e| ViewError::Bus(e.to_string()))?;
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

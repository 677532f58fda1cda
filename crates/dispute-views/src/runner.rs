//! What feeds the projector: a durable JetStream consumer (with NATS), or the log itself
//! through the in-process bus (the embedded default, and PostgreSQL without NATS).
//!
//! With NATS, the projector of each instance is also handed batches in its own process, and
//! projects them first: the events of every command the instance commits, as it commits them
//! ([`Store::hand_commits_to`]): a view is visible without waiting for the log's readers, who
//! see a commit only once every transaction begun before it has ended; and, in the instance
//! whose relay publishes, each batch the relay read, just before it publishes it
//! ([`dispute_bus::Relay::with_copies`]). When JetStream delivers an event projected already,
//! the consumer acknowledges it without a transaction. JetStream brings whatever the copies
//! missed (a full channel drops a copy), and in every other instance the rest (the projector
//! is idempotent, so an event applied twice changes nothing; an event handed over ahead of
//! earlier ones of its order has them read from the log first).

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use dispute_bus::{CloudEvent, NatsBus, NatsFailure, parse_message_id};
use dispute_store::{Batch, Consumer, Follower, Store};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Incoming, Projector, ViewError};

const CHECKPOINT: &str = "views";
const DURABLE: &str = "views";
/// The most JetStream messages, or events of the relay's copies, projected in one transaction.
const BATCH: usize = 256;

/// Projects straight from the log, in commit order, from a durable checkpoint, until `stop`.
pub async fn run_local(store: Arc<Store>, stop: CancellationToken) {
    let mut projector = Projector::new(store.clone());
    Follower::new(store, CHECKPOINT).run(&mut projector, "projection", &stop).await;
}

/// The projector follows the log: each batch of the log is one view transaction.
impl Consumer for Projector {
    type Error = ViewError;

    async fn apply(&mut self, batch: &Batch) -> Result<(), ViewError> {
        let incoming: Vec<Incoming> = batch.iter().map(Incoming::from).collect();
        self.apply_batch(&incoming).await?;
        Ok(())
    }
}

/// The projector and what feeds it besides JetStream.
struct Feeds {
    projector: Projector,
    /// Batches handed over in this process: its own commits, its relay's batches.
    copies: Vec<mpsc::Receiver<Batch>>,
}

impl Feeds {
    /// Projects `first` and the copies that have arrived after it, in one transaction, but for
    /// events already projected. A failure is logged and left to JetStream.
    async fn project_copies(&mut self, first: Batch) {
        let mut events = first.len();
        let mut batches = vec![first];
        while events < BATCH {
            let Some(more) = self.try_copy() else { break };
            events += more.len();
            batches.push(more);
        }
        // A relay's copy holds mostly events this process projected from its own commits.
        let projector = &self.projector;
        let incoming: Vec<Incoming> = batches
            .iter()
            .flat_map(|batch| batch.iter())
            .filter(|event| !projector.holds(&event.order_id, event.sequence))
            .map(Incoming::from)
            .collect();
        if let Err(e) = self.projector.apply_batch(&incoming).await {
            tracing::warn!(error = %e, events = incoming.len(), "projecting batches handed over failed; JetStream will bring them");
        }
    }

    /// Projects every copy that has arrived.
    async fn drain_copies(&mut self) {
        while let Some(first) = self.try_copy() {
            self.project_copies(first).await;
        }
    }

    /// A copy that has arrived, if any.
    fn try_copy(&mut self) -> Option<Batch> {
        self.copies.iter_mut().find_map(|copies| copies.try_recv().ok())
    }

    /// The next copy from any source; pending forever once every source is closed.
    async fn next_copy(&mut self) -> Batch {
        std::future::poll_fn(|cx| {
            for copies in &mut self.copies {
                if let Poll::Ready(Some(batch)) = copies.poll_recv(cx) {
                    return Poll::Ready(batch);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Projects from the JetStream stream with a durable consumer and explicit acks: an event is
/// acknowledged only after its view transaction commits, or at once when this process
/// projected it already from one of `copies` (batches handed over in this process: see
/// [`Store::hand_commits_to`] and [`dispute_bus::Relay::with_copies`]); a failure is retried
/// by redelivery.
pub async fn run_nats(
    store: Arc<Store>,
    bus: NatsBus,
    copies: Vec<mpsc::Receiver<Batch>>,
    stop: CancellationToken,
) {
    let mut feeds = Feeds { projector: Projector::new(store), copies };
    while !stop.is_cancelled() {
        if let Err(e) = consume(&bus, &mut feeds, &stop).await {
            tracing::warn!(error = %e, "projection consumer interrupted; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

async fn consume(bus: &NatsBus, feeds: &mut Feeds, stop: &CancellationToken) -> Result<(), ViewError> {
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
        // Messages before copies: the copies that have arrived are projected before each chunk
        // anyway, and a relay that keeps the copies coming must not keep JetStream's
        // deliveries waiting until the projector no longer keeps the views they reached.
        let chunk = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            next = messages.next() => match next {
                Some(chunk) => chunk,
                None => return Err(NatsFailure::new("pulling messages", "the consumer ended").into()),
            },
            copy = feeds.next_copy() => {
                feeds.project_copies(copy).await;
                continue;
            }
        };
        // The copies of these messages, if any, were sent before they were published.
        feeds.drain_copies().await;
        let mut batch = Vec::with_capacity(chunk.len());
        let mut events = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = message.map_err(NatsFailure::of("receiving a message"))?;
            // Projected already, as its id says: acknowledged without reading the event.
            let id = message.headers.as_ref().and_then(|headers| headers.get(NATS_MESSAGE_ID));
            if id
                .and_then(|id| parse_message_id(id.as_str()))
                .is_some_and(|(order_id, sequence)| feeds.projector.holds(order_id, sequence))
            {
                batch.push(message);
                continue;
            }
            match serde_json::from_slice::<CloudEvent>(&message.payload) {
                Ok(event) => {
                    let event = Incoming::from(event);
                    if !feeds.projector.holds(&event.order_id, event.sequence) {
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
        match feeds.projector.apply_batch(&events).await {
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

//! Moving committed events out of the event store: the [`Relay`] publishes them, in commit
//! order and without loss, to NATS JetStream as [`CloudEvent`]s.
//!
//! Invariant: commands never wait for the bus. The relay reads what the store committed; a
//! bus outage delays publishing and never fails or loses a command.

mod cloudevent;
mod nats;
mod relay;

pub use cloudevent::{CloudEvent, message_id, parse_message_id};
pub use nats::NatsBus;
pub use relay::describe_metrics;
pub use relay::{RELAY_LAG_SECONDS, Relay, checkpoint_name, lease_key};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{0}")]
    Config(String),
    #[error("NATS: {0}")]
    Nats(#[from] NatsFailure),
    #[error("event store: {0}")]
    Store(#[from] dispute_store::StoreError),
}

/// A NATS operation that failed: what was being done, and the client's error as the source.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct NatsFailure {
    pub doing: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl NatsFailure {
    pub fn new(
        doing: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self { doing: doing.into(), source: source.into() }
    }

    /// Wraps the error of `doing`, for `map_err`.
    pub fn of<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        doing: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |source| Self::new(doing, source)
    }
}

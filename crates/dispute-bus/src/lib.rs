//! Moving committed events out of the event store: the [`Relay`] publishes them, in commit
//! order and without loss, to NATS JetStream as [`CloudEvent`]s.
//!
//! Invariant: commands never wait for the bus. The relay reads what the store committed; a
//! bus outage delays publishing and never fails or loses a command.

mod cloudevent;
mod nats;
mod relay;

pub use cloudevent::{CloudEvent, message_id};
pub use nats::NatsBus;
pub use relay::{Relay, checkpoint_name, lease_key};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{0}")]
    Config(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("event store: {0}")]
    Store(#[from] dispute_store::StoreError),
}

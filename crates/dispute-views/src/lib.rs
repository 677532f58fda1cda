//! The read side: projections that build the buyer, merchant and platform views from the
//! event log, and the queries that read them. The logic is here; every statement is the
//! store's (its view tables, their columns and the queries on them).
//!
//! Invariant: views are eventually consistent and disposable. They are written only by the
//! [`Projector`], idempotently on (order, sequence), and can be rebuilt from the log.

mod model;
mod projector;
mod queries;
mod rebuild;
mod runner;

pub use dispute_store::ViewTables;
pub use model::{
    Deadlines, DisputeView, EvidenceCounts, EvidenceRequest, EvidenceRequestState, Message, OfferAnswer,
    OfferView, Overdue, Rejection, ReturnView, Ruling,
};
pub use projector::{Incoming, PROJECTION_LAG_SECONDS, Projector, describe_metrics};
pub use queries::{
    MerchantPage, MerchantSummary, PlatformStats, QueueEntry, QueuePage, QueueQuery, TimelineEntry, Views,
};
pub use rebuild::{ViewName, build_aside, drop_aside, rebuild};
pub use runner::{run_local, run_nats};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("event store: {0}")]
    Store(#[from] dispute_store::StoreError),
    #[error("stored JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("events of {order_id} before sequence {sequence} are missing from the log")]
    Gap { order_id: String, sequence: u64 },
    #[error("the stream of {0} does not begin with OrderRegistered")]
    NotRegisteredFirst(String),
    #[error("bus: {0}")]
    Bus(#[from] dispute_bus::NatsFailure),
}

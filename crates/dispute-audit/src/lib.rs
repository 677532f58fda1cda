//! Audits from the log: the hash chain of every stream checked end to end (and each stream's
//! head against its published copy), a dispute replayed as of any instant, the views rebuilt
//! aside and compared with the live ones, and a dispute's full record as one document.
//!
//! Invariant: an audit never writes an event or a live view. Drift builds its own tables
//! aside and drops them.
//! Invariant: [`replay`] and [`EventRecord::of`] are pure; everything that reads the store or the
//! bus is async and says so.

mod drift;
mod export;
mod published;
mod replay;
mod synthetic;
mod verify;

pub use dispute_store::chain::{BreakKind, ChainBreak};
pub use drift::{DriftRow, drift};
pub use export::{BreakRecord, ChainCheck, EventRecord, export};
pub use published::{PublishedCheck, compare_with_published};
pub use replay::{Replayable, Replayed, ReplayedRecord, replay};
pub use synthetic::{EVENTS_PER_ORDER, load_synthetic};
pub use verify::{Head, HeadsRecord, VerifyReport, for_each_stream, verify};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("event store: {0}")]
    Store(#[from] dispute_store::StoreError),
    #[error("views: {0}")]
    Views(#[from] dispute_views::ViewError),
    #[error("{order_id} sequence {sequence}: {reason}")]
    Event { order_id: String, sequence: u64, reason: String },
    #[error("NATS: {0}")]
    Nats(#[from] dispute_bus::NatsFailure),
}

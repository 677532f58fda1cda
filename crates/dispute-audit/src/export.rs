//! `disputes audit export`: one dispute's full record as one JSON document: its events with
//! their hashes, the chain check, the state replayed from them, and its live views.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use dispute_store::chain::verify_stream;
use dispute_store::{Store, StoredEvent};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{AuditError, replay};

/// One stored event as auditors see it: every stored field plus its `hash` and `prevhash`
/// (also present in `metadata`, where they are stored).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventRecord {
    pub order_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    /// The event, externally tagged: `{"RefundRequested": {…}}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
    /// The stored metadata: actor, time, correlation id, idempotency key, hashes.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Value,
    /// Absent only on a stream written before the chain existed, or tampered with.
    pub hash: Option<String>,
    pub prevhash: Option<String>,
}

impl EventRecord {
    /// Pure.
    pub fn of(event: &StoredEvent) -> Self {
        Self {
            order_id: event.order_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
            hash: event.hash().map(str::to_string),
            prevhash: event.prevhash().map(str::to_string),
        }
    }
}

/// The chain check of one stream's events.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainCheck {
    /// No break found: every event's hash is its content's, and links to the one before.
    pub intact: bool,
    pub breaks: Vec<BreakRecord>,
}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakRecord {
    pub sequence: u64,
    pub problem: String,
}

impl ChainCheck {
    /// Checks one stream's events, in sequence order. Pure.
    pub fn of(events: &[StoredEvent]) -> Self {
        let breaks = verify_stream(events.iter().map(StoredEvent::hashed));
        Self {
            intact: breaks.is_empty(),
            breaks: breaks
                .iter()
                .map(|b| BreakRecord { sequence: b.sequence, problem: b.to_string() })
                .collect(),
        }
    }
}

/// The full record of `order_id`, or `None` when it has no events.
pub async fn export(store: &Arc<Store>, order_id: &str) -> Result<Option<Value>, AuditError> {
    let events = store.whole_stream(order_id).await?;
    let Some(last) = events.last() else { return Ok(None) };
    // A stream that was tampered with may not replay; the record says so and goes on.
    let state = match replay(&events, None) {
        Ok(state) => state.map(|s| json!(s.record())).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let views = dispute_views::Views::new(store.clone());
    let view = views.dispute(order_id).await?;
    let timeline = views.timeline(order_id).await?;
    Ok(Some(json!({
        "dispute_id": order_id,
        "exported_at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "sequence": last.sequence,
        "chain": ChainCheck::of(&events),
        "events": events.iter().map(EventRecord::of).collect::<Vec<_>>(),
        "state": state,
        "views": { "dispute": view, "timeline": timeline },
    })))
}

//! `disputes audit export`: one dispute's full record as one JSON document: its events with
//! their hashes, the chain check, the state replayed from them, and its live views.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use dispute_store::chain::verify_stream;
use dispute_store::{Store, StoredEvent};
use serde_json::{Value, json};

use crate::{AuditError, replay};

/// One stored event as auditors see it: every stored field plus its `hash` and `prevhash`
/// (also present in `metadata`, where they are stored). Pure.
pub fn event_json(event: &StoredEvent) -> Value {
    json!({
        "order_id": event.order_id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "payload": event.payload,
        "metadata": event.metadata,
        "hash": event.hash(),
        "prevhash": event.prevhash(),
    })
}

/// The chain check of one stream's events, as JSON.
pub fn chain_json(events: &[StoredEvent]) -> Value {
    let breaks = verify_stream(events.iter().map(StoredEvent::hashed));
    json!({
        "intact": breaks.is_empty(),
        "breaks": breaks.iter().map(|b| json!({ "sequence": b.sequence, "problem": b.to_string() })).collect::<Vec<_>>(),
    })
}

/// The full record of `order_id`, or `None` when it has no events.
pub async fn export(store: &Arc<Store>, order_id: &str) -> Result<Option<Value>, AuditError> {
    let events = store.whole_stream(order_id).await?;
    let Some(last) = events.last() else { return Ok(None) };
    // A stream that was tampered with may not replay; the record says so and goes on.
    let state = match replay(&events, None) {
        Ok(state) => state.map(|s| s.to_json()).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let views = dispute_views::Views::new(store.clone());
    let view = views.dispute(order_id).await?;
    let timeline = views.timeline(order_id).await?;
    Ok(Some(json!({
        "dispute_id": order_id,
        "exported_at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "sequence": last.sequence,
        "chain": chain_json(&events),
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "state": state,
        "views": { "dispute": view, "timeline": timeline },
    })))
}

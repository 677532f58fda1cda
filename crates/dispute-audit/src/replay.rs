//! A dispute's state rebuilt from its events as of an instant: the events whose metadata
//! `time` is at or before it, folded in sequence order. Pure.

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::Aggregate;
use dispute_domain::{CloseReason, Dispute, DisputeEvent, Money, Status};
use dispute_store::{RawEvent, StoredEvent};
use serde::Serialize;
use serde_json::Value;

use crate::AuditError;

/// The state of one dispute as of an instant.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub dispute_id: String,
    pub as_of: Option<DateTime<Utc>>,
    /// The last event folded.
    pub sequence: u64,
    /// The `time` of that event.
    pub time: DateTime<Utc>,
    pub state: Dispute,
}

/// One stored event as replay reads it: parsed ([`StoredEvent`]) or still the stored text
/// ([`RawEvent`], which a replay of the whole log reads without parsing into JSON values first).
pub trait Replayable {
    fn order_id(&self) -> &str;
    fn sequence(&self) -> u64;
    /// Its metadata's `time`.
    fn time(&self) -> Option<DateTime<Utc>>;
    fn event(&self) -> Result<DisputeEvent, serde_json::Error>;
}

impl Replayable for StoredEvent {
    fn order_id(&self) -> &str {
        &self.order_id
    }
    fn sequence(&self) -> u64 {
        self.sequence
    }
    fn time(&self) -> Option<DateTime<Utc>> {
        StoredEvent::time(self)
    }
    fn event(&self) -> Result<DisputeEvent, serde_json::Error> {
        self.payload_as()
    }
}

impl Replayable for RawEvent {
    fn order_id(&self) -> &str {
        &self.order_id
    }
    fn sequence(&self) -> u64 {
        self.sequence
    }
    fn time(&self) -> Option<DateTime<Utc>> {
        RawEvent::time(self)
    }
    fn event(&self) -> Result<DisputeEvent, serde_json::Error> {
        self.payload_as()
    }
}

/// Folds `events` (one stream, in sequence order) up to `as_of` (all when `None`).
///
/// The stream's prefix whose times are at or before `as_of` is folded; `None` when no event
/// had happened yet.
pub fn replay<E: Replayable>(
    events: &[E],
    as_of: Option<DateTime<Utc>>,
) -> Result<Option<Replayed>, AuditError> {
    let mut replayed: Option<Replayed> = None;
    for event in events {
        let failed = |reason: String| AuditError::Event {
            order_id: event.order_id().to_string(),
            sequence: event.sequence(),
            reason,
        };
        let time = event.time().ok_or_else(|| failed("no RFC 3339 time in its metadata".to_string()))?;
        if as_of.is_some_and(|as_of| time > as_of) {
            break;
        }
        let domain_event = event.event().map_err(|e| failed(e.to_string()))?;
        let current = replayed.get_or_insert_with(|| Replayed {
            dispute_id: event.order_id().to_string(),
            as_of,
            sequence: 0,
            time,
            state: Dispute::default(),
        });
        // A stream that was tampered with can hold an event its state cannot take (the
        // aggregate asserts its own invariants); report it instead of failing the audit.
        let state = &mut current.state;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.apply(domain_event)))
            .map_err(|_| failed("does not apply to the state before it".to_string()))?;
        current.sequence = event.sequence();
        current.time = time;
    }
    Ok(replayed)
}

impl Replayed {
    /// The answer of `disputes audit replay` and `GET /v1/audit/disputes/{id}`.
    /// What auditors read: the headline fields, and the whole state.
    pub fn record(&self) -> ReplayedRecord {
        let state = &self.state;
        ReplayedRecord {
            dispute_id: self.dispute_id.clone(),
            as_of: self.as_of.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            sequence: self.sequence,
            time: self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            status: state.status(),
            close_reason: state.close_reason(),
            round: state.round(),
            refunded_total: state.refunded_total(),
            state: serde_json::to_value(state).expect("the state serializes"),
        }
    }
}

/// A dispute's state replayed as of an instant, as auditors read it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayedRecord {
    pub dispute_id: String,
    /// The instant asked for; `null` for the latest state.
    pub as_of: Option<String>,
    /// The last event folded.
    pub sequence: u64,
    /// That event's time.
    pub time: String,
    pub status: Status,
    pub close_reason: Option<CloseReason>,
    pub round: u32,
    /// `null` before the order is registered.
    pub refunded_total: Option<Money>,
    /// The whole aggregate state after the last event folded.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub state: Value,
}

#[cfg(test)]
mod tests {
    use dispute_domain::{Money, OrderFacts, PaymentChannel, Status};
    use dispute_store::Cursor;
    use serde_json::json;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        "2026-06-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
    }

    fn stored(sequence: u64, minutes: i64, event: &DisputeEvent) -> StoredEvent {
        StoredEvent {
            order_id: "o-1".to_string(),
            sequence,
            event_type: "T".to_string(),
            event_version: "1".to_string(),
            payload: serde_json::to_value(event).unwrap(),
            metadata: json!({ "time": at(minutes).to_rfc3339() }),
            cursor: Cursor::default(),
        }
    }

    fn stream() -> Vec<StoredEvent> {
        let facts = OrderFacts {
            order_id: "o-1".to_string(),
            buyer_id: "b-1".to_string(),
            merchant_id: "m-1".to_string(),
            paid_amount: Money::new(10_000, "CNY"),
            paid_at: at(-60),
            category: "books".to_string(),
            payment_channel: PaymentChannel::Alipay,
            shipped_at: None,
            delivered_at: None,
        };
        vec![
            stored(1, 0, &DisputeEvent::OrderRegistered { facts }),
            stored(2, 10, &DisputeEvent::RequestWithdrawn { round: 1, note: None }),
        ]
    }

    #[test]
    fn nothing_before_the_first_event() {
        assert!(replay(&stream(), Some(at(-1))).unwrap().is_none());
    }

    #[test]
    fn each_instant_sees_the_events_up_to_it() {
        let events = stream();
        let first = replay(&events, Some(at(0))).unwrap().unwrap();
        assert_eq!((first.sequence, first.state.status()), (1, Status::Open));
        let between = replay(&events, Some(at(9))).unwrap().unwrap();
        assert_eq!(between.sequence, 1);
        let all = replay(&events, None).unwrap().unwrap();
        assert_eq!((all.sequence, all.state.status()), (2, Status::Closed));
        assert_eq!(all.record().status, Status::Closed);
    }

    #[test]
    fn the_stored_text_replays_as_the_parsed_events() {
        let events = stream();
        let text = |e: &StoredEvent| RawEvent {
            order_id: e.order_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload.to_string(),
            metadata: e.metadata.to_string(),
        };
        let raw: Vec<RawEvent> = events.iter().map(text).collect();
        let (parsed, read) = (replay(&events, None).unwrap().unwrap(), replay(&raw, None).unwrap().unwrap());
        assert_eq!((read.sequence, read.time), (parsed.sequence, parsed.time));
        assert_eq!(read.record().state, parsed.record().state);

        // A repeated key reads as parsing collapses it: the last one counts.
        let mut repeated = raw;
        repeated[1].metadata =
            format!(r#"{{"time":"{}","time":"{}"}}"#, at(500).to_rfc3339(), at(10).to_rfc3339());
        assert_eq!(replay(&repeated, Some(at(10))).unwrap().unwrap().sequence, 2);
    }

    #[test]
    fn an_event_without_a_time_is_an_error() {
        let mut events = stream();
        events[1].metadata = json!({});
        assert!(matches!(replay(&events, None), Err(AuditError::Event { sequence: 2, .. })));
    }
}

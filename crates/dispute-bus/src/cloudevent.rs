//! The wire shape of a published event: CloudEvents 1.0, JSON structured mode, with the
//! extensions `sequence`, `actor`, `hash`, `prevhash` and `correlationid`.

use dispute_store::{EventMetadata, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `D` is the data: owned as read off the stream, borrowed from the stored event when published
/// ([`CloudEvent::from_stored`]), so that publishing copies none of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent<D = Value> {
    pub specversion: String,
    /// `<order_id>:<sequence>`, also the JetStream message id (de-duplication).
    pub id: String,
    pub source: String,
    /// `disputes.<EventType>.v<version>`, e.g. `disputes.RefundRequested.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The order id.
    pub subject: String,
    pub time: String,
    pub datacontenttype: String,
    /// The event's fields (the payload without its type tag).
    pub data: D,
    pub sequence: u64,
    /// `<role>:<id>` of who caused the event.
    pub actor: String,
    pub hash: String,
    pub prevhash: String,
    /// The `correlation_id` of the request that caused the event (its `X-Correlation-Id`).
    /// Absent from events published before it was added, hence optional on the wire.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub correlationid: String,
}

impl<'a> CloudEvent<&'a Value> {
    pub fn from_stored(event: &'a StoredEvent, source: &str) -> Self {
        // Metadata that does not read is published empty rather than stopping the relay.
        let meta = event.typed_metadata().ok();
        let meta = meta.as_ref();
        let text = |field: fn(&EventMetadata) -> Option<String>| meta.and_then(field).unwrap_or_default();
        let data = event.payload.get(&event.event_type).unwrap_or(&event.payload);
        Self {
            specversion: "1.0".to_string(),
            id: message_id(&event.order_id, event.sequence),
            source: source.to_string(),
            event_type: format!("disputes.{}.v{}", event.event_type, event.event_version),
            subject: event.order_id.clone(),
            time: text(|m| Some(m.time_text())),
            datacontenttype: "application/json".to_string(),
            data,
            sequence: event.sequence,
            actor: format!(
                "{}:{}",
                text(|m| Some(m.actor_role.as_str().to_string())),
                text(|m| Some(m.actor_id.clone()))
            ),
            hash: text(|m| m.hash.clone()),
            prevhash: text(|m| m.prevhash.clone()),
            correlationid: text(|m| Some(m.correlation_id.clone())),
        }
    }
}

impl<D> CloudEvent<D> {
    /// The event type's name, as the store records it (`RefundRequested` of
    /// `disputes.RefundRequested.v1`); `None` if `type` is not of that form.
    pub fn event_name(&self) -> Option<&str> {
        Some(self.event_type.strip_prefix("disputes.")?.rsplit_once(".v")?.0)
    }
}

impl CloudEvent {
    /// The stored payload again (`{"<EventType>": data}`), for readers that fold events: the
    /// data moves into it.
    pub fn into_payload(self) -> Option<Value> {
        let name = self.event_name()?.to_string();
        Some(Value::Object(serde_json::Map::from_iter([(name, self.data)])))
    }
}

pub fn message_id(order_id: &str, sequence: u64) -> String {
    format!("{order_id}:{sequence}")
}

/// The order id and sequence of a [`message_id`]; `None` if it is not one.
pub fn parse_message_id(id: &str) -> Option<(&str, u64)> {
    let (order_id, sequence) = id.rsplit_once(':')?;
    Some((order_id, sequence.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_names_its_order_and_sequence() {
        assert_eq!(parse_message_id(&message_id("o:1", 7)), Some(("o:1", 7)));
        assert_eq!(parse_message_id("o-1"), None);
        assert_eq!(parse_message_id("o-1:x"), None);
    }

    #[test]
    fn the_event_name_is_the_type_without_its_prefix_and_version() {
        let event = |event_type: &str| CloudEvent {
            specversion: "1.0".to_string(),
            id: "o-1:1".to_string(),
            source: "disputes".to_string(),
            event_type: event_type.to_string(),
            subject: "o-1".to_string(),
            time: "2026-06-01T08:00:00.000000Z".to_string(),
            datacontenttype: "application/json".to_string(),
            data: Value::Null,
            sequence: 1,
            actor: "buyer:b-1".to_string(),
            hash: String::new(),
            prevhash: String::new(),
            correlationid: String::new(),
        };
        assert_eq!(event("disputes.RefundRequested.v1").event_name(), Some("RefundRequested"));
        assert_eq!(event("disputes.RefundRequested").event_name(), None);
        assert_eq!(event("other.RefundRequested.v1").event_name(), None);
    }
}

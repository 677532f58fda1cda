//! The metadata every event is stored with (`docs/events.md`): who and what caused it, when,
//! under which request, and its place in the hash chain. Declared once here; the store writes
//! it, the chain hashes it and readers parse it with [`crate::StoredEvent::typed_metadata`].
//!
//! The JSON is what the hash covers ([`crate::chain`]): an object of string values whose keys
//! are the field names, `idempotency_key` left out when absent. `prevhash` and `hash` are
//! added by the chain and absent from events written before the chain existed.

use chrono::{DateTime, SecondsFormat, Utc};
use dispute_domain::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor_role: Role,
    pub actor_id: String,
    /// The name of the command that caused the event (`request`, `merchant_reject`, …).
    pub command: String,
    /// When the command was executed, by the service clock; stored with microseconds.
    #[serde(with = "micros")]
    pub time: DateTime<Utc>,
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The `hash` of the stream's previous event ([`crate::chain::GENESIS`] for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prevhash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl EventMetadata {
    /// The stored JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("metadata of strings serializes")
    }

    /// `time` as stored.
    pub fn time_text(&self) -> String {
        format_time(&self.time)
    }

    /// The `time` of a stored metadata object alone.
    pub(crate) fn time_of(metadata: &Value) -> Option<DateTime<Utc>> {
        Time::deserialize(metadata).ok().map(|t| t.time)
    }

    /// [`EventMetadata::time_of`] the stored text, read without parsing the rest; parsed
    /// whole when that fails (a repeated key, which parsing collapses), so both read alike.
    pub(crate) fn time_in_text(metadata: &str) -> Option<DateTime<Utc>> {
        match serde_json::from_str::<Time>(metadata) {
            Ok(t) => Some(t.time),
            Err(_) => serde_json::from_str::<Value>(metadata).ok().as_ref().and_then(Self::time_of),
        }
    }
}

/// A metadata object's `time` alone.
#[derive(Deserialize)]
struct Time {
    #[serde(with = "micros")]
    time: DateTime<Utc>,
}

/// RFC 3339 in UTC with exactly six fractional digits and `Z`, as every event's `time`.
mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn metadata(idempotency_key: Option<&str>) -> EventMetadata {
        EventMetadata {
            actor_role: Role::Buyer,
            actor_id: "b-1".to_string(),
            command: "request".to_string(),
            time: "2026-06-01T08:00:00.5Z".parse().unwrap(),
            correlation_id: "c-1".to_string(),
            idempotency_key: idempotency_key.map(str::to_string),
            prevhash: None,
            hash: None,
        }
    }

    #[test]
    fn the_stored_json_has_the_documented_keys_and_string_values() {
        assert_eq!(
            metadata(None).to_value(),
            json!({
                "actor_role": "buyer",
                "actor_id": "b-1",
                "command": "request",
                "time": "2026-06-01T08:00:00.500000Z",
                "correlation_id": "c-1",
            })
        );
        assert_eq!(metadata(Some("k-1")).to_value()["idempotency_key"], json!("k-1"));
    }

    #[test]
    fn the_chain_keys_are_the_chains_own() {
        let mut chained = metadata(None);
        chained.prevhash = Some("p".to_string());
        chained.hash = Some("h".to_string());
        let value = chained.to_value();
        assert_eq!(value[crate::chain::PREVHASH_KEY], json!("p"));
        assert_eq!(value[crate::chain::HASH_KEY], json!("h"));
    }

    #[test]
    fn stored_metadata_reads_back_unchanged() {
        let mut chained = metadata(Some("k-1"));
        chained.prevhash = Some(crate::chain::GENESIS.to_string());
        chained.hash = Some("h".to_string());
        let read: EventMetadata = serde_json::from_value(chained.to_value()).unwrap();
        assert_eq!(read, chained);
        let unchained: EventMetadata = serde_json::from_value(metadata(None).to_value()).unwrap();
        assert_eq!(unchained, metadata(None));
    }
}

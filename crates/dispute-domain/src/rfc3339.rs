//! How every instant is written: RFC 3339 in UTC with six fractional digits
//! (`2026-06-01T08:00:00.000000Z`), the precision of the events' metadata `time` and of
//! PostgreSQL's timestamps. Fields take it with `#[serde(with = "dispute_domain::rfc3339")]`
//! (or `rfc3339::option`); reading accepts any RFC 3339 instant, so what was written before
//! in another precision still reads.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The one written form of an instant.
pub fn format(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(time))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    DateTime::<Utc>::deserialize(deserializer)
}

/// The same, for an optional instant.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_some(&super::format(time)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct At {
        #[serde(with = "super")]
        at: DateTime<Utc>,
        #[serde(with = "option", default)]
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn instants_are_written_with_microseconds_and_read_in_any_precision() {
        let whole: DateTime<Utc> = "2026-06-01T08:00:00Z".parse().unwrap();
        let fine: DateTime<Utc> = "2026-06-01T08:00:00.123456789Z".parse().unwrap();
        let json = serde_json::to_value(At { at: whole, maybe: Some(fine) }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "at": "2026-06-01T08:00:00.000000Z", "maybe": "2026-06-01T08:00:00.123456Z" })
        );
        let read: At =
            serde_json::from_value(serde_json::json!({ "at": "2026-06-01T10:00:00+02:00" })).unwrap();
        assert_eq!(read, At { at: whole, maybe: None });
    }
}

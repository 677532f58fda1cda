//! NATS JetStream: the stream of API.md and publishing to it. Works with NATS 2.9 and newer;
//! only 2.9 features are used (one stream, plain publishes with `Nats-Msg-Id` de-duplication).

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use dispute_store::StoredEvent;

use crate::{BusError, CloudEvent, NatsFailure};

/// The oldest server this service supports.
const MIN_SERVER: (u64, u64) = (2, 9);

/// A connection to NATS and the JetStream stream events are published to.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    /// `<lowercase stream>.events`; an event's subject is `<prefix>.<order_id>`.
    subject_prefix: String,
    source: String,
}

impl NatsBus {
    /// Connects to `urls` (comma-separated). The connection retries in the background when the
    /// servers are down at start, so the service starts and accepts commands without NATS.
    pub async fn connect(urls: &str, stream: &str) -> Result<Self, BusError> {
        let addrs: Vec<async_nats::ServerAddr> = urls
            .split(',')
            .map(|u| u.trim().parse().map_err(|e| BusError::Config(format!("NATS_URL {u:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .name("disputes")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(addrs)
            .await
            .map_err(NatsFailure::of("connecting"))?;
        let lower = stream.to_lowercase();
        Ok(Self {
            jetstream: jetstream::new(client.clone()),
            client,
            stream: stream.to_string(),
            subject_prefix: format!("{lower}.events"),
            source: format!("urn:disputes:{lower}"),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    pub fn subject(&self, order_id: &str) -> String {
        format!("{}.{order_id}", self.subject_prefix)
    }

    /// Checks the server version and creates the stream if it is missing.
    pub async fn ensure_stream(&self) -> Result<(), BusError> {
        let version = self.client.server_info().version;
        if !version.is_empty() && !supported(&version) {
            return Err(BusError::Config(format!(
                "NATS server {version} is too old: JetStream 2.9 or newer is required"
            )));
        }
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.subject_prefix)],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                // The published copy is the audit's evidence against a truncated log: no
                // client may delete or purge single messages (the stream itself can still be
                // deleted by an account allowed to).
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await
            .map_err(NatsFailure::of("creating the stream"))?;
        Ok(())
    }

    /// Publishes a batch and waits until JetStream has stored every message.
    pub async fn publish(&self, events: &[StoredEvent]) -> Result<(), BusError> {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let cloud_event = CloudEvent::from_stored(event, &self.source);
            let body = serde_json::to_vec(&cloud_event).expect("a CloudEvent serializes");
            let message =
                PublishMessage::build().payload(Bytes::from(body)).message_id(cloud_event.id.clone());
            let ack = self
                .jetstream
                .send_publish(self.subject(&event.order_id), message)
                .await
                .map_err(NatsFailure::of("publishing"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(NatsFailure::of("waiting for JetStream to store a message"))?;
        }
        Ok(())
    }
}

/// `major.minor` at least [`MIN_SERVER`].
fn supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= MIN_SERVER
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_from_2_9_are_supported() {
        assert!(super::supported("2.9.10"));
        assert!(super::supported("2.10.0"));
        assert!(super::supported("3.0.0"));
        assert!(!super::supported("2.8.4"));
        assert!(!super::supported("1.12.0"));
    }
}

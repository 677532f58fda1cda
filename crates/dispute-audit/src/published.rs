//! Each stream's head compared with its copy on the JetStream stream, where the relay
//! published every event. A writer of the events table who removes a stream's last events
//! (or the whole stream) and leaves a valid chain behind still differs from what was
//! published: this is the check that catches truncation.

use std::collections::HashSet;

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use dispute_bus::{CloudEvent, NatsBus, NatsFailure};
use dispute_store::chain::{BreakKind, ChainBreak};
use futures_util::{StreamExt, TryStreamExt};

use crate::{AuditError, Head};

/// Lookups of last messages in flight at once.
const CONCURRENT_LOOKUPS: usize = 32;

#[derive(Debug, Default)]
pub struct PublishedCheck {
    /// Streams whose last stored event matches its published copy.
    pub matching: u64,
    /// Streams whose last events are not published yet (the relay is behind, or none).
    pub unpublished: u64,
    pub breaks: Vec<ChainBreak>,
}

/// Compares `heads` with the last published event of each stream. With `whole_log`, also
/// looks for published streams that have no events in the log at all.
pub async fn compare_with_published(
    bus: &NatsBus,
    heads: &[Head],
    whole_log: bool,
) -> Result<PublishedCheck, AuditError> {
    let stream = bus
        .jetstream()
        .get_stream(bus.stream_name())
        .await
        .map_err(NatsFailure::of("looking up the stream"))?;
    let mut check = PublishedCheck::default();
    let mut lookups = futures_util::stream::iter(heads)
        .map(|head| {
            let stream = &stream;
            async move { last_published(stream, &bus.subject(&head.order_id)).await.map(|last| (head, last)) }
        })
        .buffer_unordered(CONCURRENT_LOOKUPS);
    while let Some(result) = lookups.next().await {
        let (head, last) = result?;
        let at = |sequence, kind| ChainBreak { order_id: head.order_id.clone(), sequence, kind };
        match last {
            Some((published, _)) if published > head.sequence => {
                check.breaks.push(at(head.sequence + 1, BreakKind::Truncated { recorded: published }))
            }
            Some((published, hash)) if published == head.sequence && hash != head.hash => {
                check.breaks.push(at(head.sequence, BreakKind::DiffersFromRecord))
            }
            Some((published, _)) if published == head.sequence => check.matching += 1,
            _ => check.unpublished += 1,
        }
    }
    drop(lookups);
    if whole_log {
        let prefix = bus.subject("");
        let stored: HashSet<&str> = heads.iter().map(|h| h.order_id.as_str()).collect();
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(NatsFailure::of("listing the stream's subjects"))?;
        let mut missing = Vec::new();
        while let Some((subject, _count)) =
            subjects.try_next().await.map_err(NatsFailure::of("listing the stream's subjects"))?
        {
            let order_id = subject.strip_prefix(&prefix).unwrap_or(&subject);
            if !stored.contains(order_id) {
                missing.push((order_id.to_string(), subject));
            }
        }
        for (order_id, subject) in missing {
            if let Some((published, _)) = last_published(&stream, &subject).await? {
                check.breaks.push(ChainBreak {
                    order_id,
                    sequence: 1,
                    kind: BreakKind::Truncated { recorded: published },
                });
            }
        }
    }
    check.breaks.sort_by(|a, b| (&a.order_id, a.sequence).cmp(&(&b.order_id, b.sequence)));
    Ok(check)
}

/// The sequence and hash of the last event published on `subject`, if any.
async fn last_published(stream: &Stream, subject: &str) -> Result<Option<(u64, String)>, AuditError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => {
            let event: CloudEvent = serde_json::from_slice(&message.payload)
                .map_err(|e| NatsFailure::new(format!("reading {subject}: not a CloudEvent"), e))?;
            Ok(Some((event.sequence, event.hash)))
        }
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(NatsFailure::new(format!("reading the last message of {subject}"), e).into()),
    }
}

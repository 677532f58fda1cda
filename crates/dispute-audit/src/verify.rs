//! `disputes audit verify`: every stream's hash chain, read from the log in stream order.
//!
//! The log is read in batches by one task while this one checks the chains, so reading
//! (and JSON parsing) and hashing use two cores.

use std::sync::Arc;

use dispute_store::chain::{ChainBreak, verify_stream};
use dispute_store::{Store, StoreError, StoredEvent};

use crate::AuditError;

/// Events read per query.
const BATCH: i64 = 10_000;

/// The last event of one stream as stored: what its published copy is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub order_id: String,
    pub sequence: u64,
    /// Empty when the event has no hash.
    pub hash: String,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    /// Every break found, stream by stream, in sequence order.
    pub breaks: Vec<ChainBreak>,
    /// Each stream's last stored event.
    pub heads: Vec<Head>,
}

impl VerifyReport {
    fn check(&mut self, stream: &[StoredEvent]) {
        let Some(last) = stream.last() else { return };
        self.breaks.extend(verify_stream(stream.iter().map(StoredEvent::hashed)));
        self.streams += 1;
        self.events += stream.len() as u64;
        self.heads.push(Head {
            order_id: last.order_id.clone(),
            sequence: last.sequence,
            hash: last.hash().unwrap_or_default().to_string(),
        });
    }
}

/// Checks the chain of `order` (every stream when `None`). `progress(done, total)` is called
/// after each batch.
pub async fn verify(
    store: &Arc<Store>,
    order: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    if let Some(order) = order {
        let events = store.whole_stream(order).await?;
        report.check(&events);
        progress(report.events, report.events);
        return Ok(report);
    }
    let total = store.count_events().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<StoredEvent>, StoreError>>(4);
    let reader_store = store.clone();
    let reader = tokio::spawn(async move {
        let mut after: Option<(String, u64)> = None;
        loop {
            let batch = reader_store
                .events_in_stream_order(after.as_ref().map(|(o, s)| (o.as_str(), *s)), BATCH)
                .await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let Some(last) = batch.last() else { return };
            after = Some((last.order_id.clone(), last.sequence));
            let more = batch.len() as i64 == BATCH;
            if tx.send(Ok(batch)).await.is_err() || !more {
                return;
            }
        }
    });
    // The stream being read; a stream can span batches.
    let mut current: Vec<StoredEvent> = Vec::new();
    let mut read = 0u64;
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        read += batch.len() as u64;
        for event in batch {
            if current.first().is_some_and(|first| first.order_id != event.order_id) {
                report.check(&current);
                current.clear();
            }
            current.push(event);
        }
        progress(read, total.max(read));
    }
    report.check(&current);
    let _ = reader.await;
    Ok(report)
}

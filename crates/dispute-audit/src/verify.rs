//! `disputes audit verify`: every stream's hash chain, read from the log in stream order, and
//! optionally each stream's head compared with a heads file saved by an earlier verify.
//!
//! The log is read in batches by one task while the caller's task checks the chains, so
//! reading (and JSON parsing) and hashing use two cores.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use dispute_store::chain::{BreakKind, ChainBreak, verify_stream};
use dispute_store::{Store, StoreError, StoredEvent};
use serde::{Deserialize, Serialize};

use crate::AuditError;

/// Events read per query.
const BATCH: i64 = 10_000;

/// The last event of one stream: what its published or saved copy is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub order_id: String,
    pub sequence: u64,
    /// Empty when the event has no hash.
    pub hash: String,
}

/// Stream heads saved by an earlier verify (`--save-heads`), by order id.
#[derive(Debug, Clone, Default)]
pub struct HeadsRecord(BTreeMap<String, Head>);

impl HeadsRecord {
    /// Parses a heads file: one JSON object `{"order_id","sequence","hash"}` per line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut heads = BTreeMap::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let head: Head = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            heads.insert(head.order_id.clone(), head);
        }
        Ok(Self(heads))
    }

    /// The heads file of `heads`: one line per stream, sorted by order id.
    pub fn render(heads: &[Head]) -> String {
        let mut sorted: Vec<&Head> = heads.iter().collect();
        sorted.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        sorted.iter().map(|h| serde_json::to_string(h).expect("a head serializes") + "\n").collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
    fn check(&mut self, stream: &[StoredEvent], record: Option<&HeadsRecord>) {
        let Some(last) = stream.last() else { return };
        self.breaks.extend(verify_stream(stream.iter().map(StoredEvent::hashed)));
        if let Some(recorded) = record.and_then(|r| r.0.get(&last.order_id)) {
            self.breaks.extend(compare_head(stream, recorded));
        }
        self.streams += 1;
        self.events += stream.len() as u64;
        self.heads.push(Head {
            order_id: last.order_id.clone(),
            sequence: last.sequence,
            hash: last.hash().unwrap_or_default().to_string(),
        });
    }

    /// Streams on record that have no event in the log at all.
    fn check_vanished(&mut self, record: &HeadsRecord, only: Option<&str>) {
        let seen: HashSet<&str> = self.heads.iter().map(|h| h.order_id.as_str()).collect();
        let vanished = record
            .0
            .values()
            .filter(|h| only.is_none_or(|o| o == h.order_id) && !seen.contains(h.order_id.as_str()));
        let breaks: Vec<ChainBreak> = vanished
            .map(|h| ChainBreak {
                order_id: h.order_id.clone(),
                sequence: 1,
                kind: BreakKind::Truncated { recorded: h.sequence },
            })
            .collect();
        self.breaks.extend(breaks);
    }
}

/// A stream against the head recorded for it: still there, with the same hash.
fn compare_head(stream: &[StoredEvent], recorded: &Head) -> Option<ChainBreak> {
    let last = stream.last()?;
    let at = |sequence, kind| ChainBreak { order_id: last.order_id.clone(), sequence, kind };
    if recorded.sequence > last.sequence {
        return Some(at(last.sequence + 1, BreakKind::Truncated { recorded: recorded.sequence }));
    }
    let stored = stream.iter().find(|e| e.sequence == recorded.sequence);
    match stored {
        Some(event) if event.hash() == Some(recorded.hash.as_str()) => None,
        _ => Some(at(recorded.sequence, BreakKind::DiffersFromRecord)),
    }
}

/// Checks the chain of `order` (every stream when `None`), and each stream's head against
/// `record` when given. `progress(done, total)` is called after each batch.
pub async fn verify(
    store: &Arc<Store>,
    order: Option<&str>,
    record: Option<&HeadsRecord>,
    progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    match order {
        Some(order) => {
            let events = store.whole_stream(order).await?;
            report.check(&events, record);
        }
        None => {
            for_each_stream(store, progress, |stream| report.check(stream, record)).await?;
        }
    }
    if let Some(record) = record {
        report.check_vanished(record, order);
    }
    Ok(report)
}

/// Calls `f` with every stream of the log, whole and in sequence order, streams in order id
/// order. One task reads batches while `f` runs on the caller's. Returns the events read.
pub async fn for_each_stream(
    store: &Arc<Store>,
    mut progress: impl FnMut(u64, u64),
    mut f: impl FnMut(&[StoredEvent]),
) -> Result<u64, AuditError> {
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
                f(&current);
                current.clear();
            }
            current.push(event);
        }
        progress(read, total.max(read));
    }
    f(&current);
    let _ = reader.await;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heads_file_round_trips() {
        let heads = vec![
            Head { order_id: "o-2".to_string(), sequence: 3, hash: "b".repeat(64) },
            Head { order_id: "o-1".to_string(), sequence: 1, hash: "a".repeat(64) },
        ];
        let text = HeadsRecord::render(&heads);
        assert!(text.starts_with("{\"order_id\":\"o-1\""));
        let record = HeadsRecord::parse(&text).unwrap();
        assert_eq!(record.len(), 2);
        assert_eq!(record.0["o-2"], heads[0]);
    }
}

//! `disputes audit verify`: every stream's hash chain, read from the log in stream order, and
//! optionally each stream's head compared with a heads file saved by an earlier verify.
//!
//! The store reads the log on one task while this one parses and hashes each batch and
//! links the events stream by stream.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use dispute_store::chain::{BreakKind, ChainBreak, Link, verify_links};
use dispute_store::{RawEvent, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::AuditError;

/// Events handed over at a time.
const BATCH: usize = 4_096;

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
    fn check(&mut self, stream: &[Link], record: Option<&HeadsRecord>) {
        let Some(last) = stream.last() else { return };
        self.breaks.extend(verify_links(stream));
        if let Some(recorded) = record.and_then(|r| r.0.get(&last.order_id)) {
            self.breaks.extend(compare_head(stream, recorded));
        }
        self.streams += 1;
        self.events += stream.len() as u64;
        self.heads.push(Head {
            order_id: last.order_id.clone(),
            sequence: last.sequence,
            hash: last.hash.clone().unwrap_or_default(),
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
fn compare_head(stream: &[Link], recorded: &Head) -> Option<ChainBreak> {
    let last = stream.last()?;
    let at = |sequence, kind| ChainBreak { order_id: last.order_id.clone(), sequence, kind };
    if recorded.sequence > last.sequence {
        return Some(at(last.sequence + 1, BreakKind::Truncated { recorded: recorded.sequence }));
    }
    let stored = stream.iter().find(|e| e.sequence == recorded.sequence);
    match stored {
        Some(link) if link.hash.as_deref() == Some(recorded.hash.as_str()) => None,
        _ => Some(at(recorded.sequence, BreakKind::DiffersFromRecord)),
    }
}

/// The links of raw events: parsed and hashed on this task while the store reads the next
/// batch. (Splitting a batch across threads was measured slower on two cores, where the
/// database needs the other one.)
fn links(batch: Vec<RawEvent>) -> Result<Vec<Link>, StoreError> {
    batch.into_iter().map(RawEvent::into_link).collect()
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
            let links: Vec<Link> = events.iter().map(|e| Link::of(&e.hashed())).collect();
            report.check(&links, record);
        }
        None => {
            let total = store.count_events().await?;
            let mut batches = store.scan_in_stream_order(BATCH);
            // The stream being read; a stream can span batches.
            let mut current: Vec<Link> = Vec::new();
            let mut read = 0u64;
            let mut progress = progress;
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                read += batch.len() as u64;
                for link in links(batch)? {
                    if current.first().is_some_and(|first| first.order_id != link.order_id) {
                        report.check(&current, record);
                        current.clear();
                    }
                    current.push(link);
                }
                progress(read, total.max(read));
            }
            report.check(&current, record);
        }
    }
    if let Some(record) = record {
        report.check_vanished(record, order);
    }
    Ok(report)
}

/// Calls `f` with every stream of the log, whole and in sequence order, streams in order id
/// order, its events still the stored text. The store reads on one task while this one runs
/// `f`. Returns the events read.
pub async fn for_each_stream(
    store: &Arc<Store>,
    mut progress: impl FnMut(u64, u64),
    mut f: impl FnMut(&[RawEvent]),
) -> Result<u64, AuditError> {
    let total = store.count_events().await?;
    let mut batches = store.scan_in_stream_order(BATCH);
    // The stream being read; a stream can span batches.
    let mut current: Vec<RawEvent> = Vec::new();
    let mut read = 0u64;
    while let Some(batch) = batches.next().await {
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

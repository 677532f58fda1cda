//! The heads of recently used streams, kept in this process so that a command need not read
//! and fold its order's whole stream again.
//!
//! A cached head may be behind the stream: another instance, or a command here that failed
//! after its commit, may have appended since. That is safe because a command trusts a cached
//! head only for an append, which the stream's primary key refuses if the head is behind (see
//! [`Store::execute`](crate::Store::execute)); every other outcome is decided again on the
//! stream as stored. So the cache relies on the log being append-only, as it is.

use std::sync::Mutex;

use dispute_domain::Dispute;
use hashlink::LruCache;

use crate::{Outcome, unpoisoned};

/// How many streams' heads a store keeps: about a kilobyte each.
pub(crate) const CAPACITY: usize = 10_000;

/// A stream's state as of its last event: what the next command is decided on and chained to.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub dispute: Dispute,
    /// The sequence of the last event (0 for an empty stream).
    pub sequence: u64,
    /// The `hash` of the last event ([`crate::chain::GENESIS`] for an empty stream).
    pub hash: String,
}

impl Head {
    /// The head of a stream with no events.
    pub fn empty() -> Self {
        Self { dispute: Dispute::default(), sequence: 0, hash: crate::chain::GENESIS.to_string() }
    }

    /// The state as a command's answer reports it.
    pub fn outcome(&self, order_id: &str) -> Outcome {
        let dispute = &self.dispute;
        Outcome {
            dispute_id: order_id.to_string(),
            sequence: self.sequence,
            status: dispute.status(),
            close_reason: dispute.close_reason(),
            round: dispute.round(),
            refunded_total: dispute
                .refunded_total()
                .expect("a committed or accepted command leaves a registered order"),
        }
    }
}

/// The least recently used heads are dropped first.
pub(crate) struct Heads {
    entries: Mutex<LruCache<String, Head>>,
}

impl Heads {
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(LruCache::new(capacity)) }
    }

    /// A copy of the head cached for `order_id`: a command works on its own copy, so that
    /// nothing it does reaches the cache unless it commits.
    pub fn get(&self, order_id: &str) -> Option<Head> {
        unpoisoned(&self.entries).get(order_id).cloned()
    }

    /// Keeps `head` unless the cache holds a later one of the stream already (a command in this
    /// process committed after `head` was read). An empty stream is not kept: commands on
    /// unknown orders would push out the heads of real ones.
    pub fn offer(&self, order_id: &str, head: Head) {
        if head.sequence == 0 {
            return;
        }
        let mut entries = unpoisoned(&self.entries);
        match entries.get_mut(order_id) {
            Some(cached) if cached.sequence > head.sequence => {}
            Some(cached) => *cached = head,
            None => {
                entries.insert(order_id.to_string(), head);
            }
        }
    }

    /// Forgets the head of `order_id`: the stream's state is unknown here.
    pub fn evict(&self, order_id: &str) {
        unpoisoned(&self.entries).remove(order_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(sequence: u64) -> Head {
        Head { dispute: Dispute::default(), sequence, hash: format!("hash-{sequence}") }
    }

    fn cached(heads: &Heads, order_id: &str) -> Option<u64> {
        heads.get(order_id).map(|head| head.sequence)
    }

    #[test]
    fn a_later_head_is_never_replaced_by_an_earlier_one() {
        let heads = Heads::new(4);
        heads.offer("o-1", head(3));
        heads.offer("o-1", head(2));
        assert_eq!(cached(&heads, "o-1"), Some(3));
        heads.offer("o-1", head(4));
        assert_eq!(cached(&heads, "o-1"), Some(4));
        heads.evict("o-1");
        assert_eq!(cached(&heads, "o-1"), None);
    }

    #[test]
    fn the_least_recently_used_head_goes_first() {
        let heads = Heads::new(2);
        heads.offer("o-1", head(1));
        heads.offer("o-2", head(1));
        assert_eq!(cached(&heads, "o-1"), Some(1), "o-1 is used again");
        heads.offer("o-3", head(1));
        assert_eq!(
            (cached(&heads, "o-1"), cached(&heads, "o-2"), cached(&heads, "o-3")),
            (Some(1), None, Some(1))
        );
    }

    #[test]
    fn an_empty_stream_is_not_kept() {
        let heads = Heads::new(2);
        heads.offer("o-404", head(0));
        assert_eq!(cached(&heads, "o-404"), None);
    }
}

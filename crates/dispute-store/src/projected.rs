//! What this process's projector has committed: the signal that wakes readers waiting for a
//! view to reach a sequence (`X-Min-Sequence`), and each recently projected order's view as it
//! was committed, so that such a reader is answered without reading it back.

use std::sync::{Arc, Mutex};

use hashlink::LruCache;
use tokio::sync::Notify;

use crate::unpoisoned;

/// How many orders' projected views are remembered: as many as the projector keeps.
const REMEMBERED: usize = 4096;

pub struct Projected {
    committed: Notify,
    /// Each recently projected order's view (JSON text) as this process committed it last, and
    /// the sequence it reflects.
    through: Mutex<LruCache<String, (u64, Arc<str>)>>,
    /// The last sequence of each order whose events this process's commands handed to its
    /// projector as they committed them ([`crate::Store::hand_commits_to`]).
    handed: Mutex<LruCache<String, u64>>,
}

impl Default for Projected {
    fn default() -> Self {
        Self {
            committed: Notify::new(),
            through: Mutex::new(LruCache::new(REMEMBERED)),
            handed: Mutex::new(LruCache::new(REMEMBERED)),
        }
    }
}

impl Projected {
    /// After the projector committed the views of `orders` (order, the sequence the view
    /// reflects, the view as JSON text): remembers them and wakes every waiting reader. A view
    /// behind one remembered is not.
    pub fn committed<'a>(&self, orders: impl IntoIterator<Item = (&'a str, u64, &'a str)>) {
        {
            let mut through = unpoisoned(&self.through);
            for (order_id, sequence, view) in orders {
                match through.get_mut(order_id) {
                    Some((known, _)) if *known >= sequence => {}
                    Some(known) => *known = (sequence, view.into()),
                    None => {
                        through.insert(order_id.to_string(), (sequence, view.into()));
                    }
                }
            }
        }
        self.committed.notify_waiters();
    }

    /// Completes after the projector's next commit; armed once enabled or first polled.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.committed.notified()
    }

    /// Whether this process's projector committed `order_id`'s view at `sequence` or later, as
    /// far as it remembers. `false` says nothing of the views other processes projected.
    pub fn reached(&self, order_id: &str, sequence: u64) -> bool {
        self.view(order_id, sequence).is_some()
    }

    /// `order_id`'s view as this process's projector last committed it, if that reflects
    /// `sequence` or later and is remembered. The view stored may be further on: another
    /// process may have projected it since.
    pub fn view(&self, order_id: &str, sequence: u64) -> Option<Arc<str>> {
        let mut through = unpoisoned(&self.through);
        through.get(order_id).filter(|(known, _)| *known >= sequence).map(|(_, view)| view.clone())
    }

    /// Notes that a command committed `order_id`'s events up to `sequence` and handed them to
    /// this process's projector.
    pub(crate) fn handing(&self, order_id: &str, sequence: u64) {
        let mut handed = unpoisoned(&self.handed);
        match handed.get_mut(order_id) {
            Some(known) => *known = (*known).max(sequence),
            None => {
                handed.insert(order_id.to_string(), sequence);
            }
        }
    }

    /// Whether this process's projector was handed `order_id`'s events up to `sequence` or
    /// further, as far as it remembers: it is about to project them, if it has not yet.
    pub fn handed(&self, order_id: &str, sequence: u64) -> bool {
        let mut handed = unpoisoned(&self.handed);
        handed.get(order_id).is_some_and(|known| *known >= sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_reached_at_its_highest_committed_sequence_and_no_other_is() {
        let projected = Projected::default();
        projected.committed([("o-1", 3, "{\"at\":3}"), ("o-2", 1, "{}")]);
        projected.committed([("o-1", 2, "{\"at\":2}")]);
        assert!(projected.reached("o-1", 3));
        assert!(!projected.reached("o-1", 4));
        assert!(projected.reached("o-2", 1));
        assert!(!projected.reached("o-3", 1));
        assert_eq!(
            projected.view("o-1", 2).as_deref(),
            Some("{\"at\":3}"),
            "the latest view, not the last committed"
        );
        assert_eq!(projected.view("o-1", 4), None);
        projected.handing("o-1", 5);
        assert!(projected.handed("o-1", 5) && projected.handed("o-1", 4) && !projected.handed("o-1", 6));
        assert!(!projected.handed("o-2", 1));
    }
}

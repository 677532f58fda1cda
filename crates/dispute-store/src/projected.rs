//! What this process's projector has committed: the signal that wakes readers waiting for a
//! view to reach a sequence (`X-Min-Sequence`), and how far each order's view has come.

use std::sync::Mutex;

use hashlink::LruCache;
use tokio::sync::Notify;

/// How many orders' projected sequences are remembered: as many as the projector keeps views.
const REMEMBERED: usize = 4096;

pub struct Projected {
    committed: Notify,
    /// The sequence each recently projected order's view was committed at, by this process.
    through: Mutex<LruCache<String, u64>>,
}

impl Default for Projected {
    fn default() -> Self {
        Self { committed: Notify::new(), through: Mutex::new(LruCache::new(REMEMBERED)) }
    }
}

impl Projected {
    /// After the projector committed the views of `orders`, each at its sequence: remembers
    /// them and wakes every waiting reader.
    pub fn committed<'a>(&self, orders: impl IntoIterator<Item = (&'a str, u64)>) {
        {
            let mut through = self.through.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (order_id, sequence) in orders {
                match through.get_mut(order_id) {
                    Some(known) => *known = (*known).max(sequence),
                    None => {
                        through.insert(order_id.to_string(), sequence);
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
        let mut through = self.through.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        through.get(order_id).is_some_and(|known| *known >= sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_reached_at_its_highest_committed_sequence_and_no_other_is() {
        let projected = Projected::default();
        projected.committed([("o-1", 3), ("o-2", 1)]);
        projected.committed([("o-1", 2)]);
        assert!(projected.reached("o-1", 3));
        assert!(!projected.reached("o-1", 4));
        assert!(projected.reached("o-2", 1));
        assert!(!projected.reached("o-3", 1));
    }
}

//! The order service's report that the order shipped, when registration did not know it yet.
//! Until then the order counts as unshipped: a full refund-only request is approved at once,
//! and there is nothing to return.

use super::{Context, Decided};
use crate::command::MarkShipped;
use crate::{Dispute, DisputeError, DisputeEvent};

impl Dispute {
    pub(super) fn mark_shipped(&self, cx: &Context, cmd: &MarkShipped) -> Decided {
        self.party_order(cx)?;
        match self.shipped_at {
            Some(at) if at == cmd.shipped_at => Ok(vec![]),
            Some(_) => Err(DisputeError::ShipmentConflict),
            None => Ok(vec![DisputeEvent::OrderShipped { shipped_at: cmd.shipped_at }]),
        }
    }
}

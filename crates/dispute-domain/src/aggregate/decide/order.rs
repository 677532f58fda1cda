//! The order's facts, recorded by the platform's order service: registration and delivery.

use super::{Context, Decided, require_text};
use crate::command::MarkDelivered;
use crate::{Dispute, DisputeError, DisputeEvent, OrderFacts};

impl Dispute {
    pub(super) fn register_order(&self, cx: &Context, facts: &OrderFacts) -> Decided {
        if !cx.spec.roles.contains(&cx.actor.role) {
            return Err(DisputeError::Forbidden);
        }
        if let Some(order) = &self.order {
            // The same facts again answer as before; other facts are refused.
            return if order == facts { Ok(vec![]) } else { Err(DisputeError::OrderFactsConflict) };
        }
        check_order_id(&facts.order_id)?;
        for (field, value) in [
            ("buyer_id", &facts.buyer_id),
            ("merchant_id", &facts.merchant_id),
            ("category", &facts.category),
        ] {
            require_text(field, value)?;
        }
        facts.paid_amount.check_positive()?;
        Ok(vec![DisputeEvent::OrderRegistered { facts: facts.clone() }])
    }

    pub(super) fn mark_delivered(&self, cx: &Context, cmd: &MarkDelivered) -> Decided {
        self.party_order(cx)?;
        match self.delivered_at {
            Some(at) if at == cmd.delivered_at => Ok(vec![]),
            Some(_) => Err(DisputeError::DeliveryConflict),
            None => Ok(vec![DisputeEvent::OrderDelivered { delivered_at: cmd.delivered_at }]),
        }
    }
}

/// Order ids become stream ids and NATS subject tokens, so they are kept to a safe alphabet.
fn check_order_id(id: &str) -> Result<(), DisputeError> {
    let ok = (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'));
    if ok { Ok(()) } else { Err(DisputeError::InvalidOrderId) }
}

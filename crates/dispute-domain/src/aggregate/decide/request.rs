//! The buyer's request, which starts a round, and its withdrawal.

use super::{Context, Decided, require_text};
use crate::command::{RequestRefund, Withdraw};
use crate::{
    ApprovedBy, CloseReason, Dispute, DisputeError, DisputeEvent, Money, Party, RefundKind, RefundReason,
    Status,
};

impl Dispute {
    pub(super) fn request_refund(&self, cx: &Context, cmd: &RequestRefund) -> Decided {
        let order = self.party_order(cx)?;
        let policy = cx.policy.for_category(&order.category);
        // No new round after a ruling, nor after a ruling of no refund was closed.
        let may_start_round = cx.spec.statuses.contains(&self.status)
            && !(self.status == Status::Closed && self.close_reason == Some(CloseReason::RuledNoRefund));
        if !may_start_round || self.ruled {
            return Err(self.invalid(cx.spec.name));
        }
        if self.round >= policy.max_rounds {
            return Err(DisputeError::MaxRoundsReached);
        }
        require_text("description", &cmd.description)?;
        cmd.amount.check_currency(&order.paid_amount.currency)?;
        let refundable = self.refundable_minor(order);
        if cmd.amount.amount_minor > refundable {
            return Err(DisputeError::AmountExceedsRefundable {
                refundable: Money::new(refundable, order.paid_amount.currency.clone()),
            });
        }
        let shipped = self.has_shipped();
        let now = cx.now;
        // A change of mind is the no-reason return, whatever the code is called.
        let no_reason = matches!(cmd.reason, RefundReason::NoReason7d | RefundReason::ChangedMind);
        match self.delivered_at {
            Some(delivered_at) => {
                let ends = delivered_at + policy.request_window;
                if now > ends {
                    return Err(DisputeError::OutsideRequestWindow { window: policy.request_window, ends });
                }
                if no_reason && (!policy.no_reason_allowed || now > delivered_at + policy.no_reason_window) {
                    return Err(DisputeError::NoReasonNotAllowed);
                }
            }
            None if shipped => {
                if cmd.reason != RefundReason::NotReceived {
                    return Err(DisputeError::ReasonNotAllowed);
                }
            }
            None => {
                // Goods never sent cannot come back: the buyer asks for a refund only.
                if cmd.kind == RefundKind::ReturnAndRefund {
                    return Err(DisputeError::ReturnWithoutShipment);
                }
                if no_reason && !policy.no_reason_allowed {
                    return Err(DisputeError::NoReasonNotAllowed);
                }
            }
        }
        self.check_evidence(Party::Buyer, &cmd.evidence, policy, false)?;

        let round = self.round + 1;
        let mut events = vec![DisputeEvent::RefundRequested {
            round,
            kind: cmd.kind,
            reason: cmd.reason,
            amount: cmd.amount.clone(),
            description: cmd.description.clone(),
            evidence: cmd.evidence.clone(),
            merchant_response_due: now + policy.merchant_response,
        }];
        // Cancelling a paid order that has not shipped refunds at once.
        if !shipped && cmd.kind == RefundKind::RefundOnly && cmd.amount.amount_minor == refundable {
            events.push(DisputeEvent::RefundApproved {
                round,
                amount: cmd.amount.clone(),
                approved_by: ApprovedBy::UnshippedPolicy,
                return_required: false,
                return_ship_due: None,
                note: None,
                approved_at: Some(now),
                return_address: None,
                refund_due: Some(now + policy.refund_payment),
            });
        }
        Ok(events)
    }

    pub(super) fn withdraw(&self, cx: &Context, cmd: &Withdraw) -> Decided {
        self.in_status(cx)?;
        Ok(vec![DisputeEvent::RequestWithdrawn { round: self.round, note: cmd.note.clone() }])
    }
}

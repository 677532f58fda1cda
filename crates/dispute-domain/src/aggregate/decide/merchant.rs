//! The merchant's answer to a request (accept, reject, offer) and the buyer's answer to an offer.

use chrono::{DateTime, Utc};

use super::{Context, Decided, require_text};
use crate::aggregate::Round;
use crate::command::{DeclineOffer, MerchantAccept, MerchantOffer, MerchantReject};
use crate::{ApprovedBy, CategoryPolicy, Dispute, DisputeError, DisputeEvent, Party, RefundKind};

impl Dispute {
    pub(super) fn merchant_accept(&self, cx: &Context, cmd: &MerchantAccept) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        Ok(vec![approve(self.round, round, ApprovedBy::Merchant, cmd.note.clone(), policy, cx.now)])
    }

    pub(super) fn merchant_reject(&self, cx: &Context, cmd: &MerchantReject) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        require_text("note", &cmd.note)?;
        if cx.now > round.merchant_response_due {
            return Err(DisputeError::ResponseDeadlinePassed);
        }
        self.check_evidence(Party::Merchant, &cmd.evidence, policy, false)?;
        Ok(vec![DisputeEvent::MerchantRejected {
            round: self.round,
            reason_code: cmd.reason_code,
            note: cmd.note.clone(),
            evidence: cmd.evidence.clone(),
            escalation_due: cx.now + policy.escalation_window,
        }])
    }

    pub(super) fn merchant_offer(&self, cx: &Context, cmd: &MerchantOffer) -> Decided {
        let (order, round) = self.in_status(cx)?;
        require_text("note", &cmd.note)?;
        cmd.amount.check_currency(&order.paid_amount.currency)?;
        if cmd.amount.amount_minor >= round.requested.amount_minor {
            return Err(DisputeError::OfferNotBelowRequest);
        }
        if cx.now > round.merchant_response_due {
            return Err(DisputeError::ResponseDeadlinePassed);
        }
        Ok(vec![DisputeEvent::MerchantOffered {
            round: self.round,
            amount: cmd.amount.clone(),
            note: cmd.note.clone(),
        }])
    }

    pub(super) fn accept_offer(&self, cx: &Context) -> Decided {
        let (_, round) = self.in_status(cx)?;
        let offer = round.offer.clone().expect("an offer_pending round has an offer");
        Ok(vec![DisputeEvent::RefundApproved {
            round: self.round,
            amount: offer,
            approved_by: ApprovedBy::Offer,
            return_required: false,
            return_ship_due: None,
            note: None,
            approved_at: Some(cx.now),
        }])
    }

    pub(super) fn decline_offer(&self, cx: &Context, cmd: &DeclineOffer) -> Decided {
        let (order, _) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        Ok(vec![DisputeEvent::OfferDeclined {
            round: self.round,
            note: cmd.note.clone(),
            escalation_due: cx.now + policy.escalation_window,
        }])
    }
}

/// Approval of the round's request as asked, by the merchant or by the merchant's silence.
pub(super) fn approve(
    round_number: u32,
    round: &Round,
    approved_by: ApprovedBy,
    note: Option<String>,
    policy: &CategoryPolicy,
    now: DateTime<Utc>,
) -> DisputeEvent {
    let return_required = round.kind == RefundKind::ReturnAndRefund;
    DisputeEvent::RefundApproved {
        round: round_number,
        amount: round.requested.clone(),
        approved_by,
        return_required,
        return_ship_due: return_required.then(|| now + policy.return_ship),
        note,
        approved_at: Some(now),
    }
}

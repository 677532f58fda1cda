//! The merchant's answer to a request (accept, reject, offer) and the buyer's answer to an offer.

use chrono::{DateTime, Utc};

use super::{Context, Decided, require_text};
use crate::aggregate::Round;
use crate::command::{DeclineOffer, MerchantAccept, MerchantOffer, MerchantReject};
use crate::{
    ApprovedBy, CategoryPolicy, Dispute, DisputeError, DisputeEvent, OfferKind, Party, RefundKind, Status,
};

impl Dispute {
    pub(super) fn merchant_accept(&self, cx: &Context, cmd: &MerchantAccept) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        if let Some(address) = &cmd.return_address {
            require_text("return_address", address)?;
        }
        let address = cmd.return_address.clone();
        Ok(vec![approve(self.round, round, ApprovedBy::Merchant, cmd.note.clone(), address, policy, cx.now)])
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

    /// An offer while the merchant's answer is due, or a revised offer after the buyer declined
    /// one (while the buyer may still escalate, up to the policy's revisions).
    pub(super) fn merchant_offer(&self, cx: &Context, cmd: &MerchantOffer) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        let revision = if self.status == Status::Rejected {
            if !round.offer_terms.declined {
                return Err(self.invalid(cx.spec.name));
            }
            let revision = round.offer_terms.revision + 1;
            if revision > policy.max_offer_revisions {
                return Err(DisputeError::OfferRevisionsExhausted);
            }
            if round.escalation_due.is_some_and(|due| cx.now > due) {
                return Err(DisputeError::EscalationWindowClosed);
            }
            revision
        } else {
            0
        };
        require_text("note", &cmd.note)?;
        if let Some(address) = &cmd.return_address {
            require_text("return_address", address)?;
        }
        let amount = match (cmd.kind.refunds(), &cmd.amount) {
            (true, None) => return Err(DisputeError::AmountRequired("amount")),
            (false, Some(_)) => return Err(DisputeError::AmountNotAllowed),
            (false, None) => None,
            (true, Some(amount)) => {
                amount.check_currency(&order.paid_amount.currency)?;
                if amount.amount_minor >= round.requested.amount_minor {
                    return Err(DisputeError::OfferNotBelowRequest);
                }
                Some(amount.clone())
            }
        };
        if revision == 0 && cx.now > round.merchant_response_due {
            return Err(DisputeError::ResponseDeadlinePassed);
        }
        // The address matters only when the goods come back.
        let return_address = cmd
            .kind
            .return_required()
            .then(|| cmd.return_address.clone().or_else(|| policy.return_address.clone()))
            .flatten();
        let expires_at = cx.now + policy.offer_response;
        Ok(vec![match amount {
            Some(amount) => DisputeEvent::MerchantOffered {
                round: self.round,
                amount,
                note: cmd.note.clone(),
                kind: cmd.kind,
                return_address,
                expires_at: Some(expires_at),
                revision,
            },
            None => DisputeEvent::ReplacementOffered {
                round: self.round,
                note: cmd.note.clone(),
                return_address,
                expires_at,
                revision,
            },
        }])
    }

    /// The buyer takes the offer as it stands, before it lapses.
    pub(super) fn accept_offer(&self, cx: &Context) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        let terms = &round.offer_terms;
        if terms.expires_at.is_some_and(|due| cx.now > due) {
            return Err(DisputeError::OfferExpired);
        }
        let now = cx.now;
        let event = match (terms.kind, round.offer.clone()) {
            (OfferKind::Replacement, _) | (_, None) => DisputeEvent::ReplacementAgreed {
                round: self.round,
                return_ship_due: now + policy.return_ship,
                return_address: terms.return_address.clone(),
            },
            (kind, Some(offer)) => {
                let return_required = kind.return_required();
                DisputeEvent::RefundApproved {
                    round: self.round,
                    amount: offer,
                    approved_by: ApprovedBy::Offer,
                    return_required,
                    return_ship_due: return_required.then(|| now + policy.return_ship),
                    note: None,
                    approved_at: Some(now),
                    return_address: terms.return_address.clone().filter(|_| return_required),
                    refund_due: (!return_required).then(|| now + policy.refund_payment),
                }
            }
        };
        Ok(vec![event])
    }

    pub(super) fn decline_offer(&self, cx: &Context, cmd: &DeclineOffer) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        if round.offer_terms.expires_at.is_some_and(|due| cx.now > due) {
            return Err(DisputeError::OfferExpired);
        }
        Ok(vec![DisputeEvent::OfferDeclined {
            round: self.round,
            note: cmd.note.clone(),
            escalation_due: cx.now + policy.escalation_window,
        }])
    }
}

/// Approval of the round's request as asked, by the merchant or by the merchant's silence.
/// A return goes to `return_address` when given, else to the category's default, else to the
/// merchant's address on file (none recorded).
pub(super) fn approve(
    round_number: u32,
    round: &Round,
    approved_by: ApprovedBy,
    note: Option<String>,
    return_address: Option<String>,
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
        return_address: return_required
            .then(|| return_address.or_else(|| policy.return_address.clone()))
            .flatten(),
        refund_due: (!return_required).then(|| now + policy.refund_payment),
    }
}

//! The deadline timer's command: a status-changing deadline has come due.

use super::merchant::approve;
use super::{Context, Decided};
use crate::{
    ApprovedBy, Deadline, Dispute, DisputeError, DisputeEvent, OnMerchantTimeout, ReceiptConfirmedBy,
};

impl Dispute {
    pub(super) fn expire(&self, cx: &Context, deadline: Deadline, round_number: u32) -> Decided {
        let command = match deadline {
            Deadline::MerchantResponse => "expire_merchant_response",
            Deadline::EscalationWindow => "expire_escalation_window",
            Deadline::ReturnShipping => "expire_return_shipping",
            Deadline::ReturnReceipt => "expire_return_receipt",
            Deadline::EvidenceRequest => "expire_evidence_request",
            Deadline::OfferResponse => "expire_offer_response",
        };
        let order = self.party_order(cx)?;
        // Each deadline runs in one status of the command's, and only for the current round.
        let round = match &self.current {
            Some(round) if self.status == deadline.status() && round_number == self.round => round,
            _ => return Err(self.invalid(command)),
        };
        let policy = cx.policy.for_category(&order.category);
        let now = cx.now;
        if round.due(deadline).is_none_or(|due| now < due) {
            return Err(DisputeError::DeadlineNotReached);
        }
        let event = match deadline {
            Deadline::MerchantResponse => match policy.on_merchant_timeout {
                OnMerchantTimeout::AutoAccept => {
                    approve(self.round, round, ApprovedBy::MerchantTimeout, None, None, policy, now)
                }
                OnMerchantTimeout::AllowEscalation => DisputeEvent::MerchantResponseMissed {
                    round: self.round,
                    escalation_due: round.merchant_response_due + policy.escalation_window,
                },
            },
            Deadline::EscalationWindow => DisputeEvent::EscalationWindowClosed { round: self.round },
            Deadline::ReturnShipping => DisputeEvent::ReturnShippingMissed { round: self.round },
            Deadline::ReturnReceipt => DisputeEvent::ReturnReceived {
                round: self.round,
                confirmed_by: ReceiptConfirmedBy::Timeout,
                note: None,
                refund_due: (!round.replacement).then(|| now + policy.refund_payment),
            },
            Deadline::OfferResponse => DisputeEvent::OfferLapsed {
                round: self.round,
                escalation_due: round.offer_terms.expires_at.unwrap_or(now) + policy.escalation_window,
            },
            Deadline::EvidenceRequest => {
                let request = round.evidence_request.as_ref().expect("a due request is open");
                DisputeEvent::EvidenceRequestLapsed {
                    round: self.round,
                    request: request.number,
                    party: request.party,
                }
            }
        };
        Ok(vec![event])
    }
}

//! The platform's part: evidence, escalation, assignment, the ruling and its appeal.

use super::{Context, Decided, party_of, require_text};
use crate::command::{Appeal, Assign, Escalate, Judge, SubmitEvidence};
use crate::{
    CloseReason, Dispute, DisputeError, DisputeEvent, Money, OnMerchantTimeout, RulingOutcome, Status,
};

impl Dispute {
    pub(super) fn submit_evidence(&self, cx: &Context, cmd: &SubmitEvidence) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let party = party_of(cx.actor);
        self.check_evidence_window(cx, round, party)?;
        self.check_evidence(party, &cmd.evidence, cx.policy.for_category(&order.category), true)?;
        let submitted =
            DisputeEvent::EvidenceSubmitted { round: self.round, party, evidence: cmd.evidence.clone() };
        Ok([submitted].into_iter().chain(self.answer(round, party, &cmd.evidence)).collect())
    }

    pub(super) fn escalate(&self, cx: &Context, cmd: &Escalate) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        let now = cx.now;
        require_text("note", &cmd.note)?;
        let mut events = Vec::with_capacity(2);
        if self.status == Status::AwaitingMerchant {
            // The merchant's deadline may have passed before the timer recorded it.
            let missed = now >= round.merchant_response_due
                && policy.on_merchant_timeout == OnMerchantTimeout::AllowEscalation;
            if !missed {
                return Err(self.invalid(cx.spec.name));
            }
            let escalation_due = round.merchant_response_due + policy.escalation_window;
            if now > escalation_due {
                return Err(DisputeError::EscalationWindowClosed);
            }
            events.push(DisputeEvent::MerchantResponseMissed { round: self.round, escalation_due });
        } else if self.status == Status::OfferPending {
            // The offer may have lapsed before the timer recorded it.
            let Some(expires_at) = round.offer_terms.expires_at.filter(|due| now >= *due) else {
                return Err(self.invalid(cx.spec.name));
            };
            let escalation_due = expires_at + policy.escalation_window;
            if now > escalation_due {
                return Err(DisputeError::EscalationWindowClosed);
            }
            events.push(DisputeEvent::OfferLapsed { round: self.round, escalation_due });
        } else if round.escalation_due.is_some_and(|due| now > due) {
            return Err(DisputeError::EscalationWindowClosed);
        }
        events.push(DisputeEvent::DisputeEscalated {
            round: self.round,
            note: cmd.note.clone(),
            evidence_due: now + policy.evidence_window,
            assignment_due: now + policy.arbitration_sla,
        });
        Ok(events)
    }

    pub(super) fn assign(&self, cx: &Context, cmd: &Assign) -> Decided {
        let (_, round) = self.in_status(cx)?;
        require_text("arbitrator_id", &cmd.arbitrator_id)?;
        if self.status == Status::Appealed && round.ruled_by.as_deref() == Some(cmd.arbitrator_id.as_str()) {
            return Err(DisputeError::SameArbitrator);
        }
        Ok(vec![DisputeEvent::ArbitratorAssigned {
            round: self.round,
            arbitrator_id: cmd.arbitrator_id.clone(),
            assigned_by: cx.actor.id.clone(),
        }])
    }

    pub(super) fn judge(&self, cx: &Context, cmd: &Judge) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        if round.arbitrator.as_deref() != Some(cx.actor.id.as_str()) {
            return Err(DisputeError::NotAssignee);
        }
        require_text("rationale", &cmd.rationale)?;
        let refundable = self.refundable_minor(order);
        let amount = match cmd.outcome {
            RulingOutcome::RefundFull => {
                if cmd.amount.is_some() {
                    return Err(DisputeError::AmountNotAllowed);
                }
                let full = round.requested.amount_minor.min(refundable);
                Some(Money::new(full, order.paid_amount.currency.clone()))
            }
            RulingOutcome::RefundPartial => {
                let amount = cmd.amount.as_ref().ok_or(DisputeError::AmountRequired("amount"))?;
                amount.check_currency(&order.paid_amount.currency)?;
                if amount.amount_minor > refundable {
                    return Err(DisputeError::AmountExceedsRefundable {
                        refundable: Money::new(refundable, order.paid_amount.currency.clone()),
                    });
                }
                if amount.amount_minor >= round.requested.amount_minor {
                    return Err(DisputeError::PartialNotBelowRequest);
                }
                Some(amount.clone())
            }
            RulingOutcome::NoRefund => {
                if cmd.amount.is_some() {
                    return Err(DisputeError::AmountNotAllowed);
                }
                if cmd.return_required {
                    return Err(DisputeError::ReturnWithoutRefund);
                }
                None
            }
        };
        let final_ruling = round.appealed;
        let refund_due = (amount.is_some() && !cmd.return_required).then(|| cx.now + policy.refund_payment);
        Ok(vec![DisputeEvent::DisputeJudged {
            round: self.round,
            arbitrator_id: cx.actor.id.clone(),
            outcome: cmd.outcome,
            amount,
            return_required: cmd.return_required,
            rationale: cmd.rationale.clone(),
            final_ruling,
            appeal_due: (!final_ruling).then(|| cx.now + policy.appeal_window),
            return_ship_due: cmd.return_required.then(|| cx.now + policy.return_ship),
            ruled_at: Some(cx.now),
            return_address: policy.return_address.clone().filter(|_| cmd.return_required),
            refund_due,
        }])
    }

    pub(super) fn appeal(&self, cx: &Context, cmd: &Appeal) -> Decided {
        // Before any refund for the ruling is paid or any return shipped.
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        // A shipped return (`receipt_confirm_due` set) ends the right to appeal, also once received.
        if self.status == Status::Closed && self.close_reason != Some(CloseReason::RuledNoRefund) {
            return Err(self.invalid(cx.spec.name));
        }
        // The ruling on an appeal is final: say so rather than only naming the status.
        if round.appealed && round.ruled_by.is_some() {
            return Err(DisputeError::RulingFinal);
        }
        let Some(appeal_due) =
            round.appeal_due.filter(|_| round.ruled_by.is_some() && round.receipt_confirm_due.is_none())
        else {
            return Err(self.invalid(cx.spec.name));
        };
        require_text("note", &cmd.note)?;
        if cx.now > appeal_due {
            return Err(DisputeError::AppealWindowClosed);
        }
        Ok(vec![DisputeEvent::RulingAppealed {
            round: self.round,
            party: party_of(cx.actor),
            note: cmd.note.clone(),
            evidence_due: cx.now + policy.evidence_window,
            assignment_due: Some(cx.now + policy.arbitration_sla),
        }])
    }
}

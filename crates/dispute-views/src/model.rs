//! The read model of one dispute, folded from its events. It copies what the events carry;
//! it never re-applies a rule.

use chrono::{DateTime, Utc};
use dispute_domain::{
    CloseReason, DisputeEvent, Money, PaymentChannel, RefundKind, RefundReason, Role, RulingOutcome, Status,
};
use serde::{Deserialize, Serialize};

/// The deadlines running now; each disappears when the step it waits for happens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_response_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appeal_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_ship_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_confirm_due: Option<DateTime<Utc>>,
}

impl Deadlines {
    /// The soonest deadline the merchant must act by, if any.
    pub fn merchant_next(&self, status: Status) -> Option<DateTime<Utc>> {
        match status {
            Status::AwaitingMerchant => self.merchant_response_due,
            Status::ReturnShipped => self.receipt_confirm_due,
            _ => None,
        }
    }
}

/// A dispute as its parties, arbitrators and auditors read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeView {
    pub dispute_id: String,
    /// The last event reflected.
    pub sequence: u64,
    pub buyer_id: String,
    pub merchant_id: String,
    pub category: String,
    pub payment_channel: PaymentChannel,
    pub paid_amount: Money,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<CloseReason>,
    pub round: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<RefundKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefundReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_amount: Option<Money>,
    pub refunded_total: Money,
    /// Every amount requested over all rounds.
    pub requested_total: Money,
    pub deadlines: Deadlines,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RulingOutcome>,
    /// When the current round was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<DateTime<Utc>>,
    /// When the current round was escalated (or appealed) and waits for the platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    /// When the current round ended (refund paid or closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_expected_by: Option<DateTime<Utc>>,
    /// Rulings won and lost by the merchant on this order (a refund ruled is a loss).
    pub merchant_wins: u32,
    pub merchant_losses: u32,
}

impl DisputeView {
    /// The view after the order's first event, `OrderRegistered`.
    pub fn registered(dispute_id: &str, sequence: u64, event: &DisputeEvent) -> Option<Self> {
        let DisputeEvent::OrderRegistered { facts } = event else { return None };
        let zero = Money::zero(facts.paid_amount.currency.clone());
        Some(Self {
            dispute_id: dispute_id.to_string(),
            sequence,
            buyer_id: facts.buyer_id.clone(),
            merchant_id: facts.merchant_id.clone(),
            category: facts.category.clone(),
            payment_channel: facts.payment_channel,
            paid_amount: facts.paid_amount.clone(),
            status: Status::Open,
            close_reason: None,
            round: 0,
            kind: None,
            reason: None,
            requested_amount: None,
            offer_amount: None,
            approved_amount: None,
            refunded_total: zero.clone(),
            requested_total: zero,
            deadlines: Deadlines::default(),
            assignee: None,
            outcome: None,
            requested_at: None,
            escalated_at: None,
            resolved_at: None,
            refund_expected_by: None,
            merchant_wins: 0,
            merchant_losses: 0,
        })
    }

    /// Folds the event at `sequence`, which happened at `time`.
    pub fn apply(&mut self, sequence: u64, time: DateTime<Utc>, event: &DisputeEvent) {
        self.sequence = sequence;
        let d = &mut self.deadlines;
        match event {
            DisputeEvent::OrderRegistered { .. } | DisputeEvent::OrderDelivered { .. } => {}
            DisputeEvent::RefundRequested { round, kind, reason, amount, merchant_response_due, .. } => {
                *d = Deadlines { merchant_response_due: Some(*merchant_response_due), ..Default::default() };
                self.round = *round;
                self.kind = Some(*kind);
                self.reason = Some(*reason);
                self.requested_total = self.requested_total.plus(amount);
                self.requested_amount = Some(amount.clone());
                self.offer_amount = None;
                self.approved_amount = None;
                self.assignee = None;
                self.outcome = None;
                self.close_reason = None;
                self.requested_at = Some(time);
                self.escalated_at = None;
                self.resolved_at = None;
                self.refund_expected_by = None;
                self.status = Status::AwaitingMerchant;
            }
            DisputeEvent::RefundApproved { amount, return_ship_due, .. } => {
                *d = Deadlines { return_ship_due: *return_ship_due, ..Default::default() };
                self.approved_amount = Some(amount.clone());
                self.status =
                    if return_ship_due.is_some() { Status::AwaitingReturn } else { Status::RefundPending };
            }
            DisputeEvent::MerchantRejected { escalation_due, .. }
            | DisputeEvent::OfferDeclined { escalation_due, .. }
            | DisputeEvent::MerchantResponseMissed { escalation_due, .. } => {
                *d = Deadlines { escalation_due: Some(*escalation_due), ..Default::default() };
                self.status = Status::Rejected;
            }
            DisputeEvent::MerchantOffered { amount, .. } => {
                d.merchant_response_due = None;
                self.offer_amount = Some(amount.clone());
                self.status = Status::OfferPending;
            }
            DisputeEvent::EvidenceSubmitted { .. } => {}
            DisputeEvent::DisputeEscalated { evidence_due, assignment_due, .. } => {
                *d = Deadlines {
                    evidence_due: Some(*evidence_due),
                    assignment_due: Some(*assignment_due),
                    ..Default::default()
                };
                self.escalated_at = Some(time);
                self.status = Status::Escalated;
            }
            DisputeEvent::EscalationWindowClosed { .. } => self.close(time, CloseReason::RejectionAccepted),
            DisputeEvent::ArbitratorAssigned { arbitrator_id, .. } => {
                d.assignment_due = None;
                self.assignee = Some(arbitrator_id.clone());
                self.status = Status::UnderReview;
            }
            DisputeEvent::DisputeJudged { outcome, amount, appeal_due, return_ship_due, .. } => {
                *d = Deadlines {
                    appeal_due: *appeal_due,
                    return_ship_due: *return_ship_due,
                    ..Default::default()
                };
                self.outcome = Some(*outcome);
                match outcome {
                    RulingOutcome::NoRefund => self.merchant_wins += 1,
                    _ => self.merchant_losses += 1,
                }
                self.approved_amount = amount.clone();
                match amount {
                    Some(_) if return_ship_due.is_some() => self.status = Status::AwaitingReturn,
                    Some(_) => self.status = Status::RefundPending,
                    None => {
                        self.close(time, CloseReason::RuledNoRefund);
                        // Closed, but the ruling may still be appealed.
                        self.deadlines.appeal_due = *appeal_due;
                    }
                }
            }
            DisputeEvent::RulingAppealed { evidence_due, assignment_due, .. } => {
                *d = Deadlines {
                    evidence_due: Some(*evidence_due),
                    assignment_due: *assignment_due,
                    ..Default::default()
                };
                // The suspended ruling no longer counts for either side.
                match self.outcome.take() {
                    Some(RulingOutcome::NoRefund) => self.merchant_wins -= 1,
                    Some(_) => self.merchant_losses -= 1,
                    None => {}
                }
                self.approved_amount = None;
                self.assignee = None;
                self.close_reason = None;
                self.resolved_at = None;
                self.escalated_at = Some(time);
                self.status = Status::Appealed;
            }
            DisputeEvent::ReturnShipped { receipt_confirm_due, .. } => {
                *d = Deadlines { receipt_confirm_due: Some(*receipt_confirm_due), ..Default::default() };
                self.status = Status::ReturnShipped;
            }
            DisputeEvent::ReturnReceived { .. } => {
                *d = Deadlines::default();
                self.status = Status::RefundPending;
            }
            DisputeEvent::ReturnShippingMissed { .. } => {
                self.approved_amount = None;
                self.close(time, CloseReason::ReturnNotShipped);
            }
            DisputeEvent::RefundPaid { amount, expected_arrival_by, .. } => {
                *d = Deadlines::default();
                self.refunded_total = self.refunded_total.plus(amount);
                self.approved_amount = None;
                self.refund_expected_by = Some(*expected_arrival_by);
                self.resolved_at = Some(time);
                self.status = Status::Refunded;
            }
            DisputeEvent::RequestWithdrawn { .. } => self.close(time, CloseReason::Withdrawn),
        }
    }

    fn close(&mut self, time: DateTime<Utc>, reason: CloseReason) {
        self.deadlines = Deadlines::default();
        self.status = Status::Closed;
        self.close_reason = Some(reason);
        self.resolved_at = Some(time);
    }

    /// By when `role` must act: the soonest deadline that one of its actions runs against and
    /// that has not passed at `now`. Arbitrators see the assignment SLA.
    pub fn act_by(&self, role: Role, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let d = &self.deadlines;
        let candidates = match role {
            Role::Buyer => [d.escalation_due, d.return_ship_due, d.evidence_due, d.appeal_due],
            Role::Merchant => [d.merchant_response_due, d.receipt_confirm_due, d.evidence_due, d.appeal_due],
            Role::Arbitrator => [d.assignment_due, None, None, None],
            _ => return None,
        };
        candidates.into_iter().flatten().filter(|due| *due > now).min()
    }

    /// The commands `role` may send now, by the status table of the contract. A party check
    /// and the rules still apply when the command arrives.
    pub fn actions(&self, role: Role) -> Vec<&'static str> {
        use Status::*;
        let actions: &[&str] = match (role, self.status) {
            (Role::Buyer, Open | Refunded | Closed) if self.outcome.is_none() => &["request"],
            (Role::Buyer, AwaitingMerchant) => &["evidence", "withdraw"],
            (Role::Buyer, OfferPending) => &["accept-offer", "decline-offer", "withdraw"],
            (Role::Buyer, Rejected) => &["escalate", "withdraw"],
            (Role::Buyer, Escalated) => &["evidence", "withdraw"],
            (Role::Buyer | Role::Merchant, UnderReview | Appealed) => &["evidence"],
            (Role::Buyer, AwaitingReturn) if self.deadlines.appeal_due.is_some() => {
                &["ship-return", "appeal"]
            }
            (Role::Buyer, AwaitingReturn) => &["ship-return"],
            (Role::Buyer | Role::Merchant, RefundPending | Closed) if self.deadlines.appeal_due.is_some() => {
                &["appeal"]
            }
            (Role::Merchant, AwaitingMerchant) => {
                &["merchant-accept", "merchant-reject", "merchant-offer", "evidence"]
            }
            (Role::Merchant, Escalated) => &["evidence"],
            (Role::Merchant, AwaitingReturn) if self.deadlines.appeal_due.is_some() => &["appeal"],
            (Role::Merchant, ReturnShipped) => &["confirm-return"],
            (Role::Arbitrator, Escalated | Appealed) => &["assign"],
            (Role::Arbitrator, UnderReview) => &["judge"],
            (Role::System, RefundPending) => &["refund-paid"],
            _ => &[],
        };
        actions.to_vec()
    }
}

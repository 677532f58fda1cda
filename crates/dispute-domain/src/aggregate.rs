//! The dispute aggregate: one stream per order, holding the order's facts and every round.
//!
//! This module holds the state and [`Dispute::apply`](cqrs_es::Aggregate::apply), which folds
//! an event into it and never fails. [`Dispute::decide`], in `decide/`, checks a command
//! against the state and the policy and returns the events it causes (or why it is refused).

mod decide;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

pub use decide::{PAYMENT_CLOCK_SKEW, expected_arrival};

use crate::command::*;
use crate::{
    Clock, CloseReason, DisputeError, DisputeEvent, Money, OfferKind, OrderFacts, Party, Policy, RefundKind,
    RefundReason, Role, Status, Timer,
};

/// What the rules need from outside: the time and the policy.
#[derive(Clone)]
pub struct DisputeServices {
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<Policy>,
}

impl DisputeServices {
    pub fn new(clock: Arc<dyn Clock>, policy: Arc<Policy>) -> Self {
        Self { clock, policy }
    }
}

/// The state of one order's dispute, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    order: Option<OrderFacts>,
    /// When delivery was recorded: at registration or later by `delivered`.
    delivered_at: Option<DateTime<Utc>>,
    /// When shipment was recorded: at registration or later by `shipped`.
    #[serde(default)]
    shipped_at: Option<DateTime<Utc>>,
    status: Status,
    close_reason: Option<CloseReason>,
    /// 0 before the first request; rounds count from 1.
    round: u32,
    /// Sum of every refund paid on this order, in the order's currency.
    refunded_minor: i64,
    /// Set once any round reaches a ruling: no new round may follow a ruling.
    ruled: bool,
    /// Evidence items per party over the whole dispute (the policy caps them).
    buyer_evidence: u32,
    merchant_evidence: u32,
    current: Option<Round>,
    /// Messages per author over the whole dispute (the policy caps them); the arbitrators
    /// count as one author.
    #[serde(default)]
    buyer_messages: u32,
    #[serde(default)]
    merchant_messages: u32,
    #[serde(default)]
    arbitrator_messages: u32,
    /// Evidence requests made on this dispute, which numbers them.
    #[serde(default)]
    evidence_requests: u32,
}

/// An arbitrator's evidence request not yet answered or lapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenRequest {
    number: u32,
    party: Party,
    due: DateTime<Utc>,
}

/// The running (or last) round of a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Round {
    kind: RefundKind,
    reason: RefundReason,
    requested: Money,
    merchant_response_due: DateTime<Utc>,
    offer: Option<Money>,
    escalation_due: Option<DateTime<Utc>>,
    evidence_due: Option<DateTime<Utc>>,
    arbitrator: Option<String>,
    /// The arbitrator of the first ruling: an appeal needs someone else.
    ruled_by: Option<String>,
    appeal_due: Option<DateTime<Utc>>,
    appealed: bool,
    /// The refund approved or ruled and not yet paid (suspended while appealed).
    approved: Option<Money>,
    /// When it was approved or ruled; unknown for approvals stored before events said.
    #[serde(default)]
    approved_at: Option<DateTime<Utc>>,
    return_ship_due: Option<DateTime<Utc>>,
    receipt_confirm_due: Option<DateTime<Utc>>,
    /// At most one at a time, under review only.
    #[serde(default)]
    evidence_request: Option<OpenRequest>,
    /// The pending (or last) offer's terms; `offer` above is its amount, if it refunds.
    offer_terms: OfferTerms,
    /// The buyer accepted a replacement: the goods' receipt ends the round.
    replacement: bool,
}

/// What the round's latest offer says beyond its amount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct OfferTerms {
    kind: OfferKind,
    return_address: Option<String>,
    /// Absent for offers stored before offers lapsed.
    expires_at: Option<DateTime<Utc>>,
    revision: u32,
    /// The buyer declined it: the merchant may revise it while the buyer may still escalate.
    declined: bool,
}

impl Round {
    fn due(&self, deadline: Deadline) -> Option<DateTime<Utc>> {
        match deadline {
            Deadline::MerchantResponse => Some(self.merchant_response_due),
            Deadline::EscalationWindow => self.escalation_due,
            Deadline::ReturnShipping => self.return_ship_due,
            Deadline::ReturnReceipt => self.receipt_confirm_due,
            Deadline::EvidenceRequest => self.evidence_request.as_ref().map(|r| r.due),
            Deadline::OfferResponse => self.offer_terms.expires_at,
        }
    }
}

impl Dispute {
    pub fn status(&self) -> Status {
        self.status
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    pub fn round(&self) -> u32 {
        self.round
    }

    pub fn order(&self) -> Option<&OrderFacts> {
        self.order.as_ref()
    }

    pub fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.delivered_at
    }

    pub fn shipped_at(&self) -> Option<DateTime<Utc>> {
        self.shipped_at
    }

    /// Whether the goods have left the merchant: shipped or delivered, as recorded so far.
    fn has_shipped(&self) -> bool {
        self.shipped_at.is_some() || self.delivered_at.is_some()
    }

    /// Everything refunded on this order so far (zero in the order's currency before any).
    pub fn refunded_total(&self) -> Option<Money> {
        self.order.as_ref().map(|o| Money::new(self.refunded_minor, o.paid_amount.currency.clone()))
    }

    /// The refund approved or ruled and waiting for payment or a return, if any.
    pub fn approved_refund(&self) -> Option<&Money> {
        self.current.as_ref().and_then(|r| r.approved.as_ref())
    }

    /// The status-changing deadline running now, if any.
    pub fn pending_timer(&self) -> Option<Timer> {
        let deadline = match self.status {
            Status::AwaitingMerchant => Deadline::MerchantResponse,
            Status::Rejected => Deadline::EscalationWindow,
            Status::AwaitingReturn => Deadline::ReturnShipping,
            Status::ReturnShipped => Deadline::ReturnReceipt,
            Status::UnderReview => Deadline::EvidenceRequest,
            Status::OfferPending => Deadline::OfferResponse,
            _ => return None,
        };
        let due = self.current.as_ref()?.due(deadline)?;
        Some(Timer { deadline, round: self.round, due })
    }

    fn round_mut(&mut self) -> &mut Round {
        self.current.as_mut().expect("a round event follows a request")
    }

    fn close(&mut self, reason: CloseReason) {
        self.status = Status::Closed;
        self.close_reason = Some(reason);
    }

    /// A refund approved or ruled: wait for the goods if they must come back, else for payment.
    fn set_approved(
        &mut self,
        amount: Money,
        return_ship_due: Option<DateTime<Utc>>,
        approved_at: Option<DateTime<Utc>>,
    ) {
        let round = self.round_mut();
        round.approved = Some(amount);
        round.approved_at = approved_at;
        round.return_ship_due = return_ship_due;
        self.status = if return_ship_due.is_some() { Status::AwaitingReturn } else { Status::RefundPending };
    }
}

impl Aggregate for Dispute {
    const TYPE: &'static str = "dispute";
    type Command = DisputeCommand;
    type Event = DisputeEvent;
    type Error = DisputeError;
    type Services = DisputeServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DisputeEvent::OrderRegistered { facts } => {
                self.delivered_at = facts.delivered_at;
                self.shipped_at = facts.shipped_at;
                self.order = Some(facts);
                self.status = Status::Open;
            }
            DisputeEvent::OrderDelivered { delivered_at } => self.delivered_at = Some(delivered_at),
            DisputeEvent::RefundRequested {
                round,
                kind,
                reason,
                amount,
                evidence,
                merchant_response_due,
                ..
            } => {
                self.round = round;
                self.status = Status::AwaitingMerchant;
                self.close_reason = None;
                self.buyer_evidence += evidence.len() as u32;
                self.current = Some(Round {
                    kind,
                    reason,
                    requested: amount,
                    merchant_response_due,
                    offer: None,
                    escalation_due: None,
                    evidence_due: None,
                    arbitrator: None,
                    ruled_by: None,
                    appeal_due: None,
                    appealed: false,
                    approved: None,
                    approved_at: None,
                    return_ship_due: None,
                    receipt_confirm_due: None,
                    evidence_request: None,
                    offer_terms: OfferTerms::default(),
                    replacement: false,
                });
            }
            DisputeEvent::RefundApproved { amount, return_ship_due, approved_at, .. } => {
                self.set_approved(amount, return_ship_due, approved_at)
            }
            DisputeEvent::MerchantRejected { evidence, escalation_due, .. } => {
                self.merchant_evidence += evidence.len() as u32;
                self.round_mut().escalation_due = Some(escalation_due);
                self.status = Status::Rejected;
            }
            DisputeEvent::MerchantOffered { amount, kind, return_address, expires_at, revision, .. } => {
                let round = self.round_mut();
                round.offer = Some(amount);
                round.offer_terms =
                    OfferTerms { kind, return_address, expires_at, revision, declined: false };
                self.status = Status::OfferPending;
            }
            DisputeEvent::OfferDeclined { escalation_due, .. } => {
                let round = self.round_mut();
                round.offer_terms.declined = true;
                round.escalation_due = Some(escalation_due);
                self.status = Status::Rejected;
            }
            DisputeEvent::MerchantResponseMissed { escalation_due, .. } => {
                self.round_mut().escalation_due = Some(escalation_due);
                self.status = Status::Rejected;
            }
            DisputeEvent::EvidenceSubmitted { party, evidence, .. } => {
                let count = evidence.len() as u32;
                match party {
                    Party::Buyer => self.buyer_evidence += count,
                    Party::Merchant => self.merchant_evidence += count,
                }
            }
            DisputeEvent::DisputeEscalated { evidence_due, .. } => {
                self.round_mut().evidence_due = Some(evidence_due);
                self.status = Status::Escalated;
            }
            DisputeEvent::EscalationWindowClosed { .. } => self.close(CloseReason::RejectionAccepted),
            DisputeEvent::ArbitratorAssigned { arbitrator_id, .. } => {
                self.round_mut().arbitrator = Some(arbitrator_id);
                self.status = Status::UnderReview;
            }
            DisputeEvent::DisputeJudged {
                arbitrator_id,
                amount,
                appeal_due,
                return_ship_due,
                ruled_at,
                ..
            } => {
                self.ruled = true;
                let round = self.round_mut();
                // A ruling ends an open evidence request.
                round.evidence_request = None;
                round.replacement = false;
                round.ruled_by = Some(arbitrator_id);
                round.appeal_due = appeal_due;
                match amount {
                    Some(amount) => self.set_approved(amount, return_ship_due, ruled_at),
                    None => self.close(CloseReason::RuledNoRefund),
                }
            }
            DisputeEvent::RulingAppealed { evidence_due, .. } => {
                let round = self.round_mut();
                round.appealed = true;
                round.approved = None;
                round.return_ship_due = None;
                round.arbitrator = None;
                round.evidence_due = Some(evidence_due);
                self.status = Status::Appealed;
                self.close_reason = None;
            }
            DisputeEvent::ReturnShipped { receipt_confirm_due, .. } => {
                self.round_mut().receipt_confirm_due = Some(receipt_confirm_due);
                self.status = Status::ReturnShipped;
            }
            DisputeEvent::ReturnReceived { .. } => {
                if self.round_mut().replacement {
                    self.close(CloseReason::Replaced);
                } else {
                    self.status = Status::RefundPending;
                }
            }
            DisputeEvent::ReturnShippingMissed { .. } => {
                self.round_mut().approved = None;
                self.close(CloseReason::ReturnNotShipped);
            }
            DisputeEvent::RefundPaid { amount, .. } => {
                self.refunded_minor += amount.amount_minor;
                self.round_mut().approved = None;
                self.status = Status::Refunded;
            }
            DisputeEvent::RequestWithdrawn { .. } => self.close(CloseReason::Withdrawn),
            DisputeEvent::MessagePosted { author_role, evidence, .. } => {
                let count = evidence.len() as u32;
                match author_role {
                    Role::Buyer => {
                        self.buyer_messages += 1;
                        self.buyer_evidence += count;
                    }
                    Role::Merchant => {
                        self.merchant_messages += 1;
                        self.merchant_evidence += count;
                    }
                    _ => self.arbitrator_messages += 1,
                }
            }
            DisputeEvent::EvidenceRequested { request, party, due, .. } => {
                self.evidence_requests = request;
                self.round_mut().evidence_request = Some(OpenRequest { number: request, party, due });
            }
            DisputeEvent::EvidenceRequestAnswered { .. } | DisputeEvent::EvidenceRequestLapsed { .. } => {
                self.round_mut().evidence_request = None;
            }
            DisputeEvent::OrderShipped { shipped_at } => self.shipped_at = Some(shipped_at),
            DisputeEvent::ReplacementOffered { return_address, expires_at, revision, .. } => {
                let round = self.round_mut();
                round.offer = None;
                round.offer_terms = OfferTerms {
                    kind: OfferKind::Replacement,
                    return_address,
                    expires_at: Some(expires_at),
                    revision,
                    declined: false,
                };
                self.status = Status::OfferPending;
            }
            DisputeEvent::OfferLapsed { escalation_due, .. } => {
                self.round_mut().escalation_due = Some(escalation_due);
                self.status = Status::Rejected;
            }
            DisputeEvent::ReplacementAgreed { return_ship_due, .. } => {
                let round = self.round_mut();
                round.replacement = true;
                round.return_ship_due = Some(return_ship_due);
                self.status = Status::AwaitingReturn;
            }
            DisputeEvent::ReturnInspectionFailed { escalation_due, .. } => {
                let round = self.round_mut();
                round.approved = None;
                round.replacement = false;
                round.return_ship_due = None;
                round.receipt_confirm_due = None;
                round.escalation_due = Some(escalation_due);
                self.status = Status::Rejected;
            }
        }
    }
}

//! The read model of one dispute, folded from its events. It copies what the events carry;
//! it never re-applies a rule.

use chrono::{DateTime, Utc};
use dispute_domain::{
    ActionKind, ApprovedBy, COMMANDS, CategoryPolicy, CloseReason, DisputeEvent, Evidence, InspectionProblem,
    Money, OfferKind, OnMerchantTimeout, Party, PaymentChannel, RefundKind, RefundReason, RejectionReason,
    Role, RulingOutcome, Scope, Status, return_reference,
};
use serde::{Deserialize, Serialize};

/// The deadlines running now; each disappears when the step it waits for happens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deadlines {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub merchant_response_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub escalation_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub evidence_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub assignment_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub appeal_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub return_ship_due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub receipt_confirm_due: Option<DateTime<Utc>>,
    /// The open evidence request's deadline, for the party it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option")]
    pub evidence_request_due: Option<DateTime<Utc>>,
    /// When the pending offer lapses unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option")]
    pub offer_response_due: Option<DateTime<Utc>>,
}

/// The round's latest offer, pending or answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfferView {
    pub kind: OfferKind,
    /// Absent for a replacement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    pub note: String,
    /// Absent for offers made before offers lapsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// 0 for the round's first offer, 1, 2, … for each revision after a decline.
    pub revision: u32,
    /// Where the goods go back, for the kinds with a return, when named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_address: Option<String>,
    /// Absent while the offer waits for the buyer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<OfferAnswer>,
}

/// What became of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OfferAnswer {
    Accepted,
    /// The merchant may revise it while the buyer may escalate.
    Declined,
    /// Left unanswered past `expires_at`.
    Lapsed,
}

/// The goods coming back in the current round: where, under which reference, how shipped, and
/// what the merchant found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReturnView {
    /// `RMA-<order>-<round>`: what the parcel is labelled with.
    pub reference: String,
    /// Absent: the merchant's address on file with the order service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub received_at: Option<DateTime<Utc>>,
    /// What the merchant found instead of the goods sent, if the parcel failed inspection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspection_failed: Option<InspectionProblem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspection_note: Option<String>,
}

/// Refund steps that are late at the time of reading: computed from the view's due times and
/// the service clock, never stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overdue {
    /// Approved (and any return received), not reported paid, past `refund_due_by`.
    pub refund_payment_overdue: bool,
    /// Paid, past `refund_expected_by` (the channel's arrival time): the buyer should check
    /// with the channel, the platform with the payment service.
    pub refund_arrival_overdue: bool,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub requested_at: Option<DateTime<Utc>>,
    /// When the current round was escalated (or appealed) and waits for the platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub escalated_at: Option<DateTime<Utc>>,
    /// When the current round ended (refund paid or closed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub refund_expected_by: Option<DateTime<Utc>>,
    /// Rulings won and lost by the merchant on this order (a refund ruled is a loss).
    pub merchant_wins: u32,
    pub merchant_losses: u32,
    /// The round's latest offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferView>,
    /// The return agreed or ruled in the current round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_parcel: Option<ReturnView>,
    /// When the payment system should pay the approved refund (by the policy's
    /// `refund_payment`, from approval or from the return's receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option")]
    pub refund_due_by: Option<DateTime<Utc>>,
    /// Pieces of evidence each party has given over the dispute (the policy caps them).
    #[serde(default)]
    pub evidence: EvidenceCounts,
    /// Why the merchant rejected this round's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// This round's ruling: what was decided, by whom, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruling: Option<Ruling>,
    /// Every message on the dispute, over every round, oldest first.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Every evidence request of an arbitrator, over every round, oldest first.
    #[serde(default)]
    pub evidence_requests: Vec<EvidenceRequest>,
}

/// A merchant's rejection, as the parties read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    pub reason_code: RejectionReason,
    pub note: String,
}

/// An arbitrator's ruling, as the parties read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ruling {
    pub arbitrator_id: String,
    pub outcome: RulingOutcome,
    /// What it refunds; absent for `no_refund`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    pub return_required: bool,
    pub rationale: String,
    /// A ruling on appeal is final.
    pub final_ruling: bool,
}

/// Pieces of evidence given, per party.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceCounts {
    pub buyer: u32,
    pub merchant: u32,
}

impl EvidenceCounts {
    fn add(&mut self, party: Party, pieces: usize) {
        let count = match party {
            Party::Buyer => &mut self.buyer,
            Party::Merchant => &mut self.merchant,
        };
        *count += pieces as u32;
    }
}

/// A message as the dispute's readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub round: u32,
    #[serde(with = "dispute_domain::rfc3339")]
    pub posted_at: DateTime<Utc>,
    pub author_role: Role,
    pub author_id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// Where an arbitrator's evidence request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EvidenceRequestState {
    /// Waiting for the party's evidence until `due`.
    Open,
    Answered,
    /// The deadline passed without an answer.
    Lapsed,
    /// The arbitrator ruled before it was answered.
    Closed,
}

/// An arbitrator's evidence request as the dispute's readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceRequest {
    /// The request's number on the dispute, from 1.
    pub request: u32,
    pub round: u32,
    pub arbitrator_id: String,
    pub party: Party,
    pub what: String,
    #[serde(with = "dispute_domain::rfc3339")]
    pub requested_at: DateTime<Utc>,
    #[serde(with = "dispute_domain::rfc3339")]
    pub due: DateTime<Utc>,
    pub state: EvidenceRequestState,
    /// When it was answered, lapsed or closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "dispute_domain::rfc3339::option")]
    pub ended_at: Option<DateTime<Utc>>,
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
            offer: None,
            return_parcel: None,
            refund_due_by: None,
            evidence: EvidenceCounts::default(),
            rejection: None,
            ruling: None,
            messages: Vec::new(),
            evidence_requests: Vec::new(),
        })
    }

    /// Folds the event at `sequence`, which happened at `time`.
    pub fn apply(&mut self, sequence: u64, time: DateTime<Utc>, event: &DisputeEvent) {
        self.sequence = sequence;
        let d = &mut self.deadlines;
        match event {
            DisputeEvent::OrderRegistered { .. } | DisputeEvent::OrderDelivered { .. } => {}
            DisputeEvent::RefundRequested {
                round,
                kind,
                reason,
                amount,
                merchant_response_due,
                evidence,
                ..
            } => {
                self.evidence.add(Party::Buyer, evidence.len());
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
                self.offer = None;
                self.return_parcel = None;
                self.refund_due_by = None;
                self.rejection = None;
                self.ruling = None;
                self.status = Status::AwaitingMerchant;
            }
            DisputeEvent::RefundApproved {
                amount,
                approved_by,
                return_ship_due,
                return_address,
                refund_due,
                ..
            } => {
                if let (ApprovedBy::Offer, Some(offer)) = (approved_by, self.offer.as_mut()) {
                    offer.answer = Some(OfferAnswer::Accepted);
                }
                *d = Deadlines { return_ship_due: *return_ship_due, ..Default::default() };
                self.approved_amount = Some(amount.clone());
                self.refund_due_by = *refund_due;
                if return_ship_due.is_some() {
                    self.return_parcel = Some(self.new_return(return_address.clone()));
                }
                self.status =
                    if return_ship_due.is_some() { Status::AwaitingReturn } else { Status::RefundPending };
            }
            DisputeEvent::MerchantRejected { escalation_due, evidence, reason_code, note, .. } => {
                self.evidence.add(Party::Merchant, evidence.len());
                self.rejection = Some(Rejection { reason_code: *reason_code, note: note.clone() });
                *d = Deadlines { escalation_due: Some(*escalation_due), ..Default::default() };
                self.status = Status::Rejected;
            }
            DisputeEvent::OfferDeclined { escalation_due, .. }
            | DisputeEvent::MerchantResponseMissed { escalation_due, .. } => {
                *d = Deadlines { escalation_due: Some(*escalation_due), ..Default::default() };
                if let (DisputeEvent::OfferDeclined { .. }, Some(offer)) = (event, self.offer.as_mut()) {
                    offer.answer = Some(OfferAnswer::Declined);
                }
                self.status = Status::Rejected;
            }
            DisputeEvent::MerchantOffered {
                amount,
                note,
                kind,
                return_address,
                expires_at,
                revision,
                ..
            } => {
                *d = Deadlines { offer_response_due: *expires_at, ..Default::default() };
                self.offer_amount = Some(amount.clone());
                self.offer = Some(OfferView {
                    kind: *kind,
                    amount: Some(amount.clone()),
                    note: note.clone(),
                    expires_at: *expires_at,
                    revision: *revision,
                    return_address: return_address.clone(),
                    answer: None,
                });
                self.status = Status::OfferPending;
            }
            DisputeEvent::EvidenceSubmitted { party, evidence, .. } => {
                self.evidence.add(*party, evidence.len())
            }
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
            DisputeEvent::DisputeJudged {
                outcome,
                amount,
                appeal_due,
                return_ship_due,
                return_address,
                refund_due,
                arbitrator_id,
                return_required,
                rationale,
                final_ruling,
                ..
            } => {
                self.ruling = Some(Ruling {
                    arbitrator_id: arbitrator_id.clone(),
                    outcome: *outcome,
                    amount: amount.clone(),
                    return_required: *return_required,
                    rationale: rationale.clone(),
                    final_ruling: *final_ruling,
                });
                *d = Deadlines {
                    appeal_due: *appeal_due,
                    return_ship_due: *return_ship_due,
                    ..Default::default()
                };
                self.end_open_request(time, EvidenceRequestState::Closed);
                self.refund_due_by = *refund_due;
                self.return_parcel = match (amount, return_ship_due) {
                    (Some(_), Some(_)) => Some(self.new_return(return_address.clone())),
                    _ => None,
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
                self.ruling = None;
                match self.outcome.take() {
                    Some(RulingOutcome::NoRefund) => self.merchant_wins -= 1,
                    Some(_) => self.merchant_losses -= 1,
                    None => {}
                }
                self.approved_amount = None;
                self.refund_due_by = None;
                self.return_parcel = None;
                self.assignee = None;
                self.close_reason = None;
                self.resolved_at = None;
                self.escalated_at = Some(time);
                self.status = Status::Appealed;
            }
            DisputeEvent::ReturnShipped { receipt_confirm_due, carrier, tracking_number, .. } => {
                *d = Deadlines { receipt_confirm_due: Some(*receipt_confirm_due), ..Default::default() };
                let parcel = self.return_parcel.get_or_insert_with(|| ReturnView {
                    reference: return_reference(&self.dispute_id, self.round),
                    ..empty_return()
                });
                parcel.carrier = Some(carrier.clone());
                parcel.tracking_number = Some(tracking_number.clone());
                self.status = Status::ReturnShipped;
            }
            DisputeEvent::ReturnReceived { refund_due, .. } => {
                *d = Deadlines::default();
                if let Some(parcel) = self.return_parcel.as_mut() {
                    parcel.received_at = Some(time);
                }
                let replacement = self.offer.as_ref().is_some_and(|o| {
                    o.kind == OfferKind::Replacement && o.answer == Some(OfferAnswer::Accepted)
                });
                if replacement && self.approved_amount.is_none() {
                    self.close(time, CloseReason::Replaced);
                } else {
                    self.refund_due_by = *refund_due;
                    self.status = Status::RefundPending;
                }
            }
            DisputeEvent::ReturnShippingMissed { .. } => {
                self.approved_amount = None;
                self.close(time, CloseReason::ReturnNotShipped);
            }
            DisputeEvent::RefundPaid { amount, expected_arrival_by, .. } => {
                *d = Deadlines::default();
                self.refund_due_by = None;
                self.refunded_total = self.refunded_total.plus(amount);
                self.approved_amount = None;
                self.refund_expected_by = Some(*expected_arrival_by);
                self.resolved_at = Some(time);
                self.status = Status::Refunded;
            }
            DisputeEvent::RequestWithdrawn { .. } => self.close(time, CloseReason::Withdrawn),
            DisputeEvent::MessagePosted { round, author_role, author_id, text, evidence } => {
                match author_role {
                    Role::Buyer => self.evidence.add(Party::Buyer, evidence.len()),
                    Role::Merchant => self.evidence.add(Party::Merchant, evidence.len()),
                    _ => {}
                }
                self.messages.push(Message {
                    round: *round,
                    posted_at: time,
                    author_role: *author_role,
                    author_id: author_id.clone(),
                    text: text.clone(),
                    evidence: evidence.clone(),
                });
            }
            DisputeEvent::EvidenceRequested { round, request, arbitrator_id, party, what, due } => {
                d.evidence_request_due = Some(*due);
                self.evidence_requests.push(EvidenceRequest {
                    request: *request,
                    round: *round,
                    arbitrator_id: arbitrator_id.clone(),
                    party: *party,
                    what: what.clone(),
                    requested_at: time,
                    due: *due,
                    state: EvidenceRequestState::Open,
                    ended_at: None,
                });
            }
            DisputeEvent::EvidenceRequestAnswered { .. } => {
                self.end_open_request(time, EvidenceRequestState::Answered)
            }
            DisputeEvent::EvidenceRequestLapsed { .. } => {
                self.end_open_request(time, EvidenceRequestState::Lapsed)
            }
            DisputeEvent::OrderShipped { .. } => {}
            DisputeEvent::ReplacementOffered { note, return_address, expires_at, revision, .. } => {
                *d = Deadlines { offer_response_due: Some(*expires_at), ..Default::default() };
                self.offer_amount = None;
                self.offer = Some(OfferView {
                    kind: OfferKind::Replacement,
                    amount: None,
                    note: note.clone(),
                    expires_at: Some(*expires_at),
                    revision: *revision,
                    return_address: return_address.clone(),
                    answer: None,
                });
                self.status = Status::OfferPending;
            }
            DisputeEvent::OfferLapsed { escalation_due, .. } => {
                *d = Deadlines { escalation_due: Some(*escalation_due), ..Default::default() };
                if let Some(offer) = self.offer.as_mut() {
                    offer.answer = Some(OfferAnswer::Lapsed);
                }
                self.status = Status::Rejected;
            }
            DisputeEvent::ReplacementAgreed { return_ship_due, return_address, .. } => {
                *d = Deadlines { return_ship_due: Some(*return_ship_due), ..Default::default() };
                self.approved_amount = None;
                self.return_parcel = Some(self.new_return(return_address.clone()));
                if let Some(offer) = self.offer.as_mut() {
                    offer.answer = Some(OfferAnswer::Accepted);
                }
                self.status = Status::AwaitingReturn;
            }
            DisputeEvent::ReturnInspectionFailed { problem, note, escalation_due, .. } => {
                *d = Deadlines { escalation_due: Some(*escalation_due), ..Default::default() };
                if let Some(parcel) = self.return_parcel.as_mut() {
                    parcel.received_at = Some(time);
                    parcel.inspection_failed = Some(*problem);
                    parcel.inspection_note = Some(note.clone());
                }
                self.approved_amount = None;
                self.refund_due_by = None;
                self.status = Status::Rejected;
            }
        }
    }

    /// An offer (of the canonical kind, a partial refund) is more than nothing and less than
    /// the request.
    fn offer_possible(&self) -> bool {
        self.requested_amount.as_ref().is_some_and(|m| m.amount_minor > 1)
    }

    /// The return of the current round, to `address`.
    fn new_return(&self, address: Option<String>) -> ReturnView {
        ReturnView { reference: return_reference(&self.dispute_id, self.round), address, ..empty_return() }
    }

    /// The refund steps late at `now`.
    pub fn overdue(&self, now: DateTime<Utc>) -> Overdue {
        Overdue {
            refund_payment_overdue: self.status == Status::RefundPending
                && self.refund_due_by.is_some_and(|due| now > due),
            refund_arrival_overdue: self.status == Status::Refunded
                && self.refund_expected_by.is_some_and(|due| now > due),
        }
    }

    /// The soonest deadline the merchant must act by: its answer, a return's receipt, or an
    /// open evidence request that names it. The merchant's list sorts on it.
    pub fn merchant_due(&self) -> Option<DateTime<Utc>> {
        let asked = self.open_request().filter(|r| r.party == Party::Merchant).map(|r| r.due);
        [self.deadlines.merchant_next(self.status), asked].into_iter().flatten().min()
    }

    /// The open evidence request, if any.
    pub fn open_request(&self) -> Option<&EvidenceRequest> {
        self.evidence_requests.iter().rev().find(|r| r.state == EvidenceRequestState::Open)
    }

    fn end_open_request(&mut self, time: DateTime<Utc>, state: EvidenceRequestState) {
        self.deadlines.evidence_request_due = None;
        if let Some(open) = self.evidence_requests.iter_mut().find(|r| r.state == EvidenceRequestState::Open)
        {
            open.state = state;
            open.ended_at = Some(time);
        }
    }

    /// Whether the open evidence request names `role`'s party and is not yet due at `now`.
    fn requested_from(&self, role: Role, now: DateTime<Utc>) -> bool {
        self.open_request().is_some_and(|r| party_role(r.party) == role && now <= r.due)
    }

    fn close(&mut self, time: DateTime<Utc>, reason: CloseReason) {
        self.refund_due_by = None;
        self.deadlines = Deadlines::default();
        self.status = Status::Closed;
        self.close_reason = Some(reason);
        self.resolved_at = Some(time);
    }

    /// By when `role` must act: the soonest deadline that one of its actions runs against and
    /// that has not passed at `now`. Arbitrators see the assignment SLA.
    pub fn act_by(&self, role: Role, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let d = &self.deadlines;
        // The open evidence request's deadline, for the party it names.
        let asked = self.open_request().filter(|r| party_role(r.party) == role).map(|r| r.due);
        // Shipping an approved or ruled return is the buyer's next step; an appeal beside it is
        // optional and does not hide it.
        if role == Role::Buyer && d.return_ship_due.is_some_and(|due| due > now) {
            return d.return_ship_due;
        }
        let candidates = match role {
            Role::Buyer => [
                d.escalation_due,
                d.return_ship_due,
                d.evidence_due,
                d.appeal_due,
                asked,
                d.offer_response_due,
            ],
            Role::Merchant => {
                [d.merchant_response_due, d.receipt_confirm_due, d.evidence_due, d.appeal_due, asked, None]
            }
            Role::Arbitrator => [d.assignment_due, None, None, None, None, None],
            _ => return None,
        };
        candidates.into_iter().flatten().filter(|due| *due > now).min()
    }

    /// The commands `role` may send now: the dispute commands of the domain's table for the
    /// role and the status, less those that a window or a fact the view carries rules out at
    /// `now` (`policy` is the dispute's category's). The party checks (only the assignee
    /// judges) and the rules on a command's body still apply when it arrives; so do the
    /// request window, counted from a delivery the view does not carry, and the evidence cap.
    pub fn actions(&self, role: Role, now: DateTime<Utc>, policy: &CategoryPolicy) -> Vec<&'static str> {
        COMMANDS
            .iter()
            .filter(|spec| spec.scope == Scope::Dispute)
            .filter(|spec| spec.roles.contains(&role) && spec.statuses.contains(&self.status))
            .filter(|spec| self.open(spec.kind, role, now, policy))
            .map(|spec| spec.segment)
            .collect()
    }

    /// Whether the command is still open at `now`, in a status where the table allows it: the
    /// conditions its rule checks beyond the status, as far as the view knows them.
    fn open(&self, kind: ActionKind, role: Role, now: DateTime<Utc>, policy: &CategoryPolicy) -> bool {
        use ActionKind::*;
        let d = &self.deadlines;
        let until = |due: Option<DateTime<Utc>>| due.is_none_or(|due| now <= due);
        match kind {
            // No new round after a ruling, past the policy's rounds, or with nothing left to refund.
            RequestRefund => {
                self.outcome.is_none()
                    && self.round < policy.max_rounds
                    && self.refunded_total.amount_minor < self.paid_amount.amount_minor
            }
            MerchantReject => until(d.merchant_response_due),
            // A revision of a declined offer, while revisions are left and the buyer may still
            // escalate. (A replacement needs no amount, so the request's size does not matter.)
            MerchantOffer if self.status == Status::Rejected => {
                self.offer.as_ref().is_some_and(|o| {
                    o.answer == Some(OfferAnswer::Declined) && o.revision < policy.max_offer_revisions
                }) && until(d.escalation_due)
                    && self.offer_possible()
            }
            MerchantOffer => until(d.merchant_response_due) && self.offer_possible(),
            AcceptOffer | DeclineOffer => until(d.offer_response_due),
            // Awaiting the merchant evidence has no window; after a rejection, the escalation
            // window; after escalation, the evidence window; a party asked for evidence, until
            // the request's deadline.
            SubmitEvidence => match self.status {
                Status::AwaitingMerchant => true,
                Status::Rejected => until(d.escalation_due) || self.requested_from(role, now),
                _ => until(d.evidence_due) || self.requested_from(role, now),
            },
            Escalate => match self.status {
                // Once the offer has lapsed, before the timer records it.
                Status::OfferPending => d
                    .offer_response_due
                    .is_some_and(|due| now >= due && now <= due + policy.escalation_window),
                // Once the merchant's deadline has passed, before the timer records it, where
                // the policy lets the buyer escalate then, within the escalation window.
                Status::AwaitingMerchant => {
                    policy.on_merchant_timeout == OnMerchantTimeout::AllowEscalation
                        && d.merchant_response_due
                            .is_some_and(|due| now >= due && now <= due + policy.escalation_window)
                }
                _ => until(d.escalation_due),
            },
            // Only a first ruling, until a return is shipped (which ends the window).
            Appeal => d.appeal_due.is_some_and(|due| now <= due),
            ShipReturn => until(d.return_ship_due),
            RegisterOrder | MarkDelivered | MerchantAccept | Assign | Judge | ConfirmReturn
            | RecordRefundPaid | Withdraw | ExpireDeadline | MarkShipped => true,
            // An arbitrator only as the round's assignee; each author up to the policy's cap.
            PostMessage => {
                (role != Role::Arbitrator || self.assignee.is_some())
                    && (self.messages.iter().filter(|m| m.author_role == role).count() as u64)
                        < u64::from(policy.max_messages_per_party)
            }
            // One open request at a time.
            RequestEvidence => self.open_request().is_none(),
        }
    }
}

/// The role a party acts in.
fn party_role(party: Party) -> Role {
    match party {
        Party::Buyer => Role::Buyer,
        Party::Merchant => Role::Merchant,
    }
}

fn empty_return() -> ReturnView {
    ReturnView {
        reference: String::new(),
        address: None,
        carrier: None,
        tracking_number: None,
        received_at: None,
        inspection_failed: None,
        inspection_note: None,
    }
}

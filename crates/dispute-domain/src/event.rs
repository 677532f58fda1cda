//! Events: past-tense facts, the only thing ever stored. They carry what readers need (amounts,
//! deadlines, parties) so projections copy and count and never recompute a rule.
//!
//! Every event type has a version; a change to a type's shape gets a new version and an
//! upcaster. The catalogue is `docs/events.md`.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{
    ApprovedBy, Evidence, InspectionProblem, Money, OfferKind, OrderFacts, Party, PaymentChannel,
    ReceiptConfirmedBy, RefundKind, RefundReason, RejectionReason, Role, RulingOutcome,
};

/// The current version of every event type's shape.
pub const EVENT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeEvent {
    /// The platform's order service registered the order's facts; the stream begins.
    OrderRegistered {
        facts: OrderFacts,
    },
    OrderDelivered {
        #[serde(with = "crate::rfc3339")]
        delivered_at: DateTime<Utc>,
    },
    RefundRequested {
        round: u32,
        kind: RefundKind,
        reason: RefundReason,
        amount: Money,
        description: String,
        evidence: Vec<Evidence>,
        #[serde(with = "crate::rfc3339")]
        merchant_response_due: DateTime<Utc>,
    },
    /// A refund was approved without arbitration: by the merchant, by an accepted offer, by
    /// policy for an unshipped order, or by the merchant's missed deadline in an auto-accept
    /// category. When a return is required the buyer must ship it by `return_ship_due`.
    RefundApproved {
        round: u32,
        amount: Money,
        approved_by: ApprovedBy,
        return_required: bool,
        #[serde(with = "crate::rfc3339::option", default)]
        return_ship_due: Option<DateTime<Utc>>,
        note: Option<String>,
        /// When the refund was approved: a payment may not be dated before it. Absent from
        /// approvals stored before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        approved_at: Option<DateTime<Utc>>,
        /// Where the goods go back, when a return is required and an address was named (by the
        /// merchant, the offer, or the category's policy); absent: the merchant's address on
        /// file. Absent from approvals stored before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        return_address: Option<String>,
        /// When the payment system should have paid, when no return is required (else
        /// [`DisputeEvent::ReturnReceived`] carries it). Absent from approvals stored before
        /// the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        refund_due: Option<DateTime<Utc>>,
    },
    MerchantRejected {
        round: u32,
        reason_code: RejectionReason,
        note: String,
        evidence: Vec<Evidence>,
        #[serde(with = "crate::rfc3339")]
        escalation_due: DateTime<Utc>,
    },
    /// A partial refund offered, with or without the goods coming back. The fields after
    /// `note` are absent from offers stored before they existed (a partial refund, open until
    /// answered, the round's first offer).
    MerchantOffered {
        round: u32,
        amount: Money,
        note: String,
        #[serde(default)]
        kind: OfferKind,
        /// Where the goods go back, for `partial_refund_with_return`, when named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        return_address: Option<String>,
        /// When the offer lapses unanswered; the buyer may then escalate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        expires_at: Option<DateTime<Utc>>,
        /// 0 for the round's first offer, then 1, 2, … for each revision after a decline.
        #[serde(default)]
        revision: u32,
    },
    OfferDeclined {
        round: u32,
        note: Option<String>,
        #[serde(with = "crate::rfc3339")]
        escalation_due: DateTime<Utc>,
    },
    EvidenceSubmitted {
        round: u32,
        party: Party,
        evidence: Vec<Evidence>,
    },
    /// The merchant let the response deadline pass; the buyer may escalate until `escalation_due`.
    MerchantResponseMissed {
        round: u32,
        #[serde(with = "crate::rfc3339")]
        escalation_due: DateTime<Utc>,
    },
    DisputeEscalated {
        round: u32,
        note: String,
        #[serde(with = "crate::rfc3339")]
        evidence_due: DateTime<Utc>,
        /// When an arbitrator should have been assigned (the platform's SLA).
        #[serde(with = "crate::rfc3339")]
        assignment_due: DateTime<Utc>,
    },
    /// The buyer did not escalate in time: the rejection stands.
    EscalationWindowClosed {
        round: u32,
    },
    ArbitratorAssigned {
        round: u32,
        arbitrator_id: String,
        assigned_by: String,
    },
    DisputeJudged {
        round: u32,
        arbitrator_id: String,
        outcome: RulingOutcome,
        /// What is refunded: the request for `refund_full`, the given amount for
        /// `refund_partial`, none for `no_refund`.
        amount: Option<Money>,
        return_required: bool,
        rationale: String,
        /// A ruling on appeal is final; a first ruling may be appealed until `appeal_due`.
        final_ruling: bool,
        #[serde(with = "crate::rfc3339::option", default)]
        appeal_due: Option<DateTime<Utc>>,
        #[serde(with = "crate::rfc3339::option", default)]
        return_ship_due: Option<DateTime<Utc>>,
        /// When the ruling was made: a payment of its refund may not be dated before it.
        /// Absent from rulings stored before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        ruled_at: Option<DateTime<Utc>>,
        /// Where the goods go back when the ruling requires it: the category's default address,
        /// when the policy names one. Absent from rulings stored before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        return_address: Option<String>,
        /// When the payment system should have paid a refund ruled without return.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        refund_due: Option<DateTime<Utc>>,
    },
    RulingAppealed {
        round: u32,
        party: Party,
        note: String,
        #[serde(with = "crate::rfc3339")]
        evidence_due: DateTime<Utc>,
        /// When an arbitrator should have been assigned to the appeal (the platform's SLA).
        /// Absent from appeals stored before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        assignment_due: Option<DateTime<Utc>>,
    },
    ReturnShipped {
        round: u32,
        carrier: String,
        tracking_number: String,
        #[serde(with = "crate::rfc3339")]
        receipt_confirm_due: DateTime<Utc>,
    },
    ReturnReceived {
        round: u32,
        confirmed_by: ReceiptConfirmedBy,
        note: Option<String>,
        /// When the payment system should have paid the refund; absent for a replacement and
        /// from receipts stored before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[serde(with = "crate::rfc3339::option")]
        refund_due: Option<DateTime<Utc>>,
    },
    /// The buyer did not ship the approved return in time.
    ReturnShippingMissed {
        round: u32,
    },
    RefundPaid {
        round: u32,
        amount: Money,
        channel: PaymentChannel,
        payment_ref: String,
        #[serde(with = "crate::rfc3339")]
        paid_at: DateTime<Utc>,
        /// When the money should have reached the buyer, by channel.
        #[serde(with = "crate::rfc3339")]
        expected_arrival_by: DateTime<Utc>,
    },
    RequestWithdrawn {
        round: u32,
        note: Option<String>,
    },
    /// A message from the buyer, the merchant or the round's arbitrator, visible to the
    /// dispute's parties. A party's evidence on it counts like submitted evidence.
    MessagePosted {
        round: u32,
        author_role: Role,
        author_id: String,
        text: String,
        evidence: Vec<Evidence>,
    },
    /// The assigned arbitrator asked `party` for evidence by `due`. `request` numbers the
    /// requests of the dispute from 1.
    EvidenceRequested {
        round: u32,
        request: u32,
        arbitrator_id: String,
        party: Party,
        what: String,
        #[serde(with = "crate::rfc3339")]
        due: DateTime<Utc>,
    },
    /// The party asked gave evidence (submitted, or on a message) while the request was open.
    EvidenceRequestAnswered {
        round: u32,
        request: u32,
        party: Party,
    },
    /// The request's deadline passed unanswered (fired by the deadline timer).
    EvidenceRequestLapsed {
        round: u32,
        request: u32,
        party: Party,
    },
    /// The order service reported the order shipped after registration.
    OrderShipped {
        #[serde(with = "crate::rfc3339")]
        shipped_at: DateTime<Utc>,
    },
    /// The merchant offered a replacement (换货) instead of a refund: the goods come back and
    /// a new one is sent.
    ReplacementOffered {
        round: u32,
        note: String,
        return_address: Option<String>,
        #[serde(with = "crate::rfc3339")]
        expires_at: DateTime<Utc>,
        revision: u32,
    },
    /// The buyer left the offer unanswered past `expires_at` (the timer, or an escalation
    /// after it); the buyer may escalate until `escalation_due`.
    OfferLapsed {
        round: u32,
        #[serde(with = "crate::rfc3339")]
        escalation_due: DateTime<Utc>,
    },
    /// The buyer accepted a replacement: the goods go back by `return_ship_due`.
    ReplacementAgreed {
        round: u32,
        #[serde(with = "crate::rfc3339")]
        return_ship_due: DateTime<Utc>,
        return_address: Option<String>,
    },
    /// The merchant opened the returned parcel and found a problem instead of the goods sent;
    /// no refund is due unless the buyer escalates by `escalation_due` and the platform rules.
    ReturnInspectionFailed {
        round: u32,
        problem: InspectionProblem,
        note: String,
        #[serde(with = "crate::rfc3339")]
        escalation_due: DateTime<Utc>,
    },
}

impl DisputeEvent {
    /// The event type's name, as stored and published.
    pub fn name(&self) -> &'static str {
        match self {
            DisputeEvent::OrderRegistered { .. } => "OrderRegistered",
            DisputeEvent::OrderDelivered { .. } => "OrderDelivered",
            DisputeEvent::RefundRequested { .. } => "RefundRequested",
            DisputeEvent::RefundApproved { .. } => "RefundApproved",
            DisputeEvent::MerchantRejected { .. } => "MerchantRejected",
            DisputeEvent::MerchantOffered { .. } => "MerchantOffered",
            DisputeEvent::OfferDeclined { .. } => "OfferDeclined",
            DisputeEvent::EvidenceSubmitted { .. } => "EvidenceSubmitted",
            DisputeEvent::MerchantResponseMissed { .. } => "MerchantResponseMissed",
            DisputeEvent::DisputeEscalated { .. } => "DisputeEscalated",
            DisputeEvent::EscalationWindowClosed { .. } => "EscalationWindowClosed",
            DisputeEvent::ArbitratorAssigned { .. } => "ArbitratorAssigned",
            DisputeEvent::DisputeJudged { .. } => "DisputeJudged",
            DisputeEvent::RulingAppealed { .. } => "RulingAppealed",
            DisputeEvent::ReturnShipped { .. } => "ReturnShipped",
            DisputeEvent::ReturnReceived { .. } => "ReturnReceived",
            DisputeEvent::ReturnShippingMissed { .. } => "ReturnShippingMissed",
            DisputeEvent::RefundPaid { .. } => "RefundPaid",
            DisputeEvent::RequestWithdrawn { .. } => "RequestWithdrawn",
            DisputeEvent::MessagePosted { .. } => "MessagePosted",
            DisputeEvent::EvidenceRequested { .. } => "EvidenceRequested",
            DisputeEvent::EvidenceRequestAnswered { .. } => "EvidenceRequestAnswered",
            DisputeEvent::EvidenceRequestLapsed { .. } => "EvidenceRequestLapsed",
            DisputeEvent::OrderShipped { .. } => "OrderShipped",
            DisputeEvent::ReplacementOffered { .. } => "ReplacementOffered",
            DisputeEvent::OfferLapsed { .. } => "OfferLapsed",
            DisputeEvent::ReplacementAgreed { .. } => "ReplacementAgreed",
            DisputeEvent::ReturnInspectionFailed { .. } => "ReturnInspectionFailed",
        }
    }
}

impl DomainEvent for DisputeEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}

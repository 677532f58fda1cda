//! Commands: what a caller asks the dispute to do. Imperative names; each becomes zero or more
//! events, or a [`DisputeError`](crate::DisputeError) and nothing at all.
//!
//! The payload structs are also the JSON bodies of the HTTP commands (unknown fields refused),
//! so that no one can set a field they do not own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Actor, Evidence, InspectionProblem, Money, OfferKind, OrderFacts, Party, PaymentChannel, RefundKind,
    RefundReason, RejectionReason, RulingOutcome, Status,
};

/// A command and the caller issuing it.
#[derive(Debug, Clone, PartialEq)]
pub struct DisputeCommand {
    pub actor: Actor,
    pub action: Action,
}

impl DisputeCommand {
    pub fn new(actor: Actor, action: Action) -> Self {
        Self { actor, action }
    }
}

/// Everything a dispute can be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    RegisterOrder(OrderFacts),
    MarkDelivered(MarkDelivered),
    RequestRefund(RequestRefund),
    MerchantAccept(MerchantAccept),
    MerchantReject(MerchantReject),
    MerchantOffer(MerchantOffer),
    AcceptOffer,
    DeclineOffer(DeclineOffer),
    SubmitEvidence(SubmitEvidence),
    Escalate(Escalate),
    Assign(Assign),
    Judge(Judge),
    Appeal(Appeal),
    ShipReturn(ShipReturn),
    ConfirmReturn(ConfirmReturn),
    RecordRefundPaid(RecordRefundPaid),
    Withdraw(Withdraw),
    /// Fired by the deadline timer when a deadline of `round` comes due.
    ExpireDeadline {
        deadline: Deadline,
        round: u32,
    },
    PostMessage(PostMessage),
    RequestEvidence(RequestEvidence),
    MarkShipped(MarkShipped),
}

/// The deadlines whose passing changes a dispute's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deadline {
    /// The merchant did not answer a request in time.
    MerchantResponse,
    /// The buyer did not escalate a rejection in time.
    EscalationWindow,
    /// The buyer did not ship an approved return in time.
    ReturnShipping,
    /// The merchant did not confirm a shipped return's receipt in time.
    ReturnReceipt,
    /// The party an arbitrator asked for evidence did not answer in time. It changes no
    /// status; it runs while the dispute is under review, where no other deadline runs.
    EvidenceRequest,
    /// The buyer did not answer the merchant's offer in time.
    OfferResponse,
}

impl Deadline {
    /// The deadline's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::MerchantResponse => "merchant_response",
            Deadline::EscalationWindow => "escalation_window",
            Deadline::ReturnShipping => "return_shipping",
            Deadline::ReturnReceipt => "return_receipt",
            Deadline::EvidenceRequest => "evidence_request",
            Deadline::OfferResponse => "offer_response",
        }
    }

    /// The status this deadline runs in; it expires only there.
    pub fn status(self) -> Status {
        match self {
            Deadline::MerchantResponse => Status::AwaitingMerchant,
            Deadline::EscalationWindow => Status::Rejected,
            Deadline::ReturnShipping => Status::AwaitingReturn,
            Deadline::ReturnReceipt => Status::ReturnShipped,
            Deadline::EvidenceRequest => Status::UnderReview,
            Deadline::OfferResponse => Status::OfferPending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MarkDelivered {
    #[serde(with = "crate::rfc3339")]
    pub delivered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestRefund {
    pub kind: RefundKind,
    pub reason: RefundReason,
    pub amount: Money,
    pub description: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MerchantAccept {
    #[serde(default)]
    pub note: Option<String>,
    /// Where a return goes, when the request is a return-and-refund; absent: the policy's
    /// default for the category, else the merchant's address on file.
    #[serde(default)]
    pub return_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MerchantReject {
    pub reason_code: RejectionReason,
    pub note: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MerchantOffer {
    /// What is refunded: required for the partial refunds, refused for a replacement.
    #[serde(default)]
    pub amount: Option<Money>,
    pub note: String,
    /// Absent: a partial refund, as before offers had kinds.
    #[serde(default)]
    pub kind: OfferKind,
    /// Where the goods go back, for the kinds with a return; absent: the policy's default for
    /// the category, else the merchant's address on file.
    #[serde(default)]
    pub return_address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeclineOffer {
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitEvidence {
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub arbitrator_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Judge {
    pub outcome: RulingOutcome,
    /// Required for `refund_partial`; absent otherwise (`refund_full` refunds the request).
    #[serde(default)]
    pub amount: Option<Money>,
    pub return_required: bool,
    pub rationale: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Appeal {
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShipReturn {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmReturn {
    #[serde(default)]
    pub note: Option<String>,
    /// The parcel failed inspection: not what was sent. Absent: received as expected.
    #[serde(default)]
    pub inspection_failed: Option<InspectionProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecordRefundPaid {
    pub amount: Money,
    pub channel: PaymentChannel,
    pub payment_ref: String,
    #[serde(with = "crate::rfc3339")]
    pub paid_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    #[serde(default)]
    pub note: Option<String>,
}

/// The most characters a message's text or an evidence request's `what` may have (PayPal's
/// limit for a dispute message).
pub const MAX_TEXT_CHARS: usize = 2000;

/// A message on the dispute from its buyer, its merchant or its assigned arbitrator, with
/// evidence if the author is a party and evidence is open to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// 1 to [`MAX_TEXT_CHARS`] characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub text: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// The assigned arbitrator asks one party for evidence, by the policy's `evidence_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestEvidence {
    pub party: Party,
    /// What is needed, 1 to [`MAX_TEXT_CHARS`] characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub what: String,
}

/// The order service reports the order shipped, when it was not known at registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MarkShipped {
    #[serde(with = "crate::rfc3339")]
    pub shipped_at: DateTime<Utc>,
}

//! The words of the dispute domain: who acts, what an order is, why and how a refund is asked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Money;

/// What the caller is to the platform. Carried by every command; checked by the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Buyer,
    Merchant,
    Arbitrator,
    System,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Merchant => "merchant",
            Role::Arbitrator => "arbitrator",
            Role::System => "system",
            Role::Auditor => "auditor",
        }
    }
}

/// Who issues a command: a role and the subject id within it (buyer id, merchant id, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    pub role: Role,
    pub id: String,
}

impl Actor {
    pub fn new(role: Role, id: impl Into<String>) -> Self {
        Self { role, id: id.into() }
    }
}

/// How the buyer paid; refunds go back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentChannel {
    Balance,
    Alipay,
    WechatPay,
    BankCard,
}

/// An order's facts as the platform's order service registered them. Fixed once registered,
/// except the delivery time, which arrives later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderFacts {
    pub order_id: String,
    pub buyer_id: String,
    pub merchant_id: String,
    pub paid_amount: Money,
    #[serde(with = "crate::rfc3339")]
    pub paid_at: DateTime<Utc>,
    pub category: String,
    pub payment_channel: PaymentChannel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::rfc3339::option")]
    pub shipped_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::rfc3339::option")]
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    RefundOnly,
    ReturnAndRefund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    QualityIssue,
    NotAsDescribed,
    WrongItem,
    DamagedInTransit,
    NotReceived,
    SizeMismatch,
    #[serde(rename = "no_reason_7d")]
    NoReason7d,
    ChangedMind,
}

/// Why a merchant rejects a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    OutsideWindow,
    ItemUsed,
    DamagedByBuyer,
    InsufficientEvidence,
    NotAsClaimed,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    Photo,
    Video,
    ChatLog,
    Shipping,
    Receipt,
    Other,
}

/// One piece of evidence: where it is and the SHA-256 of its content, so it cannot be swapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub kind: EvidenceKind,
    pub uri: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Evidence {
    pub(crate) fn is_well_formed(&self) -> bool {
        !self.uri.trim().is_empty()
            && self.sha256.len() == 64
            && self.sha256.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RulingOutcome {
    RefundFull,
    RefundPartial,
    NoRefund,
}

/// The status of the current round, as every answer and view reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No order registered yet: the stream is empty. Never reported to clients.
    #[default]
    Unregistered,
    Open,
    AwaitingMerchant,
    OfferPending,
    Rejected,
    Escalated,
    UnderReview,
    Appealed,
    AwaitingReturn,
    ReturnShipped,
    RefundPending,
    Refunded,
    Closed,
}

impl Status {
    pub const ALL: [Status; 13] = [
        Status::Unregistered,
        Status::Open,
        Status::AwaitingMerchant,
        Status::OfferPending,
        Status::Rejected,
        Status::Escalated,
        Status::UnderReview,
        Status::Appealed,
        Status::AwaitingReturn,
        Status::ReturnShipped,
        Status::RefundPending,
        Status::Refunded,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unregistered => "unregistered",
            Status::Open => "open",
            Status::AwaitingMerchant => "awaiting_merchant",
            Status::OfferPending => "offer_pending",
            Status::Rejected => "rejected",
            Status::Escalated => "escalated",
            Status::UnderReview => "under_review",
            Status::Appealed => "appealed",
            Status::AwaitingReturn => "awaiting_return",
            Status::ReturnShipped => "return_shipped",
            Status::RefundPending => "refund_pending",
            Status::Refunded => "refunded",
            Status::Closed => "closed",
        }
    }
}

/// Why a round ended without (more) refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Withdrawn,
    RejectionAccepted,
    RuledNoRefund,
    ReturnNotShipped,
    /// The buyer accepted a replacement offer and the merchant received the goods back: the
    /// merchant sends the replacement through the order service.
    Replaced,
}

/// Who approved a refund, for the record and the merchant's win/loss figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovedBy {
    /// A refund-only request for the full amount of an order not yet shipped.
    UnshippedPolicy,
    Merchant,
    /// The merchant let the response deadline pass in a category that auto-accepts.
    MerchantTimeout,
    /// The buyer accepted the merchant's offer.
    Offer,
}

/// How a return's receipt was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReceiptConfirmedBy {
    Merchant,
    /// The merchant did not confirm within the policy's window after shipment.
    Timeout,
}

/// The party of an order a buyer or merchant actor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Buyer,
    Merchant,
}

/// What a merchant offers instead of the refund asked for. Offers stored or sent before kinds
/// existed are partial refunds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    /// Part of the money back; the buyer keeps the goods.
    #[default]
    PartialRefund,
    /// Part of the money back once the goods come back.
    PartialRefundWithReturn,
    /// No money back: the goods come back and the merchant sends a replacement (换货).
    Replacement,
}

impl OfferKind {
    /// Whether accepting the offer sends the goods back.
    pub fn return_required(self) -> bool {
        !matches!(self, OfferKind::PartialRefund)
    }

    /// Whether the offer carries an amount of money.
    pub fn refunds(self) -> bool {
        !matches!(self, OfferKind::Replacement)
    }
}

/// What the merchant found on opening a returned parcel, when it is not what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InspectionProblem {
    WrongItem,
    Damaged,
    EmptyBox,
    /// Parts or accessories missing.
    Incomplete,
}

/// The reference a return of `round` of the dispute on `order_id` ships under, for the
/// merchant's warehouse to match the parcel: stable, derived, never stored separately.
pub fn return_reference(order_id: &str, round: u32) -> String {
    format!("RMA-{order_id}-{round}")
}

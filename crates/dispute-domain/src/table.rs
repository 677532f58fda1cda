//! The command table: every command the dispute knows, declared once. Its name, where it is
//! sent, who may send it and the statuses where it applies.
//!
//! `decide` checks roles and statuses against this table, the API builds its routes and its
//! OpenAPI document from it, and the views offer a caller the actions it lists for their role
//! and status. A new command is one row here (the compiler then asks for its rule, its body
//! and its view condition).

use crate::{Action, Role, Status};

/// Which command, without its payload: the key of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    RegisterOrder,
    MarkDelivered,
    RequestRefund,
    MerchantAccept,
    MerchantReject,
    MerchantOffer,
    AcceptOffer,
    DeclineOffer,
    SubmitEvidence,
    Escalate,
    Assign,
    Judge,
    Appeal,
    ShipReturn,
    ConfirmReturn,
    RecordRefundPaid,
    Withdraw,
    ExpireDeadline,
    PostMessage,
    RequestEvidence,
    MarkShipped,
}

/// What a command addresses, and so where it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The order's facts, from the platform's order service: `/v1/orders/{id}` and below.
    Order,
    /// A step of the order's dispute: `/v1/disputes/{id}/<segment>`.
    Dispute,
    /// Sent by the service itself (the deadline timer), never by a caller.
    Internal,
}

/// How a command is sent: `Put` sets the order's facts (the same facts again change nothing);
/// `Post` asks for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Put,
    Post,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    pub kind: ActionKind,
    /// The name in the dispute's words, as in errors, logs and event metadata.
    pub name: &'static str,
    /// The last segment of its route, also the action name the views offer; empty for the
    /// order itself.
    pub segment: &'static str,
    pub scope: Scope,
    pub method: Method,
    /// Who may send it; others are refused as `forbidden`.
    pub roles: &'static [Role],
    /// Where it applies; elsewhere it is refused as `invalid_transition`. A rule may still
    /// refuse it there (a closed window, an amount, a party).
    pub statuses: &'static [Status],
}

impl ActionKind {
    /// This command's row.
    pub fn spec(self) -> &'static CommandSpec {
        &COMMANDS[self as usize]
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::RegisterOrder(_) => ActionKind::RegisterOrder,
            Action::MarkDelivered(_) => ActionKind::MarkDelivered,
            Action::RequestRefund(_) => ActionKind::RequestRefund,
            Action::MerchantAccept(_) => ActionKind::MerchantAccept,
            Action::MerchantReject(_) => ActionKind::MerchantReject,
            Action::MerchantOffer(_) => ActionKind::MerchantOffer,
            Action::AcceptOffer => ActionKind::AcceptOffer,
            Action::DeclineOffer(_) => ActionKind::DeclineOffer,
            Action::SubmitEvidence(_) => ActionKind::SubmitEvidence,
            Action::Escalate(_) => ActionKind::Escalate,
            Action::Assign(_) => ActionKind::Assign,
            Action::Judge(_) => ActionKind::Judge,
            Action::Appeal(_) => ActionKind::Appeal,
            Action::ShipReturn(_) => ActionKind::ShipReturn,
            Action::ConfirmReturn(_) => ActionKind::ConfirmReturn,
            Action::RecordRefundPaid(_) => ActionKind::RecordRefundPaid,
            Action::Withdraw(_) => ActionKind::Withdraw,
            Action::ExpireDeadline { .. } => ActionKind::ExpireDeadline,
            Action::PostMessage(_) => ActionKind::PostMessage,
            Action::RequestEvidence(_) => ActionKind::RequestEvidence,
            Action::MarkShipped(_) => ActionKind::MarkShipped,
        }
    }

    /// This command's row of the table.
    pub fn spec(&self) -> &'static CommandSpec {
        self.kind().spec()
    }

    /// The command's name in the dispute's words, as used in errors and logs.
    pub fn name(&self) -> &'static str {
        self.spec().name
    }
}

use Method::{Post, Put};
use Role::{Arbitrator, Buyer, Merchant, System};
use Scope::{Dispute, Internal, Order};
use Status::*;

/// The order's facts may be recorded in any status (again with the same facts, or the
/// delivery once); the rule says what a repeat answers.
const ANY: &[Status] = &Status::ALL;

macro_rules! command {
    ($kind:ident, $name:literal, $segment:literal, $scope:ident, $method:ident,
     [$($role:ident),+], $statuses:expr) => {
        CommandSpec {
            kind: ActionKind::$kind,
            name: $name,
            segment: $segment,
            scope: $scope,
            method: $method,
            roles: &[$($role),+],
            statuses: $statuses,
        }
    };
}

/// Every command, in the order of [`ActionKind`] (and of the contract's table).
pub static COMMANDS: &[CommandSpec] = &[
    command!(RegisterOrder, "register_order", "", Order, Put, [System], ANY),
    command!(MarkDelivered, "delivered", "delivered", Order, Post, [System], ANY),
    command!(RequestRefund, "request", "request", Dispute, Post, [Buyer], &[Open, Refunded, Closed]),
    command!(
        MerchantAccept,
        "merchant_accept",
        "merchant-accept",
        Dispute,
        Post,
        [Merchant],
        &[AwaitingMerchant]
    ),
    command!(
        MerchantReject,
        "merchant_reject",
        "merchant-reject",
        Dispute,
        Post,
        [Merchant],
        &[AwaitingMerchant]
    ),
    command!(
        MerchantOffer,
        "merchant_offer",
        "merchant-offer",
        Dispute,
        Post,
        [Merchant],
        // In `rejected` only to revise an offer the buyer declined.
        &[AwaitingMerchant, Rejected]
    ),
    command!(AcceptOffer, "accept_offer", "accept-offer", Dispute, Post, [Buyer], &[OfferPending]),
    command!(DeclineOffer, "decline_offer", "decline-offer", Dispute, Post, [Buyer], &[OfferPending]),
    command!(
        SubmitEvidence,
        "evidence",
        "evidence",
        Dispute,
        Post,
        [Buyer, Merchant],
        &[AwaitingMerchant, Escalated, UnderReview, Appealed, Rejected]
    ),
    // In `awaiting_merchant` only once the merchant's deadline has passed, where the policy
    // lets the buyer escalate then; in `offer_pending` only once the offer has lapsed.
    command!(
        Escalate,
        "escalate",
        "escalate",
        Dispute,
        Post,
        [Buyer],
        &[Rejected, AwaitingMerchant, OfferPending]
    ),
    command!(Assign, "assign", "assign", Dispute, Post, [Arbitrator], &[Escalated, Appealed]),
    command!(Judge, "judge", "judge", Dispute, Post, [Arbitrator], &[UnderReview]),
    // After a first ruling only, before any refund for it is paid or any return shipped.
    command!(
        Appeal,
        "appeal",
        "appeal",
        Dispute,
        Post,
        [Buyer, Merchant],
        &[AwaitingReturn, RefundPending, Closed]
    ),
    command!(ShipReturn, "ship_return", "ship-return", Dispute, Post, [Buyer], &[AwaitingReturn]),
    command!(ConfirmReturn, "confirm_return", "confirm-return", Dispute, Post, [Merchant], &[ReturnShipped]),
    command!(RecordRefundPaid, "refund_paid", "refund-paid", Dispute, Post, [System], &[RefundPending]),
    // Until a refund is approved or ruled; an appeal suspends the ruling until it is ruled.
    command!(
        Withdraw,
        "withdraw",
        "withdraw",
        Dispute,
        Post,
        [Buyer],
        &[AwaitingMerchant, OfferPending, Rejected, Escalated, UnderReview, Appealed]
    ),
    // The statuses where a deadline runs (a status-changing one, or an evidence request under
    // review); each deadline expires in its own.
    command!(
        ExpireDeadline,
        "expire_deadline",
        "",
        Internal,
        Post,
        [System],
        &[AwaitingMerchant, Rejected, AwaitingReturn, ReturnShipped, UnderReview, OfferPending]
    ),
    // From the request until the round ends (refunded or closed); an arbitrator only as the
    // round's assignee.
    command!(
        PostMessage,
        "messages",
        "messages",
        Dispute,
        Post,
        [Buyer, Merchant, Arbitrator],
        &[
            AwaitingMerchant,
            OfferPending,
            Rejected,
            Escalated,
            UnderReview,
            Appealed,
            AwaitingReturn,
            ReturnShipped,
            RefundPending
        ]
    ),
    // By the assignee, one open request at a time.
    command!(
        RequestEvidence,
        "evidence_requests",
        "evidence-requests",
        Dispute,
        Post,
        [Arbitrator],
        &[UnderReview]
    ),
    command!(MarkShipped, "shipped", "shipped", Order, Post, [System], ANY),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_its_own_row() {
        for (index, spec) in COMMANDS.iter().enumerate() {
            assert_eq!(spec.kind as usize, index, "{} is out of place", spec.name);
            assert_eq!(spec.kind.spec(), spec);
        }
        assert_eq!(COMMANDS.len(), ActionKind::MarkShipped as usize + 1);
    }

    #[test]
    fn names_and_segments_are_unique_and_agree() {
        for (i, a) in COMMANDS.iter().enumerate() {
            for b in &COMMANDS[i + 1..] {
                assert_ne!(a.name, b.name);
                if a.scope == b.scope && a.scope != Scope::Internal {
                    assert_ne!(a.segment, b.segment);
                }
            }
            if a.scope == Scope::Dispute {
                assert_eq!(a.segment.replace('-', "_"), a.name, "{}", a.name);
            }
        }
    }
}

//! Why a command was refused. A refused command emits no event.
//!
//! A refusal may carry what the caller needs to correct the command (what is still
//! refundable, when the window ended); its message shows it. It carries only what every
//! caller allowed to send the command may know about the order.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::Money;

/// How a refusal is classed: the HTTP edge maps each class to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Unknown order, or the caller is not a party to it (no leak of existence).
    NotFound,
    /// The caller's role may not issue this command.
    Forbidden,
    /// The command does not apply in the dispute's current status.
    Conflict,
    /// A rule of the refund policy refuses the command.
    RuleViolation,
}

/// A rule violation. Each variant has a stable snake_case [`code`](DisputeError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisputeError {
    #[error("no such order")]
    OrderNotFound,
    #[error("the caller is not a party to this order")]
    NotAParty,
    #[error("this role may not issue this command")]
    Forbidden,
    #[error("only the assigned arbitrator may judge")]
    NotAssignee,
    #[error("{command} does not apply while the dispute is {status}")]
    InvalidTransition { command: &'static str, status: &'static str },
    #[error("the order is already registered with other facts")]
    OrderFactsConflict,
    #[error("the order's delivery was already recorded at another time")]
    DeliveryConflict,
    #[error("amounts are whole minor units greater than zero")]
    InvalidAmount,
    #[error("currencies are three upper-case letters (ISO 4217)")]
    InvalidCurrency,
    #[error("the amount is not in the order's currency")]
    CurrencyMismatch,
    #[error(
        "the amount exceeds what is still refundable on this order: at most {refundable} ({} minor units) is refundable",
        refundable.amount_minor
    )]
    AmountExceedsRefundable { refundable: Money },
    #[error("an offer must be less than the amount requested")]
    OfferNotBelowRequest,
    #[error(
        "a partial ruling must be less than the amount requested (a full ruling pays what was requested)"
    )]
    PartialNotBelowRequest,
    #[error(
        "the request is outside the request window: {} from delivery, which ended at {}",
        describe_duration(*window),
        ends.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    OutsideRequestWindow { window: Duration, ends: DateTime<Utc> },
    #[error("a shipped order that has not been delivered can only be refunded as not received")]
    ReasonNotAllowed,
    #[error("no-reason returns are not allowed for this order now")]
    NoReasonNotAllowed,
    #[error("evidence is limited per party per dispute")]
    TooMuchEvidence,
    #[error("evidence needs a URI and a SHA-256 digest of 64 hex characters")]
    InvalidEvidence,
    #[error("the merchant's response deadline has passed")]
    ResponseDeadlinePassed,
    #[error("the return shipping window is closed")]
    ReturnWindowClosed,
    #[error("the evidence window is closed")]
    EvidenceWindowClosed,
    #[error("the deadline has not been reached")]
    DeadlineNotReached,
    #[error("the escalation window is closed")]
    EscalationWindowClosed,
    #[error("an appeal must be judged by a different arbitrator")]
    SameArbitrator,
    #[error("{0} must be given for this outcome")]
    AmountRequired(&'static str),
    #[error("no amount may be given for this outcome")]
    AmountNotAllowed,
    #[error("a ruling without refund cannot require a return")]
    ReturnWithoutRefund,
    #[error("the appeal window is closed")]
    AppealWindowClosed,
    #[error("this dispute has used all its rounds")]
    MaxRoundsReached,
    #[error("the amount paid must equal the approved amount")]
    AmountMismatch,
    #[error("the refund must go back through the order's payment channel")]
    ChannelMismatch,
    #[error("{0} must not be empty")]
    EmptyField(&'static str),
    #[error("order and dispute ids are 1 to 128 characters of ASCII letters, digits, '-', '_' and ':'")]
    InvalidOrderId,
    #[error("{0} is limited to 2000 characters")]
    TextTooLong(&'static str),
    #[error("messages are limited per party per dispute")]
    TooManyMessages,
    #[error("evidence may not be added here: only a party, where evidence is taken")]
    EvidenceNotAllowed,
    #[error("an evidence request is already open on this dispute")]
    EvidenceRequestOpen,
    #[error("the ruling on appeal is final: it cannot be appealed")]
    RulingFinal,
    #[error(
        "paid_at is before the refund was approved, at {}",
        approved_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    PaidBeforeApproval { approved_at: DateTime<Utc> },
    #[error(
        "paid_at is in the future: it may be at most {} (the clock plus a small skew)",
        latest.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    PaidInFuture { latest: DateTime<Utc> },
    #[error("the order's shipment was already recorded at another time")]
    ShipmentConflict,
    #[error("the order has not shipped: there is nothing to return, so ask for a refund only")]
    ReturnWithoutShipment,
    #[error("the offer has expired; the buyer may escalate")]
    OfferExpired,
    #[error("the merchant has revised this round's offer as often as the policy allows")]
    OfferRevisionsExhausted,
}

impl DisputeError {
    /// The stable machine code clients switch on.
    pub fn code(&self) -> &'static str {
        use DisputeError::*;
        match self {
            OrderNotFound | NotAParty => "not_found",
            Forbidden | NotAssignee => "forbidden",
            InvalidTransition { .. } | OrderFactsConflict | DeliveryConflict | RulingFinal => {
                "invalid_transition"
            }
            InvalidAmount => "invalid_amount",
            InvalidCurrency => "invalid_currency",
            CurrencyMismatch => "currency_mismatch",
            AmountExceedsRefundable { .. } => "amount_exceeds_refundable",
            OfferNotBelowRequest => "offer_not_below_request",
            PartialNotBelowRequest => "partial_not_below_request",
            OutsideRequestWindow { .. } => "outside_request_window",
            ReasonNotAllowed => "reason_not_allowed",
            NoReasonNotAllowed => "no_reason_not_allowed",
            TooMuchEvidence => "too_much_evidence",
            InvalidEvidence => "invalid_evidence",
            EvidenceWindowClosed => "evidence_window_closed",
            ResponseDeadlinePassed => "response_deadline_passed",
            ReturnWindowClosed => "return_window_closed",
            DeadlineNotReached => "deadline_not_reached",
            EscalationWindowClosed => "escalation_window_closed",
            SameArbitrator => "same_arbitrator",
            AmountRequired(_) => "amount_required",
            AmountNotAllowed => "amount_not_allowed",
            ReturnWithoutRefund => "return_without_refund",
            AppealWindowClosed => "appeal_window_closed",
            MaxRoundsReached => "max_rounds_reached",
            AmountMismatch => "amount_mismatch",
            ChannelMismatch => "channel_mismatch",
            EmptyField(_) => "empty_field",
            InvalidOrderId => "invalid_order_id",
            TextTooLong(_) => "text_too_long",
            TooManyMessages => "too_many_messages",
            EvidenceNotAllowed => "evidence_not_allowed",
            EvidenceRequestOpen => "evidence_request_open",
            PaidBeforeApproval { .. } => "paid_before_approval",
            PaidInFuture { .. } => "paid_in_future",
            ShipmentConflict => "invalid_transition",
            ReturnWithoutShipment => "return_without_shipment",
            OfferExpired => "offer_expired",
            OfferRevisionsExhausted => "offer_revisions_exhausted",
        }
    }

    /// Every refusal once (details left blank), so that the codes a client may meet can be
    /// listed where they are documented. The match below fails to compile when a variant is
    /// added and not listed here.
    pub fn every() -> Vec<DisputeError> {
        use DisputeError::*;
        let every = vec![
            OrderNotFound,
            NotAParty,
            Forbidden,
            NotAssignee,
            InvalidTransition { command: "", status: "" },
            OrderFactsConflict,
            DeliveryConflict,
            InvalidAmount,
            InvalidCurrency,
            CurrencyMismatch,
            AmountExceedsRefundable { refundable: Money::zero("") },
            OfferNotBelowRequest,
            PartialNotBelowRequest,
            OutsideRequestWindow { window: Duration::zero(), ends: DateTime::UNIX_EPOCH },
            ReasonNotAllowed,
            NoReasonNotAllowed,
            TooMuchEvidence,
            InvalidEvidence,
            ResponseDeadlinePassed,
            ReturnWindowClosed,
            EvidenceWindowClosed,
            DeadlineNotReached,
            EscalationWindowClosed,
            SameArbitrator,
            AmountRequired(""),
            AmountNotAllowed,
            ReturnWithoutRefund,
            AppealWindowClosed,
            MaxRoundsReached,
            AmountMismatch,
            ChannelMismatch,
            EmptyField(""),
            InvalidOrderId,
            TextTooLong(""),
            TooManyMessages,
            EvidenceNotAllowed,
            EvidenceRequestOpen,
            RulingFinal,
            PaidBeforeApproval { approved_at: DateTime::UNIX_EPOCH },
            PaidInFuture { latest: DateTime::UNIX_EPOCH },
            ShipmentConflict,
            ReturnWithoutShipment,
            OfferExpired,
            OfferRevisionsExhausted,
        ];
        for refusal in &every {
            match refusal {
                OrderNotFound
                | NotAParty
                | Forbidden
                | NotAssignee
                | InvalidTransition { .. }
                | OrderFactsConflict
                | DeliveryConflict
                | InvalidAmount
                | InvalidCurrency
                | CurrencyMismatch
                | AmountExceedsRefundable { .. }
                | OfferNotBelowRequest
                | PartialNotBelowRequest
                | OutsideRequestWindow { .. }
                | ReasonNotAllowed
                | NoReasonNotAllowed
                | TooMuchEvidence
                | InvalidEvidence
                | ResponseDeadlinePassed
                | ReturnWindowClosed
                | EvidenceWindowClosed
                | DeadlineNotReached
                | EscalationWindowClosed
                | SameArbitrator
                | AmountRequired(_)
                | AmountNotAllowed
                | ReturnWithoutRefund
                | AppealWindowClosed
                | MaxRoundsReached
                | AmountMismatch
                | ChannelMismatch
                | EmptyField(_)
                | InvalidOrderId
                | TextTooLong(_)
                | TooManyMessages
                | EvidenceNotAllowed
                | EvidenceRequestOpen
                | OfferExpired
                | OfferRevisionsExhausted => {}
                RulingFinal
                | PaidBeforeApproval { .. }
                | PaidInFuture { .. }
                | ShipmentConflict
                | ReturnWithoutShipment => {}
            }
        }
        every
    }

    /// The distinct codes of the refusals of `kind`, in declaration order.
    pub fn codes(kind: RefusalKind) -> Vec<&'static str> {
        let mut codes: Vec<&str> = Vec::new();
        for refusal in Self::every().iter().filter(|r| r.kind() == kind) {
            if !codes.contains(&refusal.code()) {
                codes.push(refusal.code());
            }
        }
        codes
    }

    pub fn kind(&self) -> RefusalKind {
        use DisputeError::*;
        match self {
            OrderNotFound | NotAParty => RefusalKind::NotFound,
            Forbidden | NotAssignee => RefusalKind::Forbidden,
            InvalidTransition { .. }
            | OrderFactsConflict
            | DeliveryConflict
            | RulingFinal
            | ShipmentConflict => RefusalKind::Conflict,
            _ => RefusalKind::RuleViolation,
        }
    }
}

/// A window's length in the largest whole unit: "7 days", "48 hours", "90 seconds".
fn describe_duration(duration: Duration) -> String {
    let seconds = duration.num_seconds();
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(per, _)| seconds != 0 && seconds % per == 0)
        .map_or((seconds, "second"), |(per, unit)| (seconds / per, unit));
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_would_be_allowed() {
        let refusal = DisputeError::AmountExceedsRefundable { refundable: Money::new(1_200, "CNY") };
        assert!(
            refusal.to_string().ends_with("at most 12.00 CNY (1200 minor units) is refundable"),
            "{refusal}"
        );
        let refusal = DisputeError::OutsideRequestWindow {
            window: Duration::days(7),
            ends: "2025-03-13T08:00:00Z".parse().unwrap(),
        };
        assert!(
            refusal.to_string().ends_with("7 days from delivery, which ended at 2025-03-13T08:00:00Z"),
            "{refusal}"
        );
        assert!(DisputeError::RulingFinal.to_string().contains("final"));
    }

    #[test]
    fn windows_are_described_in_their_largest_whole_unit() {
        assert_eq!(describe_duration(Duration::days(1)), "1 day");
        assert_eq!(describe_duration(Duration::days(15)), "15 days");
        assert_eq!(describe_duration(Duration::hours(48)), "2 days");
        assert_eq!(describe_duration(Duration::hours(36)), "36 hours");
        assert_eq!(describe_duration(Duration::minutes(90)), "90 minutes");
        assert_eq!(describe_duration(Duration::seconds(90)), "90 seconds");
    }
}

//! The dispute aggregate: one stream per order, holding the order's facts and every round.
//!
//! [`Dispute::decide`] checks a command against the state and the policy and returns the
//! events it causes (or why it is refused); [`Dispute::apply`](cqrs_es::Aggregate::apply)
//! folds an event into the state and never fails.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::command::*;
use crate::{
    Actor, ApprovedBy, CategoryPolicy, Clock, CloseReason, DisputeError, DisputeEvent, Money,
    OnMerchantTimeout, OrderFacts, Party, PaymentChannel, Policy, ReceiptConfirmedBy, RefundKind,
    RefundReason, Role, RulingOutcome, Status, Timer,
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
    return_ship_due: Option<DateTime<Utc>>,
    receipt_confirm_due: Option<DateTime<Utc>>,
}

impl Round {
    fn due(&self, deadline: Deadline) -> Option<DateTime<Utc>> {
        match deadline {
            Deadline::MerchantResponse => Some(self.merchant_response_due),
            Deadline::EscalationWindow => self.escalation_due,
            Deadline::ReturnShipping => self.return_ship_due,
            Deadline::ReturnReceipt => self.receipt_confirm_due,
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
            _ => return None,
        };
        let due = self.current.as_ref()?.due(deadline)?;
        Some(Timer { deadline, round: self.round, due })
    }

    /// Paid minus refunded: the most any further refund may be.
    fn refundable_minor(&self, order: &OrderFacts) -> i64 {
        order.paid_amount.amount_minor - self.refunded_minor
    }

    /// Decides the events a command causes, or why it is refused. Pure: a refusal changes nothing.
    pub fn decide(
        &self,
        command: &DisputeCommand,
        services: &DisputeServices,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        let now = services.clock.now();
        let actor = &command.actor;
        match &command.action {
            Action::RegisterOrder(facts) => self.register_order(actor, facts),
            Action::MarkDelivered(cmd) => self.mark_delivered(actor, cmd),
            Action::RequestRefund(cmd) => self.request_refund(actor, cmd, &services.policy, now),
            Action::MerchantAccept(cmd) => {
                let (order, round) =
                    self.in_status(actor, &[Role::Merchant], "merchant_accept", &[Status::AwaitingMerchant])?;
                let policy = services.policy.for_category(&order.category);
                Ok(vec![approve(self.round, round, ApprovedBy::Merchant, cmd.note.clone(), policy, now)])
            }
            Action::MerchantReject(cmd) => {
                let (order, round) =
                    self.in_status(actor, &[Role::Merchant], "merchant_reject", &[Status::AwaitingMerchant])?;
                let policy = services.policy.for_category(&order.category);
                require_text("note", &cmd.note)?;
                if now > round.merchant_response_due {
                    return Err(DisputeError::ResponseDeadlinePassed);
                }
                self.check_evidence(Party::Merchant, &cmd.evidence, policy, false)?;
                Ok(vec![DisputeEvent::MerchantRejected {
                    round: self.round,
                    reason_code: cmd.reason_code,
                    note: cmd.note.clone(),
                    evidence: cmd.evidence.clone(),
                    escalation_due: now + policy.escalation_window,
                }])
            }
            Action::MerchantOffer(cmd) => {
                let (order, round) =
                    self.in_status(actor, &[Role::Merchant], "merchant_offer", &[Status::AwaitingMerchant])?;
                require_text("note", &cmd.note)?;
                cmd.amount.check_currency(&order.paid_amount.currency)?;
                if cmd.amount.amount_minor >= round.requested.amount_minor {
                    return Err(DisputeError::OfferNotBelowRequest);
                }
                if now > round.merchant_response_due {
                    return Err(DisputeError::ResponseDeadlinePassed);
                }
                Ok(vec![DisputeEvent::MerchantOffered {
                    round: self.round,
                    amount: cmd.amount.clone(),
                    note: cmd.note.clone(),
                }])
            }
            Action::AcceptOffer => {
                let (_, round) =
                    self.in_status(actor, &[Role::Buyer], "accept_offer", &[Status::OfferPending])?;
                let offer = round.offer.clone().expect("an offer_pending round has an offer");
                Ok(vec![DisputeEvent::RefundApproved {
                    round: self.round,
                    amount: offer,
                    approved_by: ApprovedBy::Offer,
                    return_required: false,
                    return_ship_due: None,
                    note: None,
                }])
            }
            Action::DeclineOffer(cmd) => {
                let (order, _) =
                    self.in_status(actor, &[Role::Buyer], "decline_offer", &[Status::OfferPending])?;
                let policy = services.policy.for_category(&order.category);
                Ok(vec![DisputeEvent::OfferDeclined {
                    round: self.round,
                    note: cmd.note.clone(),
                    escalation_due: now + policy.escalation_window,
                }])
            }
            Action::SubmitEvidence(cmd) => self.submit_evidence(actor, cmd, &services.policy, now),
            Action::Escalate(cmd) => self.escalate(actor, cmd, &services.policy, now),
            Action::Assign(cmd) => {
                let (_, round) = self.in_status(
                    actor,
                    &[Role::Arbitrator],
                    "assign",
                    &[Status::Escalated, Status::Appealed],
                )?;
                require_text("arbitrator_id", &cmd.arbitrator_id)?;
                if self.status == Status::Appealed
                    && round.ruled_by.as_deref() == Some(cmd.arbitrator_id.as_str())
                {
                    return Err(DisputeError::SameArbitrator);
                }
                Ok(vec![DisputeEvent::ArbitratorAssigned {
                    round: self.round,
                    arbitrator_id: cmd.arbitrator_id.clone(),
                    assigned_by: actor.id.clone(),
                }])
            }
            Action::Judge(cmd) => self.judge(actor, cmd, &services.policy, now),
            Action::Appeal(cmd) => self.appeal(actor, cmd, &services.policy, now),
            Action::ShipReturn(cmd) => {
                let (order, round) =
                    self.in_status(actor, &[Role::Buyer], "ship_return", &[Status::AwaitingReturn])?;
                let policy = services.policy.for_category(&order.category);
                require_text("carrier", &cmd.carrier)?;
                require_text("tracking_number", &cmd.tracking_number)?;
                if round.return_ship_due.is_some_and(|due| now > due) {
                    return Err(DisputeError::ReturnWindowClosed);
                }
                Ok(vec![DisputeEvent::ReturnShipped {
                    round: self.round,
                    carrier: cmd.carrier.clone(),
                    tracking_number: cmd.tracking_number.clone(),
                    receipt_confirm_due: now + policy.return_confirm,
                }])
            }
            Action::ConfirmReturn(cmd) => {
                self.in_status(actor, &[Role::Merchant], "confirm_return", &[Status::ReturnShipped])?;
                Ok(vec![DisputeEvent::ReturnReceived {
                    round: self.round,
                    confirmed_by: ReceiptConfirmedBy::Merchant,
                    note: cmd.note.clone(),
                }])
            }
            Action::RecordRefundPaid(cmd) => {
                let (order, round) =
                    self.in_status(actor, &[Role::System], "refund_paid", &[Status::RefundPending])?;
                cmd.amount.check_currency(&order.paid_amount.currency)?;
                require_text("payment_ref", &cmd.payment_ref)?;
                if Some(&cmd.amount) != round.approved.as_ref() {
                    return Err(DisputeError::AmountMismatch);
                }
                if cmd.channel != order.payment_channel {
                    return Err(DisputeError::ChannelMismatch);
                }
                Ok(vec![DisputeEvent::RefundPaid {
                    round: self.round,
                    amount: cmd.amount.clone(),
                    channel: cmd.channel,
                    payment_ref: cmd.payment_ref.clone(),
                    paid_at: cmd.paid_at,
                    expected_arrival_by: expected_arrival(cmd.channel, cmd.paid_at),
                }])
            }
            Action::Withdraw(cmd) => {
                self.in_status(
                    actor,
                    &[Role::Buyer],
                    "withdraw",
                    &[Status::AwaitingMerchant, Status::OfferPending, Status::Rejected, Status::Escalated],
                )?;
                Ok(vec![DisputeEvent::RequestWithdrawn { round: self.round, note: cmd.note.clone() }])
            }
            Action::ExpireDeadline { deadline, round } => {
                self.expire(actor, *deadline, *round, &services.policy, now)
            }
        }
    }

    /// Checks the role, that the order exists, that a buyer or merchant is its party, and that
    /// the current round is in one of `statuses`.
    fn in_status(
        &self,
        actor: &Actor,
        roles: &[Role],
        command: &'static str,
        statuses: &[Status],
    ) -> Result<(&OrderFacts, &Round), DisputeError> {
        let order = self.party_order(actor, roles)?;
        match &self.current {
            Some(round) if statuses.contains(&self.status) => Ok((order, round)),
            _ => Err(self.invalid(command)),
        }
    }

    /// The order, once the caller's role is allowed and (for buyers and merchants) it is theirs.
    fn party_order(&self, actor: &Actor, roles: &[Role]) -> Result<&OrderFacts, DisputeError> {
        if !roles.contains(&actor.role) {
            return Err(DisputeError::Forbidden);
        }
        let order = self.order.as_ref().ok_or(DisputeError::OrderNotFound)?;
        let is_party = match actor.role {
            Role::Buyer => actor.id == order.buyer_id,
            Role::Merchant => actor.id == order.merchant_id,
            Role::Arbitrator | Role::System => true,
            Role::Auditor => false,
        };
        if is_party { Ok(order) } else { Err(DisputeError::NotAParty) }
    }

    fn invalid(&self, command: &'static str) -> DisputeError {
        DisputeError::InvalidTransition { command, status: self.status.as_str() }
    }

    fn register_order(&self, actor: &Actor, facts: &OrderFacts) -> Result<Vec<DisputeEvent>, DisputeError> {
        if actor.role != Role::System {
            return Err(DisputeError::Forbidden);
        }
        if let Some(order) = &self.order {
            // The same facts again answer as before; other facts are refused.
            return if order == facts { Ok(vec![]) } else { Err(DisputeError::OrderFactsConflict) };
        }
        check_order_id(&facts.order_id)?;
        for (field, value) in [
            ("buyer_id", &facts.buyer_id),
            ("merchant_id", &facts.merchant_id),
            ("category", &facts.category),
        ] {
            require_text(field, value)?;
        }
        facts.paid_amount.check_positive()?;
        Ok(vec![DisputeEvent::OrderRegistered { facts: facts.clone() }])
    }

    fn mark_delivered(&self, actor: &Actor, cmd: &MarkDelivered) -> Result<Vec<DisputeEvent>, DisputeError> {
        self.party_order(actor, &[Role::System])?;
        match self.delivered_at {
            Some(at) if at == cmd.delivered_at => Ok(vec![]),
            Some(_) => Err(DisputeError::DeliveryConflict),
            None => Ok(vec![DisputeEvent::OrderDelivered { delivered_at: cmd.delivered_at }]),
        }
    }

    fn request_refund(
        &self,
        actor: &Actor,
        cmd: &RequestRefund,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        let order = self.party_order(actor, &[Role::Buyer])?;
        let policy = policy.for_category(&order.category);
        let may_start_round = match self.status {
            Status::Open | Status::Refunded => true,
            Status::Closed => self.close_reason != Some(CloseReason::RuledNoRefund),
            _ => false,
        };
        if !may_start_round || self.ruled {
            return Err(self.invalid("request"));
        }
        if self.round >= policy.max_rounds {
            return Err(DisputeError::MaxRoundsReached);
        }
        require_text("description", &cmd.description)?;
        cmd.amount.check_currency(&order.paid_amount.currency)?;
        let refundable = self.refundable_minor(order);
        if cmd.amount.amount_minor > refundable {
            return Err(DisputeError::AmountExceedsRefundable);
        }
        let shipped = order.shipped_at.is_some() || self.delivered_at.is_some();
        match self.delivered_at {
            Some(delivered_at) => {
                if now > delivered_at + policy.request_window {
                    return Err(DisputeError::OutsideRequestWindow);
                }
                if cmd.reason == RefundReason::NoReason7d
                    && (!policy.no_reason_allowed || now > delivered_at + policy.no_reason_window)
                {
                    return Err(DisputeError::NoReasonNotAllowed);
                }
            }
            None if shipped => {
                if cmd.reason != RefundReason::NotReceived {
                    return Err(DisputeError::ReasonNotAllowed);
                }
            }
            None => {
                if cmd.reason == RefundReason::NoReason7d && !policy.no_reason_allowed {
                    return Err(DisputeError::NoReasonNotAllowed);
                }
            }
        }
        self.check_evidence(Party::Buyer, &cmd.evidence, policy, false)?;

        let round = self.round + 1;
        let mut events = vec![DisputeEvent::RefundRequested {
            round,
            kind: cmd.kind,
            reason: cmd.reason,
            amount: cmd.amount.clone(),
            description: cmd.description.clone(),
            evidence: cmd.evidence.clone(),
            merchant_response_due: now + policy.merchant_response,
        }];
        // Cancelling a paid order that has not shipped refunds at once.
        if !shipped && cmd.kind == RefundKind::RefundOnly && cmd.amount.amount_minor == refundable {
            events.push(DisputeEvent::RefundApproved {
                round,
                amount: cmd.amount.clone(),
                approved_by: ApprovedBy::UnshippedPolicy,
                return_required: false,
                return_ship_due: None,
                note: None,
            });
        }
        Ok(events)
    }

    fn check_evidence(
        &self,
        party: Party,
        evidence: &[crate::Evidence],
        policy: &CategoryPolicy,
        required: bool,
    ) -> Result<(), DisputeError> {
        if required && evidence.is_empty() {
            return Err(DisputeError::EmptyField("evidence"));
        }
        if !evidence.iter().all(crate::Evidence::is_well_formed) {
            return Err(DisputeError::InvalidEvidence);
        }
        let already = match party {
            Party::Buyer => self.buyer_evidence,
            Party::Merchant => self.merchant_evidence,
        };
        if u64::from(already) + evidence.len() as u64 > u64::from(policy.max_evidence_per_party) {
            return Err(DisputeError::TooMuchEvidence);
        }
        Ok(())
    }

    fn submit_evidence(
        &self,
        actor: &Actor,
        cmd: &SubmitEvidence,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        let (order, round) = self.in_status(
            actor,
            &[Role::Buyer, Role::Merchant],
            "evidence",
            &[Status::AwaitingMerchant, Status::Escalated, Status::UnderReview, Status::Appealed],
        )?;
        let party = if actor.role == Role::Buyer { Party::Buyer } else { Party::Merchant };
        if self.status != Status::AwaitingMerchant && round.evidence_due.is_some_and(|due| now > due) {
            return Err(DisputeError::EvidenceWindowClosed);
        }
        self.check_evidence(party, &cmd.evidence, policy.for_category(&order.category), true)?;
        Ok(vec![DisputeEvent::EvidenceSubmitted { round: self.round, party, evidence: cmd.evidence.clone() }])
    }

    fn escalate(
        &self,
        actor: &Actor,
        cmd: &Escalate,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        let (order, round) =
            self.in_status(actor, &[Role::Buyer], "escalate", &[Status::Rejected, Status::AwaitingMerchant])?;
        let policy = policy.for_category(&order.category);
        require_text("note", &cmd.note)?;
        let mut events = Vec::with_capacity(2);
        if self.status == Status::AwaitingMerchant {
            // The merchant's deadline may have passed before the timer recorded it.
            let missed = now >= round.merchant_response_due
                && policy.on_merchant_timeout == OnMerchantTimeout::AllowEscalation;
            if !missed {
                return Err(self.invalid("escalate"));
            }
            let escalation_due = round.merchant_response_due + policy.escalation_window;
            if now > escalation_due {
                return Err(DisputeError::EscalationWindowClosed);
            }
            events.push(DisputeEvent::MerchantResponseMissed { round: self.round, escalation_due });
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

    fn judge(
        &self,
        actor: &Actor,
        cmd: &Judge,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        let (order, round) = self.in_status(actor, &[Role::Arbitrator], "judge", &[Status::UnderReview])?;
        let policy = policy.for_category(&order.category);
        if round.arbitrator.as_deref() != Some(actor.id.as_str()) {
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
                    return Err(DisputeError::AmountExceedsRefundable);
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
        Ok(vec![DisputeEvent::DisputeJudged {
            round: self.round,
            arbitrator_id: actor.id.clone(),
            outcome: cmd.outcome,
            amount,
            return_required: cmd.return_required,
            rationale: cmd.rationale.clone(),
            final_ruling,
            appeal_due: (!final_ruling).then(|| now + policy.appeal_window),
            return_ship_due: cmd.return_required.then(|| now + policy.return_ship),
        }])
    }

    fn appeal(
        &self,
        actor: &Actor,
        cmd: &Appeal,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        // Before any refund for the ruling is paid or any return shipped.
        let (order, round) = self.in_status(
            actor,
            &[Role::Buyer, Role::Merchant],
            "appeal",
            &[Status::AwaitingReturn, Status::RefundPending, Status::Closed],
        )?;
        let policy = policy.for_category(&order.category);
        // A shipped return (`receipt_confirm_due` set) ends the right to appeal, also once received.
        let Some(appeal_due) = round
            .appeal_due
            .filter(|_| round.ruled_by.is_some() && !round.appealed && round.receipt_confirm_due.is_none())
        else {
            return Err(self.invalid("appeal"));
        };
        if self.status == Status::Closed && self.close_reason != Some(CloseReason::RuledNoRefund) {
            return Err(self.invalid("appeal"));
        }
        require_text("note", &cmd.note)?;
        if now > appeal_due {
            return Err(DisputeError::AppealWindowClosed);
        }
        let party = if actor.role == Role::Buyer { Party::Buyer } else { Party::Merchant };
        Ok(vec![DisputeEvent::RulingAppealed {
            round: self.round,
            party,
            note: cmd.note.clone(),
            evidence_due: now + policy.evidence_window,
            assignment_due: Some(now + policy.arbitration_sla),
        }])
    }

    fn expire(
        &self,
        actor: &Actor,
        deadline: Deadline,
        round_number: u32,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeEvent>, DisputeError> {
        let (status, command) = match deadline {
            Deadline::MerchantResponse => (Status::AwaitingMerchant, "expire_merchant_response"),
            Deadline::EscalationWindow => (Status::Rejected, "expire_escalation_window"),
            Deadline::ReturnShipping => (Status::AwaitingReturn, "expire_return_shipping"),
            Deadline::ReturnReceipt => (Status::ReturnShipped, "expire_return_receipt"),
        };
        let (order, round) = self.in_status(actor, &[Role::System], command, &[status])?;
        if round_number != self.round {
            return Err(self.invalid(command));
        }
        let policy = policy.for_category(&order.category);
        let due = round.due(deadline);
        if due.is_none_or(|due| now < due) {
            return Err(DisputeError::DeadlineNotReached);
        }
        let event = match deadline {
            Deadline::MerchantResponse => match policy.on_merchant_timeout {
                OnMerchantTimeout::AutoAccept => {
                    approve(self.round, round, ApprovedBy::MerchantTimeout, None, policy, now)
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
            },
        };
        Ok(vec![event])
    }

    fn round_mut(&mut self) -> &mut Round {
        self.current.as_mut().expect("a round event follows a request")
    }

    fn close(&mut self, reason: CloseReason) {
        self.status = Status::Closed;
        self.close_reason = Some(reason);
    }

    /// A refund approved or ruled: wait for the goods if they must come back, else for payment.
    fn set_approved(&mut self, amount: Money, return_ship_due: Option<DateTime<Utc>>) {
        let round = self.round_mut();
        round.approved = Some(amount);
        round.return_ship_due = return_ship_due;
        self.status = if return_ship_due.is_some() { Status::AwaitingReturn } else { Status::RefundPending };
    }
}

/// Approval of the round's request as asked, by the merchant or by the merchant's silence.
fn approve(
    round_number: u32,
    round: &Round,
    approved_by: ApprovedBy,
    note: Option<String>,
    policy: &CategoryPolicy,
    now: DateTime<Utc>,
) -> DisputeEvent {
    let return_required = round.kind == RefundKind::ReturnAndRefund;
    DisputeEvent::RefundApproved {
        round: round_number,
        amount: round.requested.clone(),
        approved_by,
        return_required,
        return_ship_due: return_required.then(|| now + policy.return_ship),
        note,
    }
}

fn require_text(field: &'static str, value: &str) -> Result<(), DisputeError> {
    if value.trim().is_empty() { Err(DisputeError::EmptyField(field)) } else { Ok(()) }
}

/// Order ids become stream ids and NATS subject tokens, so they are kept to a safe alphabet.
fn check_order_id(id: &str) -> Result<(), DisputeError> {
    let ok = (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'));
    if ok { Ok(()) } else { Err(DisputeError::InvalidOrderId) }
}

/// When a refund paid at `paid_at` should reach the buyer: balance at once, Alipay and WeChat
/// Pay within one business day, bank cards within seven.
pub fn expected_arrival(channel: PaymentChannel, paid_at: DateTime<Utc>) -> DateTime<Utc> {
    let business_days = match channel {
        PaymentChannel::Balance => 0,
        PaymentChannel::Alipay | PaymentChannel::WechatPay => 1,
        PaymentChannel::BankCard => 7,
    };
    let mut at = paid_at;
    let mut left = business_days;
    while left > 0 {
        at += Duration::days(1);
        if !matches!(at.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    at
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
                    return_ship_due: None,
                    receipt_confirm_due: None,
                });
            }
            DisputeEvent::RefundApproved { amount, return_ship_due, .. } => {
                self.set_approved(amount, return_ship_due)
            }
            DisputeEvent::MerchantRejected { evidence, escalation_due, .. } => {
                self.merchant_evidence += evidence.len() as u32;
                self.round_mut().escalation_due = Some(escalation_due);
                self.status = Status::Rejected;
            }
            DisputeEvent::MerchantOffered { amount, .. } => {
                self.round_mut().offer = Some(amount);
                self.status = Status::OfferPending;
            }
            DisputeEvent::OfferDeclined { escalation_due, .. }
            | DisputeEvent::MerchantResponseMissed { escalation_due, .. } => {
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
            DisputeEvent::DisputeJudged { arbitrator_id, amount, appeal_due, return_ship_due, .. } => {
                self.ruled = true;
                let round = self.round_mut();
                round.ruled_by = Some(arbitrator_id);
                round.appeal_due = appeal_due;
                match amount {
                    Some(amount) => self.set_approved(amount, return_ship_due),
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
            DisputeEvent::ReturnReceived { .. } => self.status = Status::RefundPending,
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
        }
    }
}

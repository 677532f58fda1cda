//! [`Dispute::decide`]: a command against the state and the policy, giving the events it causes
//! or why it is refused. One module per group of commands; the roles and statuses each command
//! needs come from the command table ([`CommandSpec`]).

mod arbitration;
mod conversation;
mod deadline;
mod merchant;
mod order;
mod request;
mod return_and_refund;

use chrono::{DateTime, Utc};

pub use return_and_refund::expected_arrival;

use super::{Dispute, DisputeServices, Round};
use crate::command::Action;
use crate::{
    Actor, CategoryPolicy, CommandSpec, DisputeCommand, DisputeError, DisputeEvent, Evidence, OrderFacts,
    Party, Policy, Role,
};

/// What every rule is given besides its payload: who asks, the command's row of the table, the
/// policy and the time.
struct Context<'a> {
    actor: &'a Actor,
    spec: &'static CommandSpec,
    policy: &'a Policy,
    now: DateTime<Utc>,
}

type Decided = Result<Vec<DisputeEvent>, DisputeError>;

impl Dispute {
    /// Decides the events a command causes, or why it is refused. Pure: a refusal changes nothing.
    pub fn decide(&self, command: &DisputeCommand, services: &DisputeServices) -> Decided {
        let cx = Context {
            actor: &command.actor,
            spec: command.action.spec(),
            policy: &services.policy,
            now: services.clock.now(),
        };
        match &command.action {
            Action::RegisterOrder(facts) => self.register_order(&cx, facts),
            Action::MarkDelivered(cmd) => self.mark_delivered(&cx, cmd),
            Action::RequestRefund(cmd) => self.request_refund(&cx, cmd),
            Action::MerchantAccept(cmd) => self.merchant_accept(&cx, cmd),
            Action::MerchantReject(cmd) => self.merchant_reject(&cx, cmd),
            Action::MerchantOffer(cmd) => self.merchant_offer(&cx, cmd),
            Action::AcceptOffer => self.accept_offer(&cx),
            Action::DeclineOffer(cmd) => self.decline_offer(&cx, cmd),
            Action::SubmitEvidence(cmd) => self.submit_evidence(&cx, cmd),
            Action::Escalate(cmd) => self.escalate(&cx, cmd),
            Action::Assign(cmd) => self.assign(&cx, cmd),
            Action::Judge(cmd) => self.judge(&cx, cmd),
            Action::Appeal(cmd) => self.appeal(&cx, cmd),
            Action::ShipReturn(cmd) => self.ship_return(&cx, cmd),
            Action::ConfirmReturn(cmd) => self.confirm_return(&cx, cmd),
            Action::RecordRefundPaid(cmd) => self.record_refund_paid(&cx, cmd),
            Action::Withdraw(cmd) => self.withdraw(&cx, cmd),
            Action::ExpireDeadline { deadline, round } => self.expire(&cx, *deadline, *round),
            Action::PostMessage(cmd) => self.post_message(&cx, cmd),
            Action::RequestEvidence(cmd) => self.request_evidence(&cx, cmd),
        }
    }

    /// Checks the command's roles, that the order exists, that a buyer or merchant is its
    /// party, and that the current round is in one of the command's statuses.
    fn in_status(&self, cx: &Context) -> Result<(&OrderFacts, &Round), DisputeError> {
        let order = self.party_order(cx)?;
        match &self.current {
            Some(round) if cx.spec.statuses.contains(&self.status) => Ok((order, round)),
            _ => Err(self.invalid(cx.spec.name)),
        }
    }

    /// The order, once the caller's role is allowed and (for buyers and merchants) it is theirs.
    fn party_order(&self, cx: &Context) -> Result<&OrderFacts, DisputeError> {
        let actor = cx.actor;
        if !cx.spec.roles.contains(&actor.role) {
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

    /// Paid minus refunded: the most any further refund may be.
    fn refundable_minor(&self, order: &OrderFacts) -> i64 {
        order.paid_amount.amount_minor - self.refunded_minor
    }

    fn check_evidence(
        &self,
        party: Party,
        evidence: &[Evidence],
        policy: &CategoryPolicy,
        required: bool,
    ) -> Result<(), DisputeError> {
        if required && evidence.is_empty() {
            return Err(DisputeError::EmptyField("evidence"));
        }
        if !evidence.iter().all(Evidence::is_well_formed) {
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
}

/// The party a buyer or merchant actor is.
fn party_of(actor: &Actor) -> Party {
    if actor.role == Role::Buyer { Party::Buyer } else { Party::Merchant }
}

fn require_text(field: &'static str, value: &str) -> Result<(), DisputeError> {
    if value.trim().is_empty() { Err(DisputeError::EmptyField(field)) } else { Ok(()) }
}

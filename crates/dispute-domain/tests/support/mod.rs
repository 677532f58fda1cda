//! Builders shared by the domain's tests: one order with known facts, its parties, the
//! commands in their usual shape, and a [`Scenario`] that grows a dispute's history by running
//! real commands against a [`ManualClock`].

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use dispute_domain::command::*;
use dispute_domain::*;

pub const ORDER_ID: &str = "order-1001";
pub const BUYER: &str = "buyer-1";
pub const OTHER_BUYER: &str = "buyer-2";
pub const MERCHANT: &str = "merchant-1";
pub const OTHER_MERCHANT: &str = "merchant-2";
pub const ARBITRATOR: &str = "arb-1";
pub const OTHER_ARBITRATOR: &str = "arb-2";
pub const CURRENCY: &str = "CNY";
/// What the buyer paid, in minor units.
pub const PAID: i64 = 10_000;

pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 instant")
}

/// Monday 2025-03-03 08:00 UTC.
pub fn paid_at() -> DateTime<Utc> {
    at("2025-03-03T08:00:00Z")
}

pub fn shipped_at() -> DateTime<Utc> {
    paid_at() + Duration::days(1)
}

/// Thursday 2025-03-06 08:00 UTC: the request window starts here.
pub fn delivered_at() -> DateTime<Utc> {
    paid_at() + Duration::days(3)
}

/// Where every scenario's clock starts: one day after delivery.
pub fn start() -> DateTime<Utc> {
    delivered_at() + Duration::days(1)
}

pub fn cny(amount_minor: i64) -> Money {
    Money::new(amount_minor, CURRENCY)
}

/// A delivered book order paid with Alipay.
pub fn order() -> OrderFacts {
    OrderFacts {
        order_id: ORDER_ID.to_string(),
        buyer_id: BUYER.to_string(),
        merchant_id: MERCHANT.to_string(),
        paid_amount: cny(PAID),
        paid_at: paid_at(),
        category: "books".to_string(),
        payment_channel: PaymentChannel::Alipay,
        shipped_at: Some(shipped_at()),
        delivered_at: Some(delivered_at()),
    }
}

pub fn order_in(category: &str) -> OrderFacts {
    OrderFacts { category: category.to_string(), ..order() }
}

/// Shipped, not yet delivered.
pub fn shipped_order() -> OrderFacts {
    OrderFacts { delivered_at: None, ..order() }
}

/// Paid, not yet shipped.
pub fn unshipped_order() -> OrderFacts {
    OrderFacts { shipped_at: None, delivered_at: None, ..order() }
}

pub fn buyer() -> Actor {
    Actor::new(Role::Buyer, BUYER)
}

pub fn other_buyer() -> Actor {
    Actor::new(Role::Buyer, OTHER_BUYER)
}

pub fn merchant() -> Actor {
    Actor::new(Role::Merchant, MERCHANT)
}

pub fn other_merchant() -> Actor {
    Actor::new(Role::Merchant, OTHER_MERCHANT)
}

pub fn arbitrator() -> Actor {
    Actor::new(Role::Arbitrator, ARBITRATOR)
}

pub fn other_arbitrator() -> Actor {
    Actor::new(Role::Arbitrator, OTHER_ARBITRATOR)
}

pub fn system() -> Actor {
    Actor::new(Role::System, "order-service")
}

pub fn auditor() -> Actor {
    Actor::new(Role::Auditor, "auditor-1")
}

pub fn services(clock: &Arc<ManualClock>) -> DisputeServices {
    services_with(clock, Policy::builtin())
}

pub fn services_with(clock: &Arc<ManualClock>, policy: Policy) -> DisputeServices {
    DisputeServices::new(clock.clone(), Arc::new(policy))
}

/// Folds events into a dispute, as a replay does.
pub fn fold(events: &[DisputeEvent]) -> Dispute {
    let mut dispute = Dispute::default();
    for event in events {
        dispute.apply(event.clone());
    }
    dispute
}

pub fn sha(n: usize) -> String {
    format!("{n:064x}")
}

/// `n` well-formed evidence items.
pub fn evidence(n: usize) -> Vec<Evidence> {
    (0..n)
        .map(|i| Evidence {
            kind: EvidenceKind::Photo,
            uri: format!("https://files.example/{i}.jpg"),
            sha256: sha(i),
            note: None,
        })
        .collect()
}

// Commands in their usual shape.

pub fn register(facts: OrderFacts) -> Action {
    Action::RegisterOrder(facts)
}

pub fn deliver(delivered_at: DateTime<Utc>) -> Action {
    Action::MarkDelivered(MarkDelivered { delivered_at })
}

pub fn request(kind: RefundKind, reason: RefundReason, amount: i64) -> Action {
    request_money(kind, reason, cny(amount))
}

pub fn request_money(kind: RefundKind, reason: RefundReason, amount: Money) -> Action {
    Action::RequestRefund(RequestRefund {
        kind,
        reason,
        amount,
        description: "the cover is torn".to_string(),
        evidence: evidence(1),
    })
}

pub fn refund_only(amount: i64) -> Action {
    request(RefundKind::RefundOnly, RefundReason::QualityIssue, amount)
}

pub fn return_and_refund(amount: i64) -> Action {
    request(RefundKind::ReturnAndRefund, RefundReason::QualityIssue, amount)
}

pub fn accept() -> Action {
    Action::MerchantAccept(MerchantAccept { note: Some("sorry".to_string()), return_address: None })
}

pub fn reject_with(reason_code: RejectionReason) -> Action {
    Action::MerchantReject(MerchantReject {
        reason_code,
        note: "the photos show wear".to_string(),
        evidence: vec![],
    })
}

pub fn reject() -> Action {
    reject_with(RejectionReason::ItemUsed)
}

pub fn offer(amount: i64) -> Action {
    Action::MerchantOffer(MerchantOffer { amount: Some(cny(amount)), ..offer_body() })
}

/// A partial refund's body, without its amount.
pub fn offer_body() -> MerchantOffer {
    MerchantOffer {
        amount: None,
        note: "half back, keep it".to_string(),
        kind: OfferKind::PartialRefund,
        return_address: None,
    }
}

/// An offer of `kind`: `amount` for the partial refunds, none for a replacement.
pub fn offer_of(kind: OfferKind, amount: Option<i64>) -> Action {
    Action::MerchantOffer(MerchantOffer { amount: amount.map(cny), kind, ..offer_body() })
}

/// The merchant's receipt of a return that failed inspection.
pub fn inspection_failed(problem: InspectionProblem) -> Action {
    Action::ConfirmReturn(ConfirmReturn {
        note: Some("the box held a brick".to_string()),
        inspection_failed: Some(problem),
    })
}

pub fn accept_offer() -> Action {
    Action::AcceptOffer
}

pub fn decline_offer() -> Action {
    Action::DeclineOffer(DeclineOffer { note: Some("not enough".to_string()) })
}

pub fn submit(n: usize) -> Action {
    Action::SubmitEvidence(SubmitEvidence { evidence: evidence(n) })
}

pub fn escalate() -> Action {
    Action::Escalate(Escalate { note: "the merchant will not help".to_string() })
}

pub fn assign(arbitrator_id: &str) -> Action {
    Action::Assign(Assign { arbitrator_id: arbitrator_id.to_string() })
}

pub fn judge(outcome: RulingOutcome, amount: Option<i64>, return_required: bool) -> Action {
    Action::Judge(Judge {
        outcome,
        amount: amount.map(cny),
        return_required,
        rationale: "the photos match the description of the defect".to_string(),
    })
}

pub fn appeal() -> Action {
    Action::Appeal(Appeal { note: "the ruling ignores the chat log".to_string() })
}

pub fn ship() -> Action {
    Action::ShipReturn(ShipReturn { carrier: "SF Express".to_string(), tracking_number: "SF123".to_string() })
}

pub fn confirm() -> Action {
    Action::ConfirmReturn(ConfirmReturn { note: None, inspection_failed: None })
}

pub fn refund_paid(amount: i64, channel: PaymentChannel, paid_at: DateTime<Utc>) -> Action {
    Action::RecordRefundPaid(RecordRefundPaid {
        amount: cny(amount),
        channel,
        payment_ref: "pay-77".to_string(),
        paid_at,
    })
}

pub fn withdraw() -> Action {
    Action::Withdraw(Withdraw { note: None })
}

pub fn expire(deadline: Deadline, round: u32) -> Action {
    Action::ExpireDeadline { deadline, round }
}

/// A dispute's history grown by running commands, with the clock and policy they ran under.
pub struct Scenario {
    pub clock: Arc<ManualClock>,
    pub services: DisputeServices,
    pub events: Vec<DisputeEvent>,
}

impl Scenario {
    /// No order registered yet, built-in policy.
    pub fn unregistered() -> Self {
        Self::unregistered_with(Policy::builtin())
    }

    pub fn unregistered_with(policy: Policy) -> Self {
        let clock = Arc::new(ManualClock::new(start()));
        let services = services_with(&clock, policy);
        Self { clock, services, events: vec![] }
    }

    /// [`order`] registered under the built-in policy.
    pub fn new() -> Self {
        Self::of(order())
    }

    pub fn of(facts: OrderFacts) -> Self {
        Self::of_with(facts, Policy::builtin())
    }

    pub fn of_with(facts: OrderFacts, policy: Policy) -> Self {
        let mut scenario = Self::unregistered_with(policy);
        scenario.given(system(), register(facts));
        scenario
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance(&mut self, by: Duration) -> &mut Self {
        self.clock.advance(by);
        self
    }

    pub fn set_clock(&mut self, now: DateTime<Utc>) -> &mut Self {
        self.clock.set(now);
        self
    }

    /// The state folded from the history.
    pub fn state(&self) -> Dispute {
        fold(&self.events)
    }

    pub fn round(&self) -> u32 {
        self.state().round()
    }

    pub fn decide(&self, actor: Actor, action: Action) -> Result<Vec<DisputeEvent>, DisputeError> {
        self.state().decide(&DisputeCommand::new(actor, action), &self.services)
    }

    /// Runs a command that must succeed and appends its events; returns them.
    pub fn run(&mut self, actor: Actor, action: Action) -> Vec<DisputeEvent> {
        let name = action.name();
        let events = self
            .decide(actor, action)
            .unwrap_or_else(|err| panic!("{name} was refused in the scenario's history: {err:?}"));
        self.events.extend(events.clone());
        events
    }

    /// Like [`Scenario::run`], for building the history of a test.
    pub fn given(&mut self, actor: Actor, action: Action) -> &mut Self {
        self.run(actor, action);
        self
    }

    /// The command under test, through the aggregate's test framework.
    pub fn when(&self, actor: Actor, action: Action) -> AggregateResultValidator<Dispute> {
        TestFramework::<Dispute>::with(self.services.clone())
            .given(self.events.clone())
            .when(DisputeCommand::new(actor, action))
    }

    /// Asserts the command is refused with `expected` and changes nothing.
    pub fn refuses(&self, actor: Actor, action: Action, expected: DisputeError) {
        self.when(actor, action).then_expect_error(expected);
    }

    /// Runs the command, which must succeed, and returns the state after it.
    pub fn then_state(&mut self, actor: Actor, action: Action) -> Dispute {
        self.run(actor, action);
        self.state()
    }

    // Common histories.

    /// The buyer asks for a refund only of `amount` for a quality issue.
    pub fn requested(&mut self, amount: i64) -> &mut Self {
        self.given(buyer(), refund_only(amount))
    }

    pub fn requested_return(&mut self, amount: i64) -> &mut Self {
        self.given(buyer(), return_and_refund(amount))
    }

    /// A refund-only request of the full amount, rejected by the merchant.
    pub fn rejected(&mut self) -> &mut Self {
        self.requested(PAID).given(merchant(), reject())
    }

    pub fn escalated(&mut self) -> &mut Self {
        self.rejected().given(buyer(), escalate())
    }

    /// Escalated and assigned to [`ARBITRATOR`].
    pub fn under_review(&mut self) -> &mut Self {
        self.escalated().given(arbitrator(), assign(ARBITRATOR))
    }

    /// Under review and ruled by [`ARBITRATOR`].
    pub fn ruled(&mut self, outcome: RulingOutcome, amount: Option<i64>, return_required: bool) -> &mut Self {
        self.under_review().given(arbitrator(), judge(outcome, amount, return_required))
    }

    /// A full refund-only request accepted by the merchant: the refund waits for payment.
    pub fn refund_pending(&mut self, amount: i64) -> &mut Self {
        self.requested(amount).given(merchant(), accept())
    }

    /// A return-and-refund request accepted by the merchant: the goods must come back.
    pub fn awaiting_return(&mut self, amount: i64) -> &mut Self {
        self.requested_return(amount).given(merchant(), accept())
    }

    pub fn refunded(&mut self, amount: i64) -> &mut Self {
        let now = self.now();
        self.refund_pending(amount).given(system(), refund_paid(amount, PaymentChannel::Alipay, now))
    }
}

//! The actions a dispute's view offers are exactly the commands the aggregate accepts.
//!
//! Scripts drive the aggregate through the lifecycle with real commands (and the deadline
//! timer's expiries), and fold the same events into a [`DisputeView`]. At every state the
//! clock is also moved to just before, at and just after each deadline the view carries
//! (without the timer firing, as when it lags), and for every role the view's `actions` are
//! compared with the dispute commands `decide` accepts at that time.
//!
//! Each command is sent by the right party (the order's buyer or merchant, an arbitrator; the
//! assignee for `judge`) with one canonical body, so "accepts" means "accepts this body":
//! - `request`: refund only, `not_received`, for all that is left to refund (paid − refunded);
//! - `merchant-reject`: reason `other` with a note, no evidence; `merchant-offer`: half the
//!   request, rounded down;
//! - `evidence`: one well-formed item;
//! - `assign`: an arbitrator who has not ruled on the dispute;
//! - `judge`: `no_refund` without a return;
//! - `messages`: a text without evidence (by the assignee for an arbitrator);
//! - `evidence-requests`: from the buyer, by the assignee;
//! - `refund-paid`: the approved amount on the order's channel;
//! - the others: a note where one is required, nothing otherwise.
//!
//! The orders are never delivered, so the request window (counted from delivery, a fact the
//! view does not carry) never closes here, and no party reaches the evidence cap (the view
//! does not count evidence); both rules are checked when the command arrives. Order commands (`register`, `delivered`) are the order service's facts, not
//! dispute actions, and the view offers none.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use dispute_domain::command::*;
use dispute_domain::*;
use dispute_views::DisputeView;

const BUYER: &str = "buyer-1";
const MERCHANT: &str = "merchant-1";
const FIRST_ARBITRATOR: &str = "arb-1";
const SECOND_ARBITRATOR: &str = "arb-2";
/// Never rules in these scripts, so it may always be assigned.
const FRESH_ARBITRATOR: &str = "arb-9";
const PAID: i64 = 10_000;

fn cny(amount_minor: i64) -> Money {
    Money::new(amount_minor, "CNY")
}

fn start() -> DateTime<Utc> {
    "2025-03-03T08:00:00Z".parse().expect("an instant")
}

/// The roles that may read a dispute's view.
const ROLES: [Role; 5] = [Role::Buyer, Role::Merchant, Role::Arbitrator, Role::System, Role::Auditor];

/// What the view offers `role` at `now`.
fn offered(view: &DisputeView, role: Role, now: DateTime<Utc>, policy: &CategoryPolicy) -> Vec<&'static str> {
    view.actions(role, now, policy)
}

/// One dispute, driven through the aggregate and folded into its view alongside.
struct World {
    script: &'static str,
    policy: Arc<Policy>,
    now: DateTime<Utc>,
    dispute: Dispute,
    view: Option<DisputeView>,
    sequence: u64,
    /// Every (status, action) accepted somewhere, to check what the scripts cover.
    seen: BTreeSet<(&'static str, &'static str)>,
}

impl World {
    fn new(script: &'static str, facts: OrderFacts) -> Self {
        let mut world = Self {
            script,
            policy: Arc::new(Policy::builtin()),
            now: start(),
            dispute: Dispute::default(),
            view: None,
            sequence: 0,
            seen: BTreeSet::new(),
        };
        world.send(Actor::new(Role::System, "orders"), Action::RegisterOrder(facts));
        world
    }

    fn services(&self, now: DateTime<Utc>) -> DisputeServices {
        DisputeServices::new(Arc::new(ManualClock::new(now)), self.policy.clone())
    }

    fn order(&self) -> &OrderFacts {
        self.dispute.order().expect("registered")
    }

    fn view(&self) -> &DisputeView {
        self.view.as_ref().expect("registered")
    }

    /// Runs a command that must be accepted, folds its events, then checks the new state.
    fn send(&mut self, actor: Actor, action: Action) {
        let command = DisputeCommand::new(actor, action);
        let events = self.dispute.decide(&command, &self.services(self.now)).unwrap_or_else(|e| {
            panic!(
                "{}: {} refused in {}: {e:?}",
                self.script,
                command.action.name(),
                self.dispute.status().as_str()
            )
        });
        for event in events {
            self.sequence += 1;
            self.dispute.apply(event.clone());
            match &mut self.view {
                Some(view) => view.apply(self.sequence, self.now, &event),
                None => self.view = DisputeView::registered(&self.order().order_id, self.sequence, &event),
            }
        }
        self.check();
    }

    fn buyer(&mut self, action: Action) {
        self.send(Actor::new(Role::Buyer, BUYER), action);
    }

    fn merchant(&mut self, action: Action) {
        self.send(Actor::new(Role::Merchant, MERCHANT), action);
    }

    fn arbitrator(&mut self, id: &str, action: Action) {
        self.send(Actor::new(Role::Arbitrator, id), action);
    }

    fn system(&mut self, action: Action) {
        self.send(Actor::new(Role::System, "payments"), action);
    }

    /// Moves the clock; the timer has not fired (yet).
    fn wait(&mut self, by: Duration) {
        self.now += by;
        self.check();
    }

    /// The deadline timer fires `deadline` at its due time (or now, if later).
    fn fire(&mut self, deadline: Deadline) {
        let timer = self.dispute.pending_timer().expect("a deadline runs");
        assert_eq!(timer.deadline, deadline, "{}", self.script);
        self.now = self.now.max(timer.due);
        let round = self.dispute.round();
        self.send(Actor::new(Role::System, "timer"), Action::ExpireDeadline { deadline, round });
    }

    /// At now and around every deadline the view carries, for every role: the view offers
    /// what `decide` accepts.
    fn check(&mut self) {
        let view = self.view().clone();
        let policy = self.policy.for_category(&view.category).clone();
        let d = &view.deadlines;
        let mut dues: Vec<DateTime<Utc>> = [
            d.merchant_response_due,
            d.escalation_due,
            d.evidence_due,
            d.assignment_due,
            d.appeal_due,
            d.return_ship_due,
            d.receipt_confirm_due,
            d.evidence_request_due,
            d.merchant_response_due.map(|due| due + policy.escalation_window),
            d.offer_response_due,
            d.offer_response_due.map(|due| due + policy.escalation_window),
        ]
        .into_iter()
        .flatten()
        .collect();
        dues.sort();
        let second = Duration::seconds(1);
        let mut times = vec![self.now];
        times.extend(dues.iter().flat_map(|due| [*due - second, *due, *due + second]));
        times.retain(|t| *t >= self.now);
        for now in times {
            for role in ROLES {
                let accepted = self.accepted(role, now);
                let offers = offered(&view, role, now, &policy);
                assert_eq!(
                    offers,
                    accepted,
                    "{}: status {}, round {}, {} at {} (+{}h): the view offers {offers:?}, decide accepts {accepted:?}",
                    self.script,
                    view.status.as_str(),
                    view.round,
                    role.as_str(),
                    now,
                    (now - self.now).num_hours(),
                );
                for action in &accepted {
                    self.seen.insert((view.status.as_str(), action));
                }
                self.check_act_by(&view, role, now, &accepted);
            }
        }
    }

    /// A party's `act_by` is a deadline that something it may do now runs against: one the
    /// timer enforces (it takes the step when the deadline passes), or one after which
    /// `decide` no longer accepts a command it accepts now. A party with nothing that closes
    /// has none. (An arbitrator's is the assignment SLA, a flag, not a deadline.)
    fn check_act_by(&self, view: &DisputeView, role: Role, now: DateTime<Utc>, accepted: &[&'static str]) {
        if role == Role::Arbitrator {
            return;
        }
        let act_by = view.act_by(role, now);
        let d = &view.deadlines;
        // The steps the timer takes in the party's place when their deadline passes.
        let timed = match role {
            Role::Buyer => {
                [d.escalation_due, d.return_ship_due, d.offer_response_due, d.evidence_request_due]
            }
            Role::Merchant => [d.merchant_response_due, d.receipt_confirm_due, d.evidence_request_due, None],
            _ => [None; 4],
        };
        let after = act_by.map(|due| self.accepted(role, due + Duration::seconds(1)));
        let closes = act_by.is_some_and(|due| !accepted.is_empty() && timed.contains(&Some(due)))
            || after.as_ref().is_some_and(|after| accepted.iter().any(|a| !after.contains(a)));
        assert!(
            act_by.is_none() || closes,
            "{}: status {}, {} at {now}: act_by {act_by:?} closes nothing of {accepted:?} (after it: {after:?})",
            self.script,
            view.status.as_str(),
            role.as_str(),
        );
    }

    /// The dispute commands `decide` accepts from `role`'s right party at `now`, each with its
    /// canonical body, in the table's order.
    fn accepted(&self, role: Role, now: DateTime<Utc>) -> Vec<&'static str> {
        let services = self.services(now);
        COMMANDS
            .iter()
            .filter(|spec| spec.scope == Scope::Dispute)
            .filter(|spec| {
                let command =
                    DisputeCommand::new(self.party(role, spec.kind), self.canonical(spec.kind, now));
                self.dispute.decide(&command, &services).is_ok()
            })
            .map(|spec| spec.segment)
            .collect()
    }

    fn party(&self, role: Role, kind: ActionKind) -> Actor {
        let id = match role {
            Role::Buyer => BUYER,
            Role::Merchant => MERCHANT,
            Role::Arbitrator
                if matches!(
                    kind,
                    ActionKind::Judge | ActionKind::PostMessage | ActionKind::RequestEvidence
                ) =>
            {
                self.view().assignee.as_deref().unwrap_or(FIRST_ARBITRATOR)
            }
            Role::Arbitrator => FIRST_ARBITRATOR,
            Role::System => "payments",
            Role::Auditor => "auditor-1",
        };
        Actor::new(role, id)
    }

    fn canonical(&self, kind: ActionKind, now: DateTime<Utc>) -> Action {
        let view = self.view();
        let note = || "canonical".to_string();
        match kind {
            ActionKind::RegisterOrder => Action::RegisterOrder(self.order().clone()),
            ActionKind::MarkDelivered => Action::MarkDelivered(MarkDelivered { delivered_at: now }),
            ActionKind::MarkShipped => Action::MarkShipped(MarkShipped { shipped_at: now }),
            ActionKind::RequestRefund => Action::RequestRefund(RequestRefund {
                kind: RefundKind::RefundOnly,
                reason: RefundReason::NotReceived,
                amount: cny(view.paid_amount.amount_minor - view.refunded_total.amount_minor),
                description: note(),
                evidence: vec![],
            }),
            ActionKind::MerchantAccept => Action::MerchantAccept(MerchantAccept::default()),
            ActionKind::MerchantReject => Action::MerchantReject(MerchantReject {
                reason_code: RejectionReason::Other,
                note: note(),
                evidence: vec![],
            }),
            ActionKind::MerchantOffer => Action::MerchantOffer(MerchantOffer {
                amount: Some(cny(view.requested_amount.as_ref().map_or(0, |m| m.amount_minor) / 2)),
                note: note(),
                kind: OfferKind::PartialRefund,
                return_address: None,
            }),
            ActionKind::AcceptOffer => Action::AcceptOffer,
            ActionKind::DeclineOffer => Action::DeclineOffer(DeclineOffer::default()),
            ActionKind::SubmitEvidence => {
                Action::SubmitEvidence(SubmitEvidence { evidence: vec![evidence()] })
            }
            ActionKind::Escalate => Action::Escalate(Escalate { note: note() }),
            ActionKind::Assign => Action::Assign(Assign { arbitrator_id: FRESH_ARBITRATOR.to_string() }),
            ActionKind::Judge => Action::Judge(Judge {
                outcome: RulingOutcome::NoRefund,
                amount: None,
                return_required: false,
                rationale: note(),
            }),
            ActionKind::Appeal => Action::Appeal(Appeal { note: note() }),
            ActionKind::ShipReturn => Action::ShipReturn(ShipReturn {
                carrier: "SF".to_string(),
                tracking_number: "SF1".to_string(),
            }),
            ActionKind::ConfirmReturn => Action::ConfirmReturn(ConfirmReturn::default()),
            ActionKind::RecordRefundPaid => Action::RecordRefundPaid(RecordRefundPaid {
                amount: self.dispute.approved_refund().cloned().unwrap_or_else(|| cny(1)),
                channel: self.order().payment_channel,
                payment_ref: "pay-1".to_string(),
                paid_at: now,
            }),
            ActionKind::Withdraw => Action::Withdraw(Withdraw::default()),
            ActionKind::ExpireDeadline => unreachable!("not a dispute action"),
            ActionKind::PostMessage => Action::PostMessage(PostMessage { text: note(), evidence: vec![] }),
            ActionKind::RequestEvidence => {
                Action::RequestEvidence(RequestEvidence { party: Party::Buyer, what: note() })
            }
        }
    }
}

fn evidence() -> Evidence {
    Evidence {
        kind: EvidenceKind::Photo,
        uri: "s3://e/1.jpg".to_string(),
        sha256: "a".repeat(64),
        note: None,
    }
}

/// A book order, shipped and not delivered.
fn shipped(category: &str) -> OrderFacts {
    OrderFacts {
        order_id: "order-1".to_string(),
        buyer_id: BUYER.to_string(),
        merchant_id: MERCHANT.to_string(),
        paid_amount: cny(PAID),
        paid_at: start() - Duration::days(2),
        category: category.to_string(),
        payment_channel: PaymentChannel::Alipay,
        shipped_at: Some(start() - Duration::days(1)),
        delivered_at: None,
    }
}

fn request(kind: RefundKind, amount: i64) -> Action {
    Action::RequestRefund(RequestRefund {
        kind,
        reason: RefundReason::NotReceived,
        amount: cny(amount),
        description: "never came".to_string(),
        evidence: vec![],
    })
}

fn reject() -> Action {
    Action::MerchantReject(MerchantReject {
        reason_code: RejectionReason::NotAsClaimed,
        note: "it was delivered".to_string(),
        evidence: vec![],
    })
}

fn offer(amount: i64) -> Action {
    offer_of(OfferKind::PartialRefund, Some(amount))
}

fn offer_of(kind: OfferKind, amount: Option<i64>) -> Action {
    Action::MerchantOffer(MerchantOffer {
        amount: amount.map(cny),
        note: "half".to_string(),
        kind,
        return_address: Some("Warehouse 3, Hangzhou".to_string()),
    })
}

fn escalate() -> Action {
    Action::Escalate(Escalate { note: "please look".to_string() })
}

fn assign(id: &str) -> Action {
    Action::Assign(Assign { arbitrator_id: id.to_string() })
}

fn judge(outcome: RulingOutcome, amount: Option<i64>, return_required: bool) -> Action {
    Action::Judge(Judge { outcome, amount: amount.map(cny), return_required, rationale: "seen".to_string() })
}

fn appeal() -> Action {
    Action::Appeal(Appeal { note: "not fair".to_string() })
}

fn ship_return() -> Action {
    Action::ShipReturn(ShipReturn { carrier: "SF".to_string(), tracking_number: "SF123".to_string() })
}

fn paid(w: &World) -> Action {
    Action::RecordRefundPaid(RecordRefundPaid {
        amount: w.dispute.approved_refund().cloned().expect("an approved refund"),
        channel: PaymentChannel::Alipay,
        payment_ref: "pay-1".to_string(),
        paid_at: w.now,
    })
}

fn hours(n: i64) -> Duration {
    Duration::hours(n)
}

/// The scripts: together they reach every status, each with its windows open and closed.
fn scripts() -> Vec<World> {
    let mut done = Vec::new();

    // Accepted, paid, three rounds: the last one may not be followed by a fourth.
    let mut w = World::new("three rounds", shipped("books"));
    for round in 1..=3 {
        w.wait(hours(1));
        w.buyer(request(RefundKind::RefundOnly, 2_000));
        w.wait(hours(1));
        if round < 3 {
            w.merchant(Action::MerchantAccept(MerchantAccept::default()));
            let action = paid(&w);
            w.system(action);
        } else {
            w.merchant(reject());
            w.fire(Deadline::EscalationWindow);
        }
    }
    done.push(w);

    // An offer declined, escalated within the window, a partial ruling, appeal window lapses.
    let mut w = World::new("offer declined", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 6_000));
    w.merchant(offer(3_000));
    w.wait(hours(2));
    w.buyer(Action::DeclineOffer(DeclineOffer::default()));
    w.wait(hours(24));
    w.buyer(escalate());
    w.merchant(Action::SubmitEvidence(SubmitEvidence { evidence: vec![evidence()] }));
    w.arbitrator(FIRST_ARBITRATOR, assign(FIRST_ARBITRATOR));
    w.arbitrator(FIRST_ARBITRATOR, judge(RulingOutcome::RefundPartial, Some(2_000), false));
    w.wait(Duration::days(4));
    let action = paid(&w);
    w.system(action);
    done.push(w);

    // An offer accepted.
    let mut w = World::new("offer accepted", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 6_000));
    w.merchant(offer(3_000));
    w.buyer(Action::AcceptOffer);
    let action = paid(&w);
    w.system(action);
    done.push(w);

    // The merchant misses the deadline; the buyer escalates before the timer records it. A
    // ruling of no refund is appealed and a second arbitrator orders a refund with a return.
    let mut w = World::new("escalated after a missed deadline", shipped("books"));
    w.buyer(request(RefundKind::ReturnAndRefund, 8_000));
    w.wait(hours(49));
    w.buyer(escalate());
    w.buyer(Action::SubmitEvidence(SubmitEvidence { evidence: vec![evidence()] }));
    w.wait(hours(2));
    w.arbitrator(FIRST_ARBITRATOR, assign(FIRST_ARBITRATOR));
    w.arbitrator(FIRST_ARBITRATOR, judge(RulingOutcome::NoRefund, None, false));
    w.wait(hours(5));
    w.buyer(appeal());
    w.arbitrator(SECOND_ARBITRATOR, assign(SECOND_ARBITRATOR));
    w.arbitrator(SECOND_ARBITRATOR, judge(RulingOutcome::RefundFull, None, true));
    w.buyer(ship_return());
    w.merchant(Action::ConfirmReturn(ConfirmReturn::default()));
    let action = paid(&w);
    w.system(action);
    done.push(w);

    // The timer records the missed deadline; the window closes; a second round is withdrawn.
    let mut w = World::new("missed deadline expires", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 5_000));
    w.fire(Deadline::MerchantResponse);
    w.fire(Deadline::EscalationWindow);
    w.wait(hours(1));
    w.buyer(request(RefundKind::RefundOnly, 5_000));
    w.buyer(Action::Withdraw(Withdraw::default()));
    done.push(w);

    // A category that auto-accepts at the merchant's deadline; the return is never shipped.
    let mut w = World::new("auto-accepted, return not shipped", shipped("fresh"));
    w.buyer(request(RefundKind::ReturnAndRefund, 5_000));
    w.fire(Deadline::MerchantResponse);
    w.fire(Deadline::ReturnShipping);
    done.push(w);

    // An accepted return the merchant never confirms: the receipt is confirmed by the timer.
    let mut w = World::new("return confirmed by the timer", shipped("books"));
    w.buyer(request(RefundKind::ReturnAndRefund, 5_000));
    w.merchant(Action::MerchantAccept(MerchantAccept::default()));
    w.wait(hours(3));
    w.buyer(ship_return());
    w.fire(Deadline::ReturnReceipt);
    let action = paid(&w);
    w.system(action);
    done.push(w);

    // A refund ruled with a return: the merchant appeals; the final ruling refunds nothing.
    let mut w = World::new("merchant appeals", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 5_000));
    w.merchant(reject());
    w.buyer(escalate());
    w.wait(Duration::days(4));
    w.arbitrator(FIRST_ARBITRATOR, assign(FIRST_ARBITRATOR));
    w.arbitrator(FIRST_ARBITRATOR, judge(RulingOutcome::RefundFull, None, true));
    w.merchant(appeal());
    w.wait(Duration::days(2));
    w.arbitrator(SECOND_ARBITRATOR, assign(SECOND_ARBITRATOR));
    w.arbitrator(SECOND_ARBITRATOR, judge(RulingOutcome::NoRefund, None, false));
    done.push(w);

    // A refund ruled with a return: shipping it ends the right to appeal.
    let mut w = World::new("return shipped after a ruling", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 5_000));
    w.merchant(reject());
    w.buyer(escalate());
    w.arbitrator(FIRST_ARBITRATOR, assign(FIRST_ARBITRATOR));
    w.arbitrator(FIRST_ARBITRATOR, judge(RulingOutcome::RefundPartial, Some(1_000), true));
    w.buyer(ship_return());
    w.merchant(Action::ConfirmReturn(ConfirmReturn::default()));
    done.push(w);

    // Withdrawn while escalated; an unshipped order cancelled in full is refunded at once.
    let mut w = World::new("withdrawn when escalated", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 5_000));
    w.merchant(reject());
    w.buyer(escalate());
    w.buyer(Action::Withdraw(Withdraw::default()));
    done.push(w);
    let mut w = World::new("unshipped", OrderFacts { shipped_at: None, ..shipped("books") });
    w.buyer(request(RefundKind::RefundOnly, PAID));
    let action = paid(&w);
    w.system(action);
    w.wait(hours(1));
    done.push(w);

    // A conversation: messages from each side and the assignee, evidence after a rejection,
    // one evidence request answered by a message's evidence, another lapsing before the ruling.
    let mut w = World::new("conversation", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 5_000));
    w.buyer(message("is it on its way?", vec![]));
    w.merchant(message("it left on Monday", vec![]));
    w.merchant(reject());
    w.buyer(Action::SubmitEvidence(SubmitEvidence { evidence: vec![evidence()] }));
    w.buyer(escalate());
    w.arbitrator(FIRST_ARBITRATOR, assign(FIRST_ARBITRATOR));
    w.arbitrator(FIRST_ARBITRATOR, message("I am looking at it", vec![]));
    w.wait(hours(80));
    w.arbitrator(FIRST_ARBITRATOR, request_evidence(Party::Merchant, "the tracking record"));
    w.wait(hours(2));
    w.merchant(message("here it is", vec![evidence()]));
    w.arbitrator(FIRST_ARBITRATOR, request_evidence(Party::Buyer, "a photo of the mailbox"));
    w.fire(Deadline::EvidenceRequest);
    w.arbitrator(FIRST_ARBITRATOR, request_evidence(Party::Buyer, "anything at all"));
    w.arbitrator(FIRST_ARBITRATOR, judge(RulingOutcome::RefundPartial, Some(1_000), false));
    w.merchant(message("thank you", vec![]));
    // Offers declined and revised until the revisions run out; the buyer escalates.
    let mut w = World::new("offer revised", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 6_000));
    w.merchant(offer(2_000));
    for amount in [3_000, 4_000] {
        w.buyer(Action::DeclineOffer(DeclineOffer::default()));
        w.wait(hours(5));
        w.merchant(offer(amount));
    }
    w.buyer(Action::DeclineOffer(DeclineOffer::default()));
    w.wait(hours(5));
    w.buyer(escalate());
    done.push(w);

    // An offer left unanswered: the timer records the lapse and the escalation window closes.
    let mut w = World::new("offer lapsed", shipped("books"));
    w.buyer(request(RefundKind::RefundOnly, 6_000));
    w.merchant(offer_of(OfferKind::PartialRefundWithReturn, Some(5_000)));
    w.fire(Deadline::OfferResponse);
    w.fire(Deadline::EscalationWindow);
    done.push(w);

    // An offer left unanswered: the buyer escalates before the timer records the lapse.
    let mut w = World::new("offer lapsed, escalated", shipped("books"));
    w.buyer(request(RefundKind::ReturnAndRefund, 6_000));
    w.merchant(offer(3_000));
    w.wait(Duration::days(10) + hours(1));
    w.buyer(escalate());
    done.push(w);

    // A replacement accepted: the goods come back and the round closes as replaced.
    let mut w = World::new("replacement", shipped("books"));
    w.buyer(request(RefundKind::ReturnAndRefund, 6_000));
    w.merchant(offer_of(OfferKind::Replacement, None));
    w.buyer(Action::AcceptOffer);
    w.buyer(ship_return());
    w.merchant(Action::ConfirmReturn(ConfirmReturn::default()));
    w.wait(hours(1));
    done.push(w);

    // A partial refund with return accepted; the parcel fails inspection; the buyer escalates
    // and the platform rules.
    let mut w = World::new("inspection failed", shipped("books"));
    w.buyer(request(RefundKind::ReturnAndRefund, 6_000));
    w.merchant(offer_of(OfferKind::PartialRefundWithReturn, Some(4_000)));
    w.buyer(Action::AcceptOffer);
    w.buyer(ship_return());
    w.merchant(Action::ConfirmReturn(ConfirmReturn {
        note: Some("an empty box".to_string()),
        inspection_failed: Some(InspectionProblem::EmptyBox),
    }));
    w.wait(hours(30));
    w.buyer(escalate());
    w.arbitrator(FIRST_ARBITRATOR, assign(FIRST_ARBITRATOR));
    w.arbitrator(FIRST_ARBITRATOR, judge(RulingOutcome::RefundPartial, Some(2_000), false));
    let action = paid(&w);
    w.system(action);
    done.push(w);

    done
}

fn message(text: &str, evidence: Vec<Evidence>) -> Action {
    Action::PostMessage(PostMessage { text: text.to_string(), evidence })
}

fn request_evidence(party: Party, what: &str) -> Action {
    Action::RequestEvidence(RequestEvidence { party, what: what.to_string() })
}

#[test]
fn the_view_offers_exactly_what_decide_accepts() {
    let worlds = scripts();
    let seen: BTreeSet<_> = worlds.iter().flat_map(|w| w.seen.iter().copied()).collect();
    // Every dispute command is accepted somewhere, and escalation after a missed deadline too.
    for spec in COMMANDS.iter().filter(|spec| spec.scope == Scope::Dispute) {
        assert!(seen.iter().any(|(_, action)| *action == spec.segment), "{} is never accepted", spec.name);
    }
    assert!(seen.contains(&("awaiting_merchant", "escalate")));
    assert!(seen.contains(&("offer_pending", "escalate")));
    assert!(seen.contains(&("rejected", "merchant-offer")));
}

//! Properties of the aggregate over random command sequences.
//!
//! A case is an order's facts and a list of raw choices. Each choice is read against the
//! dispute's current state: mostly it becomes a command that fits the status (the right actor,
//! plausible amounts, a deadline that may have come due), sometimes any command from any actor
//! with any amount. The clock moves between commands by nothing, minutes, days or weeks.
//!
//! After every command:
//! - refunds never exceed what was paid, and the `RefundPaid` events sum to `refunded_total`;
//! - a refused command leaves the state exactly as it was, also through cqrs-es's `handle`,
//!   which folds events into the aggregate in place;
//! - the status is never `unregistered` again, and the state equals a replay of the history;
//! - the deadline the events start and end is the one the state says runs.

mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use dispute_domain::command::*;
use dispute_domain::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};
use support::*;

/// Raw randomness for one step, interpreted against the state when the step runs.
#[derive(Debug, Clone, Copy, Default)]
struct Choice {
    /// Below 200: a command that fits the status; otherwise any command.
    bias: u8,
    /// Which of the candidate commands.
    pick: u16,
    /// The actor of an arbitrary command.
    actor: u8,
    /// Amounts and counts.
    amount: u16,
    /// How far the clock moves before the command.
    advance: u8,
    /// Bits: 0x01 jump to a deadline, 0x02 return-and-refund, 0x04..0x10 outcome,
    /// 0x20 return required, 0x40 merchant rather than buyer, 0x80 the other arbitrator.
    flag: u8,
}

fn choice() -> impl Strategy<Value = Choice> {
    (any::<u8>(), any::<u16>(), any::<u8>(), any::<u16>(), any::<u8>(), any::<u8>()).prop_map(
        |(bias, pick, actor, amount, advance, flag)| Choice { bias, pick, actor, amount, advance, flag },
    )
}

fn facts() -> impl Strategy<Value = OrderFacts> {
    let category = prop_oneof![
        3 => Just("books"),
        2 => Just("electronics"),
        2 => Just("fresh"),
        1 => Just("virtual"),
        1 => Just("custom_made"),
    ];
    let channel = prop_oneof![
        Just(PaymentChannel::Balance),
        Just(PaymentChannel::Alipay),
        Just(PaymentChannel::WechatPay),
        Just(PaymentChannel::BankCard),
    ];
    // 0, 1: delivered; 2: shipped only; 3: not shipped.
    (category, channel, 1..=200_000i64, 0..4u8).prop_map(|(category, channel, paid, shipping)| {
        let base = OrderFacts {
            category: category.to_string(),
            payment_channel: channel,
            paid_amount: cny(paid),
            ..order()
        };
        match shipping {
            0 | 1 => base,
            2 => OrderFacts { delivered_at: None, ..base },
            _ => OrderFacts { shipped_at: None, delivered_at: None, ..base },
        }
    })
}

fn case() -> impl Strategy<Value = (OrderFacts, Vec<Choice>)> {
    (facts(), prop::collection::vec(choice(), 1..100))
}

/// Polls a future that never waits (the aggregate does no I/O) to completion.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the aggregate waited on something"),
    }
}

const ALL_ACTORS: usize = 8;

fn any_actor(n: u8) -> Actor {
    match n as usize % ALL_ACTORS {
        0 => buyer(),
        1 => merchant(),
        2 => other_buyer(),
        3 => other_merchant(),
        4 => arbitrator(),
        5 => other_arbitrator(),
        6 => system(),
        _ => auditor(),
    }
}

fn channel(n: u8) -> PaymentChannel {
    match n % 4 {
        0 => PaymentChannel::Balance,
        1 => PaymentChannel::Alipay,
        2 => PaymentChannel::WechatPay,
        _ => PaymentChannel::BankCard,
    }
}

/// The role (and, for buyers and merchants, the party) that may issue `action`.
fn rightful_actor(action: &Action, c: &Choice) -> Actor {
    match action {
        Action::RegisterOrder(_)
        | Action::MarkDelivered(_)
        | Action::RecordRefundPaid(_)
        | Action::ExpireDeadline { .. } => system(),
        Action::RequestRefund(_)
        | Action::AcceptOffer
        | Action::DeclineOffer(_)
        | Action::Escalate(_)
        | Action::ShipReturn(_)
        | Action::Withdraw(_) => buyer(),
        Action::MerchantAccept(_)
        | Action::MerchantReject(_)
        | Action::MerchantOffer(_)
        | Action::ConfirmReturn(_) => merchant(),
        Action::SubmitEvidence(_) | Action::Appeal(_) | Action::PostMessage(_) => {
            if c.flag & 0x40 != 0 {
                merchant()
            } else {
                buyer()
            }
        }
        Action::Assign(_) | Action::Judge(_) | Action::RequestEvidence(_) => {
            if c.flag & 0x80 != 0 {
                other_arbitrator()
            } else {
                arbitrator()
            }
        }
    }
}

fn arbitrator_named(id: &str) -> Actor {
    Actor::new(Role::Arbitrator, id)
}

const REASONS: [RefundReason; 8] = [
    RefundReason::QualityIssue,
    RefundReason::NotAsDescribed,
    RefundReason::WrongItem,
    RefundReason::DamagedInTransit,
    RefundReason::NotReceived,
    RefundReason::SizeMismatch,
    RefundReason::NoReason7d,
    RefundReason::ChangedMind,
];

const REJECTIONS: [RejectionReason; 6] = [
    RejectionReason::OutsideWindow,
    RejectionReason::ItemUsed,
    RejectionReason::DamagedByBuyer,
    RejectionReason::InsufficientEvidence,
    RejectionReason::NotAsClaimed,
    RejectionReason::Other,
];

/// A dispute driven one command at a time, checking the invariants after each.
struct Sim {
    clock: Arc<ManualClock>,
    services: DisputeServices,
    state: Dispute,
    history: Vec<DisputeEvent>,
}

impl Sim {
    fn new(facts: OrderFacts) -> Self {
        let clock = Arc::new(ManualClock::new(start()));
        let services = services(&clock);
        let mut sim = Self { clock, services, state: Dispute::default(), history: vec![] };
        sim.step(system(), register(facts)).expect("the order registers");
        sim
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn facts(&self) -> &OrderFacts {
        self.state.order().expect("registered")
    }

    fn paid(&self) -> i64 {
        self.facts().paid_amount.amount_minor
    }

    fn refunded(&self) -> i64 {
        self.state.refunded_total().map_or(0, |m| m.amount_minor)
    }

    fn refundable(&self) -> i64 {
        self.paid() - self.refunded()
    }

    fn policy(&self) -> &CategoryPolicy {
        self.services.policy.for_category(&self.facts().category)
    }

    /// The events of the current round, from its request on.
    fn round_events(&self) -> &[DisputeEvent] {
        let start = self
            .history
            .iter()
            .rposition(|e| matches!(e, DisputeEvent::RefundRequested { .. }))
            .unwrap_or(self.history.len());
        &self.history[start..]
    }

    fn requested(&self) -> i64 {
        self.round_events()
            .iter()
            .find_map(|e| match e {
                DisputeEvent::RefundRequested { amount, .. } => Some(amount.amount_minor),
                _ => None,
            })
            .unwrap_or(1)
    }

    fn last_assignee(&self) -> Option<String> {
        self.round_events().iter().rev().find_map(|e| match e {
            DisputeEvent::ArbitratorAssigned { arbitrator_id, .. } => Some(arbitrator_id.clone()),
            _ => None,
        })
    }

    fn last_ruler(&self) -> Option<String> {
        self.round_events().iter().rev().find_map(|e| match e {
            DisputeEvent::DisputeJudged { arbitrator_id, .. } => Some(arbitrator_id.clone()),
            _ => None,
        })
    }

    /// When `deadline` of the current round comes due, as its events announced it.
    fn due(&self, deadline: Deadline) -> Option<DateTime<Utc>> {
        self.round_events().iter().rev().find_map(|e| match (deadline, e) {
            (Deadline::MerchantResponse, DisputeEvent::RefundRequested { merchant_response_due, .. }) => {
                Some(*merchant_response_due)
            }
            (Deadline::EscalationWindow, DisputeEvent::MerchantRejected { escalation_due, .. })
            | (Deadline::EscalationWindow, DisputeEvent::OfferDeclined { escalation_due, .. })
            | (Deadline::EscalationWindow, DisputeEvent::MerchantResponseMissed { escalation_due, .. }) => {
                Some(*escalation_due)
            }
            (Deadline::ReturnShipping, DisputeEvent::RefundApproved { return_ship_due, .. })
            | (Deadline::ReturnShipping, DisputeEvent::DisputeJudged { return_ship_due, .. }) => {
                *return_ship_due
            }
            (Deadline::ReturnReceipt, DisputeEvent::ReturnShipped { receipt_confirm_due, .. }) => {
                Some(*receipt_confirm_due)
            }
            (Deadline::EvidenceRequest, DisputeEvent::EvidenceRequested { due, .. }) => Some(*due),
            _ => None,
        })
    }

    fn advance(&self, c: &Choice) {
        const MINUTES: [i64; 7] = [1, 5, 30, 60, 180, 360, 720];
        const DAYS: [i64; 4] = [1, 2, 3, 4];
        const WEEKS: [i64; 6] = [7, 8, 10, 14, 21, 30];
        let by = match c.advance {
            0..=159 => return,
            160..=219 => Duration::minutes(MINUTES[c.pick as usize % MINUTES.len()]),
            220..=247 => Duration::days(DAYS[c.pick as usize % DAYS.len()]),
            _ => Duration::days(WEEKS[c.pick as usize % WEEKS.len()]),
        };
        self.clock.advance(by);
    }

    /// Moves the clock to the deadline when the choice says so, as the timer would fire it.
    fn maybe_jump(&self, c: &Choice, deadline: Deadline) {
        if c.flag & 0x01 == 0 {
            return;
        }
        if let Some(due) = self.due(deadline).filter(|due| *due > self.now()) {
            self.clock.set(due);
        }
    }

    fn request_action(&self, c: &Choice) -> Action {
        let kind = if c.flag & 0x02 != 0 { RefundKind::ReturnAndRefund } else { RefundKind::RefundOnly };
        let delivered = self.state.delivered_at().is_some();
        let shipped = delivered || self.facts().shipped_at.is_some();
        let reason = if shipped && !delivered {
            RefundReason::NotReceived
        } else {
            REASONS[c.pick as usize % REASONS.len()]
        };
        let refundable = self.refundable().max(1);
        let amount = match c.amount % 4 {
            0 => refundable,
            1 => (refundable / 2).max(1),
            2 => 1,
            _ => refundable + 1,
        };
        request(kind, reason, amount)
    }

    fn judge_action(&self, c: &Choice) -> Action {
        let requested = self.requested();
        match ((c.flag >> 2) & 0x07) % 3 {
            0 => judge(RulingOutcome::RefundFull, None, c.flag & 0x20 != 0),
            1 => {
                let amount = match c.amount % 3 {
                    0 => (requested / 2).max(1),
                    1 => self.refundable(),
                    _ => self.refundable() + 1,
                };
                judge(RulingOutcome::RefundPartial, Some(amount), c.flag & 0x20 != 0)
            }
            _ => judge(RulingOutcome::NoRefund, None, false),
        }
    }

    fn party(c: &Choice) -> Actor {
        if c.flag & 0x40 != 0 { merchant() } else { buyer() }
    }

    fn evidence_action(c: &Choice) -> Action {
        submit(1 + c.amount as usize % 8)
    }

    /// A message, with evidence one time in four.
    fn message_action(c: &Choice) -> Action {
        let evidence = if c.amount.is_multiple_of(4) { evidence(1 + c.amount as usize % 3) } else { vec![] };
        Action::PostMessage(PostMessage { text: "about the order".to_string(), evidence })
    }

    fn ask_action(c: &Choice) -> Action {
        let party = if c.flag & 0x40 != 0 { Party::Merchant } else { Party::Buyer };
        Action::RequestEvidence(RequestEvidence { party, what: "the chat log".to_string() })
    }

    /// Commands that fit the current status, issued by the actor who may issue them.
    fn fitting(&self, c: &Choice) -> Vec<(Actor, Action)> {
        let round = self.state.round();
        let requested = self.requested();
        let other_arbitrator_id = if c.flag & 0x80 != 0 { OTHER_ARBITRATOR } else { ARBITRATOR };
        match self.state.status() {
            Status::Unregistered => vec![(system(), register(order()))],
            Status::Open | Status::Refunded | Status::Closed => {
                let mut moves = vec![(buyer(), self.request_action(c))];
                if self.state.delivered_at().is_none() && self.facts().shipped_at.is_some() {
                    moves.push((system(), deliver(self.now() - Duration::hours(1))));
                }
                if self.state.close_reason() == Some(CloseReason::RuledNoRefund) {
                    moves.push((Self::party(c), appeal()));
                }
                moves
            }
            Status::AwaitingMerchant => vec![
                (merchant(), accept()),
                (merchant(), reject_with(REJECTIONS[c.amount as usize % REJECTIONS.len()])),
                (merchant(), reject()),
                (
                    merchant(),
                    offer(match c.amount % 3 {
                        0 => requested - 1,
                        1 => (requested / 2).max(1),
                        _ => requested,
                    }),
                ),
                (Self::party(c), Self::evidence_action(c)),
                (buyer(), withdraw()),
                (buyer(), escalate()),
                (system(), expire(Deadline::MerchantResponse, round)),
                (Self::party(c), Self::message_action(c)),
            ],
            Status::OfferPending => {
                vec![(buyer(), accept_offer()), (buyer(), decline_offer()), (buyer(), withdraw())]
            }
            Status::Rejected => vec![
                (buyer(), escalate()),
                (buyer(), escalate()),
                (buyer(), withdraw()),
                (system(), expire(Deadline::EscalationWindow, round)),
                (Self::party(c), Self::evidence_action(c)),
            ],
            Status::Escalated => vec![
                (arbitrator(), assign(other_arbitrator_id)),
                (other_arbitrator(), assign(other_arbitrator_id)),
                (Self::party(c), Self::evidence_action(c)),
                (buyer(), withdraw()),
            ],
            Status::UnderReview => {
                let assignee = self.last_assignee().unwrap_or_else(|| ARBITRATOR.to_string());
                vec![
                    (arbitrator_named(&assignee), self.judge_action(c)),
                    (arbitrator_named(&assignee), self.judge_action(c)),
                    (Self::party(c), Self::evidence_action(c)),
                    (arbitrator_named(&assignee), Self::ask_action(c)),
                    (arbitrator_named(&assignee), Self::ask_action(c)),
                    (Self::party(c), Self::message_action(c)),
                    (system(), expire(Deadline::EvidenceRequest, round)),
                ]
            }
            Status::Appealed => {
                let next = match self.last_ruler().as_deref() {
                    Some(ARBITRATOR) => OTHER_ARBITRATOR,
                    _ => ARBITRATOR,
                };
                vec![(arbitrator(), assign(next)), (Self::party(c), Self::evidence_action(c))]
            }
            Status::AwaitingReturn => vec![
                (buyer(), ship()),
                (buyer(), ship()),
                (Self::party(c), appeal()),
                (system(), expire(Deadline::ReturnShipping, round)),
            ],
            Status::ReturnShipped => {
                vec![(merchant(), confirm()), (system(), expire(Deadline::ReturnReceipt, round))]
            }
            Status::RefundPending => {
                let approved = self.state.approved_refund().map_or(1, |m| m.amount_minor);
                let amount = match c.amount % 4 {
                    0 | 1 => approved,
                    2 => approved + 1,
                    _ => approved - 1,
                };
                let channel =
                    if c.flag & 0x10 != 0 { channel(c.actor) } else { self.facts().payment_channel };
                vec![
                    (system(), refund_paid(amount, channel, self.now())),
                    (system(), refund_paid(amount, channel, self.now())),
                    (Self::party(c), appeal()),
                ]
            }
        }
    }

    /// Any command from any actor, with amounts that are often wrong.
    fn arbitrary(&self, c: &Choice) -> (Actor, Action) {
        let requested = self.requested();
        let refundable = self.refundable();
        let amounts = [0, -1, 1, requested - 1, requested, requested + 1, refundable, self.paid() + 1];
        let amount = amounts[c.amount as usize % amounts.len()];
        let channel = if c.flag & 0x10 != 0 { channel(c.flag) } else { self.facts().payment_channel };
        let deadline = match c.flag % 5 {
            0 => Deadline::MerchantResponse,
            1 => Deadline::EscalationWindow,
            2 => Deadline::ReturnShipping,
            3 => Deadline::ReturnReceipt,
            _ => Deadline::EvidenceRequest,
        };
        let round = match c.amount % 3 {
            0 => self.state.round().saturating_sub(1),
            1 => self.state.round() + 1,
            _ => self.state.round(),
        };
        let bad_evidence = Action::SubmitEvidence(SubmitEvidence {
            evidence: vec![Evidence { sha256: "xyz".to_string(), ..evidence(1)[0].clone() }],
        });
        let action = match c.pick % 24 {
            0 => register(order()),
            1 => register(OrderFacts { paid_amount: cny(amount), ..self.facts().clone() }),
            2 => deliver(self.now() - Duration::hours(c.amount as i64 % 500)),
            3 => request(
                if c.flag & 0x02 != 0 { RefundKind::ReturnAndRefund } else { RefundKind::RefundOnly },
                REASONS[c.amount as usize % REASONS.len()],
                amount,
            ),
            4 => accept(),
            5 => reject_with(REJECTIONS[c.flag as usize % REJECTIONS.len()]),
            6 => offer(amount),
            7 => accept_offer(),
            8 => decline_offer(),
            9 => submit(c.amount as usize % 25),
            10 => bad_evidence,
            11 => escalate(),
            12 => assign(if c.flag & 0x80 != 0 { OTHER_ARBITRATOR } else { ARBITRATOR }),
            13 => judge(RulingOutcome::RefundPartial, Some(amount), c.flag & 0x20 != 0),
            14 => self.judge_action(c),
            15 => appeal(),
            16 => ship(),
            17 => confirm(),
            18 => refund_paid(amount, channel, self.now()),
            19 => withdraw(),
            20 => Self::message_action(c),
            21 => Self::ask_action(c),
            _ => expire(deadline, round),
        };
        // Half the time the role that may issue the command, so that more rules than the role
        // check are reached.
        let actor = if c.actor < 128 { rightful_actor(&action, c) } else { any_actor(c.actor) };
        (actor, action)
    }

    /// One step of a random case.
    fn play(&mut self, c: &Choice) -> Result<Vec<DisputeEvent>, DisputeError> {
        self.advance(c);
        let (actor, action) = if c.bias < 200 {
            let mut moves = self.fitting(c);
            let index = c.pick as usize % moves.len();
            moves.swap_remove(index)
        } else {
            self.arbitrary(c)
        };
        if let Action::ExpireDeadline { deadline, .. } = &action {
            self.maybe_jump(c, *deadline);
        }
        self.step(actor, action)
    }

    /// Runs the fitting command named `name` under `c`'s parameters; it must be accepted.
    fn play_named(&mut self, name: &str, c: Choice) -> Vec<DisputeEvent> {
        let status = self.state.status();
        let (actor, action) = self
            .fitting(&c)
            .into_iter()
            .find(|(_, action)| action.name() == name)
            .unwrap_or_else(|| panic!("no fitting {name} while {status:?}"));
        self.step(actor, action).unwrap_or_else(|err| panic!("{name} refused while {status:?}: {err:?}"))
    }

    /// Decides and applies one command, then checks every invariant.
    fn step(&mut self, actor: Actor, action: Action) -> Result<Vec<DisputeEvent>, DisputeError> {
        let before = self.state.clone();
        let command = DisputeCommand::new(actor, action);
        let decided = before.decide(&command, &self.services);

        // The same command through cqrs-es, which folds the events into the aggregate in place.
        let mut handled = before.clone();
        let sink = EventSink::<Dispute>::default();
        let result = block_on(handled.handle(command.clone(), &self.services, &sink));
        let sunk = block_on(sink.collect());

        match &decided {
            Ok(events) => {
                assert_eq!(result, Ok(()), "handle and decide disagree on {command:?}");
                assert_eq!(&sunk, events, "handle wrote other events than decide for {command:?}");
                for event in events {
                    self.state.apply(event.clone());
                }
                self.history.extend(events.iter().cloned());
                assert_eq!(self.state, handled, "handle folded another state for {command:?}");
            }
            Err(err) => {
                assert_eq!(result, Err(err.clone()), "handle and decide disagree on {command:?}");
                assert!(sunk.is_empty(), "refused {command:?} wrote {sunk:?}");
                assert_eq!(handled, before, "refused {command:?} changed the aggregate");
                assert_eq!(self.state, before);
            }
        }
        self.check_invariants(&command);
        decided
    }

    fn check_invariants(&self, command: &DisputeCommand) {
        let state = &self.state;
        assert_ne!(state.status(), Status::Unregistered, "after {command:?}");
        let paid = self.paid();
        let refunded = self.refunded();
        assert!((0..=paid).contains(&refunded), "refunded {refunded} of {paid} after {command:?}");
        let paid_events: i64 = self
            .history
            .iter()
            .filter_map(|e| match e {
                DisputeEvent::RefundPaid { amount, .. } => Some(amount.amount_minor),
                _ => None,
            })
            .sum();
        assert_eq!(paid_events, refunded, "RefundPaid events do not sum to refunded_total");
        assert_eq!(state.refunded_total().unwrap().currency, CURRENCY);

        // A pending approval is positive, never more than what is still refundable, and exists
        // exactly while a refund is on its way.
        let owed =
            matches!(state.status(), Status::AwaitingReturn | Status::ReturnShipped | Status::RefundPending);
        match state.approved_refund() {
            Some(approved) => {
                assert!(owed, "an approval outlives its status {:?}", state.status());
                assert!(approved.amount_minor > 0 && approved.amount_minor <= self.refundable());
                assert_eq!(approved.currency, CURRENCY);
            }
            None => assert!(!owed, "{:?} without an approved refund", state.status()),
        }
        assert_eq!(state.close_reason().is_some(), state.status() == Status::Closed);
        assert!(state.round() <= self.policy().max_rounds, "round {} after {command:?}", state.round());
        assert_eq!(&fold(&self.history), state, "the state is not a replay of its history");

        // The timer service keeps one deadline per order from the events alone; it must be the
        // one the state says runs.
        let tracked = self.history.iter().fold(None, |running, event| match event.timer_change() {
            TimerChange::Unchanged => running,
            TimerChange::Set(timer) => Some(timer),
            TimerChange::Cleared => None,
        });
        assert_eq!(
            tracked,
            state.pending_timer(),
            "the events' timer differs from the state's after {command:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/properties.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_for_any_command_sequence((facts, choices) in case()) {
        let mut sim = Sim::new(facts);
        for c in &choices {
            let _ = sim.play(c);
        }
    }
}

/// A fixed, long, valid path through the same building blocks the property uses: two rounds,
/// two refunds, an offer, an escalation, an appeal and a return.
#[test]
fn the_building_blocks_reach_refunded_twice() {
    let mut sim = Sim::new(order_in("electronics"));
    let half = Choice { amount: 1, ..Choice::default() };
    // Round 1: half the order, refund only; the merchant offers less and the buyer takes it.
    sim.play_named("request", half);
    sim.play_named("merchant_offer", half);
    sim.play_named("accept_offer", Choice::default());
    sim.play_named("refund_paid", Choice::default());
    assert_eq!(sim.state.status(), Status::Refunded);
    let first = sim.refunded();
    assert!(first > 0 && first < PAID / 2);

    // Round 2: the rest, with the goods; rejected, escalated, ruled, appealed, ruled again.
    sim.clock.advance(Duration::days(1));
    let with_return = Choice { amount: 0, flag: 0x02, ..Choice::default() };
    sim.play_named("request", with_return);
    assert_eq!(sim.state.round(), 2);
    sim.play_named("merchant_reject", Choice::default());
    sim.clock.advance(Duration::days(2));
    sim.play_named("escalate", Choice::default());
    sim.play_named("evidence", Choice { amount: 3, flag: 0x40, ..Choice::default() });
    sim.play_named("assign", Choice::default());
    // Refund in full, goods back.
    sim.play_named("judge", Choice { flag: 0x20, ..Choice::default() });
    assert_eq!(sim.state.status(), Status::AwaitingReturn);
    sim.play_named("appeal", Choice { flag: 0x40, ..Choice::default() });
    assert_eq!(sim.state.status(), Status::Appealed);
    sim.play_named("assign", Choice::default());
    assert_eq!(sim.last_assignee().as_deref(), Some(OTHER_ARBITRATOR));
    // Partial refund, goods back: final.
    sim.play_named("judge", Choice { flag: 0x04 | 0x20, ..Choice::default() });
    sim.clock.advance(Duration::days(2));
    sim.play_named("ship_return", Choice::default());
    sim.clock.advance(Duration::days(10));
    sim.play_named("expire_deadline", Choice::default());
    sim.play_named("refund_paid", Choice::default());

    let state = &sim.state;
    assert_eq!(state.status(), Status::Refunded);
    let refunds = sim.history.iter().filter(|e| matches!(e, DisputeEvent::RefundPaid { .. })).count();
    assert_eq!(refunds, 2);
    let rest = PAID - first;
    assert_eq!(sim.refunded(), first + rest / 2);
    // Nothing more may be asked after a ruling.
    assert!(sim.step(buyer(), refund_only(1)).is_err());
}

/// The random cases are not shallow: run the property's generator with a fixed seed and count
/// how deep the cases go.
#[test]
fn the_generator_reaches_deep_states() {
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = case();
    let cases = 400;
    let mut statuses = BTreeSet::new();
    let mut refunded_cases = 0;
    let mut refunded_twice = 0;
    let mut second_rounds = 0;
    let mut appealed = 0;
    let mut ruled = 0;
    let mut answered = 0;
    let mut lapsed = 0;
    let mut accepted_steps = 0;
    let mut refused_steps = 0;
    for _ in 0..cases {
        let (facts, choices) = strategy.new_tree(&mut runner).expect("a case").current();
        let mut sim = Sim::new(facts);
        for c in &choices {
            match sim.play(c) {
                Ok(_) => accepted_steps += 1,
                Err(_) => refused_steps += 1,
            }
            statuses.insert(sim.state.status().as_str());
        }
        let refunds = sim.history.iter().filter(|e| matches!(e, DisputeEvent::RefundPaid { .. })).count();
        refunded_cases += usize::from(refunds >= 1);
        refunded_twice += usize::from(refunds >= 2);
        second_rounds += usize::from(sim.state.round() >= 2);
        appealed += usize::from(sim.history.iter().any(|e| matches!(e, DisputeEvent::RulingAppealed { .. })));
        ruled += usize::from(sim.history.iter().any(|e| matches!(e, DisputeEvent::DisputeJudged { .. })));
        answered += usize::from(
            sim.history.iter().any(|e| matches!(e, DisputeEvent::EvidenceRequestAnswered { .. })),
        );
        lapsed +=
            usize::from(sim.history.iter().any(|e| matches!(e, DisputeEvent::EvidenceRequestLapsed { .. })));
    }
    let all: BTreeSet<&str> = [
        "open",
        "awaiting_merchant",
        "offer_pending",
        "rejected",
        "escalated",
        "under_review",
        "appealed",
        "awaiting_return",
        "return_shipped",
        "refund_pending",
        "refunded",
        "closed",
    ]
    .into_iter()
    .collect();
    let report = format!(
        "statuses {statuses:?}; of {cases} cases: refunded {refunded_cases}, twice {refunded_twice}, \
         second round {second_rounds}, ruled {ruled}, appealed {appealed}, evidence requests answered \
         {answered}, lapsed {lapsed}; steps accepted {accepted_steps}, refused {refused_steps}"
    );
    println!("{report}");
    assert_eq!(statuses, all, "{report}");
    // The seed is fixed, so these counts only move when the generator changes; the bounds are
    // about half of what it reaches.
    assert!(refunded_cases >= cases / 4, "{report}");
    assert!(refunded_twice >= cases / 25, "{report}");
    assert!(second_rounds >= cases / 4, "{report}");
    assert!(ruled >= cases / 15, "{report}");
    assert!(appealed >= cases / 40, "{report}");
    assert!(answered >= cases / 40 && lapsed >= cases / 40, "{report}");
    assert!(accepted_steps >= 5 * cases, "{report}");
    assert!(refused_steps >= 5 * cases, "{report}");
}

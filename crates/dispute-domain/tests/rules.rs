//! Every rule, status transition and refusal of the dispute aggregate, as given/when/then.
//! Refusals are asserted on the error variant; the stable codes are checked once, in
//! `error_codes`.

mod support;

use chrono::Duration;
use dispute_domain::*;
use support::*;

fn invalid(command: &'static str, status: Status) -> DisputeError {
    DisputeError::InvalidTransition { command, status: status.as_str() }
}

/// A refused amount, saying how much (CNY minor units) is still refundable.
fn exceeds(refundable: i64) -> DisputeError {
    DisputeError::AmountExceedsRefundable { refundable: cny(refundable) }
}

/// A request after the window of `days` from [`delivered_at`], saying when it ended.
fn outside(days: i64) -> DisputeError {
    let window = Duration::days(days);
    DisputeError::OutsideRequestWindow { window, ends: delivered_at() + window }
}

mod registration {
    use super::*;

    #[test]
    fn registering_an_order_records_its_facts_and_opens_it() {
        let s = Scenario::unregistered();
        s.when(system(), register(order()))
            .then_expect_events(vec![DisputeEvent::OrderRegistered { facts: order() }]);
        let state = Scenario::new().state();
        assert_eq!(state.status(), Status::Open);
        assert_eq!(state.round(), 0);
        assert_eq!(state.order(), Some(&order()));
        assert_eq!(state.delivered_at(), Some(delivered_at()));
        assert_eq!(state.refunded_total(), Some(cny(0)));
        assert_eq!(state.close_reason(), None);
    }

    #[test]
    fn only_the_system_role_registers_orders() {
        let s = Scenario::unregistered();
        for actor in [buyer(), merchant(), arbitrator(), auditor()] {
            s.refuses(actor, register(order()), DisputeError::Forbidden);
        }
    }

    #[test]
    fn only_the_system_role_registers_orders_also_once_registered() {
        let s = Scenario::new();
        for actor in [buyer(), merchant(), arbitrator(), auditor()] {
            s.refuses(actor, register(order()), DisputeError::Forbidden);
        }
    }

    #[test]
    fn registering_the_same_facts_again_changes_nothing() {
        Scenario::new().when(system(), register(order())).then_expect_events(vec![]);
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), reject());
        s.when(system(), register(order())).then_expect_events(vec![]);
    }

    #[test]
    fn registering_other_facts_for_a_registered_order_is_a_facts_conflict() {
        let s = Scenario::new();
        let conflicting = [
            OrderFacts { paid_amount: cny(PAID + 1), ..order() },
            OrderFacts { buyer_id: OTHER_BUYER.to_string(), ..order() },
            OrderFacts { merchant_id: OTHER_MERCHANT.to_string(), ..order() },
            OrderFacts { category: "fresh".to_string(), ..order() },
            OrderFacts { payment_channel: PaymentChannel::BankCard, ..order() },
            OrderFacts { delivered_at: None, ..order() },
        ];
        for facts in conflicting {
            s.refuses(system(), register(facts), DisputeError::OrderFactsConflict);
        }
    }

    #[test]
    fn order_ids_are_one_to_128_safe_characters() {
        let s = Scenario::unregistered();
        for id in ["", "a b", "a/b", "a.b", "order*", "订单1", &"x".repeat(129)] {
            s.refuses(
                system(),
                register(OrderFacts { order_id: id.to_string(), ..order() }),
                DisputeError::InvalidOrderId,
            );
        }
        for id in ["A-1_b:2", "x", &"x".repeat(128)] {
            let facts = OrderFacts { order_id: id.to_string(), ..order() };
            s.when(system(), register(facts.clone()))
                .then_expect_events(vec![DisputeEvent::OrderRegistered { facts }]);
        }
    }

    #[test]
    fn paid_amount_must_be_positive() {
        let s = Scenario::unregistered();
        for amount in [0, -1, -PAID] {
            s.refuses(
                system(),
                register(OrderFacts { paid_amount: cny(amount), ..order() }),
                DisputeError::InvalidAmount,
            );
        }
    }

    #[test]
    fn paid_currency_must_be_an_iso_code() {
        let s = Scenario::unregistered();
        for currency in ["cny", "CN", "CNYY", ""] {
            s.refuses(
                system(),
                register(OrderFacts { paid_amount: Money::new(PAID, currency), ..order() }),
                DisputeError::InvalidCurrency,
            );
        }
    }

    #[test]
    fn parties_and_category_must_not_be_empty() {
        let s = Scenario::unregistered();
        s.refuses(
            system(),
            register(OrderFacts { buyer_id: " ".to_string(), ..order() }),
            DisputeError::EmptyField("buyer_id"),
        );
        s.refuses(
            system(),
            register(OrderFacts { merchant_id: String::new(), ..order() }),
            DisputeError::EmptyField("merchant_id"),
        );
        s.refuses(
            system(),
            register(OrderFacts { category: String::new(), ..order() }),
            DisputeError::EmptyField("category"),
        );
    }

    #[test]
    fn commands_on_an_unregistered_order_are_order_not_found() {
        let s = Scenario::unregistered();
        s.refuses(buyer(), refund_only(PAID), DisputeError::OrderNotFound);
        s.refuses(system(), deliver(delivered_at()), DisputeError::OrderNotFound);
        s.refuses(merchant(), accept(), DisputeError::OrderNotFound);
        s.refuses(buyer(), withdraw(), DisputeError::OrderNotFound);
        s.refuses(arbitrator(), assign(ARBITRATOR), DisputeError::OrderNotFound);
        s.refuses(system(), expire(Deadline::MerchantResponse, 1), DisputeError::OrderNotFound);
    }
}

mod delivery {
    use super::*;

    #[test]
    fn delivery_is_recorded_once_by_the_system() {
        let mut s = Scenario::of(shipped_order());
        s.when(system(), deliver(delivered_at()))
            .then_expect_events(vec![DisputeEvent::OrderDelivered { delivered_at: delivered_at() }]);
        let state = s.then_state(system(), deliver(delivered_at()));
        assert_eq!(state.delivered_at(), Some(delivered_at()));
        assert_eq!(state.status(), Status::Open);
    }

    #[test]
    fn only_the_system_role_marks_delivery() {
        let s = Scenario::of(shipped_order());
        for actor in [buyer(), merchant(), arbitrator(), auditor()] {
            s.refuses(actor, deliver(delivered_at()), DisputeError::Forbidden);
        }
    }

    #[test]
    fn delivered_again_at_the_same_time_changes_nothing() {
        // Recorded at registration.
        Scenario::new().when(system(), deliver(delivered_at())).then_expect_events(vec![]);
        // Recorded later.
        let mut s = Scenario::of(shipped_order());
        s.given(system(), deliver(delivered_at()));
        s.when(system(), deliver(delivered_at())).then_expect_events(vec![]);
    }

    #[test]
    fn delivered_at_another_time_is_a_delivery_conflict() {
        Scenario::new().refuses(
            system(),
            deliver(delivered_at() + Duration::seconds(1)),
            DisputeError::DeliveryConflict,
        );
        let mut s = Scenario::of(shipped_order());
        s.given(system(), deliver(delivered_at()));
        s.refuses(system(), deliver(delivered_at() - Duration::hours(1)), DisputeError::DeliveryConflict);
    }

    #[test]
    fn delivery_may_be_recorded_while_a_request_runs() {
        let mut s = Scenario::of(shipped_order());
        s.given(buyer(), request(RefundKind::RefundOnly, RefundReason::NotReceived, PAID));
        let state = s.then_state(system(), deliver(delivered_at()));
        assert_eq!(state.status(), Status::AwaitingMerchant);
        assert_eq!(state.delivered_at(), Some(delivered_at()));
    }

    #[test]
    fn delivery_opens_every_reason_within_the_request_window() {
        let mut s = Scenario::of(shipped_order());
        s.refuses(buyer(), refund_only(PAID), DisputeError::ReasonNotAllowed);
        s.given(system(), deliver(s.now() - Duration::hours(1)));
        assert_eq!(s.then_state(buyer(), refund_only(PAID)).status(), Status::AwaitingMerchant);
    }
}

mod requests {
    use super::*;

    #[test]
    fn unshipped_request_for_everything_still_refundable_is_approved_at_once_in_a_later_round() {
        let mut s = Scenario::of(unshipped_order());
        s.refunded(4_000);
        let events = s.run(buyer(), refund_only(PAID - 4_000));
        assert!(
            matches!(
                events.as_slice(),
                [
                    DisputeEvent::RefundRequested { round: 2, .. },
                    DisputeEvent::RefundApproved { round: 2, approved_by: ApprovedBy::UnshippedPolicy, .. }
                ]
            ),
            "{events:?}"
        );
        assert_eq!(s.state().approved_refund(), Some(&cny(PAID - 4_000)));
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

    #[test]
    fn a_refund_only_request_opens_round_one_awaiting_the_merchant() {
        let mut s = Scenario::new();
        let due = s.now() + Duration::hours(48);
        s.when(buyer(), refund_only(4_000)).then_expect_events(vec![DisputeEvent::RefundRequested {
            round: 1,
            kind: RefundKind::RefundOnly,
            reason: RefundReason::QualityIssue,
            amount: cny(4_000),
            description: "the cover is torn".to_string(),
            evidence: evidence(1),
            merchant_response_due: due,
        }]);
        let state = s.then_state(buyer(), refund_only(4_000));
        assert_eq!(state.status(), Status::AwaitingMerchant);
        assert_eq!(state.round(), 1);
        assert_eq!(state.approved_refund(), None);
        assert_eq!(state.refunded_total(), Some(cny(0)));
    }

    #[test]
    fn a_return_and_refund_request_awaits_the_merchant() {
        let mut s = Scenario::new();
        let events = s.run(buyer(), return_and_refund(PAID));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::RefundRequested { round: 1, kind: RefundKind::ReturnAndRefund, .. }]
        ));
        assert_eq!(s.state().status(), Status::AwaitingMerchant);
    }

    #[test]
    fn every_reason_may_be_requested_within_the_window_of_a_delivered_order() {
        for kind in [RefundKind::RefundOnly, RefundKind::ReturnAndRefund] {
            for reason in REASONS {
                let s = Scenario::new();
                let events = s.decide(buyer(), request(kind, reason, PAID)).unwrap();
                assert!(
                    matches!(events.as_slice(), [DisputeEvent::RefundRequested { reason: r, kind: k, .. }] if *r == reason && *k == kind),
                    "{kind:?} {reason:?}: {events:?}"
                );
            }
        }
    }

    #[test]
    fn request_amount_must_be_positive() {
        let s = Scenario::new();
        for amount in [0, -1] {
            s.refuses(buyer(), refund_only(amount), DisputeError::InvalidAmount);
        }
    }

    #[test]
    fn request_amount_must_be_in_the_orders_currency() {
        let s = Scenario::new();
        let usd = request_money(RefundKind::RefundOnly, RefundReason::QualityIssue, Money::new(100, "USD"));
        s.refuses(buyer(), usd, DisputeError::CurrencyMismatch);
        let lower = request_money(RefundKind::RefundOnly, RefundReason::QualityIssue, Money::new(100, "cny"));
        s.refuses(buyer(), lower, DisputeError::InvalidCurrency);
    }

    #[test]
    fn request_amount_may_not_exceed_what_was_paid() {
        let s = Scenario::new();
        s.refuses(buyer(), refund_only(PAID + 1), exceeds(PAID));
        s.decide(buyer(), refund_only(PAID)).unwrap();
        s.decide(buyer(), refund_only(1)).unwrap();
    }

    #[test]
    fn request_needs_a_description() {
        let s = Scenario::new();
        let Action::RequestRefund(mut cmd) = refund_only(PAID) else { unreachable!() };
        cmd.description = "  ".to_string();
        s.refuses(buyer(), Action::RequestRefund(cmd), DisputeError::EmptyField("description"));
    }

    #[test]
    fn request_evidence_must_be_well_formed() {
        let s = Scenario::new();
        let Action::RequestRefund(cmd) = refund_only(PAID) else { unreachable!() };
        for bad in [
            Evidence { sha256: "ab".repeat(31), ..evidence(1)[0].clone() },
            Evidence { sha256: "g".repeat(64), ..evidence(1)[0].clone() },
            Evidence { uri: " ".to_string(), ..evidence(1)[0].clone() },
        ] {
            let action = Action::RequestRefund(command::RequestRefund { evidence: vec![bad], ..cmd.clone() });
            s.refuses(buyer(), action, DisputeError::InvalidEvidence);
        }
    }

    #[test]
    fn request_window_is_seven_days_from_delivery() {
        let mut s = Scenario::new();
        s.set_clock(delivered_at() + Duration::days(7));
        s.decide(buyer(), refund_only(PAID)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), refund_only(PAID), outside(7));
        s.refuses(buyer(), return_and_refund(PAID), outside(7));
    }

    #[test]
    fn request_window_is_fifteen_days_from_delivery_for_electronics() {
        let mut s = Scenario::of(order_in("electronics"));
        s.set_clock(delivered_at() + Duration::days(10));
        s.decide(buyer(), refund_only(PAID)).unwrap();
        s.set_clock(delivered_at() + Duration::days(15));
        s.decide(buyer(), refund_only(PAID)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), refund_only(PAID), outside(15));
    }

    #[test]
    fn shipped_not_delivered_order_may_only_be_refunded_as_not_received() {
        let mut s = Scenario::of(shipped_order());
        for reason in REASONS.into_iter().filter(|r| *r != RefundReason::NotReceived) {
            s.refuses(buyer(), request(RefundKind::RefundOnly, reason, PAID), DisputeError::ReasonNotAllowed);
        }
        // No delivery, no window: a parcel lost for weeks may still be claimed.
        s.advance(Duration::days(40));
        let events = s.run(buyer(), request(RefundKind::RefundOnly, RefundReason::NotReceived, PAID));
        assert_eq!(events.len(), 1, "a shipped order is not refunded by policy: {events:?}");
        assert_eq!(s.state().status(), Status::AwaitingMerchant);
    }

    #[test]
    fn unshipped_order_may_be_refunded_for_any_reason() {
        for reason in REASONS {
            let s = Scenario::of(unshipped_order());
            s.decide(buyer(), request(RefundKind::RefundOnly, reason, PAID / 2))
                .unwrap_or_else(|e| panic!("{reason:?}: {e:?}"));
        }
    }

    #[test]
    fn no_reason_return_refused_for_fresh_virtual_and_custom_made() {
        for category in ["fresh", "virtual", "custom_made"] {
            let s = Scenario::of(order_in(category));
            s.refuses(
                buyer(),
                request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID),
                DisputeError::NoReasonNotAllowed,
            );
            // Other reasons stay open.
            s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::QualityIssue, PAID))
                .unwrap();
        }
        // Also before shipping.
        let s = Scenario::of(OrderFacts { category: "fresh".to_string(), ..unshipped_order() });
        s.refuses(
            buyer(),
            request(RefundKind::RefundOnly, RefundReason::NoReason7d, PAID),
            DisputeError::NoReasonNotAllowed,
        );
    }

    #[test]
    fn no_reason_return_allowed_within_seven_days_from_delivery() {
        let mut s = Scenario::of(order_in("electronics"));
        s.set_clock(delivered_at() + Duration::days(7));
        s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID)).unwrap();
    }

    #[test]
    fn no_reason_return_refused_after_seven_days_from_delivery() {
        // Electronics keep the request window open for 15 days; the no-reason window stays 7.
        let mut s = Scenario::of(order_in("electronics"));
        s.set_clock(delivered_at() + Duration::days(7) + Duration::seconds(1));
        s.refuses(
            buyer(),
            request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID),
            DisputeError::NoReasonNotAllowed,
        );
        s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::QualityIssue, PAID)).unwrap();
    }

    #[test]
    fn unshipped_full_refund_only_request_is_approved_at_once() {
        let mut s = Scenario::of(unshipped_order());
        let due = s.now() + Duration::hours(48);
        s.when(buyer(), request(RefundKind::RefundOnly, RefundReason::ChangedMind, PAID)).then_expect_events(
            vec![
                DisputeEvent::RefundRequested {
                    round: 1,
                    kind: RefundKind::RefundOnly,
                    reason: RefundReason::ChangedMind,
                    amount: cny(PAID),
                    description: "the cover is torn".to_string(),
                    evidence: evidence(1),
                    merchant_response_due: due,
                },
                DisputeEvent::RefundApproved {
                    round: 1,
                    amount: cny(PAID),
                    approved_by: ApprovedBy::UnshippedPolicy,
                    return_required: false,
                    return_ship_due: None,
                    note: None,
                    approved_at: Some(s.now()),
                    return_address: None,
                    refund_due: Some(s.now() + Duration::days(3)),
                },
            ],
        );
        let state = s.then_state(buyer(), request(RefundKind::RefundOnly, RefundReason::ChangedMind, PAID));
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn unshipped_partial_refund_is_not_approved_at_once() {
        let mut s = Scenario::of(unshipped_order());
        let events = s.run(buyer(), refund_only(PAID - 1));
        assert!(matches!(events.as_slice(), [DisputeEvent::RefundRequested { .. }]), "{events:?}");
        assert_eq!(s.state().status(), Status::AwaitingMerchant);
    }

    #[test]
    fn unshipped_return_and_refund_is_refused_as_there_is_nothing_to_return() {
        let s = Scenario::of(unshipped_order());
        s.refuses(buyer(), return_and_refund(PAID), DisputeError::ReturnWithoutShipment);
    }

    #[test]
    fn shipped_full_refund_only_request_is_not_approved_at_once() {
        let mut s = Scenario::of(shipped_order());
        let events = s.run(buyer(), request(RefundKind::RefundOnly, RefundReason::NotReceived, PAID));
        assert_eq!(events.len(), 1);
        assert_eq!(s.state().status(), Status::AwaitingMerchant);
    }

    #[test]
    fn another_buyer_is_not_a_party() {
        Scenario::new().refuses(other_buyer(), refund_only(PAID), DisputeError::NotAParty);
    }

    #[test]
    fn only_the_buyer_role_requests() {
        let s = Scenario::new();
        for actor in [merchant(), arbitrator(), system(), auditor()] {
            s.refuses(actor, refund_only(PAID), DisputeError::Forbidden);
        }
    }

    #[test]
    fn request_on_an_unknown_order_is_order_not_found() {
        Scenario::unregistered().refuses(buyer(), refund_only(PAID), DisputeError::OrderNotFound);
    }

    #[test]
    fn request_while_a_round_runs_is_an_invalid_transition() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.refuses(buyer(), refund_only(PAID), invalid("request", Status::AwaitingMerchant));
        s.given(merchant(), reject());
        s.refuses(buyer(), refund_only(PAID), invalid("request", Status::Rejected));
    }
}

mod merchant_answers {
    use super::*;

    #[test]
    fn merchant_accept_of_a_refund_only_request_waits_for_payment() {
        let mut s = Scenario::new();
        s.requested(4_000);
        s.when(merchant(), accept()).then_expect_events(vec![DisputeEvent::RefundApproved {
            round: 1,
            amount: cny(4_000),
            approved_by: ApprovedBy::Merchant,
            return_required: false,
            return_ship_due: None,
            note: Some("sorry".to_string()),
            approved_at: Some(s.now()),
            return_address: None,
            refund_due: Some(s.now() + Duration::days(3)),
        }]);
        let state = s.then_state(merchant(), accept());
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(4_000)));
    }

    #[test]
    fn merchant_accept_of_a_return_and_refund_awaits_the_return() {
        let mut s = Scenario::new();
        s.requested_return(PAID).advance(Duration::hours(5));
        let due = s.now() + Duration::days(7);
        s.when(merchant(), accept()).then_expect_events(vec![DisputeEvent::RefundApproved {
            round: 1,
            amount: cny(PAID),
            approved_by: ApprovedBy::Merchant,
            return_required: true,
            return_ship_due: Some(due),
            note: Some("sorry".to_string()),
            approved_at: Some(s.now()),
            return_address: None,
            refund_due: None,
        }]);
        let state = s.then_state(merchant(), accept());
        assert_eq!(state.status(), Status::AwaitingReturn);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn merchant_commands_are_for_the_orders_merchant() {
        let mut s = Scenario::new();
        s.requested(PAID);
        for action in [accept(), reject(), offer(100)] {
            s.refuses(other_merchant(), action.clone(), DisputeError::NotAParty);
            for actor in [buyer(), arbitrator(), system(), auditor()] {
                s.refuses(actor, action.clone(), DisputeError::Forbidden);
            }
        }
    }

    #[test]
    fn merchant_answers_only_a_request_awaiting_it() {
        let s = Scenario::new();
        s.refuses(merchant(), accept(), invalid("merchant_accept", Status::Open));
        s.refuses(merchant(), reject(), invalid("merchant_reject", Status::Open));
        s.refuses(merchant(), offer(10), invalid("merchant_offer", Status::Open));
        let mut s = Scenario::new();
        s.rejected();
        s.refuses(merchant(), accept(), invalid("merchant_accept", Status::Rejected));
        s.refuses(merchant(), reject(), invalid("merchant_reject", Status::Rejected));
        s.refuses(merchant(), offer(10), invalid("merchant_offer", Status::Rejected));
    }

    #[test]
    fn merchant_reject_takes_every_reason_code_and_opens_the_escalation_window() {
        for code in [
            RejectionReason::OutsideWindow,
            RejectionReason::ItemUsed,
            RejectionReason::DamagedByBuyer,
            RejectionReason::InsufficientEvidence,
            RejectionReason::NotAsClaimed,
            RejectionReason::Other,
        ] {
            let mut s = Scenario::new();
            s.requested(PAID).advance(Duration::hours(47));
            let due = s.now() + Duration::days(7);
            s.when(merchant(), reject_with(code)).then_expect_events(vec![DisputeEvent::MerchantRejected {
                round: 1,
                reason_code: code,
                note: "the photos show wear".to_string(),
                evidence: vec![],
                escalation_due: due,
            }]);
            let state = s.then_state(merchant(), reject_with(code));
            assert_eq!(state.status(), Status::Rejected);
        }
    }

    #[test]
    fn merchant_reject_needs_a_note() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let action = Action::MerchantReject(command::MerchantReject {
            reason_code: RejectionReason::Other,
            note: " \n".to_string(),
            evidence: vec![],
        });
        s.refuses(merchant(), action, DisputeError::EmptyField("note"));
    }

    #[test]
    fn merchant_reject_evidence_must_be_well_formed() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let action = Action::MerchantReject(command::MerchantReject {
            reason_code: RejectionReason::ItemUsed,
            note: "worn".to_string(),
            evidence: vec![Evidence { sha256: "0".repeat(65), ..evidence(1)[0].clone() }],
        });
        s.refuses(merchant(), action, DisputeError::InvalidEvidence);
    }

    #[test]
    fn merchant_reject_after_the_response_deadline_is_refused() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(48));
        s.decide(merchant(), reject()).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(merchant(), reject(), DisputeError::ResponseDeadlinePassed);
    }

    #[test]
    fn merchant_offer_moves_the_request_to_offer_pending() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.when(merchant(), offer(PAID - 1)).then_expect_events(vec![DisputeEvent::MerchantOffered {
            round: 1,
            amount: cny(PAID - 1),
            note: "half back, keep it".to_string(),
            kind: OfferKind::PartialRefund,
            return_address: None,
            expires_at: Some(s.now() + Duration::days(10)),
            revision: 0,
        }]);
        assert_eq!(s.then_state(merchant(), offer(PAID - 1)).status(), Status::OfferPending);
    }

    #[test]
    fn merchant_offer_must_be_below_the_request() {
        let mut s = Scenario::new();
        s.requested(6_000);
        s.refuses(merchant(), offer(6_000), DisputeError::OfferNotBelowRequest);
        s.refuses(merchant(), offer(6_001), DisputeError::OfferNotBelowRequest);
        s.decide(merchant(), offer(5_999)).unwrap();
    }

    #[test]
    fn merchant_offer_must_be_a_positive_amount_in_the_orders_currency() {
        let mut s = Scenario::new();
        s.requested(6_000);
        s.refuses(merchant(), offer(0), DisputeError::InvalidAmount);
        s.refuses(merchant(), offer(-5), DisputeError::InvalidAmount);
        let usd = Action::MerchantOffer(command::MerchantOffer {
            amount: Some(Money::new(100, "USD")),
            note: "in dollars".to_string(),
            ..offer_body()
        });
        s.refuses(merchant(), usd, DisputeError::CurrencyMismatch);
    }

    #[test]
    fn merchant_offer_needs_a_note() {
        let mut s = Scenario::new();
        s.requested(6_000);
        let action = Action::MerchantOffer(command::MerchantOffer {
            amount: Some(cny(100)),
            note: String::new(),
            ..offer_body()
        });
        s.refuses(merchant(), action, DisputeError::EmptyField("note"));
    }

    #[test]
    fn merchant_offer_after_the_response_deadline_is_refused() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(48) + Duration::seconds(1));
        s.refuses(merchant(), offer(100), DisputeError::ResponseDeadlinePassed);
    }

    #[test]
    fn merchant_may_still_accept_after_the_response_deadline_until_the_timer_fires() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(49));
        assert_eq!(s.then_state(merchant(), accept()).status(), Status::RefundPending);
    }

    #[test]
    fn accepting_an_offer_approves_the_offered_amount_without_a_return() {
        let mut s = Scenario::new();
        s.requested_return(PAID).given(merchant(), offer(3_000));
        s.when(buyer(), accept_offer()).then_expect_events(vec![DisputeEvent::RefundApproved {
            round: 1,
            amount: cny(3_000),
            approved_by: ApprovedBy::Offer,
            return_required: false,
            return_ship_due: None,
            note: None,
            approved_at: Some(s.now()),
            return_address: None,
            refund_due: Some(s.now() + Duration::days(3)),
        }]);
        let state = s.then_state(buyer(), accept_offer());
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(3_000)));
    }

    #[test]
    fn declining_an_offer_rejects_and_opens_the_escalation_window() {
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(3_000)).advance(Duration::days(2));
        let due = s.now() + Duration::days(7);
        s.when(buyer(), decline_offer()).then_expect_events(vec![DisputeEvent::OfferDeclined {
            round: 1,
            note: Some("not enough".to_string()),
            escalation_due: due,
        }]);
        assert_eq!(s.then_state(buyer(), decline_offer()).status(), Status::Rejected);
    }

    #[test]
    fn offers_are_answered_by_the_orders_buyer_only() {
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(3_000));
        for action in [accept_offer(), decline_offer()] {
            s.refuses(other_buyer(), action.clone(), DisputeError::NotAParty);
            for actor in [merchant(), arbitrator(), system(), auditor()] {
                s.refuses(actor, action.clone(), DisputeError::Forbidden);
            }
        }
    }

    #[test]
    fn offers_are_answered_only_while_one_is_pending() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.refuses(buyer(), accept_offer(), invalid("accept_offer", Status::AwaitingMerchant));
        s.refuses(buyer(), decline_offer(), invalid("decline_offer", Status::AwaitingMerchant));
        s.given(merchant(), offer(100)).given(buyer(), decline_offer());
        s.refuses(buyer(), accept_offer(), invalid("accept_offer", Status::Rejected));
    }
}

mod evidence_rules {
    use super::*;

    #[test]
    fn both_parties_may_add_evidence_while_awaiting_the_merchant() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.when(buyer(), submit(2)).then_expect_events(vec![DisputeEvent::EvidenceSubmitted {
            round: 1,
            party: Party::Buyer,
            evidence: evidence(2),
        }]);
        s.when(merchant(), submit(1)).then_expect_events(vec![DisputeEvent::EvidenceSubmitted {
            round: 1,
            party: Party::Merchant,
            evidence: evidence(1),
        }]);
        assert_eq!(s.then_state(buyer(), submit(2)).status(), Status::AwaitingMerchant);
    }

    #[test]
    fn evidence_is_for_the_orders_parties_only() {
        let mut s = Scenario::new();
        s.escalated();
        s.refuses(other_buyer(), submit(1), DisputeError::NotAParty);
        s.refuses(other_merchant(), submit(1), DisputeError::NotAParty);
        for actor in [arbitrator(), system(), auditor()] {
            s.refuses(actor, submit(1), DisputeError::Forbidden);
        }
    }

    #[test]
    fn evidence_needs_at_least_one_item() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.refuses(buyer(), submit(0), DisputeError::EmptyField("evidence"));
    }

    #[test]
    fn evidence_with_a_bad_sha256_is_invalid() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let good = evidence(1)[0].clone();
        for bad in [
            Evidence { sha256: "a".repeat(63), ..good.clone() },
            Evidence { sha256: "a".repeat(65), ..good.clone() },
            Evidence { sha256: format!("{}z", "a".repeat(63)), ..good.clone() },
            Evidence { sha256: String::new(), ..good.clone() },
            Evidence { uri: String::new(), ..good.clone() },
        ] {
            let action =
                Action::SubmitEvidence(command::SubmitEvidence { evidence: vec![good.clone(), bad] });
            s.refuses(buyer(), action, DisputeError::InvalidEvidence);
        }
        // Upper-case hex is hex.
        let upper = Evidence { sha256: "AB".repeat(32), ..good };
        s.decide(buyer(), Action::SubmitEvidence(command::SubmitEvidence { evidence: vec![upper] })).unwrap();
    }

    #[test]
    fn evidence_is_capped_at_twenty_items_per_party_per_dispute() {
        let mut s = Scenario::new();
        // The request carried one item; 19 more reach the cap.
        s.requested(PAID).given(buyer(), submit(10)).given(buyer(), submit(9));
        s.refuses(buyer(), submit(1), DisputeError::TooMuchEvidence);
        // The merchant's count is its own.
        s.given(merchant(), submit(20));
        s.refuses(merchant(), submit(1), DisputeError::TooMuchEvidence);
    }

    #[test]
    fn evidence_cap_refuses_a_batch_that_would_pass_it() {
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), submit(15));
        s.refuses(buyer(), submit(5), DisputeError::TooMuchEvidence);
        s.decide(buyer(), submit(4)).unwrap();
        // A rejection's evidence counts for the merchant.
        let reject = Action::MerchantReject(command::MerchantReject {
            reason_code: RejectionReason::ItemUsed,
            note: "worn".to_string(),
            evidence: evidence(21),
        });
        s.refuses(merchant(), reject, DisputeError::TooMuchEvidence);
    }

    #[test]
    fn evidence_cap_counts_every_round_of_the_dispute() {
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), submit(19)).given(buyer(), withdraw());
        let Action::RequestRefund(cmd) = refund_only(PAID) else { unreachable!() };
        let two = Action::RequestRefund(command::RequestRefund { evidence: evidence(2), ..cmd });
        s.refuses(buyer(), two, DisputeError::TooMuchEvidence);
    }

    #[test]
    fn evidence_window_closes_seventy_two_hours_after_escalation() {
        let mut s = Scenario::new();
        s.escalated().advance(Duration::hours(72));
        s.decide(buyer(), submit(1)).unwrap();
        s.decide(merchant(), submit(1)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), submit(1), DisputeError::EvidenceWindowClosed);
        s.refuses(merchant(), submit(1), DisputeError::EvidenceWindowClosed);
    }

    #[test]
    fn evidence_window_also_binds_under_review() {
        let mut s = Scenario::new();
        s.under_review().advance(Duration::hours(71));
        s.decide(merchant(), submit(1)).unwrap();
        s.advance(Duration::hours(2));
        s.refuses(merchant(), submit(1), DisputeError::EvidenceWindowClosed);
    }

    #[test]
    fn evidence_window_reopens_for_seventy_two_hours_on_appeal() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false).advance(Duration::days(2));
        s.given(buyer(), appeal());
        s.advance(Duration::hours(72));
        s.decide(buyer(), submit(1)).unwrap();
        s.given(other_arbitrator(), assign(OTHER_ARBITRATOR));
        s.decide(merchant(), submit(1)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(merchant(), submit(1), DisputeError::EvidenceWindowClosed);
    }

    #[test]
    fn evidence_is_refused_where_no_one_is_weighing_it() {
        let s = Scenario::new();
        s.refuses(buyer(), submit(1), invalid("evidence", Status::Open));
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(10));
        s.refuses(merchant(), submit(1), invalid("evidence", Status::OfferPending));
        let mut s = Scenario::new();
        s.refund_pending(PAID);
        s.refuses(buyer(), submit(1), invalid("evidence", Status::RefundPending));
    }
}

mod escalation {
    use super::*;

    #[test]
    fn buyer_may_escalate_a_rejection_within_seven_days() {
        let mut s = Scenario::new();
        s.rejected().advance(Duration::days(7));
        let now = s.now();
        s.when(buyer(), escalate()).then_expect_events(vec![DisputeEvent::DisputeEscalated {
            round: 1,
            note: "the merchant will not help".to_string(),
            evidence_due: now + Duration::hours(72),
            assignment_due: now + Duration::hours(24),
        }]);
        assert_eq!(s.then_state(buyer(), escalate()).status(), Status::Escalated);
    }

    #[test]
    fn escalation_after_the_window_is_escalation_window_closed() {
        let mut s = Scenario::new();
        s.rejected().advance(Duration::days(7) + Duration::seconds(1));
        s.refuses(buyer(), escalate(), DisputeError::EscalationWindowClosed);
    }

    #[test]
    fn buyer_may_escalate_a_declined_offer_within_seven_days() {
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(10)).given(buyer(), decline_offer());
        s.advance(Duration::days(6));
        assert_eq!(s.then_state(buyer(), escalate()).status(), Status::Escalated);
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(10)).given(buyer(), decline_offer());
        s.advance(Duration::days(8));
        s.refuses(buyer(), escalate(), DisputeError::EscalationWindowClosed);
    }

    #[test]
    fn escalation_after_the_merchant_deadline_passed_records_the_miss() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let response_due = s.now() + Duration::hours(48);
        s.advance(Duration::hours(50));
        let now = s.now();
        s.when(buyer(), escalate()).then_expect_events(vec![
            DisputeEvent::MerchantResponseMissed {
                round: 1,
                escalation_due: response_due + Duration::days(7),
            },
            DisputeEvent::DisputeEscalated {
                round: 1,
                note: "the merchant will not help".to_string(),
                evidence_due: now + Duration::hours(72),
                assignment_due: now + Duration::hours(24),
            },
        ]);
        assert_eq!(s.then_state(buyer(), escalate()).status(), Status::Escalated);
    }

    #[test]
    fn escalation_at_the_merchant_deadline_records_the_miss() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(48));
        let events = s.decide(buyer(), escalate()).unwrap();
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::MerchantResponseMissed { .. }, DisputeEvent::DisputeEscalated { .. }]
        ));
    }

    #[test]
    fn escalation_before_the_merchant_deadline_is_an_invalid_transition() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(47));
        s.refuses(buyer(), escalate(), invalid("escalate", Status::AwaitingMerchant));
    }

    #[test]
    fn escalation_long_after_a_missed_merchant_deadline_is_escalation_window_closed() {
        // The timer may not have recorded the miss; the window still runs from the deadline.
        let mut s = Scenario::new();
        s.requested(PAID);
        s.advance(Duration::hours(48) + Duration::days(7));
        s.decide(buyer(), escalate()).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), escalate(), DisputeError::EscalationWindowClosed);
    }

    #[test]
    fn escalation_where_the_category_auto_accepts_is_an_invalid_transition() {
        let mut s = Scenario::of(order_in("fresh"));
        s.requested(PAID).advance(Duration::hours(49));
        s.refuses(buyer(), escalate(), invalid("escalate", Status::AwaitingMerchant));
    }

    #[test]
    fn escalation_needs_a_note() {
        let mut s = Scenario::new();
        s.rejected();
        let action = Action::Escalate(command::Escalate { note: String::new() });
        s.refuses(buyer(), action, DisputeError::EmptyField("note"));
    }

    #[test]
    fn only_the_orders_buyer_escalates() {
        let mut s = Scenario::new();
        s.rejected();
        s.refuses(other_buyer(), escalate(), DisputeError::NotAParty);
        for actor in [merchant(), arbitrator(), system(), auditor()] {
            s.refuses(actor, escalate(), DisputeError::Forbidden);
        }
    }

    #[test]
    fn escalation_is_refused_outside_rejected_and_awaiting_merchant() {
        let s = Scenario::new();
        s.refuses(buyer(), escalate(), invalid("escalate", Status::Open));
        let mut s = Scenario::new();
        s.escalated();
        s.refuses(buyer(), escalate(), invalid("escalate", Status::Escalated));
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(10));
        s.refuses(buyer(), escalate(), invalid("escalate", Status::OfferPending));
    }
}

mod arbitration {
    use super::*;

    #[test]
    fn an_arbitrator_may_assign_self() {
        let mut s = Scenario::new();
        s.escalated();
        s.when(arbitrator(), assign(ARBITRATOR)).then_expect_events(vec![DisputeEvent::ArbitratorAssigned {
            round: 1,
            arbitrator_id: ARBITRATOR.to_string(),
            assigned_by: ARBITRATOR.to_string(),
        }]);
        assert_eq!(s.then_state(arbitrator(), assign(ARBITRATOR)).status(), Status::UnderReview);
    }

    #[test]
    fn an_arbitrator_may_assign_another_who_then_judges() {
        let mut s = Scenario::new();
        s.escalated();
        s.when(arbitrator(), assign(OTHER_ARBITRATOR)).then_expect_events(vec![
            DisputeEvent::ArbitratorAssigned {
                round: 1,
                arbitrator_id: OTHER_ARBITRATOR.to_string(),
                assigned_by: ARBITRATOR.to_string(),
            },
        ]);
        s.given(arbitrator(), assign(OTHER_ARBITRATOR));
        s.refuses(arbitrator(), judge(RulingOutcome::NoRefund, None, false), DisputeError::NotAssignee);
        s.decide(other_arbitrator(), judge(RulingOutcome::NoRefund, None, false)).unwrap();
    }

    #[test]
    fn only_arbitrators_assign() {
        let mut s = Scenario::new();
        s.escalated();
        for actor in [buyer(), merchant(), system(), auditor()] {
            s.refuses(actor, assign(ARBITRATOR), DisputeError::Forbidden);
        }
    }

    #[test]
    fn assignment_needs_an_arbitrator_id() {
        let mut s = Scenario::new();
        s.escalated();
        s.refuses(arbitrator(), assign(" "), DisputeError::EmptyField("arbitrator_id"));
    }

    #[test]
    fn arbitrators_act_on_escalated_disputes_only() {
        let mut s = Scenario::new();
        s.rejected();
        s.refuses(arbitrator(), assign(ARBITRATOR), invalid("assign", Status::Rejected));
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::NoRefund, None, false),
            invalid("judge", Status::Rejected),
        );
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(arbitrator(), assign(OTHER_ARBITRATOR), invalid("assign", Status::UnderReview));
        let mut s = Scenario::new();
        s.escalated();
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::NoRefund, None, false),
            invalid("judge", Status::Escalated),
        );
    }

    #[test]
    fn only_the_assignee_judges() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(
            other_arbitrator(),
            judge(RulingOutcome::RefundFull, None, false),
            DisputeError::NotAssignee,
        );
        for actor in [buyer(), merchant(), system(), auditor()] {
            s.refuses(actor, judge(RulingOutcome::RefundFull, None, false), DisputeError::Forbidden);
        }
    }

    #[test]
    fn ruling_refund_full_refunds_the_request_and_opens_the_appeal_window() {
        let mut s = Scenario::new();
        s.under_review().advance(Duration::hours(30));
        let now = s.now();
        s.when(arbitrator(), judge(RulingOutcome::RefundFull, None, false)).then_expect_events(vec![
            DisputeEvent::DisputeJudged {
                round: 1,
                arbitrator_id: ARBITRATOR.to_string(),
                outcome: RulingOutcome::RefundFull,
                amount: Some(cny(PAID)),
                return_required: false,
                rationale: "the photos match the description of the defect".to_string(),
                final_ruling: false,
                appeal_due: Some(now + Duration::days(3)),
                return_ship_due: None,
                ruled_at: Some(now),
                return_address: None,
                refund_due: Some(now + Duration::days(3)),
            },
        ]);
        let state = s.then_state(arbitrator(), judge(RulingOutcome::RefundFull, None, false));
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn ruling_with_return_required_awaits_the_return() {
        let mut s = Scenario::new();
        s.under_review();
        let now = s.now();
        let events = s.run(arbitrator(), judge(RulingOutcome::RefundFull, None, true));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::DisputeJudged { return_required: true, return_ship_due: Some(due), .. }]
                if *due == now + Duration::days(7)
        ));
        let state = s.state();
        assert_eq!(state.status(), Status::AwaitingReturn);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn ruling_refund_partial_refunds_the_given_amount() {
        let mut s = Scenario::new();
        s.under_review();
        let events = s.run(arbitrator(), judge(RulingOutcome::RefundPartial, Some(2_500), false));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::DisputeJudged { outcome: RulingOutcome::RefundPartial, amount: Some(a), .. }]
                if *a == cny(2_500)
        ));
        assert_eq!(s.state().status(), Status::RefundPending);
        assert_eq!(s.state().approved_refund(), Some(&cny(2_500)));
    }

    #[test]
    fn ruling_refund_partial_needs_a_positive_amount_in_the_orders_currency() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::RefundPartial, None, false),
            DisputeError::AmountRequired("amount"),
        );
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::RefundPartial, Some(0), false),
            DisputeError::InvalidAmount,
        );
        let usd = Action::Judge(command::Judge {
            outcome: RulingOutcome::RefundPartial,
            amount: Some(Money::new(100, "USD")),
            return_required: false,
            rationale: "dollars".to_string(),
        });
        s.refuses(arbitrator(), usd, DisputeError::CurrencyMismatch);
    }

    #[test]
    fn ruling_amount_may_not_exceed_what_is_refundable() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(arbitrator(), judge(RulingOutcome::RefundPartial, Some(PAID + 1), false), exceeds(PAID));
        // The most a partial ruling pays: just below the request (see `partial_rulings`).
        s.decide(arbitrator(), judge(RulingOutcome::RefundPartial, Some(PAID - 1), false)).unwrap();
    }

    #[test]
    fn ruling_amount_may_not_exceed_what_is_refundable_after_earlier_refunds() {
        let mut s = Scenario::new();
        s.refunded(6_000);
        s.given(buyer(), refund_only(4_000)).given(merchant(), reject()).given(buyer(), escalate());
        s.given(arbitrator(), assign(ARBITRATOR));
        s.refuses(arbitrator(), judge(RulingOutcome::RefundPartial, Some(4_001), false), exceeds(4_000));
        s.decide(arbitrator(), judge(RulingOutcome::RefundPartial, Some(3_999), false)).unwrap();
    }

    #[test]
    fn ruling_refund_full_or_no_refund_takes_no_amount() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::RefundFull, Some(PAID), false),
            DisputeError::AmountNotAllowed,
        );
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::NoRefund, Some(1), false),
            DisputeError::AmountNotAllowed,
        );
    }

    #[test]
    fn ruling_no_refund_closes_as_ruled_no_refund() {
        let mut s = Scenario::new();
        s.under_review();
        let events = s.run(arbitrator(), judge(RulingOutcome::NoRefund, None, false));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::DisputeJudged { amount: None, final_ruling: false, appeal_due: Some(_), .. }]
        ));
        let state = s.state();
        assert_eq!(state.status(), Status::Closed);
        assert_eq!(state.close_reason(), Some(CloseReason::RuledNoRefund));
        assert_eq!(state.approved_refund(), None);
    }

    #[test]
    fn ruling_no_refund_cannot_require_a_return() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::NoRefund, None, true),
            DisputeError::ReturnWithoutRefund,
        );
    }

    #[test]
    fn ruling_needs_a_rationale() {
        let mut s = Scenario::new();
        s.under_review();
        let action = Action::Judge(command::Judge {
            outcome: RulingOutcome::NoRefund,
            amount: None,
            return_required: false,
            rationale: "  ".to_string(),
        });
        s.refuses(arbitrator(), action, DisputeError::EmptyField("rationale"));
    }

    #[test]
    fn a_ruled_dispute_is_not_judged_again_without_appeal() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false);
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::NoRefund, None, false),
            invalid("judge", Status::RefundPending),
        );
    }
}

mod appeals {
    use super::*;

    #[test]
    fn buyer_may_appeal_a_no_refund_ruling_within_three_days() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false).advance(Duration::days(3));
        let now = s.now();
        s.when(buyer(), appeal()).then_expect_events(vec![DisputeEvent::RulingAppealed {
            round: 1,
            party: Party::Buyer,
            note: "the ruling ignores the chat log".to_string(),
            evidence_due: now + Duration::hours(72),
            assignment_due: Some(now + Duration::hours(24)),
        }]);
        let state = s.then_state(buyer(), appeal());
        assert_eq!(state.status(), Status::Appealed);
        assert_eq!(state.close_reason(), None);
    }

    #[test]
    fn merchant_may_appeal_a_refund_ruling_which_suspends_it() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false);
        let events = s.run(merchant(), appeal());
        assert!(matches!(events.as_slice(), [DisputeEvent::RulingAppealed { party: Party::Merchant, .. }]));
        let state = s.state();
        assert_eq!(state.status(), Status::Appealed);
        assert_eq!(state.approved_refund(), None);
        s.refuses(
            system(),
            refund_paid(PAID, PaymentChannel::Alipay, s.now()),
            invalid("refund_paid", Status::Appealed),
        );
    }

    #[test]
    fn a_ruling_awaiting_its_return_may_be_appealed() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, true);
        assert_eq!(s.then_state(merchant(), appeal()).status(), Status::Appealed);
        // The suspended ruling's return is no longer due.
        s.refuses(buyer(), ship(), invalid("ship_return", Status::Appealed));
    }

    #[test]
    fn appeal_after_three_days_is_appeal_window_closed() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false).advance(Duration::days(3) + Duration::seconds(1));
        s.refuses(buyer(), appeal(), DisputeError::AppealWindowClosed);
        s.refuses(merchant(), appeal(), DisputeError::AppealWindowClosed);
    }

    #[test]
    fn appeal_is_for_the_orders_parties() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false);
        s.refuses(other_buyer(), appeal(), DisputeError::NotAParty);
        s.refuses(other_merchant(), appeal(), DisputeError::NotAParty);
        for actor in [arbitrator(), system(), auditor()] {
            s.refuses(actor, appeal(), DisputeError::Forbidden);
        }
    }

    #[test]
    fn appeal_needs_a_note() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false);
        let action = Action::Appeal(command::Appeal { note: String::new() });
        s.refuses(buyer(), action, DisputeError::EmptyField("note"));
    }

    #[test]
    fn appeal_needs_a_different_arbitrator() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false).given(buyer(), appeal());
        s.refuses(arbitrator(), assign(ARBITRATOR), DisputeError::SameArbitrator);
        s.refuses(other_arbitrator(), assign(ARBITRATOR), DisputeError::SameArbitrator);
        let state = s.then_state(arbitrator(), assign(OTHER_ARBITRATOR));
        assert_eq!(state.status(), Status::UnderReview);
        s.refuses(arbitrator(), judge(RulingOutcome::RefundFull, None, false), DisputeError::NotAssignee);
    }

    #[test]
    fn the_ruling_on_appeal_is_final_and_not_appealed_again() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false).given(buyer(), appeal());
        s.given(other_arbitrator(), assign(OTHER_ARBITRATOR));
        let events = s.run(other_arbitrator(), judge(RulingOutcome::RefundPartial, Some(4_000), false));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::DisputeJudged { final_ruling: true, appeal_due: None, .. }]
        ));
        assert_eq!(s.state().status(), Status::RefundPending);
        assert_eq!(s.state().approved_refund(), Some(&cny(4_000)));
        s.refuses(merchant(), appeal(), DisputeError::RulingFinal);
        s.refuses(buyer(), appeal(), DisputeError::RulingFinal);
    }

    #[test]
    fn a_final_no_refund_ruling_is_not_appealed_again() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false).given(merchant(), appeal());
        s.given(other_arbitrator(), assign(OTHER_ARBITRATOR));
        s.given(other_arbitrator(), judge(RulingOutcome::NoRefund, None, false));
        assert_eq!(s.state().close_reason(), Some(CloseReason::RuledNoRefund));
        s.refuses(buyer(), appeal(), DisputeError::RulingFinal);
    }

    #[test]
    fn appeal_is_refused_once_the_refund_is_paid() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false);
        s.given(system(), refund_paid(PAID, PaymentChannel::Alipay, s.now()));
        s.refuses(merchant(), appeal(), invalid("appeal", Status::Refunded));
    }

    #[test]
    fn appeal_is_refused_once_the_return_is_shipped() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, true).given(buyer(), ship());
        s.refuses(merchant(), appeal(), invalid("appeal", Status::ReturnShipped));
        // Still refused once the shipped return is received, within the appeal window.
        s.given(merchant(), confirm());
        assert_eq!(s.state().status(), Status::RefundPending);
        s.refuses(merchant(), appeal(), invalid("appeal", Status::RefundPending));
        s.refuses(buyer(), appeal(), invalid("appeal", Status::RefundPending));
    }

    #[test]
    fn only_rulings_are_appealed() {
        let mut s = Scenario::new();
        s.refund_pending(PAID);
        s.refuses(merchant(), appeal(), invalid("appeal", Status::RefundPending));
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), withdraw());
        s.refuses(buyer(), appeal(), invalid("appeal", Status::Closed));
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(buyer(), appeal(), invalid("appeal", Status::UnderReview));
    }

    #[test]
    fn a_ruling_whose_return_was_not_shipped_is_not_appealed() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, true).advance(Duration::days(7));
        s.given(system(), expire(Deadline::ReturnShipping, 1));
        s.set_clock(start());
        s.refuses(buyer(), appeal(), invalid("appeal", Status::Closed));
    }
}

mod returns {
    use super::*;

    #[test]
    fn buyer_ships_the_return_with_carrier_and_tracking_number() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).advance(Duration::days(7));
        let now = s.now();
        s.when(buyer(), ship()).then_expect_events(vec![DisputeEvent::ReturnShipped {
            round: 1,
            carrier: "SF Express".to_string(),
            tracking_number: "SF123".to_string(),
            receipt_confirm_due: now + Duration::days(10),
        }]);
        assert_eq!(s.then_state(buyer(), ship()).status(), Status::ReturnShipped);
    }

    #[test]
    fn shipping_a_return_needs_carrier_and_tracking_number() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID);
        let no_carrier = Action::ShipReturn(command::ShipReturn {
            carrier: String::new(),
            tracking_number: "SF1".to_string(),
        });
        s.refuses(buyer(), no_carrier, DisputeError::EmptyField("carrier"));
        let no_tracking = Action::ShipReturn(command::ShipReturn {
            carrier: "SF".to_string(),
            tracking_number: " ".to_string(),
        });
        s.refuses(buyer(), no_tracking, DisputeError::EmptyField("tracking_number"));
    }

    #[test]
    fn shipping_a_return_after_seven_days_is_return_window_closed() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).advance(Duration::days(7) + Duration::seconds(1));
        s.refuses(buyer(), ship(), DisputeError::ReturnWindowClosed);
    }

    #[test]
    fn only_the_orders_buyer_ships_a_return() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID);
        s.refuses(other_buyer(), ship(), DisputeError::NotAParty);
        for actor in [merchant(), arbitrator(), system(), auditor()] {
            s.refuses(actor, ship(), DisputeError::Forbidden);
        }
    }

    #[test]
    fn a_return_is_shipped_only_when_one_is_due() {
        let mut s = Scenario::new();
        s.refund_pending(PAID);
        s.refuses(buyer(), ship(), invalid("ship_return", Status::RefundPending));
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship());
        s.refuses(buyer(), ship(), invalid("ship_return", Status::ReturnShipped));
    }

    #[test]
    fn merchant_confirming_receipt_makes_the_refund_payable() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship());
        s.when(merchant(), confirm()).then_expect_events(vec![DisputeEvent::ReturnReceived {
            round: 1,
            confirmed_by: ReceiptConfirmedBy::Merchant,
            note: None,
            refund_due: Some(s.now() + Duration::days(3)),
        }]);
        let state = s.then_state(merchant(), confirm());
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn only_the_orders_merchant_confirms_a_return() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship());
        s.refuses(other_merchant(), confirm(), DisputeError::NotAParty);
        for actor in [buyer(), arbitrator(), system(), auditor()] {
            s.refuses(actor, confirm(), DisputeError::Forbidden);
        }
    }

    #[test]
    fn a_return_is_confirmed_only_once_shipped() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID);
        s.refuses(merchant(), confirm(), invalid("confirm_return", Status::AwaitingReturn));
    }
}

mod payment {
    use super::*;

    #[test]
    fn refund_paid_records_the_approved_amount_and_its_expected_arrival() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        // Friday evening: Alipay's one business day ends on Monday.
        let paid = at("2025-03-07T18:00:00Z");
        s.set_clock(paid);
        s.when(system(), refund_paid(4_000, PaymentChannel::Alipay, paid)).then_expect_events(vec![
            DisputeEvent::RefundPaid {
                round: 1,
                amount: cny(4_000),
                channel: PaymentChannel::Alipay,
                payment_ref: "pay-77".to_string(),
                paid_at: paid,
                expected_arrival_by: at("2025-03-10T18:00:00Z"),
            },
        ]);
        let state = s.then_state(system(), refund_paid(4_000, PaymentChannel::Alipay, paid));
        assert_eq!(state.status(), Status::Refunded);
        assert_eq!(state.refunded_total(), Some(cny(4_000)));
        assert_eq!(state.approved_refund(), None);
    }

    #[test]
    fn refund_paid_amount_must_equal_the_approved_amount() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        let now = s.now();
        s.refuses(system(), refund_paid(3_999, PaymentChannel::Alipay, now), DisputeError::AmountMismatch);
        s.refuses(system(), refund_paid(4_001, PaymentChannel::Alipay, now), DisputeError::AmountMismatch);
        s.refuses(system(), refund_paid(0, PaymentChannel::Alipay, now), DisputeError::InvalidAmount);
        let usd = Action::RecordRefundPaid(command::RecordRefundPaid {
            amount: Money::new(4_000, "USD"),
            channel: PaymentChannel::Alipay,
            payment_ref: "p".to_string(),
            paid_at: now,
        });
        s.refuses(system(), usd, DisputeError::CurrencyMismatch);
    }

    #[test]
    fn refund_paid_goes_back_through_the_orders_channel() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        for channel in [PaymentChannel::Balance, PaymentChannel::WechatPay, PaymentChannel::BankCard] {
            s.refuses(system(), refund_paid(4_000, channel, s.now()), DisputeError::ChannelMismatch);
        }
    }

    #[test]
    fn refund_paid_needs_a_payment_reference() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        let action = Action::RecordRefundPaid(command::RecordRefundPaid {
            amount: cny(4_000),
            channel: PaymentChannel::Alipay,
            payment_ref: String::new(),
            paid_at: s.now(),
        });
        s.refuses(system(), action, DisputeError::EmptyField("payment_ref"));
    }

    #[test]
    fn refund_paid_is_recorded_exactly_once_per_approval() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        let now = s.now();
        s.given(system(), refund_paid(4_000, PaymentChannel::Alipay, now));
        s.refuses(
            system(),
            refund_paid(4_000, PaymentChannel::Alipay, now),
            invalid("refund_paid", Status::Refunded),
        );
        assert_eq!(s.state().refunded_total(), Some(cny(4_000)));
    }

    #[test]
    fn only_the_system_role_records_refund_paid() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        for actor in [buyer(), merchant(), arbitrator(), auditor()] {
            s.refuses(actor, refund_paid(4_000, PaymentChannel::Alipay, s.now()), DisputeError::Forbidden);
        }
    }

    #[test]
    fn refund_paid_before_any_approval_is_an_invalid_transition() {
        let mut s = Scenario::new();
        s.refuses(
            system(),
            refund_paid(1, PaymentChannel::Alipay, s.now()),
            invalid("refund_paid", Status::Open),
        );
        s.requested(PAID);
        s.refuses(
            system(),
            refund_paid(PAID, PaymentChannel::Alipay, s.now()),
            invalid("refund_paid", Status::AwaitingMerchant),
        );
        let mut s = Scenario::new();
        s.awaiting_return(PAID);
        s.refuses(
            system(),
            refund_paid(PAID, PaymentChannel::Alipay, s.now()),
            invalid("refund_paid", Status::AwaitingReturn),
        );
    }

    #[test]
    fn expected_arrival_is_immediate_for_balance() {
        let friday = at("2025-03-07T18:00:00Z");
        assert_eq!(expected_arrival(PaymentChannel::Balance, friday), friday);
        let saturday = at("2025-03-08T09:00:00Z");
        assert_eq!(expected_arrival(PaymentChannel::Balance, saturday), saturday);
    }

    #[test]
    fn expected_arrival_is_one_business_day_for_alipay_and_wechat_pay() {
        for channel in [PaymentChannel::Alipay, PaymentChannel::WechatPay] {
            // Monday → Tuesday.
            assert_eq!(expected_arrival(channel, at("2025-03-03T10:00:00Z")), at("2025-03-04T10:00:00Z"));
            // Thursday → Friday.
            assert_eq!(expected_arrival(channel, at("2025-03-06T10:00:00Z")), at("2025-03-07T10:00:00Z"));
            // Friday → Monday, skipping the weekend.
            assert_eq!(expected_arrival(channel, at("2025-03-07T10:00:00Z")), at("2025-03-10T10:00:00Z"));
            // Saturday and Sunday → Monday.
            assert_eq!(expected_arrival(channel, at("2025-03-08T10:00:00Z")), at("2025-03-10T10:00:00Z"));
            assert_eq!(expected_arrival(channel, at("2025-03-09T10:00:00Z")), at("2025-03-10T10:00:00Z"));
        }
    }

    #[test]
    fn expected_arrival_is_seven_business_days_for_bank_cards() {
        // Monday → the Wednesday after next.
        assert_eq!(
            expected_arrival(PaymentChannel::BankCard, at("2025-03-03T10:00:00Z")),
            at("2025-03-12T10:00:00Z")
        );
        // Friday → the Tuesday after next.
        assert_eq!(
            expected_arrival(PaymentChannel::BankCard, at("2025-03-07T10:00:00Z")),
            at("2025-03-18T10:00:00Z")
        );
        // Saturday → the Tuesday after next.
        assert_eq!(
            expected_arrival(PaymentChannel::BankCard, at("2025-03-08T10:00:00Z")),
            at("2025-03-18T10:00:00Z")
        );
    }

    #[test]
    fn refund_paid_event_carries_the_channels_expected_arrival() {
        let mut s = Scenario::of(OrderFacts { payment_channel: PaymentChannel::BankCard, ..order() });
        s.refund_pending(PAID);
        let paid = at("2025-03-07T10:00:00Z");
        s.set_clock(paid);
        let events = s.run(system(), refund_paid(PAID, PaymentChannel::BankCard, paid));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::RefundPaid { expected_arrival_by, .. }] if *expected_arrival_by == at("2025-03-18T10:00:00Z")
        ));
    }
}

/// A payment is dated between its approval and now (plus a small skew of the payment
/// system's clock).
mod payment_time {
    use super::*;

    fn paid(at: chrono::DateTime<chrono::Utc>) -> Action {
        refund_paid(4_000, PaymentChannel::Alipay, at)
    }

    #[test]
    fn a_payment_dated_before_the_approval_is_refused() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        let approved = s.now();
        s.advance(Duration::hours(2));
        s.refuses(
            system(),
            paid(approved - Duration::seconds(1)),
            DisputeError::PaidBeforeApproval { approved_at: approved },
        );
        // Before the request, before the order was paid: all the more so.
        s.refuses(system(), paid(paid_at()), DisputeError::PaidBeforeApproval { approved_at: approved });
        s.decide(system(), paid(approved)).unwrap();
        s.decide(system(), paid(s.now())).unwrap();
    }

    #[test]
    fn a_payment_dated_in_the_future_beyond_the_clock_skew_is_refused() {
        let mut s = Scenario::new();
        s.refund_pending(4_000);
        let latest = s.now() + PAYMENT_CLOCK_SKEW;
        assert_eq!(PAYMENT_CLOCK_SKEW, Duration::minutes(5));
        s.decide(system(), paid(latest)).unwrap();
        s.refuses(system(), paid(latest + Duration::seconds(1)), DisputeError::PaidInFuture { latest });
        s.refuses(system(), paid(at("2030-01-01T00:00:00Z")), DisputeError::PaidInFuture { latest });
    }

    #[test]
    fn a_ruled_refund_is_paid_after_the_ruling() {
        let mut s = Scenario::new();
        s.under_review().advance(Duration::hours(3));
        let ruled = s.now();
        s.given(arbitrator(), judge(RulingOutcome::RefundPartial, Some(4_000), false));
        s.advance(Duration::hours(1));
        s.refuses(
            system(),
            paid(ruled - Duration::minutes(1)),
            DisputeError::PaidBeforeApproval { approved_at: ruled },
        );
        s.decide(system(), paid(ruled)).unwrap();
    }

    #[test]
    fn a_ruling_on_appeal_moves_the_earliest_payment_to_its_own_time() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false).given(merchant(), appeal());
        s.given(arbitrator(), assign(OTHER_ARBITRATOR)).advance(Duration::hours(5));
        let ruled = s.now();
        s.given(other_arbitrator(), judge(RulingOutcome::RefundPartial, Some(4_000), false));
        s.refuses(
            system(),
            paid(ruled - Duration::seconds(1)),
            DisputeError::PaidBeforeApproval { approved_at: ruled },
        );
    }

    /// Approvals stored before they carried their time are still read; only the clock bounds
    /// their payment.
    #[test]
    fn an_approval_stored_without_its_time_is_paid_against_the_clock_only() {
        let mut s = Scenario::new();
        s.requested(4_000);
        let stored = serde_json::json!({ "RefundApproved": {
            "round": 1,
            "amount": { "amount_minor": 4_000, "currency": "CNY" },
            "approved_by": "merchant",
            "return_required": false,
            "return_ship_due": null,
            "note": null
        }});
        let event: DisputeEvent = serde_json::from_value(stored).expect("an old approval reads");
        assert!(matches!(event, DisputeEvent::RefundApproved { approved_at: None, .. }));
        s.events.push(event);
        s.decide(system(), paid(paid_at())).unwrap();
        s.refuses(
            system(),
            paid(s.now() + Duration::hours(1)),
            DisputeError::PaidInFuture { latest: s.now() + PAYMENT_CLOCK_SKEW },
        );
    }

    #[test]
    fn the_approval_time_is_written_only_when_known() {
        let mut s = Scenario::new();
        s.requested(4_000);
        let events = s.run(merchant(), accept());
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(
            json["RefundApproved"]["approved_at"],
            serde_json::json!(dispute_domain::rfc3339::format(&s.now()))
        );
    }
}

mod withdrawal {
    use super::*;

    fn withdraws_from(s: &mut Scenario, status: Status) {
        assert_eq!(s.state().status(), status);
        s.when(buyer(), withdraw())
            .then_expect_events(vec![DisputeEvent::RequestWithdrawn { round: s.round(), note: None }]);
        let state = s.then_state(buyer(), withdraw());
        assert_eq!(state.status(), Status::Closed);
        assert_eq!(state.close_reason(), Some(CloseReason::Withdrawn));
    }

    #[test]
    fn buyer_may_withdraw_while_awaiting_the_merchant() {
        let mut s = Scenario::new();
        s.requested(PAID);
        withdraws_from(&mut s, Status::AwaitingMerchant);
    }

    #[test]
    fn buyer_may_withdraw_while_an_offer_is_pending() {
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(100));
        withdraws_from(&mut s, Status::OfferPending);
    }

    #[test]
    fn buyer_may_withdraw_a_rejected_request() {
        let mut s = Scenario::new();
        s.rejected();
        withdraws_from(&mut s, Status::Rejected);
    }

    #[test]
    fn buyer_may_withdraw_an_escalation_before_assignment() {
        let mut s = Scenario::new();
        s.escalated();
        withdraws_from(&mut s, Status::Escalated);
    }

    #[test]
    fn withdrawal_is_refused_once_a_refund_is_approved_or_ruled() {
        let mut s = Scenario::new();
        s.refund_pending(PAID);
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::RefundPending));
        let mut s = Scenario::new();
        s.awaiting_return(PAID);
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::AwaitingReturn));
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false);
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::RefundPending));
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false);
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::Closed));
    }

    /// DOMAIN.md: the buyer may withdraw until a refund is approved or ruled, so also while an
    /// arbitrator reviews the dispute.
    #[test]
    fn buyer_may_withdraw_under_review_until_the_ruling() {
        let mut s = Scenario::new();
        s.under_review();
        withdraws_from(&mut s, Status::UnderReview);
    }

    /// An appeal suspends the ruling: until the appeal is ruled the buyer may still withdraw,
    /// and no new round may follow (a ruling was made).
    #[test]
    fn buyer_may_withdraw_while_a_ruling_is_appealed() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, false).given(merchant(), appeal());
        withdraws_from(&mut s, Status::Appealed);
        s.refuses(buyer(), refund_only(1), invalid("request", Status::Closed));
        s.refuses(buyer(), appeal(), invalid("appeal", Status::Closed));
    }

    #[test]
    fn withdrawal_is_refused_once_the_appeal_is_ruled() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false).given(buyer(), appeal());
        s.given(arbitrator(), assign(OTHER_ARBITRATOR));
        s.given(other_arbitrator(), judge(RulingOutcome::NoRefund, None, false));
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::Closed));
    }

    #[test]
    fn withdrawal_is_refused_with_nothing_to_withdraw() {
        let s = Scenario::new();
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::Open));
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), withdraw());
        s.refuses(buyer(), withdraw(), invalid("withdraw", Status::Closed));
    }

    #[test]
    fn only_the_orders_buyer_withdraws() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.refuses(other_buyer(), withdraw(), DisputeError::NotAParty);
        for actor in [merchant(), arbitrator(), system(), auditor()] {
            s.refuses(actor, withdraw(), DisputeError::Forbidden);
        }
    }
}

mod rounds {
    use super::*;

    fn starts_round_two(s: &mut Scenario, amount: i64) {
        let events = s.run(buyer(), refund_only(amount));
        assert!(matches!(events.as_slice(), [DisputeEvent::RefundRequested { round: 2, .. }]), "{events:?}");
        let state = s.state();
        assert_eq!(state.round(), 2);
        assert_eq!(state.status(), Status::AwaitingMerchant);
        assert_eq!(state.close_reason(), None);
    }

    #[test]
    fn a_new_round_may_follow_a_withdrawal() {
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), withdraw());
        starts_round_two(&mut s, PAID);
    }

    #[test]
    fn a_new_round_may_follow_an_accepted_rejection() {
        // Electronics: the 15-day request window is still open when the escalation window ends.
        let mut s = Scenario::of(order_in("electronics"));
        s.rejected().advance(Duration::days(7));
        s.given(system(), expire(Deadline::EscalationWindow, 1));
        assert_eq!(s.state().close_reason(), Some(CloseReason::RejectionAccepted));
        starts_round_two(&mut s, PAID);
    }

    #[test]
    fn a_new_round_may_follow_a_return_not_shipped() {
        let mut s = Scenario::of(order_in("electronics"));
        s.awaiting_return(PAID).advance(Duration::days(7));
        s.given(system(), expire(Deadline::ReturnShipping, 1));
        assert_eq!(s.state().close_reason(), Some(CloseReason::ReturnNotShipped));
        starts_round_two(&mut s, PAID);
    }

    #[test]
    fn a_new_round_may_follow_a_partial_refund_for_at_most_the_rest() {
        let mut s = Scenario::new();
        s.refunded(3_000);
        s.refuses(buyer(), refund_only(PAID - 3_000 + 1), exceeds(PAID - 3_000));
        starts_round_two(&mut s, PAID - 3_000);
    }

    #[test]
    fn refunds_across_rounds_never_exceed_what_was_paid() {
        let mut s = Scenario::new();
        s.refunded(3_000);
        let now = s.now();
        s.given(buyer(), refund_only(7_000)).given(merchant(), accept());
        s.given(system(), refund_paid(7_000, PaymentChannel::Alipay, now));
        assert_eq!(s.state().refunded_total(), Some(cny(PAID)));
        s.refuses(buyer(), refund_only(1), exceeds(0));
    }

    #[test]
    fn no_new_round_follows_a_no_refund_ruling() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::NoRefund, None, false);
        s.refuses(buyer(), refund_only(PAID), invalid("request", Status::Closed));
        s.advance(Duration::days(3) + Duration::seconds(1));
        s.refuses(buyer(), refund_only(PAID), invalid("request", Status::Closed));
    }

    #[test]
    fn no_new_round_follows_a_paid_ruling() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundPartial, Some(2_000), false);
        s.given(system(), refund_paid(2_000, PaymentChannel::Alipay, s.now()));
        s.refuses(buyer(), refund_only(1_000), invalid("request", Status::Refunded));
    }

    #[test]
    fn no_new_round_follows_a_ruling_whose_return_was_not_shipped() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, true).advance(Duration::days(7));
        s.given(system(), expire(Deadline::ReturnShipping, 1));
        s.set_clock(start());
        s.refuses(buyer(), refund_only(PAID), invalid("request", Status::Closed));
    }

    #[test]
    fn at_most_three_rounds_per_order() {
        let mut s = Scenario::new();
        for _ in 0..3 {
            s.requested(PAID).given(buyer(), withdraw());
        }
        assert_eq!(s.round(), 3);
        s.refuses(buyer(), refund_only(PAID), DisputeError::MaxRoundsReached);
    }

    #[test]
    fn a_new_round_is_refused_outside_the_request_window() {
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), withdraw());
        s.set_clock(delivered_at() + Duration::days(7) + Duration::seconds(1));
        s.refuses(buyer(), refund_only(PAID), outside(7));
    }

    #[test]
    fn deadlines_of_an_earlier_round_do_not_fire_in_a_new_round() {
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), withdraw()).requested(PAID).advance(Duration::hours(49));
        s.refuses(
            system(),
            expire(Deadline::MerchantResponse, 1),
            invalid("expire_merchant_response", Status::AwaitingMerchant),
        );
        s.decide(system(), expire(Deadline::MerchantResponse, 2)).unwrap();
    }
}

mod deadlines {
    use super::*;

    #[test]
    fn escalation_window_after_a_missed_merchant_deadline_runs_from_the_deadline() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let response_due = s.now() + Duration::hours(48);
        s.advance(Duration::days(3));
        s.given(system(), expire(Deadline::MerchantResponse, 1));
        s.set_clock(response_due + Duration::days(7) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::EscalationWindow, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        let state = s.then_state(system(), expire(Deadline::EscalationWindow, 1));
        assert_eq!(state.close_reason(), Some(CloseReason::RejectionAccepted));
    }

    #[test]
    fn merchant_response_deadline_rejects_by_default() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let due = s.now() + Duration::hours(48);
        s.advance(Duration::hours(48));
        s.when(system(), expire(Deadline::MerchantResponse, 1)).then_expect_events(vec![
            DisputeEvent::MerchantResponseMissed { round: 1, escalation_due: due + Duration::days(7) },
        ]);
        let state = s.then_state(system(), expire(Deadline::MerchantResponse, 1));
        assert_eq!(state.status(), Status::Rejected);
        // The buyer may then escalate within the window counted from the deadline.
        s.set_clock(due + Duration::days(7));
        s.decide(buyer(), escalate()).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), escalate(), DisputeError::EscalationWindowClosed);
    }

    #[test]
    fn merchant_response_deadline_auto_accepts_in_fresh() {
        let mut s = Scenario::of(order_in("fresh"));
        s.requested(PAID).advance(Duration::hours(48));
        s.when(system(), expire(Deadline::MerchantResponse, 1)).then_expect_events(vec![
            DisputeEvent::RefundApproved {
                round: 1,
                amount: cny(PAID),
                approved_by: ApprovedBy::MerchantTimeout,
                return_required: false,
                return_ship_due: None,
                note: None,
                approved_at: Some(s.now()),
                return_address: None,
                refund_due: Some(s.now() + Duration::days(3)),
            },
        ]);
        let state = s.then_state(system(), expire(Deadline::MerchantResponse, 1));
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn merchant_response_deadline_auto_accepts_a_return_in_fresh_with_a_ship_due() {
        let mut s = Scenario::of(order_in("fresh"));
        s.requested_return(PAID).advance(Duration::hours(60));
        let now = s.now();
        let events = s.run(system(), expire(Deadline::MerchantResponse, 1));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::RefundApproved { approved_by: ApprovedBy::MerchantTimeout, return_required: true, return_ship_due: Some(due), .. }]
                if *due == now + Duration::days(7)
        ));
        assert_eq!(s.state().status(), Status::AwaitingReturn);
    }

    #[test]
    fn merchant_response_deadline_does_not_fire_early() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(48) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::MerchantResponse, 1), DisputeError::DeadlineNotReached);
    }

    #[test]
    fn merchant_response_deadline_does_not_fire_once_answered() {
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(100)).advance(Duration::hours(49));
        s.refuses(
            system(),
            expire(Deadline::MerchantResponse, 1),
            invalid("expire_merchant_response", Status::OfferPending),
        );
    }

    #[test]
    fn escalation_window_deadline_closes_as_rejection_accepted() {
        let mut s = Scenario::new();
        s.rejected().advance(Duration::days(7) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::EscalationWindow, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        s.when(system(), expire(Deadline::EscalationWindow, 1))
            .then_expect_events(vec![DisputeEvent::EscalationWindowClosed { round: 1 }]);
        let state = s.then_state(system(), expire(Deadline::EscalationWindow, 1));
        assert_eq!(state.status(), Status::Closed);
        assert_eq!(state.close_reason(), Some(CloseReason::RejectionAccepted));
    }

    #[test]
    fn escalation_window_deadline_does_not_fire_once_escalated() {
        let mut s = Scenario::new();
        s.escalated().advance(Duration::days(8));
        s.refuses(
            system(),
            expire(Deadline::EscalationWindow, 1),
            invalid("expire_escalation_window", Status::Escalated),
        );
    }

    #[test]
    fn return_shipping_deadline_closes_as_return_not_shipped() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).advance(Duration::days(7) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::ReturnShipping, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        s.when(system(), expire(Deadline::ReturnShipping, 1))
            .then_expect_events(vec![DisputeEvent::ReturnShippingMissed { round: 1 }]);
        let state = s.then_state(system(), expire(Deadline::ReturnShipping, 1));
        assert_eq!(state.status(), Status::Closed);
        assert_eq!(state.close_reason(), Some(CloseReason::ReturnNotShipped));
        assert_eq!(state.approved_refund(), None);
        assert_eq!(state.refunded_total(), Some(cny(0)));
    }

    #[test]
    fn return_receipt_deadline_confirms_receipt() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship()).advance(Duration::days(10) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::ReturnReceipt, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        s.when(system(), expire(Deadline::ReturnReceipt, 1)).then_expect_events(vec![
            DisputeEvent::ReturnReceived {
                round: 1,
                confirmed_by: ReceiptConfirmedBy::Timeout,
                note: None,
                refund_due: Some(s.now() + Duration::days(3)),
            },
        ]);
        let state = s.then_state(system(), expire(Deadline::ReturnReceipt, 1));
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn deadlines_of_another_round_are_invalid_transitions() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::days(3));
        for round in [0, 2] {
            s.refuses(
                system(),
                expire(Deadline::MerchantResponse, round),
                invalid("expire_merchant_response", Status::AwaitingMerchant),
            );
        }
    }

    #[test]
    fn deadlines_in_another_status_are_invalid_transitions() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::days(30));
        s.refuses(
            system(),
            expire(Deadline::EscalationWindow, 1),
            invalid("expire_escalation_window", Status::AwaitingMerchant),
        );
        s.refuses(
            system(),
            expire(Deadline::ReturnShipping, 1),
            invalid("expire_return_shipping", Status::AwaitingMerchant),
        );
        s.refuses(
            system(),
            expire(Deadline::ReturnReceipt, 1),
            invalid("expire_return_receipt", Status::AwaitingMerchant),
        );
        let s = Scenario::new();
        s.refuses(
            system(),
            expire(Deadline::MerchantResponse, 0),
            invalid("expire_merchant_response", Status::Open),
        );
    }

    #[test]
    fn only_the_system_role_expires_deadlines() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::days(3));
        for actor in [buyer(), merchant(), arbitrator(), auditor()] {
            s.refuses(actor, expire(Deadline::MerchantResponse, 1), DisputeError::Forbidden);
        }
    }

    #[test]
    fn a_deadline_fires_exactly_once() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::days(3));
        s.given(system(), expire(Deadline::MerchantResponse, 1));
        s.refuses(
            system(),
            expire(Deadline::MerchantResponse, 1),
            invalid("expire_merchant_response", Status::Rejected),
        );
    }
}

mod category_policy {
    use super::*;

    const POLICY: &str = r#"
[default]
merchant_response = "24h"

[category.toys]
request_window = "30d"
no_reason_window = "3d"
merchant_response = "12h"
on_merchant_timeout = "auto_accept"
escalation_window = "1d"
evidence_window = "1h"
appeal_window = "1d"
return_ship = "2d"
return_confirm = "3d"
max_rounds = 1
max_evidence_per_party = 2

[category.plants]
no_reason_allowed = false
"#;

    fn policy() -> Policy {
        Policy::from_toml(POLICY).expect("the test policy parses")
    }

    fn toys() -> Scenario {
        Scenario::of_with(order_in("toys"), policy())
    }

    fn books() -> Scenario {
        Scenario::of_with(order(), policy())
    }

    #[test]
    fn a_category_overrides_the_request_window() {
        let mut s = toys();
        s.set_clock(delivered_at() + Duration::days(30));
        s.decide(buyer(), refund_only(PAID)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), refund_only(PAID), outside(30));
        // Other categories keep the default window.
        let mut s = books();
        s.set_clock(delivered_at() + Duration::days(8));
        s.refuses(buyer(), refund_only(PAID), outside(7));
    }

    #[test]
    fn a_category_overrides_the_no_reason_window() {
        let mut s = toys();
        s.set_clock(delivered_at() + Duration::days(3));
        s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(
            buyer(),
            request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID),
            DisputeError::NoReasonNotAllowed,
        );
    }

    #[test]
    fn a_category_may_refuse_no_reason_returns() {
        let s = Scenario::of_with(order_in("plants"), policy());
        s.refuses(
            buyer(),
            request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID),
            DisputeError::NoReasonNotAllowed,
        );
    }

    /// A custom policy layers over the built-in one: a file that does not restate the
    /// built-in categories keeps their exceptions.
    #[test]
    fn a_custom_policy_keeps_the_builtin_exceptions_it_does_not_restate() {
        for category in ["fresh", "virtual", "custom_made"] {
            let s = Scenario::of_with(order_in(category), policy());
            s.refuses(
                buyer(),
                request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID),
                DisputeError::NoReasonNotAllowed,
            );
        }
        // Fresh still auto-accepts at the merchant's deadline, now the file's 24 hours.
        let mut s = Scenario::of_with(order_in("fresh"), policy());
        s.requested(PAID).advance(Duration::hours(24));
        let events = s.run(system(), expire(Deadline::MerchantResponse, 1));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::RefundApproved { approved_by: ApprovedBy::MerchantTimeout, .. }]
        ));
        // Electronics keep their fifteen days.
        let mut s = Scenario::of_with(order_in("electronics"), policy());
        s.set_clock(delivered_at() + Duration::days(15));
        s.decide(buyer(), refund_only(PAID)).unwrap();
    }

    /// A policy restating a built-in category changes only the keys it names.
    #[test]
    fn a_custom_policy_may_lift_a_builtin_exception_by_restating_it() {
        let policy = Policy::from_toml("[category.virtual]\nno_reason_allowed = true\n").unwrap();
        let s = Scenario::of_with(order_in("virtual"), policy);
        s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID)).unwrap();
    }

    /// Category names are matched without regard to case, surrounding space or `-` for `_`.
    #[test]
    fn categories_are_matched_without_regard_to_case() {
        for category in ["Fresh", "FRESH", "Virtual", "Custom-Made", " custom_made "] {
            let s = Scenario::of(order_in(category));
            s.refuses(
                buyer(),
                request(RefundKind::ReturnAndRefund, RefundReason::ChangedMind, PAID),
                DisputeError::NoReasonNotAllowed,
            );
        }
        let mut s = Scenario::of(order_in("Electronics"));
        s.set_clock(delivered_at() + Duration::days(15));
        s.decide(buyer(), refund_only(PAID)).unwrap();
    }

    /// A category the policy does not name is accepted at registration and gets the default
    /// rules: the policy lists exceptions, not the platform's catalogue.
    #[test]
    fn an_unknown_category_is_registered_with_the_default_rules() {
        let mut s = Scenario::of(order_in("garden_tools"));
        s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::NoReason7d, PAID)).unwrap();
        s.set_clock(delivered_at() + Duration::days(7) + Duration::seconds(1));
        s.refuses(buyer(), refund_only(PAID), outside(7));
    }

    #[test]
    fn the_default_section_overrides_the_merchant_response_deadline() {
        let mut s = books();
        let now = s.now();
        let events = s.run(buyer(), refund_only(PAID));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::RefundRequested { merchant_response_due, .. }] if *merchant_response_due == now + Duration::hours(24)
        ));
        s.advance(Duration::hours(24) + Duration::seconds(1));
        s.refuses(merchant(), reject(), DisputeError::ResponseDeadlinePassed);
    }

    #[test]
    fn a_category_overrides_the_merchant_response_deadline_and_auto_accepts() {
        let mut s = toys();
        s.requested_return(PAID).advance(Duration::hours(12) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::MerchantResponse, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        let now = s.now();
        let events = s.run(system(), expire(Deadline::MerchantResponse, 1));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::RefundApproved { approved_by: ApprovedBy::MerchantTimeout, return_ship_due: Some(due), .. }]
                if *due == now + Duration::days(2)
        ));
    }

    #[test]
    fn a_category_overrides_the_return_windows() {
        let mut s = toys();
        s.awaiting_return(PAID).advance(Duration::days(2) + Duration::seconds(1));
        s.refuses(buyer(), ship(), DisputeError::ReturnWindowClosed);
        let mut s = toys();
        s.awaiting_return(PAID).given(buyer(), ship()).advance(Duration::days(3));
        let events = s.run(system(), expire(Deadline::ReturnReceipt, 1));
        assert!(matches!(
            events.as_slice(),
            [DisputeEvent::ReturnReceived { confirmed_by: ReceiptConfirmedBy::Timeout, .. }]
        ));
    }

    #[test]
    fn a_category_overrides_the_escalation_and_evidence_windows() {
        let mut s = toys();
        s.rejected().advance(Duration::days(1) + Duration::seconds(1));
        s.refuses(buyer(), escalate(), DisputeError::EscalationWindowClosed);
        let mut s = toys();
        s.rejected().given(buyer(), escalate()).advance(Duration::hours(1) + Duration::seconds(1));
        s.refuses(merchant(), submit(1), DisputeError::EvidenceWindowClosed);
    }

    #[test]
    fn a_category_overrides_the_appeal_window() {
        let mut s = toys();
        s.ruled(RulingOutcome::NoRefund, None, false).advance(Duration::days(1) + Duration::seconds(1));
        s.refuses(buyer(), appeal(), DisputeError::AppealWindowClosed);
    }

    #[test]
    fn a_category_overrides_the_round_and_evidence_limits() {
        let mut s = toys();
        s.requested(PAID);
        s.refuses(buyer(), submit(2), DisputeError::TooMuchEvidence);
        s.given(buyer(), submit(1)).given(buyer(), withdraw());
        s.refuses(buyer(), refund_only(PAID), DisputeError::MaxRoundsReached);
    }
}

mod auditing {
    use super::*;

    #[test]
    fn auditors_never_write() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let actions = [
            register(order()),
            deliver(delivered_at()),
            refund_only(PAID),
            accept(),
            reject(),
            offer(1),
            accept_offer(),
            decline_offer(),
            submit(1),
            escalate(),
            assign(ARBITRATOR),
            judge(RulingOutcome::NoRefund, None, false),
            appeal(),
            ship(),
            confirm(),
            refund_paid(PAID, PaymentChannel::Alipay, s.now()),
            withdraw(),
            expire(Deadline::MerchantResponse, 1),
        ];
        for action in actions {
            s.refuses(auditor(), action, DisputeError::Forbidden);
        }
    }

    #[test]
    fn replaying_the_history_rebuilds_the_same_state() {
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, true).given(buyer(), ship()).given(merchant(), confirm());
        let now = s.now();
        s.given(system(), refund_paid(PAID, PaymentChannel::Alipay, now));
        let state = s.state();
        let json = serde_json::to_string(&s.events).unwrap();
        let replayed: Vec<DisputeEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(fold(&replayed), state);
        assert_eq!(state.status(), Status::Refunded);
        assert_eq!(state.refunded_total(), Some(cny(PAID)));
    }
}

mod error_codes {
    use super::*;

    #[test]
    fn every_refusal_has_its_stable_code_and_class() {
        use DisputeError::*;
        let table: Vec<(DisputeError, &str, RefusalKind)> = vec![
            (OrderNotFound, "not_found", RefusalKind::NotFound),
            (NotAParty, "not_found", RefusalKind::NotFound),
            (Forbidden, "forbidden", RefusalKind::Forbidden),
            (NotAssignee, "forbidden", RefusalKind::Forbidden),
            (InvalidTransition { command: "x", status: "open" }, "invalid_transition", RefusalKind::Conflict),
            (OrderFactsConflict, "invalid_transition", RefusalKind::Conflict),
            (DeliveryConflict, "invalid_transition", RefusalKind::Conflict),
            (InvalidAmount, "invalid_amount", RefusalKind::RuleViolation),
            (InvalidCurrency, "invalid_currency", RefusalKind::RuleViolation),
            (CurrencyMismatch, "currency_mismatch", RefusalKind::RuleViolation),
            (exceeds(1), "amount_exceeds_refundable", RefusalKind::RuleViolation),
            (OfferNotBelowRequest, "offer_not_below_request", RefusalKind::RuleViolation),
            (PartialNotBelowRequest, "partial_not_below_request", RefusalKind::RuleViolation),
            (outside(7), "outside_request_window", RefusalKind::RuleViolation),
            (ReasonNotAllowed, "reason_not_allowed", RefusalKind::RuleViolation),
            (NoReasonNotAllowed, "no_reason_not_allowed", RefusalKind::RuleViolation),
            (TooMuchEvidence, "too_much_evidence", RefusalKind::RuleViolation),
            (InvalidEvidence, "invalid_evidence", RefusalKind::RuleViolation),
            (ResponseDeadlinePassed, "response_deadline_passed", RefusalKind::RuleViolation),
            (ReturnWindowClosed, "return_window_closed", RefusalKind::RuleViolation),
            (EvidenceWindowClosed, "evidence_window_closed", RefusalKind::RuleViolation),
            (DeadlineNotReached, "deadline_not_reached", RefusalKind::RuleViolation),
            (EscalationWindowClosed, "escalation_window_closed", RefusalKind::RuleViolation),
            (SameArbitrator, "same_arbitrator", RefusalKind::RuleViolation),
            (AmountRequired("amount"), "amount_required", RefusalKind::RuleViolation),
            (AmountNotAllowed, "amount_not_allowed", RefusalKind::RuleViolation),
            (ReturnWithoutRefund, "return_without_refund", RefusalKind::RuleViolation),
            (AppealWindowClosed, "appeal_window_closed", RefusalKind::RuleViolation),
            (MaxRoundsReached, "max_rounds_reached", RefusalKind::RuleViolation),
            (AmountMismatch, "amount_mismatch", RefusalKind::RuleViolation),
            (ChannelMismatch, "channel_mismatch", RefusalKind::RuleViolation),
            (EmptyField("note"), "empty_field", RefusalKind::RuleViolation),
            (InvalidOrderId, "invalid_order_id", RefusalKind::RuleViolation),
            (TextTooLong("text"), "text_too_long", RefusalKind::RuleViolation),
            (TooManyMessages, "too_many_messages", RefusalKind::RuleViolation),
            (EvidenceNotAllowed, "evidence_not_allowed", RefusalKind::RuleViolation),
            (EvidenceRequestOpen, "evidence_request_open", RefusalKind::RuleViolation),
            (RulingFinal, "invalid_transition", RefusalKind::Conflict),
            (PaidBeforeApproval { approved_at: start() }, "paid_before_approval", RefusalKind::RuleViolation),
            (PaidInFuture { latest: start() }, "paid_in_future", RefusalKind::RuleViolation),
            (ShipmentConflict, "invalid_transition", RefusalKind::Conflict),
            (ReturnWithoutShipment, "return_without_shipment", RefusalKind::RuleViolation),
        ];
        for (error, code, kind) in table {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn statuses_are_named_as_the_contract_says() {
        let statuses = [
            (Status::Open, "open"),
            (Status::AwaitingMerchant, "awaiting_merchant"),
            (Status::OfferPending, "offer_pending"),
            (Status::Rejected, "rejected"),
            (Status::Escalated, "escalated"),
            (Status::UnderReview, "under_review"),
            (Status::Appealed, "appealed"),
            (Status::AwaitingReturn, "awaiting_return"),
            (Status::ReturnShipped, "return_shipped"),
            (Status::RefundPending, "refund_pending"),
            (Status::Refunded, "refunded"),
            (Status::Closed, "closed"),
        ];
        for (status, name) in statuses {
            assert_eq!(status.as_str(), name);
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(name));
        }
        for (reason, name) in [
            (CloseReason::Withdrawn, "withdrawn"),
            (CloseReason::RejectionAccepted, "rejection_accepted"),
            (CloseReason::RuledNoRefund, "ruled_no_refund"),
            (CloseReason::ReturnNotShipped, "return_not_shipped"),
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), serde_json::json!(name));
        }
        assert_eq!(
            serde_json::to_value(RefundReason::NoReason7d).unwrap(),
            serde_json::json!("no_reason_7d")
        );
    }
}

/// A change of mind is the no-reason return (七天无理由), whatever the reason code is called:
/// the no-reason window and the categories without it apply to it alike.
mod change_of_mind {
    use super::*;

    fn changed_mind(kind: RefundKind) -> Action {
        request(kind, RefundReason::ChangedMind, PAID)
    }

    #[test]
    fn a_change_of_mind_is_refused_for_virtual_fresh_and_custom_made_goods() {
        for category in ["virtual", "fresh", "custom_made"] {
            let s = Scenario::of(order_in(category));
            s.refuses(buyer(), changed_mind(RefundKind::RefundOnly), DisputeError::NoReasonNotAllowed);
            s.refuses(buyer(), changed_mind(RefundKind::ReturnAndRefund), DisputeError::NoReasonNotAllowed);
        }
    }

    #[test]
    fn a_change_of_mind_is_refused_after_the_no_reason_window_where_the_request_window_is_longer() {
        let mut s = Scenario::of(order_in("electronics"));
        s.set_clock(delivered_at() + Duration::days(10));
        s.refuses(buyer(), changed_mind(RefundKind::ReturnAndRefund), DisputeError::NoReasonNotAllowed);
        // Within electronics' 15-day request window, a reason with a fault is still heard.
        s.decide(buyer(), request(RefundKind::ReturnAndRefund, RefundReason::QualityIssue, PAID)).unwrap();
    }

    #[test]
    fn a_change_of_mind_within_the_no_reason_window_is_accepted() {
        let s = Scenario::new();
        s.decide(buyer(), changed_mind(RefundKind::ReturnAndRefund)).unwrap();
    }
}

/// A partial ruling pays more than nothing and less than was asked; a full ruling pays what
/// was asked.
mod partial_rulings {
    use super::*;

    #[test]
    fn a_partial_ruling_above_the_request_is_refused_even_when_the_order_could_refund_it() {
        let mut s = Scenario::new();
        s.requested(2_000).given(merchant(), reject()).given(buyer(), escalate());
        s.given(arbitrator(), assign(ARBITRATOR));
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::RefundPartial, Some(8_000), false),
            DisputeError::PartialNotBelowRequest,
        );
        s.decide(arbitrator(), judge(RulingOutcome::RefundPartial, Some(1_999), false)).unwrap();
    }

    #[test]
    fn a_partial_ruling_of_the_whole_request_is_refused_as_it_is_a_full_ruling() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(
            arbitrator(),
            judge(RulingOutcome::RefundPartial, Some(PAID), false),
            DisputeError::PartialNotBelowRequest,
        );
        s.decide(arbitrator(), judge(RulingOutcome::RefundFull, None, false)).unwrap();
    }
}

mod evidence_after_rejection {
    use super::*;

    #[test]
    fn buyer_may_add_evidence_after_a_rejection_before_escalating() {
        let mut s = Scenario::new();
        s.rejected();
        s.when(buyer(), submit(2)).then_expect_events(vec![DisputeEvent::EvidenceSubmitted {
            round: 1,
            party: Party::Buyer,
            evidence: evidence(2),
        }]);
        assert_eq!(s.then_state(buyer(), submit(1)).status(), Status::Rejected);
        s.given(buyer(), escalate());
    }

    #[test]
    fn evidence_after_a_rejection_closes_with_the_escalation_window() {
        let mut s = Scenario::new();
        s.rejected().advance(Duration::days(7));
        s.decide(buyer(), submit(1)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), submit(1), DisputeError::EvidenceWindowClosed);
    }
}

mod messages {
    use super::*;
    use dispute_domain::command::{PostMessage, RequestEvidence};

    fn message(text: &str) -> Action {
        Action::PostMessage(PostMessage { text: text.to_string(), evidence: vec![] })
    }

    fn message_with(text: &str, n: usize) -> Action {
        Action::PostMessage(PostMessage { text: text.to_string(), evidence: evidence(n) })
    }

    fn posted(round: u32, actor: &Actor, text: &str, evidence: Vec<Evidence>) -> DisputeEvent {
        DisputeEvent::MessagePosted {
            round,
            author_role: actor.role,
            author_id: actor.id.clone(),
            text: text.to_string(),
            evidence,
        }
    }

    #[test]
    fn buyer_and_merchant_post_messages_while_a_request_runs() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.when(buyer(), message("where is my refund?")).then_expect_events(vec![posted(
            1,
            &buyer(),
            "where is my refund?",
            vec![],
        )]);
        s.when(merchant(), message_with("see the photo", 1)).then_expect_events(vec![posted(
            1,
            &merchant(),
            "see the photo",
            evidence(1),
        )]);
        // A message changes no status.
        assert_eq!(s.then_state(buyer(), message("hello")).status(), Status::AwaitingMerchant);
    }

    #[test]
    fn messages_are_for_the_orders_parties_and_its_assignee() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(other_buyer(), message("hi"), DisputeError::NotAParty);
        s.refuses(other_merchant(), message("hi"), DisputeError::NotAParty);
        s.refuses(other_arbitrator(), message("hi"), DisputeError::NotAssignee);
        s.refuses(system(), message("hi"), DisputeError::Forbidden);
        s.refuses(auditor(), message("hi"), DisputeError::Forbidden);
        s.when(arbitrator(), message("please send the chat log")).then_expect_events(vec![posted(
            1,
            &arbitrator(),
            "please send the chat log",
            vec![],
        )]);
    }

    #[test]
    fn an_arbitrator_posts_only_once_assigned() {
        let mut s = Scenario::new();
        s.escalated();
        s.refuses(arbitrator(), message("hi"), DisputeError::NotAssignee);
        s.given(arbitrator(), assign(ARBITRATOR));
        s.decide(arbitrator(), message("hi")).unwrap();
    }

    #[test]
    fn messages_run_from_the_request_until_the_round_ends() {
        let s = Scenario::new();
        s.refuses(buyer(), message("hi"), invalid("messages", Status::Open));
        let mut s = Scenario::new();
        s.refunded(PAID);
        s.refuses(buyer(), message("hi"), invalid("messages", Status::Refunded));
        let mut s = Scenario::new();
        s.requested(PAID).given(buyer(), withdraw());
        s.refuses(merchant(), message("hi"), invalid("messages", Status::Closed));
        // Every status of a running round takes them.
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(10));
        s.decide(buyer(), message("hi")).unwrap();
        let mut s = Scenario::new();
        s.escalated();
        s.decide(merchant(), message("hi")).unwrap();
        let mut s = Scenario::new();
        s.ruled(RulingOutcome::RefundFull, None, true);
        s.decide(buyer(), message("shipping it today")).unwrap();
        s.decide(arbitrator(), message("thank you")).unwrap();
        s.given(buyer(), ship());
        s.decide(merchant(), message("received")).unwrap();
    }

    #[test]
    fn a_message_needs_one_to_2000_characters() {
        let mut s = Scenario::new();
        s.requested(PAID);
        s.refuses(buyer(), message(" "), DisputeError::EmptyField("text"));
        s.refuses(buyer(), message(&"x".repeat(2001)), DisputeError::TextTooLong("text"));
        // Characters, not bytes.
        s.decide(buyer(), message(&"退".repeat(2000))).unwrap();
    }

    #[test]
    fn messages_are_capped_per_author_per_dispute() {
        let policy = Policy::from_toml("[default]\nmax_messages_per_party = 2\n").unwrap();
        let mut s = Scenario::of_with(order(), policy);
        s.requested(PAID).given(buyer(), message("one")).given(buyer(), withdraw());
        s.given(buyer(), refund_only(PAID)).given(buyer(), message("two"));
        s.refuses(buyer(), message("three"), DisputeError::TooManyMessages);
        // The merchant's count is its own.
        s.given(merchant(), message("one")).given(merchant(), message("two"));
        s.refuses(merchant(), message("three"), DisputeError::TooManyMessages);
    }

    #[test]
    fn evidence_on_a_message_follows_the_evidence_rules() {
        let mut s = Scenario::new();
        s.requested(PAID);
        let mut bad = evidence(1);
        bad[0].sha256 = "z".repeat(64);
        let bad = Action::PostMessage(PostMessage { text: "see".to_string(), evidence: bad });
        s.refuses(buyer(), bad, DisputeError::InvalidEvidence);
        // The request carried one item; 19 more reach the cap, on messages or submitted.
        s.given(buyer(), message_with("photos", 19));
        s.refuses(buyer(), message_with("one more", 1), DisputeError::TooMuchEvidence);
        s.refuses(buyer(), submit(1), DisputeError::TooMuchEvidence);
        // Where evidence is not taken, a message may still be posted without it.
        let mut s = Scenario::new();
        s.requested(PAID).given(merchant(), offer(10));
        s.refuses(buyer(), message_with("see", 1), DisputeError::EvidenceNotAllowed);
        s.decide(buyer(), message("see")).unwrap();
        // After the evidence window, likewise.
        let mut s = Scenario::new();
        s.escalated().advance(Duration::hours(73));
        s.refuses(merchant(), message_with("late", 1), DisputeError::EvidenceWindowClosed);
        s.decide(merchant(), message("late")).unwrap();
    }

    #[test]
    fn an_arbitrator_message_carries_no_evidence() {
        let mut s = Scenario::new();
        s.under_review();
        s.refuses(arbitrator(), message_with("see", 1), DisputeError::EvidenceNotAllowed);
    }

    fn ask(party: Party, what: &str) -> Action {
        Action::RequestEvidence(RequestEvidence { party, what: what.to_string() })
    }

    fn requested_event(s: &Scenario, request: u32, party: Party, what: &str, hours: i64) -> DisputeEvent {
        DisputeEvent::EvidenceRequested {
            round: s.round(),
            request,
            arbitrator_id: ARBITRATOR.to_string(),
            party,
            what: what.to_string(),
            due: s.now() + Duration::hours(hours),
        }
    }

    #[test]
    fn the_assignee_asks_a_party_for_evidence_by_seventy_two_hours() {
        let mut s = Scenario::new();
        s.under_review();
        let expected = requested_event(&s, 1, Party::Merchant, "the courier's proof of delivery", 72);
        s.when(arbitrator(), ask(Party::Merchant, "the courier's proof of delivery"))
            .then_expect_events(vec![expected.clone()]);
        let state = s.then_state(arbitrator(), ask(Party::Merchant, "the courier's proof of delivery"));
        assert_eq!(state.status(), Status::UnderReview);
        let timer = state.pending_timer().expect("the request's deadline runs");
        assert_eq!(timer.deadline, Deadline::EvidenceRequest);
        assert_eq!(timer.due, s.now() + Duration::hours(72));
        assert_eq!(expected.timer_change(), TimerChange::Set(timer));
    }

    #[test]
    fn a_category_sets_its_own_evidence_request_deadline() {
        let mut s = Scenario::of(order_in("fresh"));
        // Fresh auto-accepts a missed deadline, so the merchant rejects.
        s.under_review();
        let expected = requested_event(&s, 1, Party::Buyer, "a photo", 24);
        s.when(arbitrator(), ask(Party::Buyer, "a photo")).then_expect_events(vec![expected]);
    }

    #[test]
    fn only_the_assignee_asks_for_evidence_and_only_under_review() {
        let mut s = Scenario::new();
        s.escalated();
        s.refuses(arbitrator(), ask(Party::Buyer, "x"), invalid("evidence_requests", Status::Escalated));
        s.given(arbitrator(), assign(ARBITRATOR));
        s.refuses(other_arbitrator(), ask(Party::Buyer, "x"), DisputeError::NotAssignee);
        for actor in [buyer(), merchant(), system(), auditor()] {
            s.refuses(actor, ask(Party::Buyer, "x"), DisputeError::Forbidden);
        }
        s.refuses(arbitrator(), ask(Party::Buyer, " "), DisputeError::EmptyField("what"));
        s.refuses(arbitrator(), ask(Party::Buyer, &"x".repeat(2001)), DisputeError::TextTooLong("what"));
        s.given(arbitrator(), judge(RulingOutcome::NoRefund, None, false));
        s.refuses(arbitrator(), ask(Party::Buyer, "x"), invalid("evidence_requests", Status::Closed));
    }

    #[test]
    fn one_request_is_open_at_a_time() {
        let mut s = Scenario::new();
        s.under_review().given(arbitrator(), ask(Party::Buyer, "the chat log"));
        s.refuses(arbitrator(), ask(Party::Merchant, "the waybill"), DisputeError::EvidenceRequestOpen);
        s.given(buyer(), submit(1));
        let expected = requested_event(&s, 2, Party::Merchant, "the waybill", 72);
        s.when(arbitrator(), ask(Party::Merchant, "the waybill")).then_expect_events(vec![expected]);
    }

    #[test]
    fn evidence_from_the_party_asked_answers_the_request() {
        let mut s = Scenario::new();
        s.under_review().given(arbitrator(), ask(Party::Buyer, "the chat log"));
        // The other party's evidence does not answer it.
        s.when(merchant(), submit(1)).then_expect_events(vec![DisputeEvent::EvidenceSubmitted {
            round: 1,
            party: Party::Merchant,
            evidence: evidence(1),
        }]);
        s.when(buyer(), submit(1)).then_expect_events(vec![
            DisputeEvent::EvidenceSubmitted { round: 1, party: Party::Buyer, evidence: evidence(1) },
            DisputeEvent::EvidenceRequestAnswered { round: 1, request: 1, party: Party::Buyer },
        ]);
        // A message without evidence does not answer it; one with evidence does.
        s.when(buyer(), message("coming")).then_expect_events(vec![posted(1, &buyer(), "coming", vec![])]);
        s.when(buyer(), message_with("here", 1)).then_expect_events(vec![
            posted(1, &buyer(), "here", evidence(1)),
            DisputeEvent::EvidenceRequestAnswered { round: 1, request: 1, party: Party::Buyer },
        ]);
        let state = s.then_state(buyer(), submit(1));
        assert_eq!(state.pending_timer(), None);
        assert_eq!(
            DisputeEvent::EvidenceRequestAnswered { round: 1, request: 1, party: Party::Buyer }
                .timer_change(),
            TimerChange::Cleared
        );
    }

    #[test]
    fn the_party_asked_may_answer_after_the_evidence_window() {
        let mut s = Scenario::new();
        s.under_review().advance(Duration::hours(73));
        s.refuses(buyer(), submit(1), DisputeError::EvidenceWindowClosed);
        s.given(arbitrator(), ask(Party::Buyer, "the chat log"));
        s.refuses(merchant(), submit(1), DisputeError::EvidenceWindowClosed);
        s.advance(Duration::hours(72));
        s.decide(buyer(), submit(1)).unwrap();
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), submit(1), DisputeError::EvidenceWindowClosed);
    }

    #[test]
    fn an_unanswered_request_lapses_at_its_deadline_not_before() {
        let mut s = Scenario::new();
        s.under_review().given(arbitrator(), ask(Party::Merchant, "the waybill"));
        s.advance(Duration::hours(72) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::EvidenceRequest, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        s.when(system(), expire(Deadline::EvidenceRequest, 1)).then_expect_events(vec![
            DisputeEvent::EvidenceRequestLapsed { round: 1, request: 1, party: Party::Merchant },
        ]);
        let state = s.then_state(system(), expire(Deadline::EvidenceRequest, 1));
        assert_eq!(state.status(), Status::UnderReview);
        assert_eq!(state.pending_timer(), None);
        // Lapsed is not open: nothing more to expire, and the arbitrator may ask again.
        s.refuses(system(), expire(Deadline::EvidenceRequest, 1), DisputeError::DeadlineNotReached);
        s.decide(arbitrator(), ask(Party::Merchant, "the waybill, please")).unwrap();
    }

    #[test]
    fn an_answered_request_does_not_lapse() {
        let mut s = Scenario::new();
        s.under_review().given(arbitrator(), ask(Party::Merchant, "the waybill"));
        s.given(merchant(), submit(1)).advance(Duration::hours(73));
        s.refuses(system(), expire(Deadline::EvidenceRequest, 1), DisputeError::DeadlineNotReached);
    }

    #[test]
    fn a_ruling_ends_an_open_request() {
        let mut s = Scenario::new();
        s.under_review().given(arbitrator(), ask(Party::Merchant, "the waybill"));
        let state = s.then_state(arbitrator(), judge(RulingOutcome::RefundFull, None, false));
        assert_eq!(state.pending_timer(), None);
        s.advance(Duration::hours(73));
        s.refuses(
            system(),
            expire(Deadline::EvidenceRequest, 1),
            invalid("expire_evidence_request", Status::RefundPending),
        );
    }
}

/// The order service reports shipment after registration, like delivery; until then the order
/// counts as unshipped.
mod shipment {
    use super::*;

    fn shipped(at: chrono::DateTime<chrono::Utc>) -> Action {
        Action::MarkShipped(command::MarkShipped { shipped_at: at })
    }

    #[test]
    fn shipped_records_the_shipment_once() {
        let mut s = Scenario::of(unshipped_order());
        let at = s.now() - Duration::hours(1);
        s.when(system(), shipped(at)).then_expect_events(vec![DisputeEvent::OrderShipped { shipped_at: at }]);
        let state = s.then_state(system(), shipped(at));
        assert_eq!(state.shipped_at(), Some(at));
        assert_eq!(state.status(), Status::Open);
        // The same time again changes nothing; another time is a conflict.
        s.when(system(), shipped(at)).then_expect_events(vec![]);
        s.refuses(system(), shipped(at + Duration::minutes(1)), DisputeError::ShipmentConflict);
    }

    #[test]
    fn a_shipment_known_at_registration_is_not_reported_again_otherwise() {
        let s = Scenario::new();
        s.when(system(), shipped(shipped_at())).then_expect_events(vec![]);
        s.refuses(system(), shipped(shipped_at() + Duration::hours(1)), DisputeError::ShipmentConflict);
    }

    #[test]
    fn only_the_system_reports_shipment_of_a_known_order() {
        let s = Scenario::of(unshipped_order());
        for actor in [buyer(), merchant(), arbitrator(), auditor()] {
            s.refuses(actor, shipped(start()), DisputeError::Forbidden);
        }
        Scenario::unregistered().refuses(system(), shipped(start()), DisputeError::OrderNotFound);
    }

    #[test]
    fn shipment_may_be_reported_in_any_status() {
        let mut s = Scenario::of(unshipped_order());
        s.requested(PAID - 1);
        assert_eq!(s.state().status(), Status::AwaitingMerchant);
        let state = s.then_state(system(), shipped(start()));
        assert_eq!(state.status(), Status::AwaitingMerchant);
    }

    #[test]
    fn a_return_of_goods_never_shipped_is_refused() {
        let mut s = Scenario::of(unshipped_order());
        s.refuses(buyer(), return_and_refund(PAID), DisputeError::ReturnWithoutShipment);
        s.refuses(buyer(), return_and_refund(1), DisputeError::ReturnWithoutShipment);
        // Once shipped and delivered, a return is heard.
        s.given(system(), shipped(start() - Duration::hours(5)));
        s.given(system(), deliver(start() - Duration::hours(1)));
        s.decide(buyer(), return_and_refund(PAID)).unwrap();
    }

    #[test]
    fn an_order_reported_shipped_is_no_longer_refunded_at_once_as_unshipped() {
        let mut s = Scenario::of(unshipped_order());
        s.given(system(), shipped(start() - Duration::hours(1)));
        // In transit: only "not received", and the merchant answers.
        s.refuses(buyer(), refund_only(PAID), DisputeError::ReasonNotAllowed);
        let events = s.run(buyer(), request(RefundKind::RefundOnly, RefundReason::NotReceived, PAID));
        assert!(matches!(events.as_slice(), [DisputeEvent::RefundRequested { .. }]), "{events:?}");
        assert_eq!(s.state().status(), Status::AwaitingMerchant);
    }

    #[test]
    fn the_shipment_time_is_kept_across_a_replay() {
        let mut s = Scenario::of(unshipped_order());
        s.given(system(), shipped(start()));
        let json = serde_json::to_value(&s.events).unwrap();
        let events: Vec<DisputeEvent> = serde_json::from_value(json).unwrap();
        assert_eq!(fold(&events).shipped_at(), Some(start()));
        assert_eq!(DisputeEvent::OrderShipped { shipped_at: start() }.name(), "OrderShipped");
    }
}

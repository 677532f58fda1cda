//! The merchant's offers (their kinds, their lapse and their revision), the return's address
//! and reference, a return that fails inspection, and when an approved refund is due: given /
//! when / then, refusals asserted on the error variant.

mod support;

use chrono::Duration;
use dispute_domain::command::{MerchantAccept, MerchantOffer};
use dispute_domain::*;
use support::*;

fn invalid(command: &'static str, status: Status) -> DisputeError {
    DisputeError::InvalidTransition { command, status: status.as_str() }
}

const ADDRESS: &str = "Returns desk, 8 Wensan Road, Hangzhou";

fn with_return(amount: i64) -> Action {
    offer_of(OfferKind::PartialRefundWithReturn, Some(amount))
}

fn replacement() -> Action {
    offer_of(OfferKind::Replacement, None)
}

fn addressed(kind: OfferKind, amount: Option<i64>) -> Action {
    Action::MerchantOffer(MerchantOffer {
        amount: amount.map(cny),
        kind,
        return_address: Some(ADDRESS.to_string()),
        ..offer_body()
    })
}

fn accept_to(address: &str) -> Action {
    Action::MerchantAccept(MerchantAccept { note: None, return_address: Some(address.to_string()) })
}

/// The built-in policy with a default return address for books.
fn policy_with_address() -> Policy {
    Policy::from_toml(&format!("[category.books]\nreturn_address = \"{ADDRESS}\"\n")).unwrap()
}

mod offer_kinds {
    use super::*;

    #[test]
    fn an_offer_body_without_a_kind_is_a_partial_refund() {
        let body: MerchantOffer =
            serde_json::from_str(r#"{"amount": {"amount_minor": 500, "currency": "CNY"}, "note": "half"}"#)
                .unwrap();
        assert_eq!(body.kind, OfferKind::PartialRefund);
        assert_eq!(body.amount, Some(cny(500)));
        assert_eq!(body.return_address, None);
    }

    #[test]
    fn a_partial_refund_needs_an_amount_and_a_replacement_refuses_one() {
        let mut s = Scenario::new();
        s.requested(6_000);
        s.refuses(
            merchant(),
            offer_of(OfferKind::PartialRefund, None),
            DisputeError::AmountRequired("amount"),
        );
        s.refuses(
            merchant(),
            offer_of(OfferKind::PartialRefundWithReturn, None),
            DisputeError::AmountRequired("amount"),
        );
        s.refuses(merchant(), offer_of(OfferKind::Replacement, Some(100)), DisputeError::AmountNotAllowed);
        s.refuses(merchant(), with_return(6_000), DisputeError::OfferNotBelowRequest);
    }

    #[test]
    fn a_replacement_is_offered_with_the_policys_address_and_an_expiry() {
        let mut s = Scenario::of_with(order(), policy_with_address());
        s.requested_return(6_000);
        s.when(merchant(), replacement()).then_expect_events(vec![DisputeEvent::ReplacementOffered {
            round: 1,
            note: "half back, keep it".to_string(),
            return_address: Some(ADDRESS.to_string()),
            expires_at: s.now() + Duration::days(10),
            revision: 0,
        }]);
        assert_eq!(s.then_state(merchant(), replacement()).status(), Status::OfferPending);
    }

    #[test]
    fn an_accepted_replacement_sends_the_goods_back_and_closes_as_replaced_on_receipt() {
        let mut s = Scenario::new();
        s.requested_return(6_000).given(merchant(), addressed(OfferKind::Replacement, None));
        s.advance(Duration::hours(3));
        s.when(buyer(), accept_offer()).then_expect_events(vec![DisputeEvent::ReplacementAgreed {
            round: 1,
            return_ship_due: s.now() + Duration::days(7),
            return_address: Some(ADDRESS.to_string()),
        }]);
        let state = s.then_state(buyer(), accept_offer());
        assert_eq!(state.status(), Status::AwaitingReturn);
        assert_eq!(state.approved_refund(), None);
        s.given(buyer(), ship());
        s.when(merchant(), confirm()).then_expect_events(vec![DisputeEvent::ReturnReceived {
            round: 1,
            confirmed_by: ReceiptConfirmedBy::Merchant,
            note: None,
            refund_due: None,
        }]);
        let state = s.then_state(merchant(), confirm());
        assert_eq!(state.status(), Status::Closed);
        assert_eq!(state.close_reason(), Some(CloseReason::Replaced));
        assert_eq!(state.refunded_total(), Some(cny(0)));
    }

    #[test]
    fn a_replacement_whose_return_is_never_confirmed_closes_as_replaced_by_the_timer() {
        let mut s = Scenario::new();
        s.requested_return(6_000).given(merchant(), replacement()).given(buyer(), accept_offer());
        s.given(buyer(), ship()).advance(Duration::days(10));
        let events = s.run(system(), expire(Deadline::ReturnReceipt, 1));
        assert!(matches!(events[..], [DisputeEvent::ReturnReceived { refund_due: None, .. }]));
        assert_eq!(s.state().close_reason(), Some(CloseReason::Replaced));
    }

    #[test]
    fn an_accepted_partial_refund_with_return_waits_for_the_goods_at_the_offers_address() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), addressed(OfferKind::PartialRefundWithReturn, Some(4_000)));
        s.when(buyer(), accept_offer()).then_expect_events(vec![DisputeEvent::RefundApproved {
            round: 1,
            amount: cny(4_000),
            approved_by: ApprovedBy::Offer,
            return_required: true,
            return_ship_due: Some(s.now() + Duration::days(7)),
            note: None,
            approved_at: Some(s.now()),
            return_address: Some(ADDRESS.to_string()),
            refund_due: None,
        }]);
        let state = s.then_state(buyer(), accept_offer());
        assert_eq!(state.status(), Status::AwaitingReturn);
        assert_eq!(state.approved_refund(), Some(&cny(4_000)));
    }

    #[test]
    fn a_partial_refund_keeps_no_return_address() {
        let mut s = Scenario::of_with(order(), policy_with_address());
        s.requested(6_000);
        let events = s.run(merchant(), addressed(OfferKind::PartialRefund, Some(3_000)));
        assert!(matches!(&events[..], [DisputeEvent::MerchantOffered { return_address: None, .. }]));
    }

    #[test]
    fn an_empty_return_address_is_refused() {
        let mut s = Scenario::new();
        s.requested_return(6_000);
        let blank = Action::MerchantOffer(MerchantOffer {
            amount: None,
            kind: OfferKind::Replacement,
            return_address: Some("  ".to_string()),
            ..offer_body()
        });
        s.refuses(merchant(), blank, DisputeError::EmptyField("return_address"));
        s.refuses(merchant(), accept_to(" "), DisputeError::EmptyField("return_address"));
    }
}

mod offer_expiry {
    use super::*;

    #[test]
    fn an_offer_lapses_after_the_policys_offer_response() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(3_000));
        let expires = s.now() + Duration::days(10);
        assert_eq!(
            s.state().pending_timer(),
            Some(Timer { deadline: Deadline::OfferResponse, round: 1, due: expires })
        );
        s.advance(Duration::days(10) - Duration::seconds(1));
        s.refuses(system(), expire(Deadline::OfferResponse, 1), DisputeError::DeadlineNotReached);
        s.advance(Duration::seconds(1));
        s.when(system(), expire(Deadline::OfferResponse, 1)).then_expect_events(vec![
            DisputeEvent::OfferLapsed { round: 1, escalation_due: expires + Duration::days(7) },
        ]);
        let state = s.then_state(system(), expire(Deadline::OfferResponse, 1));
        assert_eq!(state.status(), Status::Rejected);
        assert!(s.decide(buyer(), escalate()).is_ok());
        // The merchant revises only an offer the buyer declined, not one left to lapse.
        s.refuses(merchant(), offer(4_000), invalid("merchant_offer", Status::Rejected));
    }

    #[test]
    fn fresh_goods_offers_lapse_after_48_hours() {
        let mut s = Scenario::of(order_in("fresh"));
        s.requested(6_000).given(merchant(), offer(3_000));
        assert_eq!(s.state().pending_timer().map(|t| t.due), Some(s.now() + Duration::hours(48)));
    }

    #[test]
    fn the_buyer_answers_until_the_offer_expires_and_not_after() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(3_000)).advance(Duration::days(10));
        assert!(s.decide(buyer(), accept_offer()).is_ok());
        assert!(s.decide(buyer(), decline_offer()).is_ok());
        s.advance(Duration::seconds(1));
        s.refuses(buyer(), accept_offer(), DisputeError::OfferExpired);
        s.refuses(buyer(), decline_offer(), DisputeError::OfferExpired);
    }

    #[test]
    fn the_buyer_escalates_a_lapsed_offer_before_the_timer_records_it() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(3_000));
        let expires = s.now() + Duration::days(10);
        s.refuses(buyer(), escalate(), invalid("escalate", Status::OfferPending));
        s.advance(Duration::days(10));
        let events = s.run(buyer(), escalate());
        assert!(matches!(
            &events[..],
            [DisputeEvent::OfferLapsed { escalation_due, .. }, DisputeEvent::DisputeEscalated { .. }]
                if *escalation_due == expires + Duration::days(7)
        ));
        assert_eq!(s.state().status(), Status::Escalated);
    }

    #[test]
    fn a_lapsed_offer_may_not_be_escalated_after_the_escalation_window() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(3_000));
        s.advance(Duration::days(17) + Duration::seconds(1));
        s.refuses(buyer(), escalate(), DisputeError::EscalationWindowClosed);
    }

    #[test]
    fn an_offer_stored_before_offers_lapsed_reads_as_an_open_partial_refund() {
        let stored = r#"{"MerchantOffered": {"round": 1, "amount": {"amount_minor": 3000, "currency": "CNY"}, "note": "half"}}"#;
        let event: DisputeEvent = serde_json::from_str(stored).unwrap();
        assert_eq!(
            event,
            DisputeEvent::MerchantOffered {
                round: 1,
                amount: cny(3_000),
                note: "half".to_string(),
                kind: OfferKind::PartialRefund,
                return_address: None,
                expires_at: None,
                revision: 0,
            }
        );
        assert_eq!(event.timer_change(), TimerChange::Cleared);
        let mut s = Scenario::new();
        s.requested(6_000);
        s.events.push(event);
        assert_eq!(s.state().pending_timer(), None);
        s.advance(Duration::days(365));
        assert!(s.decide(buyer(), accept_offer()).is_ok());
        s.refuses(buyer(), escalate(), invalid("escalate", Status::OfferPending));
    }
}

mod offer_revisions {
    use super::*;

    #[test]
    fn the_merchant_revises_a_declined_offer_in_the_same_round() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(2_000)).given(buyer(), decline_offer());
        s.advance(Duration::days(1));
        s.when(merchant(), with_return(4_000)).then_expect_events(vec![DisputeEvent::MerchantOffered {
            round: 1,
            amount: cny(4_000),
            note: "half back, keep it".to_string(),
            kind: OfferKind::PartialRefundWithReturn,
            return_address: None,
            expires_at: Some(s.now() + Duration::days(10)),
            revision: 1,
        }]);
        let state = s.then_state(merchant(), with_return(4_000));
        assert_eq!(state.status(), Status::OfferPending);
        assert_eq!(state.round(), 1);
    }

    #[test]
    fn revisions_stop_at_the_policys_cap() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(1_000));
        for amount in [2_000, 3_000] {
            s.given(buyer(), decline_offer()).given(merchant(), offer(amount));
        }
        s.given(buyer(), decline_offer());
        s.refuses(merchant(), offer(4_000), DisputeError::OfferRevisionsExhausted);
        assert!(s.decide(buyer(), escalate()).is_ok());
    }

    #[test]
    fn a_category_may_forbid_revisions() {
        let policy = Policy::from_toml("[category.books]\nmax_offer_revisions = 0\n").unwrap();
        let mut s = Scenario::of_with(order(), policy);
        s.requested(6_000).given(merchant(), offer(1_000)).given(buyer(), decline_offer());
        s.refuses(merchant(), offer(2_000), DisputeError::OfferRevisionsExhausted);
    }

    #[test]
    fn a_rejection_is_not_revised_into_an_offer() {
        let mut s = Scenario::new();
        s.rejected();
        s.refuses(merchant(), offer(2_000), invalid("merchant_offer", Status::Rejected));
    }

    #[test]
    fn no_revision_once_the_buyers_escalation_window_has_closed() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(2_000)).given(buyer(), decline_offer());
        s.advance(Duration::days(7) + Duration::seconds(1));
        s.refuses(merchant(), offer(3_000), DisputeError::EscalationWindowClosed);
    }

    #[test]
    fn no_revision_after_escalation() {
        let mut s = Scenario::new();
        s.requested(6_000).given(merchant(), offer(2_000)).given(buyer(), decline_offer());
        s.given(buyer(), escalate());
        s.refuses(merchant(), offer(3_000), invalid("merchant_offer", Status::Escalated));
    }
}

mod return_address {
    use super::*;

    #[test]
    fn the_merchant_names_the_return_address_when_accepting_a_return() {
        let mut s = Scenario::of_with(order(), policy_with_address());
        s.requested_return(PAID);
        let events = s.run(merchant(), accept_to("Shop 2, Yiwu"));
        assert!(matches!(
            &events[..],
            [DisputeEvent::RefundApproved { return_address: Some(a), refund_due: None, .. }] if a == "Shop 2, Yiwu"
        ));
    }

    #[test]
    fn without_one_the_categorys_default_address_applies_else_none() {
        let mut s = Scenario::of_with(order(), policy_with_address());
        s.requested_return(PAID);
        let events = s.run(merchant(), accept());
        assert!(matches!(
            &events[..],
            [DisputeEvent::RefundApproved { return_address: Some(a), .. }] if a == ADDRESS
        ));
        let mut s = Scenario::new();
        s.requested_return(PAID);
        let events = s.run(merchant(), accept());
        assert!(matches!(&events[..], [DisputeEvent::RefundApproved { return_address: None, .. }]));
    }

    #[test]
    fn a_refund_without_return_records_no_address() {
        let mut s = Scenario::of_with(order(), policy_with_address());
        s.requested(PAID);
        let events = s.run(merchant(), accept_to("Shop 2, Yiwu"));
        assert!(matches!(&events[..], [DisputeEvent::RefundApproved { return_address: None, .. }]));
    }

    #[test]
    fn a_ruling_with_return_sends_the_goods_to_the_categorys_address() {
        let mut s = Scenario::of_with(order(), policy_with_address());
        s.under_review();
        let events = s.run(arbitrator(), judge(RulingOutcome::RefundFull, None, true));
        assert!(matches!(
            &events[..],
            [DisputeEvent::DisputeJudged { return_address: Some(a), refund_due: None, .. }] if a == ADDRESS
        ));
    }

    #[test]
    fn the_return_reference_is_derived_from_the_order_and_round() {
        assert_eq!(return_reference("o-1001", 2), "RMA-o-1001-2");
        assert_ne!(return_reference("o-1001", 1), return_reference("o-1001", 2));
    }
}

mod inspection {
    use super::*;

    #[test]
    fn a_failed_inspection_withholds_the_refund_and_lets_the_buyer_escalate() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship()).advance(Duration::days(2));
        s.when(merchant(), inspection_failed(InspectionProblem::EmptyBox)).then_expect_events(vec![
            DisputeEvent::ReturnInspectionFailed {
                round: 1,
                problem: InspectionProblem::EmptyBox,
                note: "the box held a brick".to_string(),
                escalation_due: s.now() + Duration::days(7),
            },
        ]);
        let state = s.then_state(merchant(), inspection_failed(InspectionProblem::EmptyBox));
        assert_eq!(state.status(), Status::Rejected);
        assert_eq!(state.approved_refund(), None);
        s.refuses(
            system(),
            refund_paid(PAID, PaymentChannel::Alipay, s.now()),
            invalid("refund_paid", Status::Rejected),
        );
        s.given(buyer(), escalate()).given(arbitrator(), assign(ARBITRATOR));
        let state = s.then_state(arbitrator(), judge(RulingOutcome::RefundFull, None, false));
        assert_eq!(state.status(), Status::RefundPending);
        assert_eq!(state.approved_refund(), Some(&cny(PAID)));
    }

    #[test]
    fn an_unescalated_failed_inspection_stands_when_the_window_closes() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship());
        s.given(merchant(), inspection_failed(InspectionProblem::WrongItem)).advance(Duration::days(7));
        let state = s.then_state(system(), expire(Deadline::EscalationWindow, 1));
        assert_eq!(state.close_reason(), Some(CloseReason::RejectionAccepted));
    }

    #[test]
    fn a_failed_inspection_says_what_was_found() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship());
        let silent = Action::ConfirmReturn(command::ConfirmReturn {
            note: None,
            inspection_failed: Some(InspectionProblem::Damaged),
        });
        s.refuses(merchant(), silent, DisputeError::EmptyField("note"));
    }
}

mod refund_due {
    use super::*;

    #[test]
    fn an_approval_without_return_is_due_within_the_policys_refund_payment() {
        let mut s = Scenario::new();
        s.requested(PAID).advance(Duration::hours(5));
        let events = s.run(merchant(), accept());
        let due = s.now() + Duration::days(3);
        assert!(
            matches!(&events[..], [DisputeEvent::RefundApproved { refund_due: Some(d), .. }] if *d == due)
        );
    }

    #[test]
    fn with_a_return_the_refund_is_due_from_the_receipt() {
        let mut s = Scenario::new();
        s.awaiting_return(PAID).given(buyer(), ship()).advance(Duration::days(4));
        let events = s.run(merchant(), confirm());
        let due = s.now() + Duration::days(3);
        assert!(
            matches!(&events[..], [DisputeEvent::ReturnReceived { refund_due: Some(d), .. }] if *d == due)
        );
    }

    #[test]
    fn a_ruling_without_return_is_due_from_the_ruling() {
        let mut s = Scenario::new();
        s.under_review();
        let events = s.run(arbitrator(), judge(RulingOutcome::RefundPartial, Some(100), false));
        let due = s.now() + Duration::days(3);
        assert!(
            matches!(&events[..], [DisputeEvent::DisputeJudged { refund_due: Some(d), .. }] if *d == due)
        );
        let mut s = Scenario::new();
        s.under_review();
        let events = s.run(arbitrator(), judge(RulingOutcome::NoRefund, None, false));
        assert!(matches!(&events[..], [DisputeEvent::DisputeJudged { refund_due: None, .. }]));
    }

    #[test]
    fn a_category_sets_its_own_refund_payment_time() {
        let policy = Policy::from_toml("[category.books]\nrefund_payment = \"24h\"\n").unwrap();
        let mut s = Scenario::of_with(order(), policy);
        s.requested(PAID);
        let events = s.run(merchant(), accept());
        let due = s.now() + Duration::hours(24);
        assert!(
            matches!(&events[..], [DisputeEvent::RefundApproved { refund_due: Some(d), .. }] if *d == due)
        );
    }

    #[test]
    fn a_blank_default_return_address_is_refused_by_the_policy() {
        let err = Policy::from_toml("[default]\nreturn_address = \" \"\n").unwrap_err();
        assert!(matches!(err, PolicyError::Value { key: "return_address", .. }), "{err}");
    }
}

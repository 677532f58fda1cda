//! Each path of a dispute's life, driven over HTTP as the parties would.

use chrono::Duration;
use dispute_domain::Role;
use disputes_tests::*;
use serde_json::{Value, json};

/// Checks an accepted command's answer: status, round, everything refunded so far (CNY minor
/// units) and the stream's sequence.
#[track_caller]
pub(crate) fn assert_answer(answer: &Answer, status: &str, round: u64, refunded: i64, sequence: u64) {
    answer.assert_ok();
    assert_eq!(
        (
            answer.status_text(),
            answer.body["round"].as_u64(),
            &answer.body["refunded_total"],
            answer.sequence()
        ),
        (status, Some(round), &cny(refunded), sequence),
        "unexpected answer: {}",
        answer.body
    );
    assert!(answer.body["dispute_id"].is_string(), "no dispute_id in {}", answer.body);
}

/// An order like [`order`] in another category.
pub(crate) fn order_in(id: &str, category: &str) -> Value {
    let mut facts = order(id);
    facts["category"] = json!(category);
    facts
}

/// An order like [`order`] that has not been shipped yet.
fn unshipped_order(id: &str) -> Value {
    let mut facts = order(id);
    let fields = facts.as_object_mut().expect("an object");
    fields.remove("shipped_at");
    fields.remove("delivered_at");
    facts
}

/// An order like [`order`] that has shipped but whose delivery is not known yet.
fn undelivered_order(id: &str) -> Value {
    let mut facts = order(id);
    facts.as_object_mut().expect("an object").remove("delivered_at");
    facts
}

pub(crate) async fn accept_offer(app: &TestApp, id: &str) -> Answer {
    app.command(id, "accept-offer", Role::Buyer, BUYER, json!({})).await
}

async fn decline_offer(app: &TestApp, id: &str) -> Answer {
    app.command(id, "decline-offer", Role::Buyer, BUYER, json!({ "note": "too little" })).await
}

async fn withdraw(app: &TestApp, id: &str) -> Answer {
    app.command(id, "withdraw", Role::Buyer, BUYER, json!({ "note": "sorted it out with the shop" })).await
}

async fn appeal(app: &TestApp, id: &str, role: Role, sub: &str) -> Answer {
    app.command(id, "appeal", role, sub, json!({ "note": "the ruling ignores the chat log" })).await
}

pub(crate) fn partial(amount: i64) -> Value {
    json!({ "outcome": "refund_partial", "amount": cny(amount), "return_required": false, "rationale": "both at fault" })
}

fn full() -> Value {
    json!({ "outcome": "refund_full", "return_required": false, "rationale": "the photos show the defect" })
}

#[tokio::test]
async fn reject_escalate_judge_partial_then_refund_paid() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let requested = app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await;
    assert_eq!((requested.assert_ok().status_text(), requested.sequence()), ("awaiting_merchant", 2));
    assert_eq!(app.merchant_reject("o-1").await.assert_ok().status_text(), "rejected");
    assert_eq!(app.escalate("o-1").await.assert_ok().status_text(), "escalated");
    assert_eq!(app.assign("o-1", "arb-1").await.assert_ok().status_text(), "under_review");
    let ruled = app
        .judge(
            "o-1",
            "arb-1",
            json!({ "outcome": "refund_partial", "amount": cny(3_000), "return_required": false, "rationale": "both at fault" }),
        )
        .await;
    assert_eq!(ruled.assert_ok().status_text(), "refund_pending");
    let paid = app.refund_paid("o-1", 3_000).await;
    paid.assert_ok();
    assert_eq!(paid.status_text(), "refunded");
    assert_eq!(paid.body["refunded_total"], cny(3_000));
    assert_eq!(paid.body["round"], 1);
    assert_eq!(paid.sequence(), 7);
    // The other arbitrator's ruling role and the buyer's role are checked on the way.
    app.command("o-1", "refund-paid", Role::Buyer, BUYER, json!({})).await.assert_problem(403, "forbidden");
}

#[tokio::test]
async fn every_step_of_the_reject_escalate_judge_path_answers_the_state_after_it() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("o-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("o-2", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_reject("o-2").await, "rejected", 1, 0, 3);
    assert_answer(&app.escalate("o-2").await, "escalated", 1, 0, 4);
    assert_answer(&app.assign("o-2", "arb-1").await, "under_review", 1, 0, 5);
    // Only the assignee judges.
    app.judge("o-2", "arb-2", partial(3_000)).await.assert_problem(403, "forbidden");
    assert_answer(&app.judge("o-2", "arb-1", partial(3_000)).await, "refund_pending", 1, 0, 6);
    // The payment must be the ruled amount.
    app.refund_paid("o-2", 6_000).await.assert_problem(422, "amount_mismatch");
    assert_answer(&app.refund_paid("o-2", 3_000).await, "refunded", 1, 3_000, 7);
    // Exactly once per approval.
    app.refund_paid("o-2", 3_000).await.assert_problem(409, "invalid_transition");
}

#[tokio::test]
async fn merchant_accepts_a_refund_only_request() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("a-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("a-1", "refund_only", "wrong_item", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_accept("a-1").await, "refund_pending", 1, 0, 3);
    // Accepted means no more escalation and no more answers from the merchant.
    app.escalate("a-1").await.assert_problem(409, "invalid_transition");
    app.merchant_reject("a-1").await.assert_problem(409, "invalid_transition");
    assert_answer(&app.refund_paid("a-1", 10_000).await, "refunded", 1, 10_000, 4);
    // Everything is refunded: nothing is left to ask for.
    app.request_refund("a-1", "refund_only", "quality_issue", 1)
        .await
        .assert_problem(422, "amount_exceeds_refundable");
}

#[tokio::test]
async fn buyer_accepts_the_merchants_offer() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("f-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("f-1", "refund_only", "not_as_described", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    // An offer is less than what was asked.
    app.merchant_offer("f-1", 6_000).await.assert_problem(422, "offer_not_below_request");
    assert_answer(&app.merchant_offer("f-1", 2_500).await, "offer_pending", 1, 0, 3);
    assert_answer(&accept_offer(&app, "f-1").await, "refund_pending", 1, 0, 4);
    // The payment is the offered amount, not the requested one.
    app.refund_paid("f-1", 6_000).await.assert_problem(422, "amount_mismatch");
    assert_answer(&app.refund_paid("f-1", 2_500).await, "refunded", 1, 2_500, 5);
}

#[tokio::test]
async fn buyer_declines_the_offer_and_escalates() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("d-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("d-1", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_offer("d-1", 1_000).await, "offer_pending", 1, 0, 3);
    // With an offer pending the buyer answers first.
    app.escalate("d-1").await.assert_problem(409, "invalid_transition");
    assert_answer(&decline_offer(&app, "d-1").await, "rejected", 1, 0, 4);
    // A declined offer is gone.
    accept_offer(&app, "d-1").await.assert_problem(409, "invalid_transition");
    assert_answer(&app.escalate("d-1").await, "escalated", 1, 0, 5);
    assert_answer(&app.assign("d-1", "arb-1").await, "under_review", 1, 0, 6);
    // A full refund is the round's request.
    assert_answer(&app.judge("d-1", "arb-1", full()).await, "refund_pending", 1, 0, 7);
    assert_answer(&app.refund_paid("d-1", 6_000).await, "refunded", 1, 6_000, 8);
}

#[tokio::test]
async fn return_and_refund_waits_for_the_goods() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("r-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("r-1", "return_and_refund", "size_mismatch", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_accept("r-1").await, "awaiting_return", 1, 0, 3);
    // No payment before the goods are back.
    app.refund_paid("r-1", 10_000).await.assert_problem(409, "invalid_transition");
    app.command("r-1", "confirm-return", Role::Merchant, MERCHANT, json!({}))
        .await
        .assert_problem(409, "invalid_transition");
    let shipped = app
        .command(
            "r-1",
            "ship-return",
            Role::Buyer,
            BUYER,
            json!({ "carrier": "SF Express", "tracking_number": "SF1234567890" }),
        )
        .await;
    assert_answer(&shipped, "return_shipped", 1, 0, 4);
    let received = app
        .command("r-1", "confirm-return", Role::Merchant, MERCHANT, json!({ "note": "received, tags on" }))
        .await;
    assert_answer(&received, "refund_pending", 1, 0, 5);
    assert_answer(&app.refund_paid("r-1", 10_000).await, "refunded", 1, 10_000, 6);
}

#[tokio::test]
async fn buyer_withdraws_and_may_try_again_up_to_the_round_limit() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("w-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("w-1", "refund_only", "quality_issue", 4_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    let withdrawn = withdraw(&app, "w-1").await;
    assert_answer(&withdrawn, "closed", 1, 0, 3);
    assert_eq!(withdrawn.body["close_reason"], "withdrawn");
    // A closed round takes no answer from the merchant.
    app.merchant_accept("w-1").await.assert_problem(409, "invalid_transition");

    // A round that ended without refund may be followed by another.
    let second = app.request_refund("w-1", "refund_only", "quality_issue", 4_000).await;
    assert_answer(&second, "awaiting_merchant", 2, 0, 4);
    assert!(
        second.body.get("close_reason").is_none_or(Value::is_null),
        "a new round is not closed: {}",
        second.body
    );
    assert_answer(&app.merchant_reject("w-1").await, "rejected", 2, 0, 5);
    let withdrawn = withdraw(&app, "w-1").await;
    assert_answer(&withdrawn, "closed", 2, 0, 6);
    assert_eq!(withdrawn.body["close_reason"], "withdrawn");

    assert_answer(
        &app.request_refund("w-1", "refund_only", "quality_issue", 4_000).await,
        "awaiting_merchant",
        3,
        0,
        7,
    );
    assert_answer(&app.merchant_offer("w-1", 1_000).await, "offer_pending", 3, 0, 8);
    assert_answer(&withdraw(&app, "w-1").await, "closed", 3, 0, 9);
    // Three rounds per order at most.
    app.request_refund("w-1", "refund_only", "quality_issue", 4_000)
        .await
        .assert_problem(422, "max_rounds_reached");
    // The refusal wrote nothing: the order answers as it stood.
    assert_answer(&app.register(&order("w-1")).await, "closed", 3, 0, 9);
}

#[tokio::test]
async fn an_approved_refund_can_no_longer_be_withdrawn() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("w-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("w-2", "refund_only", "quality_issue", 4_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_accept("w-2").await, "refund_pending", 1, 0, 3);
    withdraw(&app, "w-2").await.assert_problem(409, "invalid_transition");
    assert_answer(&app.refund_paid("w-2", 4_000).await, "refunded", 1, 4_000, 4);
}

#[tokio::test]
async fn a_second_round_asks_for_the_rest_after_a_partial_refund() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("p-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("p-1", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_offer("p-1", 3_000).await, "offer_pending", 1, 0, 3);
    assert_answer(&accept_offer(&app, "p-1").await, "refund_pending", 1, 0, 4);
    assert_answer(&app.refund_paid("p-1", 3_000).await, "refunded", 1, 3_000, 5);

    // 70.00 is left of the 100.00 paid.
    app.request_refund("p-1", "refund_only", "quality_issue", 7_001)
        .await
        .assert_problem(422, "amount_exceeds_refundable");
    assert_answer(
        &app.request_refund("p-1", "refund_only", "quality_issue", 7_000).await,
        "awaiting_merchant",
        2,
        3_000,
        6,
    );
    assert_answer(&app.merchant_accept("p-1").await, "refund_pending", 2, 3_000, 7);
    assert_answer(&app.refund_paid("p-1", 7_000).await, "refunded", 2, 10_000, 8);

    // Refunds on one order never exceed what was paid.
    app.request_refund("p-1", "refund_only", "quality_issue", 1)
        .await
        .assert_problem(422, "amount_exceeds_refundable");
    assert_answer(&app.register(&order("p-1")).await, "refunded", 2, 10_000, 8);
}

#[tokio::test]
async fn a_ruling_cannot_exceed_what_is_left_after_an_earlier_round() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("p-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("p-2", "refund_only", "quality_issue", 4_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_accept("p-2").await, "refund_pending", 1, 0, 3);
    assert_answer(&app.refund_paid("p-2", 4_000).await, "refunded", 1, 4_000, 4);
    assert_answer(
        &app.request_refund("p-2", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        2,
        4_000,
        5,
    );
    assert_answer(&app.merchant_reject("p-2").await, "rejected", 2, 4_000, 6);
    assert_answer(&app.escalate("p-2").await, "escalated", 2, 4_000, 7);
    assert_answer(&app.assign("p-2", "arb-1").await, "under_review", 2, 4_000, 8);
    app.judge("p-2", "arb-1", partial(6_001)).await.assert_problem(422, "amount_exceeds_refundable");
    assert_answer(&app.judge("p-2", "arb-1", partial(5_000)).await, "refund_pending", 2, 4_000, 9);
    assert_answer(&app.refund_paid("p-2", 5_000).await, "refunded", 2, 9_000, 10);
    // No new round once a round has reached a ruling.
    app.request_refund("p-2", "refund_only", "quality_issue", 1_000)
        .await
        .assert_problem(409, "invalid_transition");
}

#[tokio::test]
async fn an_unshipped_order_is_refunded_in_full_at_once() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&unshipped_order("u-1")).await, "open", 0, 0, 1);
    // The request and its approval by policy come in one answer: two events.
    assert_answer(
        &app.request_refund("u-1", "refund_only", "changed_mind", 10_000).await,
        "refund_pending",
        1,
        0,
        3,
    );
    // Nothing for the merchant to answer.
    app.merchant_reject("u-1").await.assert_problem(409, "invalid_transition");
    assert_answer(&app.refund_paid("u-1", 10_000).await, "refunded", 1, 10_000, 4);
}

#[tokio::test]
async fn an_unshipped_order_asked_for_less_waits_for_the_merchant_and_a_return_is_refused() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&unshipped_order("u-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("u-2", "refund_only", "changed_mind", 5_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    // Nothing was shipped, so nothing can come back.
    assert_answer(&app.register(&unshipped_order("u-3")).await, "open", 0, 0, 1);
    app.request_refund("u-3", "return_and_refund", "changed_mind", 10_000)
        .await
        .assert_problem(422, "return_without_shipment");
}

#[tokio::test]
async fn the_order_service_reports_shipment_after_registration() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&unshipped_order("sh-1")).await, "open", 0, 0, 1);
    let shipped_at = app.now() - Duration::hours(3);
    assert_answer(&app.shipped("sh-1", shipped_at).await, "open", 0, 0, 2);
    // The same time again changes nothing; another time is a conflict.
    assert_answer(&app.shipped("sh-1", shipped_at).await, "open", 0, 0, 2);
    app.shipped("sh-1", shipped_at + Duration::hours(1)).await.assert_problem(409, "invalid_transition");
    // Only the system reports it; an unknown order is not found.
    let buyer = app.token(Role::Buyer, BUYER);
    let body = json!({ "shipped_at": shipped_at });
    app.send(reqwest::Method::POST, "/v1/orders/sh-1/shipped", Some(&buyer), Some(&body), &[])
        .await
        .assert_problem(403, "forbidden");
    app.shipped("sh-404", shipped_at).await.assert_problem(404, "not_found");
    // In transit: no longer refunded at once as unshipped, only as not received.
    app.request_refund("sh-1", "refund_only", "quality_issue", 10_000)
        .await
        .assert_problem(422, "reason_not_allowed");
    assert_answer(
        &app.request_refund("sh-1", "refund_only", "not_received", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        3,
    );
}

#[tokio::test]
async fn request_windows_depend_on_the_category() {
    let app = TestApp::postgres().await;
    // Every order was delivered one day before the clock's start.
    for (id, category) in [
        ("books-6", "books"),
        ("books-8", "books"),
        ("electronics-10", "electronics"),
        ("electronics-16", "electronics"),
    ] {
        assert_answer(&app.register(&order_in(id, category)).await, "open", 0, 0, 1);
    }

    app.advance(Duration::days(5));
    assert_answer(
        &app.request_refund("books-6", "refund_only", "quality_issue", 5_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );

    app.advance(Duration::days(2));
    app.request_refund("books-8", "refund_only", "quality_issue", 5_000)
        .await
        .assert_problem(422, "outside_request_window");
    assert_answer(&app.register(&order_in("books-8", "books")).await, "open", 0, 0, 1);

    app.advance(Duration::days(2));
    assert_answer(
        &app.request_refund("electronics-10", "refund_only", "quality_issue", 5_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );

    app.advance(Duration::days(6));
    app.request_refund("electronics-16", "refund_only", "quality_issue", 5_000)
        .await
        .assert_problem(422, "outside_request_window");
    assert_answer(&app.register(&order_in("electronics-16", "electronics")).await, "open", 0, 0, 1);
}

#[tokio::test]
async fn no_reason_returns_are_refused_where_the_rules_say() {
    let app = TestApp::postgres().await;
    for (id, category) in
        [("fresh-1", "fresh"), ("books-1", "books"), ("books-8", "books"), ("electronics-10", "electronics")]
    {
        assert_answer(&app.register(&order_in(id, category)).await, "open", 0, 0, 1);
    }

    // Never for fresh food, even a day after delivery.
    app.request_refund("fresh-1", "return_and_refund", "no_reason_7d", 10_000)
        .await
        .assert_problem(422, "no_reason_not_allowed");
    // Another reason is fine, and the refusal left nothing behind.
    assert_answer(
        &app.request_refund("fresh-1", "refund_only", "quality_issue", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    // Books take no-reason returns within seven days.
    assert_answer(
        &app.request_refund("books-1", "return_and_refund", "no_reason_7d", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );

    // Eight days after delivery the request window of books is closed; it is checked first.
    app.advance(Duration::days(7));
    app.request_refund("books-8", "return_and_refund", "no_reason_7d", 10_000)
        .await
        .assert_problem(422, "outside_request_window");

    // Ten days after delivery electronics still take requests, but not without a reason.
    app.advance(Duration::days(2));
    app.request_refund("electronics-10", "return_and_refund", "no_reason_7d", 10_000)
        .await
        .assert_problem(422, "no_reason_not_allowed");
    assert_answer(
        &app.request_refund("electronics-10", "return_and_refund", "quality_issue", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
}

#[tokio::test]
async fn an_appeal_goes_to_another_arbitrator_whose_ruling_is_final() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("ap-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("ap-1", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_reject("ap-1").await, "rejected", 1, 0, 3);
    assert_answer(&app.escalate("ap-1").await, "escalated", 1, 0, 4);
    // An appeal needs a ruling.
    appeal(&app, "ap-1", Role::Buyer, BUYER).await.assert_problem(409, "invalid_transition");
    assert_answer(&app.assign("ap-1", "arb-1").await, "under_review", 1, 0, 5);
    assert_answer(&app.judge("ap-1", "arb-1", partial(2_000)).await, "refund_pending", 1, 0, 6);

    // The buyer appeals: the ruling is suspended.
    assert_answer(&appeal(&app, "ap-1", Role::Buyer, BUYER).await, "appealed", 1, 0, 7);
    app.refund_paid("ap-1", 2_000).await.assert_problem(409, "invalid_transition");
    appeal(&app, "ap-1", Role::Merchant, MERCHANT).await.assert_problem(409, "invalid_transition");
    app.assign("ap-1", "arb-1").await.assert_problem(422, "same_arbitrator");
    assert_answer(&app.assign("ap-1", "arb-2").await, "under_review", 1, 0, 8);
    // The first arbitrator no longer judges this round.
    app.judge("ap-1", "arb-1", partial(2_000)).await.assert_problem(403, "forbidden");
    assert_answer(&app.judge("ap-1", "arb-2", full()).await, "refund_pending", 1, 0, 9);

    // The second ruling is final: no further appeal, by either side, and no new round.
    appeal(&app, "ap-1", Role::Merchant, MERCHANT).await.assert_problem(409, "invalid_transition");
    appeal(&app, "ap-1", Role::Buyer, BUYER).await.assert_problem(409, "invalid_transition");
    app.refund_paid("ap-1", 2_000).await.assert_problem(422, "amount_mismatch");
    assert_answer(&app.refund_paid("ap-1", 6_000).await, "refunded", 1, 6_000, 10);
    app.request_refund("ap-1", "refund_only", "quality_issue", 1_000)
        .await
        .assert_problem(409, "invalid_transition");
}

#[tokio::test]
async fn an_appeal_after_the_window_is_refused() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("ap-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("ap-2", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_reject("ap-2").await, "rejected", 1, 0, 3);
    assert_answer(&app.escalate("ap-2").await, "escalated", 1, 0, 4);
    assert_answer(&app.assign("ap-2", "arb-1").await, "under_review", 1, 0, 5);
    let ruled = app
        .judge(
            "ap-2",
            "arb-1",
            json!({ "outcome": "no_refund", "return_required": false, "rationale": "used item" }),
        )
        .await;
    assert_answer(&ruled, "closed", 1, 0, 6);
    assert_eq!(ruled.body["close_reason"], "ruled_no_refund");
    app.advance(Duration::days(3) + Duration::seconds(1));
    appeal(&app, "ap-2", Role::Buyer, BUYER).await.assert_problem(422, "appeal_window_closed");
    assert_answer(&app.register(&order("ap-2")).await, "closed", 1, 0, 6);
}

#[tokio::test]
async fn delivery_reported_later_opens_the_request_window() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&undelivered_order("dl-1")).await, "open", 0, 0, 1);
    assert_answer(&app.register(&undelivered_order("dl-2")).await, "open", 0, 0, 1);

    // Shipped but not delivered: only "not received".
    app.request_refund("dl-1", "refund_only", "quality_issue", 5_000)
        .await
        .assert_problem(422, "reason_not_allowed");

    let delivered_at = app.now() - Duration::hours(2);
    assert_answer(&app.delivered("dl-1", delivered_at).await, "open", 0, 0, 2);
    // The same delivery again changes nothing; another time is refused.
    assert_answer(&app.delivered("dl-1", delivered_at).await, "open", 0, 0, 2);
    app.delivered("dl-1", delivered_at + Duration::hours(1)).await.assert_problem(409, "invalid_transition");
    assert_answer(
        &app.request_refund("dl-1", "refund_only", "quality_issue", 5_000).await,
        "awaiting_merchant",
        1,
        0,
        3,
    );
    // The facts as first registered still answer as before.
    assert_answer(&app.register(&undelivered_order("dl-1")).await, "awaiting_merchant", 1, 0, 3);

    // A delivery reported late counts from when it happened.
    assert_answer(&app.delivered("dl-2", app.now() - Duration::days(8)).await, "open", 0, 0, 2);
    app.request_refund("dl-2", "refund_only", "quality_issue", 5_000)
        .await
        .assert_problem(422, "outside_request_window");
}

#[tokio::test]
async fn a_parcel_that_never_arrives_may_be_claimed_before_delivery() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&undelivered_order("nr-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("nr-1", "refund_only", "not_received", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_accept("nr-1").await, "refund_pending", 1, 0, 3);
    assert_answer(&app.refund_paid("nr-1", 10_000).await, "refunded", 1, 10_000, 4);
}

#[tokio::test]
async fn an_order_registered_again_answers_as_before_and_its_facts_stay_fixed() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("g-1")).await, "open", 0, 0, 1);
    assert_answer(&app.register(&order("g-1")).await, "open", 0, 0, 1);

    let mut dearer = order("g-1");
    dearer["paid_amount"] = cny(20_000);
    app.register(&dearer).await.assert_problem(409, "invalid_transition");
    let mut other_buyer = order("g-1");
    other_buyer["buyer_id"] = json!("buyer-2");
    app.register(&other_buyer).await.assert_problem(409, "invalid_transition");

    // The registered facts hold: the refund is measured against 100.00.
    app.request_refund("g-1", "refund_only", "quality_issue", 10_001)
        .await
        .assert_problem(422, "amount_exceeds_refundable");
    assert_answer(
        &app.request_refund("g-1", "refund_only", "quality_issue", 10_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.register(&order("g-1")).await, "awaiting_merchant", 1, 0, 2);
    app.register(&dearer).await.assert_problem(409, "invalid_transition");
}

#[tokio::test]
async fn state_survives_a_restart_on_postgres() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("rs-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("rs-1", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_offer("rs-1", 2_000).await, "offer_pending", 1, 0, 3);
    assert_answer(&accept_offer(&app, "rs-1").await, "refund_pending", 1, 0, 4);

    let app = app.restart().await;
    // The approved amount is remembered.
    app.refund_paid("rs-1", 6_000).await.assert_problem(422, "amount_mismatch");
    assert_answer(&app.refund_paid("rs-1", 2_000).await, "refunded", 1, 2_000, 5);
    app.request_refund("rs-1", "refund_only", "quality_issue", 8_001)
        .await
        .assert_problem(422, "amount_exceeds_refundable");
    assert_answer(
        &app.request_refund("rs-1", "refund_only", "quality_issue", 8_000).await,
        "awaiting_merchant",
        2,
        2_000,
        6,
    );
    assert_answer(&app.merchant_reject("rs-1").await, "rejected", 2, 2_000, 7);

    let app = app.restart().await;
    app.merchant_reject("rs-1").await.assert_problem(409, "invalid_transition");
    assert_answer(&app.escalate("rs-1").await, "escalated", 2, 2_000, 8);
    assert_answer(&app.assign("rs-1", "arb-1").await, "under_review", 2, 2_000, 9);
    assert_answer(&app.judge("rs-1", "arb-1", full()).await, "refund_pending", 2, 2_000, 10);

    let app = app.restart().await;
    assert_answer(&app.refund_paid("rs-1", 8_000).await, "refunded", 2, 10_000, 11);
    // A ruling was reached: no new round, also after a restart.
    app.request_refund("rs-1", "refund_only", "quality_issue", 1)
        .await
        .assert_problem(409, "invalid_transition");
    assert_answer(&app.register(&order("rs-1")).await, "refunded", 2, 10_000, 11);
}

#[tokio::test]
async fn deadlines_already_counted_survive_a_restart() {
    let app = TestApp::postgres().await;
    assert_answer(&app.register(&order("rs-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("rs-2", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    let app = app.restart().await;
    // The merchant's 48 hours started before the restart.
    app.advance(Duration::hours(48) + Duration::seconds(1));
    app.merchant_reject("rs-2").await.assert_problem(422, "response_deadline_passed");
    // The buyer escalates the missed deadline: two events in one answer.
    assert_answer(&app.escalate("rs-2").await, "escalated", 1, 0, 4);
}

#[tokio::test]
async fn buyer_withdraws_under_review_until_the_ruling() {
    let app = TestApp::postgres().await;
    app.register(&order("wr-1")).await.assert_ok();
    app.request_refund("wr-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_reject("wr-1").await.assert_ok();
    app.escalate("wr-1").await.assert_ok();
    assert_answer(&app.assign("wr-1", "arb-1").await, "under_review", 1, 0, 5);
    let withdrawn = withdraw(&app, "wr-1").await;
    assert_answer(&withdrawn, "closed", 1, 0, 6);
    assert_eq!(withdrawn.body["close_reason"], "withdrawn", "{}", withdrawn.body);
    // Once ruled, the ruling stands: no withdrawal.
    app.register(&order("wr-2")).await.assert_ok();
    app.request_refund("wr-2", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_reject("wr-2").await.assert_ok();
    app.escalate("wr-2").await.assert_ok();
    app.assign("wr-2", "arb-1").await.assert_ok();
    app.judge("wr-2", "arb-1", full()).await.assert_ok();
    withdraw(&app, "wr-2").await.assert_problem(409, "invalid_transition");
}

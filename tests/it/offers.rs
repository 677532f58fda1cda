//! Offers, returns and the refund's due time over HTTP: each offer kind with its lapse and
//! revision, the return's address and reference in the view, a failed inspection escalated to
//! the platform, and the overdue flags computed when the view is read. Time moves on the test
//! clock; the deadline timer is stepped.

use chrono::{DateTime, Duration, Utc};
use dispute_domain::Role;
use dispute_timer::DeadlineTimer;
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::timer::tracked_all;

const ADDRESS: &str = "Returns desk, 8 Wensan Road, Hangzhou";
const ARBITRATOR: &str = "arb-1";

/// The dispute as `role:sub` once its view reflects `sequence`.
async fn view(app: &TestApp, id: &str, role: Role, sub: &str, sequence: u64) -> Value {
    app.view_at(id, role, sub, sequence).await
}

async fn buyer_view(app: &TestApp, id: &str, sequence: u64) -> Value {
    view(app, id, Role::Buyer, BUYER, sequence).await
}

async fn merchant_view(app: &TestApp, id: &str, sequence: u64) -> Value {
    view(app, id, Role::Merchant, MERCHANT, sequence).await
}

fn time(value: &Value) -> DateTime<Utc> {
    serde_json::from_value(value.clone()).unwrap_or_else(|_| panic!("{value} is not a time"))
}

fn actions(view: &Value) -> Vec<&str> {
    view["actions"].as_array().expect("actions").iter().map(|a| a.as_str().unwrap()).collect()
}

async fn requested(app: &TestApp, id: &str, kind: &str) {
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, kind, "quality_issue", 6_000).await.assert_ok();
}

async fn offer(app: &TestApp, id: &str, body: Value) -> u64 {
    let answer = app.command(id, "merchant-offer", Role::Merchant, MERCHANT, body).await;
    answer.assert_ok();
    answer.sequence()
}

async fn buyer(app: &TestApp, id: &str, command: &str, body: Value) -> u64 {
    let answer = app.command(id, command, Role::Buyer, BUYER, body).await;
    answer.assert_ok();
    answer.sequence()
}

async fn ship(app: &TestApp, id: &str) -> u64 {
    buyer(app, id, "ship-return", json!({ "carrier": "SF Express", "tracking_number": "SF123" })).await
}

/// Records what the log holds, then fires what is due now; how many fired.
async fn step(app: &TestApp, timer: &DeadlineTimer) -> usize {
    tracked_all(app, timer).await;
    timer.fire_due().await.expect("firing runs").fired
}

#[tokio::test]
async fn a_partial_refund_is_declined_revised_accepted_and_flagged_when_payment_is_late() {
    let app = TestApp::postgres().await;
    requested(&app, "p-1", "refund_only").await;
    // The body of before offers had kinds is still a partial refund.
    let made = app.now();
    let sequence = app.merchant_offer("p-1", 2_000).await.sequence();
    let seen = buyer_view(&app, "p-1", sequence).await;
    assert_eq!(seen["status"], "offer_pending");
    assert_eq!(seen["offer"]["kind"], "partial_refund");
    assert_eq!(seen["offer"]["amount"], cny(2_000));
    assert_eq!(seen["offer"]["revision"], 0);
    let expires = time(&seen["offer"]["expires_at"]);
    assert_eq!(expires, made + Duration::days(10));
    assert_eq!(time(&seen["act_by"]), expires, "the buyer answers by the offer's expiry");
    assert_eq!(actions(&seen), ["accept-offer", "decline-offer", "withdraw", "messages"]);

    app.advance(Duration::hours(2));
    let sequence = buyer(&app, "p-1", "decline-offer", json!({ "note": "too little" })).await;
    let seen = merchant_view(&app, "p-1", sequence).await;
    assert_eq!(seen["offer"]["answer"], "declined");
    assert!(actions(&seen).contains(&"merchant-offer"), "the merchant may revise the declined offer: {seen}");

    let sequence =
        offer(&app, "p-1", json!({ "kind": "partial_refund", "amount": cny(4_000), "note": "more" })).await;
    let seen = buyer_view(&app, "p-1", sequence).await;
    assert_eq!(seen["status"], "offer_pending");
    assert_eq!(seen["offer"]["revision"], 1);
    assert_eq!(seen["offer"]["amount"], cny(4_000));

    let accepted = app.now();
    let sequence = buyer(&app, "p-1", "accept-offer", json!({})).await;
    let seen = buyer_view(&app, "p-1", sequence).await;
    assert_eq!(seen["status"], "refund_pending");
    assert_eq!(seen["offer"]["answer"], "accepted");
    assert_eq!(time(&seen["refund_due_by"]), accepted + Duration::days(3));
    assert_eq!(seen["refund_payment_overdue"], false);
    let token = app.token(Role::Auditor, "compliance-1");
    let platform = app.send(Method::GET, "/v1/platform/refunds-overdue", Some(&token), None, &[]).await;
    assert_eq!(platform.body["disputes"], json!([]), "not due yet: {}", platform.body);

    // Past the due time with no payment: flagged at read time, for the buyer and the platform.
    app.advance(Duration::days(3) + Duration::seconds(1));
    let seen = buyer_view(&app, "p-1", sequence).await;
    assert_eq!(seen["refund_payment_overdue"], true);
    assert_eq!(
        view(&app, "p-1", Role::Arbitrator, ARBITRATOR, sequence).await["refund_payment_overdue"],
        true
    );
    let token = app.token(Role::Buyer, BUYER);
    let list = app.send(Method::GET, &format!("/v1/buyers/{BUYER}/disputes"), Some(&token), None, &[]).await;
    list.assert_ok();
    assert_eq!(list.body["disputes"][0]["refund_payment_overdue"], true, "{}", list.body);
    let token = app.token(Role::Arbitrator, ARBITRATOR);
    let platform = app.send(Method::GET, "/v1/platform/refunds-overdue", Some(&token), None, &[]).await;
    platform.assert_ok();
    assert_eq!(platform.body["disputes"][0]["dispute_id"], "p-1", "{}", platform.body);
    app.send(Method::GET, "/v1/platform/refunds-overdue", Some(&app.token(Role::Buyer, BUYER)), None, &[])
        .await
        .assert_problem(403, "forbidden");

    // Paid: no longer overdue; the arrival is flagged once the channel's time has passed.
    let sequence = app.refund_paid("p-1", 4_000).await.sequence();
    let seen = buyer_view(&app, "p-1", sequence).await;
    assert_eq!(
        (&seen["refund_payment_overdue"], &seen["refund_arrival_overdue"]),
        (&json!(false), &json!(false))
    );
    let platform = app.send(Method::GET, "/v1/platform/refunds-overdue", Some(&token), None, &[]).await;
    assert_eq!(platform.body["disputes"], json!([]), "paid refunds leave the list");
    app.advance(Duration::days(4));
    let seen = buyer_view(&app, "p-1", sequence).await;
    assert_eq!(seen["refund_arrival_overdue"], true);
}

#[tokio::test]
async fn revisions_stop_at_the_policys_cap() {
    let app = TestApp::postgres().await;
    requested(&app, "cap-1", "refund_only").await;
    app.merchant_offer("cap-1", 1_000).await.assert_ok();
    for amount in [2_000, 3_000] {
        buyer(&app, "cap-1", "decline-offer", json!({})).await;
        app.merchant_offer("cap-1", amount).await.assert_ok();
    }
    let sequence = buyer(&app, "cap-1", "decline-offer", json!({})).await;
    app.merchant_offer("cap-1", 4_000).await.assert_problem(422, "offer_revisions_exhausted");
    let seen = merchant_view(&app, "cap-1", sequence).await;
    assert!(!actions(&seen).contains(&"merchant-offer"), "{seen}");
}

#[tokio::test]
async fn an_unanswered_offer_with_return_lapses_by_the_timer_and_the_buyer_escalates() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "lapse-1", "return_and_refund").await;
    offer(
        &app,
        "lapse-1",
        json!({ "kind": "partial_refund_with_return", "amount": cny(4_000), "note": "send it back",
                "return_address": ADDRESS }),
    )
    .await;
    app.advance(Duration::days(10) - Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, 0, "not due one second early");
    app.advance(Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, 1);
    let (state, sequence) = app.store.load("lapse-1").await.expect("the dispute loads");
    assert_eq!(state.status(), dispute_domain::Status::Rejected);
    let seen = buyer_view(&app, "lapse-1", sequence).await;
    assert_eq!(seen["offer"]["answer"], "lapsed");
    assert!(actions(&seen).contains(&"escalate"), "{seen}");
    app.command("lapse-1", "accept-offer", Role::Buyer, BUYER, json!({}))
        .await
        .assert_problem(409, "invalid_transition");
    app.escalate("lapse-1").await.assert_ok();
}

#[tokio::test]
async fn a_lapsed_offer_may_be_escalated_before_the_timer_records_it() {
    let app = TestApp::postgres().await;
    requested(&app, "lapse-2", "refund_only").await;
    app.merchant_offer("lapse-2", 3_000).await.assert_ok();
    app.escalate("lapse-2").await.assert_problem(409, "invalid_transition");
    app.advance(Duration::days(10) + Duration::hours(1));
    app.command("lapse-2", "accept-offer", Role::Buyer, BUYER, json!({}))
        .await
        .assert_problem(422, "offer_expired");
    let sequence = app.escalate("lapse-2").await.sequence();
    assert_eq!(buyer_view(&app, "lapse-2", sequence).await["status"], "escalated");
}

#[tokio::test]
async fn a_replacement_comes_back_to_the_named_address_and_closes_as_replaced() {
    let app = TestApp::postgres().await;
    requested(&app, "x-1", "return_and_refund").await;
    let sequence =
        offer(&app, "x-1", json!({ "kind": "replacement", "note": "a new one", "return_address": ADDRESS }))
            .await;
    let seen = buyer_view(&app, "x-1", sequence).await;
    assert_eq!(seen["offer"]["kind"], "replacement");
    assert!(seen["offer"].get("amount").is_none(), "{seen}");
    let sequence = buyer(&app, "x-1", "accept-offer", json!({})).await;
    let seen = buyer_view(&app, "x-1", sequence).await;
    assert_eq!(seen["status"], "awaiting_return");
    assert_eq!(seen["return_parcel"]["address"], ADDRESS);
    assert_eq!(seen["return_parcel"]["reference"], "RMA-x-1-1");
    assert_eq!(actions(&seen), ["ship-return", "messages"]);
    ship(&app, "x-1").await;
    let sequence = app.command("x-1", "confirm-return", Role::Merchant, MERCHANT, json!({})).await.sequence();
    let seen = buyer_view(&app, "x-1", sequence).await;
    assert_eq!((&seen["status"], &seen["close_reason"]), (&json!("closed"), &json!("replaced")));
    assert_eq!(seen["refunded_total"], cny(0));
}

#[tokio::test]
async fn the_accepted_return_shows_its_address_and_reference_and_a_failed_inspection_is_escalated() {
    let app = TestApp::postgres().await;
    requested(&app, "r-1", "return_and_refund").await;
    let answer = app
        .command("r-1", "merchant-accept", Role::Merchant, MERCHANT, json!({ "return_address": ADDRESS }))
        .await;
    answer.assert_ok();
    let seen = buyer_view(&app, "r-1", answer.sequence()).await;
    assert_eq!(seen["return_parcel"]["address"], ADDRESS);
    assert_eq!(seen["return_parcel"]["reference"], "RMA-r-1-1");
    assert!(seen.get("refund_due_by").is_none(), "due only once the goods are back: {seen}");

    let sequence = ship(&app, "r-1").await;
    let seen = merchant_view(&app, "r-1", sequence).await;
    assert_eq!(seen["return_parcel"]["carrier"], "SF Express");
    assert_eq!(seen["return_parcel"]["tracking_number"], "SF123");
    assert_eq!(actions(&seen), ["confirm-return", "messages"]);
    assert_eq!(seen["act_by"], seen["deadlines"]["receipt_confirm_due"], "the merchant confirms by then");

    let answer = app
        .command(
            "r-1",
            "confirm-return",
            Role::Merchant,
            MERCHANT,
            json!({ "inspection_failed": "empty_box", "note": "the box was empty" }),
        )
        .await;
    answer.assert_ok();
    let seen = buyer_view(&app, "r-1", answer.sequence()).await;
    assert_eq!(seen["status"], "rejected");
    assert_eq!(seen["return_parcel"]["inspection_failed"], "empty_box");
    assert_eq!(seen["return_parcel"]["inspection_note"], "the box was empty");
    assert!(actions(&seen).contains(&"escalate"), "{seen}");
    app.refund_paid("r-1", 6_000).await.assert_problem(409, "invalid_transition");

    app.escalate("r-1").await.assert_ok();
    app.assign("r-1", ARBITRATOR).await.assert_ok();
    let ruling = json!({ "outcome": "refund_full", "return_required": false, "rationale": "the courier's scale shows 2 kg" });
    let sequence = app.judge("r-1", ARBITRATOR, ruling).await.sequence();
    let seen = buyer_view(&app, "r-1", sequence).await;
    assert_eq!(seen["status"], "refund_pending");
    assert!(seen.get("refund_due_by").is_some(), "{seen}");
}

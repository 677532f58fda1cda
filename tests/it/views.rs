//! The read side: the dispute, its timeline, the buyer and merchant lists, the merchant
//! summary and the platform views, each read with `X-Min-Sequence` so it reflects the commands
//! before it; the projector's duplicates and gaps; the views fed from NATS JetStream.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use dispute_domain::{Action, Money, Role, Status};
use dispute_store::Store;
use dispute_views::{DisputeView, Incoming, Projector, Views};
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::lifecycle::{accept_offer, partial};

/// A timeline entry as compared here: sequence, event type, actor role, actor id, time.
type TimelineRow = (u64, String, String, String, DateTime<Utc>);

const AUDITOR: &str = "compliance-1";

// Reading.

/// `GET path` as `role:sub`, with `X-Min-Sequence` when given.
async fn get(app: &TestApp, path: &str, role: Role, sub: &str, min_sequence: Option<u64>) -> Answer {
    let token = app.token(role, sub);
    let min = min_sequence.map(|s| s.to_string());
    let headers: Vec<(&str, &str)> = min.iter().map(|m| ("X-Min-Sequence", m.as_str())).collect();
    app.send(Method::GET, path, Some(&token), None, &headers).await
}

/// `GET path` as `role:sub`, expecting 200; the body.
async fn read(app: &TestApp, path: &str, role: Role, sub: &str) -> Value {
    let answer = get(app, path, role, sub, None).await;
    answer.assert_ok();
    answer.body
}

/// The dispute as `role:sub` once its view reflects `sequence`.
async fn view(app: &TestApp, id: &str, role: Role, sub: &str, sequence: u64) -> Value {
    app.view_at(id, role, sub, sequence).await
}

/// Waits until the views reflect `sequence` of `id`. The projection follows the commit order,
/// so every event committed before it is reflected too.
async fn caught_up(app: &TestApp, id: &str, sequence: u64) {
    view(app, id, Role::Auditor, AUDITOR, sequence).await;
}

async fn timeline(app: &TestApp, id: &str, role: Role, sub: &str, sequence: u64) -> Value {
    let answer = get(app, &format!("/v1/disputes/{id}/timeline"), role, sub, Some(sequence)).await;
    assert_eq!(answer.status, 200, "timeline of {id} at {sequence} as {sub}: {}", answer.body);
    answer.body
}

/// The dispute ids of a list, in order.
fn ids(disputes: &Value) -> Vec<String> {
    disputes
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {disputes}"))
        .iter()
        .map(|d| d["dispute_id"].as_str().expect("a dispute_id").to_string())
        .collect()
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an instant: {value}"))
}

/// The test's clock start plus `hours`.
fn t(hours: i64) -> DateTime<Utc> {
    epoch() + Duration::hours(hours)
}

/// Amounts per currency, leaving out zeros.
fn per_currency(list: &Value) -> BTreeMap<String, i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|m| {
            (
                m["currency"].as_str().expect("currency").to_string(),
                m["amount_minor"].as_i64().expect("amount"),
            )
        })
        .filter(|(_, amount)| *amount != 0)
        .collect()
}

fn money(amount_minor: i64, currency: &str) -> Value {
    json!({ "amount_minor": amount_minor, "currency": currency })
}

#[track_caller]
fn assert_close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or_else(|| panic!("not a number: {actual}"));
    assert!((actual - expected).abs() < 1e-9, "{actual} is not {expected}");
}

// The dispute as its readers see it.

/// The fields of a view the lifecycle checks compare.
fn state(view: &Value) -> Value {
    const KEYS: [&str; 12] = [
        "sequence",
        "status",
        "round",
        "close_reason",
        "requested_amount",
        "offer_amount",
        "approved_amount",
        "refunded_total",
        "requested_total",
        "deadlines",
        "assignee",
        "outcome",
    ];
    let mut state: serde_json::Map<String, Value> =
        KEYS.iter().map(|k| (k.to_string(), view[*k].clone())).collect();
    // Deadlines compare as instants; `written_in_microseconds` checks how they are written.
    if let Some(deadlines) = state.get_mut("deadlines").and_then(Value::as_object_mut) {
        for due in deadlines.values_mut() {
            *due = json!(at(due));
        }
    }
    Value::Object(state)
}

/// Every instant on the wire is RFC 3339 in UTC with six fractional digits.
fn written_in_microseconds(view: &Value) {
    let mut instants =
        vec![&view["act_by"], &view["requested_at"], &view["escalated_at"], &view["resolved_at"]];
    instants.extend(view["deadlines"].as_object().expect("deadlines").values());
    for instant in instants.into_iter().filter(|v| !v.is_null()) {
        let text = instant.as_str().unwrap_or_else(|| panic!("not a string: {instant}"));
        let fraction = text.strip_suffix('Z').and_then(|t| t.rsplit_once('.')).map(|(_, f)| f);
        assert!(
            fraction.is_some_and(|f| f.len() == 6 && f.bytes().all(|b| b.is_ascii_digit())),
            "{text} in {view}"
        );
    }
}

/// A registered order with no request yet.
fn registered() -> Value {
    json!({
        "sequence": 1, "status": "open", "round": 0, "close_reason": null, "requested_amount": null,
        "offer_amount": null, "approved_amount": null, "refunded_total": cny(0), "requested_total": cny(0),
        "deadlines": {}, "assignee": null, "outcome": null,
    })
}

fn merge(target: &mut Value, changes: Value) {
    for (key, value) in changes.as_object().expect("an object") {
        target[key.as_str()] = value.clone();
    }
}

/// The actions of the buyer, the merchant and an arbitrator; auditors never act.
fn actions(buyer: &[&str], merchant: &[&str], arbitrator: &[&str]) -> Value {
    json!({ "buyer": buyer, "merchant": merchant, "arbitrator": arbitrator, "auditor": [] })
}

/// Checks the view of `id` at `want["sequence"]` as each reader, and each reader's actions.
/// Returns the buyer's view.
async fn assert_view(app: &TestApp, id: &str, want: &Value, expected_actions: Value) -> Value {
    let sequence = want["sequence"].as_u64().expect("a sequence");
    let mut seen = serde_json::Map::new();
    let mut buyer_view = Value::Null;
    for (role, sub, name) in [
        (Role::Buyer, BUYER, "buyer"),
        (Role::Merchant, MERCHANT, "merchant"),
        (Role::Arbitrator, "arb-9", "arbitrator"),
        (Role::Auditor, AUDITOR, "auditor"),
    ] {
        let body = view(app, id, role, sub, sequence).await;
        written_in_microseconds(&body);
        assert_eq!(state(&body), *want, "{id} at {sequence} as the {name}: {body}");
        assert_eq!(body["dispute_id"], id);
        seen.insert(name.to_string(), body["actions"].clone());
        if role == Role::Buyer {
            buyer_view = body;
        }
    }
    assert_eq!(Value::Object(seen), expected_actions, "the actions on {id} at {sequence}");
    buyer_view
}

/// Checks a command's answer, then the view after it: `changes` over the previous state.
async fn after(
    app: &TestApp,
    id: &str,
    answer: Answer,
    want: &mut Value,
    changes: Value,
    expected_actions: Value,
) -> Value {
    answer.assert_ok();
    merge(want, changes);
    assert_eq!(Some(answer.sequence()), want["sequence"].as_u64(), "the command's answer: {}", answer.body);
    assert_eq!(answer.body["status"], want["status"], "the command's answer: {}", answer.body);
    assert_view(app, id, want, expected_actions).await
}

// Commands the harness has no step for.

async fn withdraw(app: &TestApp, id: &str) -> Answer {
    app.command(id, "withdraw", Role::Buyer, BUYER, json!({ "note": "sorted it out" })).await
}

async fn appeal(app: &TestApp, id: &str, role: Role, sub: &str) -> Answer {
    app.command(id, "appeal", role, sub, json!({ "note": "the ruling ignores the chat log" })).await
}

async fn ship_return(app: &TestApp, id: &str) -> Answer {
    app.command(
        id,
        "ship-return",
        Role::Buyer,
        BUYER,
        json!({ "carrier": "SF Express", "tracking_number": "SF1" }),
    )
    .await
}

async fn confirm_return(app: &TestApp, id: &str) -> Answer {
    app.command(id, "confirm-return", Role::Merchant, MERCHANT, json!({ "note": "received" })).await
}

fn no_refund() -> Value {
    json!({ "outcome": "no_refund", "return_required": false, "rationale": "the item was used" })
}

fn full() -> Value {
    json!({ "outcome": "refund_full", "return_required": false, "rationale": "the photos show the defect" })
}

/// An order like [`order`] between other parties.
fn order_between(id: &str, buyer: &str, merchant: &str) -> Value {
    let mut facts = order(id);
    facts["buyer_id"] = json!(buyer);
    facts["merchant_id"] = json!(merchant);
    facts
}

/// A refund-only request by `buyer` for `amount`.
async fn request_as(app: &TestApp, id: &str, buyer: &str, amount: Value) -> Answer {
    app.command(
        id,
        "request",
        Role::Buyer,
        buyer,
        json!({ "kind": "refund_only", "reason": "quality_issue", "amount": amount, "description": "torn" }),
    )
    .await
}

/// Request, rejection and escalation of a registered order; the last sequence.
async fn escalated(app: &TestApp, id: &str, amount: i64) -> u64 {
    app.request_refund(id, "refund_only", "quality_issue", amount).await.assert_ok();
    app.merchant_reject(id).await.assert_ok();
    app.escalate(id).await.assert_ok().sequence()
}

// 1. The dispute after each path.

#[tokio::test]
async fn the_dispute_view_follows_reject_escalate_judge_partial_and_refund_paid() {
    let app = TestApp::postgres().await;
    let id = "v-1";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    let open = assert_view(&app, id, &want, actions(&["request"], &[], &[])).await;
    for (field, value) in [
        ("buyer_id", json!(BUYER)),
        ("merchant_id", json!(MERCHANT)),
        ("category", json!("books")),
        ("payment_channel", json!("alipay")),
        ("paid_amount", cny(10_000)),
    ] {
        assert_eq!(open[field], value, "{field} in {open}");
    }

    let requested = after(
        &app,
        id,
        app.request_refund(id, "refund_only", "quality_issue", 6_000).await,
        &mut want,
        json!({
            "sequence": 2, "status": "awaiting_merchant", "round": 1, "requested_amount": cny(6_000),
            "requested_total": cny(6_000), "deadlines": { "merchant_response_due": t(48) },
        }),
        actions(
            &["evidence", "withdraw", "messages"],
            &["merchant-accept", "merchant-reject", "merchant-offer", "evidence", "messages"],
            &[],
        ),
    )
    .await;
    assert_eq!((&requested["kind"], &requested["reason"]), (&json!("refund_only"), &json!("quality_issue")));
    assert_eq!(at(&requested["requested_at"]), t(0));

    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        app.merchant_reject(id).await,
        &mut want,
        json!({ "sequence": 3, "status": "rejected", "deadlines": { "escalation_due": t(1) + Duration::days(7) } }),
        actions(&["evidence", "escalate", "withdraw", "messages"], &["evidence", "messages"], &[]),
    )
    .await;

    app.advance(Duration::hours(1));
    let escalated = after(
        &app,
        id,
        app.escalate(id).await,
        &mut want,
        json!({
            "sequence": 4, "status": "escalated",
            "deadlines": { "evidence_due": t(2 + 72), "assignment_due": t(2 + 24) },
        }),
        actions(&["evidence", "withdraw", "messages"], &["evidence", "messages"], &["assign"]),
    )
    .await;
    assert_eq!(at(&escalated["escalated_at"]), t(2));

    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        app.assign(id, "arb-1").await,
        &mut want,
        json!({ "sequence": 5, "status": "under_review", "assignee": "arb-1", "deadlines": { "evidence_due": t(74) } }),
        actions(
            &["evidence", "withdraw", "messages"],
            &["evidence", "messages"],
            &["judge", "messages", "evidence-requests"],
        ),
    )
    .await;

    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        app.judge(id, "arb-1", partial(3_000)).await,
        &mut want,
        json!({
            "sequence": 6, "status": "refund_pending", "approved_amount": cny(3_000), "outcome": "refund_partial",
            "deadlines": { "appeal_due": t(4) + Duration::days(3) },
        }),
        actions(&["appeal", "messages"], &["appeal", "messages"], &["messages"]),
    )
    .await;

    app.advance(Duration::hours(1));
    let paid = after(
        &app,
        id,
        app.refund_paid(id, 3_000).await,
        &mut want,
        json!({ "sequence": 7, "status": "refunded", "approved_amount": null, "refunded_total": cny(3_000), "deadlines": {} }),
        // A round that reached a ruling is the order's last.
        actions(&[], &[], &[]),
    )
    .await;
    assert_eq!(at(&paid["resolved_at"]), t(5));
    // Paid by Alipay on a Monday: one business day.
    assert_eq!(at(&paid["refund_expected_by"]), t(5) + Duration::days(1));
}

#[tokio::test]
async fn the_dispute_view_follows_an_accepted_request() {
    let app = TestApp::postgres().await;
    let id = "v-accept";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    after(
        &app,
        id,
        app.request_refund(id, "refund_only", "wrong_item", 10_000).await,
        &mut want,
        json!({
            "sequence": 2, "status": "awaiting_merchant", "round": 1, "requested_amount": cny(10_000),
            "requested_total": cny(10_000), "deadlines": { "merchant_response_due": t(48) },
        }),
        actions(
            &["evidence", "withdraw", "messages"],
            &["merchant-accept", "merchant-reject", "merchant-offer", "evidence", "messages"],
            &[],
        ),
    )
    .await;
    app.advance(Duration::hours(2));
    after(
        &app,
        id,
        app.merchant_accept(id).await,
        &mut want,
        json!({ "sequence": 3, "status": "refund_pending", "approved_amount": cny(10_000), "deadlines": {} }),
        actions(&["messages"], &["messages"], &[]),
    )
    .await;
    let paid = after(
        &app,
        id,
        app.refund_paid(id, 10_000).await,
        &mut want,
        json!({ "sequence": 4, "status": "refunded", "approved_amount": null, "refunded_total": cny(10_000) }),
        // Paid in full: nothing is left to request.
        actions(&[], &[], &[]),
    )
    .await;
    assert_eq!(at(&paid["resolved_at"]), t(2));
}

#[tokio::test]
async fn the_dispute_view_follows_an_accepted_offer() {
    let app = TestApp::postgres().await;
    let id = "v-offer";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "not_as_described", 6_000).await.assert_ok();
    merge(
        &mut want,
        json!({
            "status": "awaiting_merchant", "round": 1, "requested_amount": cny(6_000), "requested_total": cny(6_000),
        }),
    );
    after(
        &app,
        id,
        app.merchant_offer(id, 2_500).await,
        &mut want,
        json!({
            "sequence": 3, "status": "offer_pending", "offer_amount": cny(2_500),
            "deadlines": { "offer_response_due": app.now() + Duration::days(10) },
        }),
        actions(&["accept-offer", "decline-offer", "withdraw", "messages"], &["messages"], &[]),
    )
    .await;
    after(
        &app,
        id,
        accept_offer(&app, id).await,
        &mut want,
        json!({ "sequence": 4, "status": "refund_pending", "approved_amount": cny(2_500), "deadlines": {} }),
        actions(&["messages"], &["messages"], &[]),
    )
    .await;
    after(
        &app,
        id,
        app.refund_paid(id, 2_500).await,
        &mut want,
        json!({ "sequence": 5, "status": "refunded", "approved_amount": null, "refunded_total": cny(2_500) }),
        actions(&["request"], &[], &[]),
    )
    .await;
}

#[tokio::test]
async fn the_dispute_view_follows_a_return_shipped_and_confirmed() {
    let app = TestApp::postgres().await;
    let id = "v-return";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "return_and_refund", "size_mismatch", 10_000).await.assert_ok();
    merge(
        &mut want,
        json!({
            "status": "awaiting_merchant", "round": 1, "requested_amount": cny(10_000),
            "requested_total": cny(10_000),
        }),
    );
    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        app.merchant_accept(id).await,
        &mut want,
        json!({
            "sequence": 3, "status": "awaiting_return", "approved_amount": cny(10_000),
            "deadlines": { "return_ship_due": t(1) + Duration::days(7) },
        }),
        actions(&["ship-return", "messages"], &["messages"], &[]),
    )
    .await;
    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        ship_return(&app, id).await,
        &mut want,
        json!({
            "sequence": 4, "status": "return_shipped",
            "deadlines": { "receipt_confirm_due": t(2) + Duration::days(10) },
        }),
        actions(&["messages"], &["confirm-return", "messages"], &[]),
    )
    .await;
    after(
        &app,
        id,
        confirm_return(&app, id).await,
        &mut want,
        json!({ "sequence": 5, "status": "refund_pending", "deadlines": {} }),
        actions(&["messages"], &["messages"], &[]),
    )
    .await;
    after(
        &app,
        id,
        app.refund_paid(id, 10_000).await,
        &mut want,
        json!({ "sequence": 6, "status": "refunded", "approved_amount": null, "refunded_total": cny(10_000) }),
        // Paid in full: nothing is left to request.
        actions(&[], &[], &[]),
    )
    .await;
}

#[tokio::test]
async fn the_dispute_view_follows_a_withdrawal_and_a_second_round() {
    let app = TestApp::postgres().await;
    let id = "v-withdraw";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 4_000).await.assert_ok();
    merge(
        &mut want,
        json!({ "status": "awaiting_merchant", "round": 1, "requested_amount": cny(4_000), "requested_total": cny(4_000) }),
    );
    app.advance(Duration::hours(1));
    let closed = after(
        &app,
        id,
        withdraw(&app, id).await,
        &mut want,
        json!({ "sequence": 3, "status": "closed", "close_reason": "withdrawn", "deadlines": {} }),
        actions(&["request"], &[], &[]),
    )
    .await;
    assert_eq!(at(&closed["resolved_at"]), t(1));

    app.advance(Duration::hours(1));
    let second = after(
        &app,
        id,
        app.request_refund(id, "refund_only", "quality_issue", 5_000).await,
        &mut want,
        json!({
            "sequence": 4, "status": "awaiting_merchant", "round": 2, "close_reason": null,
            "requested_amount": cny(5_000), "requested_total": cny(9_000),
            "deadlines": { "merchant_response_due": t(2 + 48) },
        }),
        actions(
            &["evidence", "withdraw", "messages"],
            &["merchant-accept", "merchant-reject", "merchant-offer", "evidence", "messages"],
            &[],
        ),
    )
    .await;
    assert_eq!(at(&second["requested_at"]), t(2));
    assert!(second.get("resolved_at").is_none_or(Value::is_null), "a new round is not resolved: {second}");
}

#[tokio::test]
async fn the_dispute_view_follows_a_second_round_after_a_partial_refund() {
    let app = TestApp::postgres().await;
    let id = "v-round2";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_offer(id, 3_000).await.assert_ok();
    accept_offer(&app, id).await.assert_ok();
    after(
        &app,
        id,
        app.refund_paid(id, 3_000).await,
        &mut want,
        json!({
            "sequence": 5, "status": "refunded", "round": 1, "requested_amount": cny(6_000),
            "offer_amount": cny(3_000), "refunded_total": cny(3_000), "requested_total": cny(6_000),
        }),
        actions(&["request"], &[], &[]),
    )
    .await;
    after(
        &app,
        id,
        app.request_refund(id, "refund_only", "quality_issue", 7_000).await,
        &mut want,
        json!({
            "sequence": 6, "status": "awaiting_merchant", "round": 2, "requested_amount": cny(7_000),
            "offer_amount": null, "requested_total": cny(13_000), "deadlines": { "merchant_response_due": t(48) },
        }),
        actions(
            &["evidence", "withdraw", "messages"],
            &["merchant-accept", "merchant-reject", "merchant-offer", "evidence", "messages"],
            &[],
        ),
    )
    .await;
    app.merchant_accept(id).await.assert_ok();
    after(
        &app,
        id,
        app.refund_paid(id, 7_000).await,
        &mut want,
        json!({ "sequence": 8, "status": "refunded", "refunded_total": cny(10_000), "deadlines": {} }),
        // Paid in full: nothing is left to request.
        actions(&[], &[], &[]),
    )
    .await;
}

#[tokio::test]
async fn the_dispute_view_follows_an_appeal_and_the_final_ruling() {
    let app = TestApp::postgres().await;
    let id = "v-appeal";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    escalated(&app, id, 6_000).await;
    app.assign(id, "arb-1").await.assert_ok();
    merge(
        &mut want,
        json!({
            "status": "under_review", "round": 1, "requested_amount": cny(6_000), "requested_total": cny(6_000),
            "assignee": "arb-1",
        }),
    );
    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        app.judge(id, "arb-1", partial(2_000)).await,
        &mut want,
        json!({
            "sequence": 6, "status": "refund_pending", "approved_amount": cny(2_000), "outcome": "refund_partial",
            "deadlines": { "appeal_due": t(1) + Duration::days(3) },
        }),
        actions(&["appeal", "messages"], &["appeal", "messages"], &["messages"]),
    )
    .await;
    app.advance(Duration::hours(1));
    let appealed = after(
        &app,
        id,
        appeal(&app, id, Role::Merchant, MERCHANT).await,
        &mut want,
        json!({
            "sequence": 7, "status": "appealed", "approved_amount": null, "outcome": null, "assignee": null,
            "deadlines": { "evidence_due": t(2 + 72), "assignment_due": t(2 + 24) },
        }),
        actions(&["evidence", "withdraw", "messages"], &["evidence", "messages"], &["assign"]),
    )
    .await;
    assert_eq!(at(&appealed["escalated_at"]), t(2));
    after(
        &app,
        id,
        app.assign(id, "arb-2").await,
        &mut want,
        json!({
            "sequence": 8, "status": "under_review", "assignee": "arb-2",
            "deadlines": { "evidence_due": t(2 + 72) },
        }),
        actions(
            &["evidence", "withdraw", "messages"],
            &["evidence", "messages"],
            &["judge", "messages", "evidence-requests"],
        ),
    )
    .await;
    // The ruling on appeal is final: no appeal deadline, no new round, nothing left to do.
    let closed = after(
        &app,
        id,
        app.judge(id, "arb-2", no_refund()).await,
        &mut want,
        json!({
            "sequence": 9, "status": "closed", "close_reason": "ruled_no_refund", "outcome": "no_refund",
            "deadlines": {},
        }),
        actions(&[], &[], &[]),
    )
    .await;
    assert_eq!(at(&closed["resolved_at"]), t(2));
}

#[tokio::test]
async fn a_first_ruling_of_no_refund_shows_the_appeal_deadline_and_action() {
    let app = TestApp::postgres().await;
    let id = "v-no-refund";
    let mut want = registered();
    app.register(&order(id)).await.assert_ok();
    escalated(&app, id, 6_000).await;
    app.assign(id, "arb-1").await.assert_ok();
    merge(
        &mut want,
        json!({
            "round": 1, "requested_amount": cny(6_000), "requested_total": cny(6_000), "assignee": "arb-1",
        }),
    );
    app.advance(Duration::hours(1));
    after(
        &app,
        id,
        app.judge(id, "arb-1", no_refund()).await,
        &mut want,
        json!({
            "sequence": 6, "status": "closed", "close_reason": "ruled_no_refund", "outcome": "no_refund",
            "deadlines": { "appeal_due": t(1) + Duration::days(3) },
        }),
        actions(&["appeal"], &["appeal"], &[]),
    )
    .await;
    // The appeal the view should offer is accepted.
    appeal(&app, id, Role::Buyer, BUYER).await.assert_ok();
}

/// By when the buyer, the merchant and an arbitrator must act on `id` at `sequence`.
async fn act_by(app: &TestApp, id: &str, sequence: u64) -> [Option<DateTime<Utc>>; 3] {
    let mut due = [None; 3];
    for (i, (role, sub)) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT), (Role::Arbitrator, "arb-9")]
        .into_iter()
        .enumerate()
    {
        let body = view(app, id, role, sub, sequence).await;
        due[i] = (!body["act_by"].is_null()).then(|| at(&body["act_by"]));
    }
    due
}

#[tokio::test]
async fn each_party_sees_by_when_it_must_act() {
    let app = TestApp::postgres().await;
    let id = "v-act-by";
    app.register(&order(id)).await.assert_ok();
    let s = app.request_refund(id, "return_and_refund", "quality_issue", 6_000).await.assert_ok().sequence();
    assert_eq!(act_by(&app, id, s).await, [None, Some(t(48)), None], "the merchant must answer");
    app.advance(Duration::hours(2));
    let s = app.merchant_reject(id).await.assert_ok().sequence();
    assert_eq!(act_by(&app, id, s).await, [Some(t(2 + 7 * 24)), None, None], "the buyer may escalate");
    let rejected = view(&app, id, Role::Buyer, BUYER, s).await;
    let rejection = json!({ "reason_code": "item_used", "note": "the tags were removed" });
    assert_eq!(rejected["rejection"], rejection, "{rejected}");
    app.advance(Duration::hours(1));
    let s = app.escalate(id).await.assert_ok().sequence();
    assert_eq!(
        act_by(&app, id, s).await,
        [Some(t(3 + 72)), Some(t(3 + 72)), Some(t(3 + 24))],
        "both sides add evidence; an arbitrator should take it"
    );
    app.advance(Duration::hours(30));
    assert_eq!(
        act_by(&app, id, s).await,
        [Some(t(3 + 72)), Some(t(3 + 72)), None],
        "a passed deadline is no longer one to act by"
    );
    app.assign(id, "arb-1").await.assert_ok();
    let ruling = json!({ "outcome": "refund_full", "return_required": true, "rationale": "defective" });
    let s = app.judge(id, "arb-1", ruling).await.assert_ok().sequence();
    // Judged at hour 33: the buyer's next step is shipping the goods back within 7 days (an
    // appeal, within 3 days, is optional); the merchant may appeal.
    assert_eq!(act_by(&app, id, s).await, [Some(t(33 + 7 * 24)), Some(t(33 + 72)), None]);
    for (role, sub) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT), (Role::Arbitrator, "arb-9")] {
        let judged = view(&app, id, role, sub, s).await;
        let ruling = &judged["ruling"];
        assert_eq!(
            (&ruling["arbitrator_id"], &ruling["outcome"], &ruling["amount"], &ruling["return_required"]),
            (&json!("arb-1"), &json!("refund_full"), &cny(6_000), &json!(true)),
            "{judged}"
        );
        assert_eq!((&ruling["rationale"], &ruling["final_ruling"]), (&json!("defective"), &json!(false)));
    }
    app.advance(Duration::days(4));
    assert_eq!(act_by(&app, id, s).await, [Some(t(33 + 7 * 24)), None, None], "only the return is left");
    let s = ship_return(&app, id).await.assert_ok().sequence();
    let shipped = 33 + 4 * 24;
    assert_eq!(act_by(&app, id, s).await, [None, Some(t(shipped + 10 * 24)), None], "the merchant confirms");
}

/// The parts of a dispute that say why and what next, present or not.
const PARTS: [&str; 4] = ["rejection", "offer", "ruling", "return_parcel"];

/// One row of the table: after `step`, the view shows these of [`PARTS`] and this many
/// messages and evidence requests, the same to every reader (only `actions` and `act_by` are
/// the reader's own).
struct Row {
    step: &'static str,
    sequence: u64,
    parts: &'static [&'static str],
    messages: usize,
    requests: usize,
}

/// Checks each row right after its step (a view read shows the latest state).
async fn check_rows(app: &TestApp, id: &str, rows: &[Row]) {
    for row in rows {
        let mut seen: Vec<Value> = Vec::new();
        for (role, sub) in [
            (Role::Buyer, BUYER),
            (Role::Merchant, MERCHANT),
            (Role::Arbitrator, "arb-9"),
            (Role::Auditor, AUDITOR),
        ] {
            let mut body = view(app, id, role, sub, row.sequence).await;
            let shown: Vec<&str> = PARTS.iter().copied().filter(|part| !body[*part].is_null()).collect();
            assert_eq!(shown, row.parts, "{id} after {} as {}: {body}", row.step, role.as_str());
            let count = |key: &str| body[key].as_array().map_or(0, Vec::len);
            assert_eq!(
                (count("messages"), count("evidence_requests")),
                (row.messages, row.requests),
                "{}: {body}",
                row.step
            );
            let object = body.as_object_mut().expect("an object");
            object.remove("actions");
            object.remove("act_by");
            seen.push(body);
        }
        assert!(
            seen.windows(2).all(|pair| pair[0] == pair[1]),
            "{} reads alike for every reader: {seen:?}",
            row.step
        );
    }
}

#[tokio::test]
async fn every_reader_sees_why_and_what_next_at_each_step() {
    let app = TestApp::postgres().await;
    let id = "v-parts";
    app.register(&order(id)).await.assert_ok();
    let row = |step, sequence, parts, messages, requests| [Row { step, sequence, parts, messages, requests }];
    let s = app.request_refund(id, "return_and_refund", "quality_issue", 6_000).await.assert_ok().sequence();
    check_rows(&app, id, &row("request", s, &[], 0, 0)).await;
    let s = app.merchant_reject(id).await.assert_ok().sequence();
    check_rows(&app, id, &row("rejection", s, &["rejection"], 0, 0)).await;
    let s = app.escalate(id).await.assert_ok().sequence();
    check_rows(&app, id, &row("escalation", s, &["rejection"], 0, 0)).await;
    app.assign(id, "arb-1").await.assert_ok();
    app.command(id, "messages", Role::Buyer, BUYER, json!({ "text": "The seam split." })).await.assert_ok();
    let ask = json!({ "party": "merchant", "what": "The waybill." });
    let s = app.command(id, "evidence-requests", Role::Arbitrator, "arb-1", ask).await.assert_ok().sequence();
    check_rows(&app, id, &row("evidence request", s, &["rejection"], 1, 1)).await;
    let ruling = json!({ "outcome": "refund_full", "return_required": true, "rationale": "defective" });
    let s = app.judge(id, "arb-1", ruling).await.assert_ok().sequence();
    check_rows(&app, id, &row("ruling", s, &["rejection", "ruling", "return_parcel"], 1, 1)).await;
    let s = ship_return(&app, id).await.assert_ok().sequence();
    check_rows(&app, id, &row("return shipped", s, &["rejection", "ruling", "return_parcel"], 1, 1)).await;

    let id = "v-parts-offer";
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 6_000).await.assert_ok();
    let offered = app.merchant_offer(id, 3_000).await.assert_ok().sequence();
    check_rows(
        &app,
        id,
        &[Row { step: "offer", sequence: offered, parts: &["offer"], messages: 0, requests: 0 }],
    )
    .await;
}

// 2. The timeline.

#[tokio::test]
async fn the_timeline_lists_every_event_in_order_with_actor_time_and_data() {
    let app = TestApp::postgres().await;
    let id = "tl-1";
    app.register(&order(id)).await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund(id, "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.advance(Duration::hours(1));
    app.command(id, "evidence", Role::Merchant, MERCHANT, json!({ "evidence": [evidence("chat_log")] }))
        .await
        .assert_ok();
    app.advance(Duration::hours(1));
    app.merchant_reject(id).await.assert_ok();
    app.advance(Duration::hours(1));
    app.escalate(id).await.assert_ok();
    app.advance(Duration::hours(1));
    app.assign(id, "arb-7").await.assert_ok();
    app.advance(Duration::hours(1));
    let last = app.judge(id, "arb-7", partial(2_000)).await.assert_ok().sequence();
    assert_eq!(last, 7);

    let body = timeline(&app, id, Role::Buyer, BUYER, last).await;
    assert_eq!((&body["dispute_id"], &body["sequence"]), (&json!(id), &json!(7)));
    let events = body["events"].as_array().expect("events");
    let rows: Vec<TimelineRow> = events
        .iter()
        .map(|e| {
            (
                e["sequence"].as_u64().expect("sequence"),
                e["event_type"].as_str().expect("event_type").to_string(),
                e["actor_role"].as_str().expect("actor_role").to_string(),
                e["actor_id"].as_str().expect("actor_id").to_string(),
                at(&e["time"]),
            )
        })
        .collect();
    let expected: Vec<TimelineRow> = [
        (1, "OrderRegistered", "system", "order-service"),
        (2, "RefundRequested", "buyer", BUYER),
        (3, "EvidenceSubmitted", "merchant", MERCHANT),
        (4, "MerchantRejected", "merchant", MERCHANT),
        (5, "DisputeEscalated", "buyer", BUYER),
        (6, "ArbitratorAssigned", "arbitrator", "arb-7"),
        (7, "DisputeJudged", "arbitrator", "arb-7"),
    ]
    .into_iter()
    .map(|(seq, kind, role, actor)| {
        (seq, kind.to_string(), role.to_string(), actor.to_string(), t(seq as i64 - 1))
    })
    .collect();
    assert_eq!(rows, expected);

    // The data is the event's fields, without its type tag.
    let data: Vec<&Value> = events.iter().map(|e| &e["data"]).collect();
    assert_eq!(data[0]["facts"]["order_id"], id);
    assert_eq!(data[0]["facts"]["paid_amount"], cny(10_000));
    assert_eq!(
        (&data[1]["round"], &data[1]["kind"], &data[1]["reason"], &data[1]["amount"]),
        (&json!(1), &json!("refund_only"), &json!("quality_issue"), &cny(6_000))
    );
    assert_eq!(at(&data[1]["merchant_response_due"]), t(1 + 48));
    assert_eq!(
        (&data[2]["party"], &data[2]["evidence"][0]["kind"]),
        (&json!("merchant"), &json!("chat_log"))
    );
    assert_eq!(data[3]["reason_code"], "item_used");
    assert_eq!(at(&data[3]["escalation_due"]), t(3) + Duration::days(7));
    assert_eq!(at(&data[4]["assignment_due"]), t(4 + 24));
    assert_eq!((&data[5]["arbitrator_id"], &data[5]["assigned_by"]), (&json!("arb-7"), &json!("arb-7")));
    assert_eq!(
        (&data[6]["outcome"], &data[6]["amount"], &data[6]["rationale"]),
        (&json!("refund_partial"), &cny(2_000), &json!("both at fault"))
    );
    for entry in events {
        let tag = entry["event_type"].as_str().expect("event_type");
        assert!(entry["data"].get(tag).is_none(), "the data carries its type tag: {entry}");
    }

    // Every reader of the dispute sees the same timeline.
    for (role, sub) in [(Role::Merchant, MERCHANT), (Role::Arbitrator, "arb-1"), (Role::Auditor, AUDITOR)] {
        assert_eq!(timeline(&app, id, role, sub, last).await, body, "the timeline as {sub}");
    }
}

// 3. The buyer's list.

#[tokio::test]
async fn a_buyer_lists_their_own_disputes_newest_first() {
    let app = TestApp::postgres().await;
    for id in ["b-1", "b-2", "b-3", "b-4"] {
        app.register(&order(id)).await.assert_ok();
    }
    app.register(&order_between("x-1", "buyer-2", MERCHANT)).await.assert_ok();
    app.request_refund("b-1", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund("b-3", "refund_only", "wrong_item", 2_000).await.assert_ok();
    app.advance(Duration::hours(1));
    request_as(&app, "x-1", "buyer-2", cny(3_000)).await.assert_ok();
    app.advance(Duration::hours(1));
    let last = app.request_refund("b-2", "refund_only", "quality_issue", 4_000).await.assert_ok().sequence();
    caught_up(&app, "x-1", 2).await;
    caught_up(&app, "b-2", last).await;

    // b-4 has no request: it is an order, not a dispute.
    let path = format!("/v1/buyers/{BUYER}/disputes");
    let mine = read(&app, &path, Role::Buyer, BUYER).await;
    assert_eq!(mine["buyer_id"], BUYER);
    assert_eq!(ids(&mine["disputes"]), ["b-2", "b-3", "b-1"]);
    let first = &mine["disputes"][0];
    assert_eq!(
        (&first["status"], &first["requested_amount"], &first["sequence"]),
        (&json!("awaiting_merchant"), &cny(4_000), &json!(2))
    );
    assert_eq!(
        ids(&read(&app, "/v1/buyers/buyer-2/disputes", Role::Buyer, "buyer-2").await["disputes"]),
        ["x-1"]
    );

    get(&app, &path, Role::Buyer, "buyer-2", None).await.assert_problem(404, "not_found");
    get(&app, &path, Role::Merchant, MERCHANT, None).await.assert_problem(403, "forbidden");
    // An auditor reads the same disputes, with an auditor's (empty) actions.
    let audited = read(&app, &path, Role::Auditor, AUDITOR).await;
    let without_actions = |list: &Value| -> Vec<Value> {
        let mut disputes = list["disputes"].as_array().expect("disputes").clone();
        for dispute in &mut disputes {
            let dispute = dispute.as_object_mut().expect("an object");
            dispute.remove("actions");
            dispute.remove("act_by");
        }
        disputes
    };
    assert_eq!(without_actions(&audited), without_actions(&mine));
    assert!(audited["disputes"].as_array().expect("disputes").iter().all(|d| d["actions"] == json!([])));
    assert!(mine["disputes"][0]["actions"].as_array().expect("actions").contains(&json!("withdraw")));
}

// 4. The merchant's list.

/// Every page of `query` (a path and query string ending in `?` or `&`), `limit` at a time;
/// the ids per page.
async fn pages(app: &TestApp, query: &str, limit: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{query}limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = read(app, &url, Role::Merchant, MERCHANT).await;
        let page_ids = ids(&page["disputes"]);
        assert!(page_ids.len() <= limit as usize, "a page longer than {limit}: {page}");
        pages.push(page_ids);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages.len() < 100, "the pages never end");
    }
    pages
}

#[tokio::test]
async fn a_merchant_lists_disputes_soonest_deadline_first_filtered_and_paged() {
    let app = TestApp::postgres().await;
    for id in ["m-1", "m-2", "m-3", "m-4", "m-5", "m-6", "m-7"] {
        app.register(&order(id)).await.assert_ok();
    }
    app.register(&order_between("n-1", BUYER, "merchant-2")).await.assert_ok();
    app.request_refund("m-3", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.request_refund("m-7", "refund_only", "quality_issue", 1_000).await.assert_ok();
    withdraw(&app, "m-7").await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund("m-1", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund("m-5", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund("m-2", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund("m-6", "return_and_refund", "size_mismatch", 10_000).await.assert_ok();
    app.merchant_accept("m-6").await.assert_ok();
    ship_return(&app, "m-6").await.assert_ok();
    app.advance(Duration::hours(1));
    app.merchant_reject("m-5").await.assert_ok();
    let last = app.request_refund("n-1", "refund_only", "quality_issue", 1_000).await.assert_ok().sequence();
    for (id, sequence) in [("m-5", 3), ("m-6", 4), ("m-7", 3), ("n-1", last)] {
        caught_up(&app, id, sequence).await;
    }

    // Awaiting an answer (48 h from the request), then a return to confirm (10 days from
    // shipping), then nothing for the merchant to do; m-4 has no request.
    let path = format!("/v1/merchants/{MERCHANT}/disputes");
    let all = read(&app, &path, Role::Merchant, MERCHANT).await;
    assert_eq!(all["merchant_id"], MERCHANT);
    assert_eq!(ids(&all["disputes"]), ["m-3", "m-1", "m-2", "m-6", "m-5", "m-7"]);
    assert!(all.get("next_cursor").is_none_or(Value::is_null), "one page holds them all: {all}");
    assert_eq!(at(&all["disputes"][0]["deadlines"]["merchant_response_due"]), t(48));
    assert_eq!(at(&all["disputes"][3]["deadlines"]["receipt_confirm_due"]), t(4) + Duration::days(10));

    let awaiting = read(&app, &format!("{path}?status=awaiting_merchant"), Role::Merchant, MERCHANT).await;
    assert_eq!(ids(&awaiting["disputes"]), ["m-3", "m-1", "m-2"]);
    let rejected = read(&app, &format!("{path}?status=rejected"), Role::Merchant, MERCHANT).await;
    assert_eq!(ids(&rejected["disputes"]), ["m-5"]);

    // Two at a time: every dispute once, in the same order.
    let paged = pages(&app, &format!("{path}?"), 2).await;
    assert_eq!(paged, [vec!["m-3", "m-1"], vec!["m-2", "m-6"], vec!["m-5", "m-7"]]);
    let paged = pages(&app, &format!("{path}?status=awaiting_merchant&"), 2).await;
    assert_eq!(paged, [vec!["m-3", "m-1"], vec!["m-2"]]);

    get(&app, &path, Role::Merchant, "merchant-2", None).await.assert_problem(404, "not_found");
    get(&app, &path, Role::Buyer, BUYER, None).await.assert_problem(403, "forbidden");
    assert_eq!(read(&app, &path, Role::Auditor, AUDITOR).await, all);
    assert_eq!(
        ids(&read(&app, "/v1/merchants/merchant-2/disputes", Role::Merchant, "merchant-2").await["disputes"]),
        ["n-1"]
    );
}

/// Executes `action` as `role:sub` on the stream of `id`; the stream's last sequence.
fn rejection() -> Action {
    Action::MerchantReject(
        serde_json::from_value(json!({ "reason_code": "item_used", "note": "worn" })).expect("a rejection"),
    )
}

fn escalation() -> Action {
    Action::Escalate(serde_json::from_value(json!({ "note": "look at the photos" })).expect("an escalation"))
}

#[tokio::test]
async fn a_merchant_page_holds_at_most_200_disputes_and_a_larger_limit_is_refused() {
    let app = TestApp::postgres().await;
    let count = 205;
    for n in 0..count {
        let id = format!("cap-{n:03}");
        execute(&app.store, &id, Role::System, "order-service", registration(&id)).await;
        execute(&app.store, &id, Role::Buyer, BUYER, refund_request(1_000)).await;
    }
    caught_up(&app, &format!("cap-{:03}", count - 1), 2).await;

    let path = format!("/v1/merchants/{MERCHANT}/disputes");
    let merchant = app.token(Role::Merchant, MERCHANT);
    for wrong in [
        "limit=201",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "cursor=nonsense",
        "cursor=5:",
        "stage=x",
        // Not an order id: a NUL byte would reach PostgreSQL, which refuses it in text.
        "cursor=-63:%00m",
        "cursor=5:a%20b",
    ] {
        let answer = app.send(Method::GET, &format!("{path}?{wrong}"), Some(&merchant), None, &[]).await;
        answer.assert_problem(400, "malformed_request");
    }
    let first = read(&app, &format!("{path}?limit=200"), Role::Merchant, MERCHANT).await;
    assert_eq!(ids(&first["disputes"]).len(), 200);
    let cursor = first["next_cursor"].as_str().expect("more than one page");
    let rest = read(&app, &format!("{path}?limit=200&cursor={cursor}"), Role::Merchant, MERCHANT).await;
    assert!(rest.get("next_cursor").is_none_or(Value::is_null), "two pages hold them all: {rest}");
    let mut seen: Vec<String> = ids(&first["disputes"]).into_iter().chain(ids(&rest["disputes"])).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), count);
    // Without a limit, a page of 50.
    assert_eq!(ids(&read(&app, &path, Role::Merchant, MERCHANT).await["disputes"]).len(), 50);
}

// 5. The merchant's summary.

#[tokio::test]
async fn the_merchant_summary_counts_statuses_amounts_the_dispute_rate_and_rulings() {
    merchant_summary_counts(TestApp::postgres().await).await;
}

/// The summary is counted and summed in the database: alike in both dialects.
#[tokio::test]
async fn the_merchant_summary_counts_alike_on_the_embedded_store() {
    merchant_summary_counts(TestApp::sqlite().await).await;
}

async fn merchant_summary_counts(app: TestApp) {
    let path = format!("/v1/merchants/{MERCHANT}/summary");
    let empty = read(&app, &path, Role::Merchant, MERCHANT).await;
    assert_eq!(
        empty,
        json!({
            "merchant_id": MERCHANT, "orders": 0, "disputes": 0, "dispute_rate": 0.0, "by_status": {},
            "requested": [], "refunded": [], "arbitration_wins": 0, "arbitration_losses": 0,
        })
    );

    for id in ["s-1", "s-2", "s-3", "s-4", "s-5"] {
        app.register(&order(id)).await.assert_ok();
    }
    let mut dollars = order("s-6");
    dollars["paid_amount"] = money(5_000, "USD");
    app.register(&dollars).await.assert_ok();
    app.register(&order_between("x-1", BUYER, "merchant-2")).await.assert_ok();

    app.request_refund("s-1", "refund_only", "wrong_item", 10_000).await.assert_ok();
    app.merchant_accept("s-1").await.assert_ok();
    app.refund_paid("s-1", 10_000).await.assert_ok();
    escalated(&app, "s-2", 6_000).await;
    app.assign("s-2", "arb-1").await.assert_ok();
    app.judge("s-2", "arb-1", no_refund()).await.assert_ok();
    escalated(&app, "s-3", 4_000).await;
    app.assign("s-3", "arb-1").await.assert_ok();
    app.judge("s-3", "arb-1", full()).await.assert_ok();
    app.request_refund("s-5", "refund_only", "quality_issue", 2_000).await.assert_ok();
    request_as(&app, "s-6", BUYER, money(1_500, "USD")).await.assert_ok();
    let last = request_as(&app, "x-1", BUYER, cny(3_000)).await.assert_ok().sequence();
    caught_up(&app, "x-1", last).await;

    let summary = read(&app, &path, Role::Merchant, MERCHANT).await;
    assert_eq!(
        (&summary["merchant_id"], &summary["orders"], &summary["disputes"]),
        (&json!(MERCHANT), &json!(6), &json!(5))
    );
    assert_close(&summary["dispute_rate"], 5.0 / 6.0);
    assert_eq!(
        summary["by_status"],
        json!({ "refunded": 1, "closed": 1, "refund_pending": 1, "awaiting_merchant": 2 })
    );
    assert_eq!(
        per_currency(&summary["requested"]),
        BTreeMap::from([("CNY".to_string(), 22_000), ("USD".to_string(), 1_500)])
    );
    assert_eq!(per_currency(&summary["refunded"]), BTreeMap::from([("CNY".to_string(), 10_000)]));
    assert_eq!((&summary["arbitration_wins"], &summary["arbitration_losses"]), (&json!(1), &json!(1)));
    assert_eq!(read(&app, &path, Role::Auditor, AUDITOR).await, summary);

    // An appeal suspends the ruling it appeals; the ruling on appeal counts instead.
    let appealed = appeal(&app, "s-2", Role::Buyer, BUYER).await.assert_ok().sequence();
    caught_up(&app, "s-2", appealed).await;
    let summary = read(&app, &path, Role::Merchant, MERCHANT).await;
    assert_eq!((&summary["arbitration_wins"], &summary["arbitration_losses"]), (&json!(0), &json!(1)));
    assert_eq!(summary["by_status"]["appealed"], 1);
    app.assign("s-2", "arb-2").await.assert_ok();
    let ruled = app.judge("s-2", "arb-2", partial(1_000)).await.assert_ok().sequence();
    caught_up(&app, "s-2", ruled).await;
    let summary = read(&app, &path, Role::Merchant, MERCHANT).await;
    assert_eq!((&summary["arbitration_wins"], &summary["arbitration_losses"]), (&json!(0), &json!(2)));
    assert_eq!(summary["by_status"], json!({ "refunded": 1, "refund_pending": 2, "awaiting_merchant": 2 }));

    let other = read(&app, "/v1/merchants/merchant-2/summary", Role::Merchant, "merchant-2").await;
    assert_eq!((&other["orders"], &other["disputes"]), (&json!(1), &json!(1)));
    assert_close(&other["dispute_rate"], 1.0);
    assert_eq!(per_currency(&other["requested"]), BTreeMap::from([("CNY".to_string(), 3_000)]));
}

// 6. The platform queue.

/// The queue as an arbitrator reads it.
async fn queue(app: &TestApp) -> Vec<Value> {
    let body = read(app, "/v1/platform/queue", Role::Arbitrator, "arb-1").await;
    body["queue"].as_array().unwrap_or_else(|| panic!("no queue in {body}")).clone()
}

fn queue_ids(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["dispute_id"].as_str().expect("dispute_id")).collect()
}

fn breaches(entries: &[Value]) -> Vec<bool> {
    entries.iter().map(|e| e["sla_breached"].as_bool().expect("sla_breached")).collect()
}

#[tokio::test]
async fn the_platform_queue_lists_escalated_and_appealed_disputes_oldest_first_with_sla_flags() {
    let app = TestApp::postgres().await;
    for id in ["q-1", "q-2", "q-3", "q-4"] {
        app.register(&order(id)).await.assert_ok();
    }
    app.request_refund("q-4", "refund_only", "quality_issue", 1_000).await.assert_ok();
    escalated(&app, "q-1", 1_000).await;
    app.advance(Duration::hours(1));
    escalated(&app, "q-2", 1_000).await;
    app.advance(Duration::hours(1));
    escalated(&app, "q-3", 1_000).await;
    app.assign("q-3", "arb-1").await.assert_ok();
    app.judge("q-3", "arb-1", no_refund()).await.assert_ok();
    let last = appeal(&app, "q-3", Role::Merchant, MERCHANT).await.assert_ok().sequence();
    caught_up(&app, "q-3", last).await;

    let entries = queue(&app).await;
    assert_eq!(queue_ids(&entries), ["q-1", "q-2", "q-3"]);
    let statuses: Vec<&Value> = entries.iter().map(|e| &e["status"]).collect();
    assert_eq!(statuses, [&json!("escalated"), &json!("escalated"), &json!("appealed")]);
    let since: Vec<DateTime<Utc>> = entries.iter().map(|e| at(&e["escalated_at"])).collect();
    assert_eq!(since, [t(0), t(1), t(2)]);
    assert_eq!(at(&entries[0]["assignment_due"]), t(24));
    assert_eq!(at(&entries[1]["assignment_due"]), t(25));
    assert_eq!((&entries[0]["sequence"], &entries[2]["sequence"]), (&json!(4), &json!(7)));
    assert!(entries.iter().all(|e| e["assignee"].is_null()), "nobody is assigned yet: {entries:?}");
    assert_eq!(breaches(&entries), [false, false, false]);

    // The SLA is 24 hours from the escalation.
    app.advance(Duration::hours(22) + Duration::seconds(1));
    assert_eq!(breaches(&queue(&app).await)[..2], [true, false]);
    app.advance(Duration::hours(1));
    assert_eq!(breaches(&queue(&app).await)[..2], [true, true]);

    let assigned = app.assign("q-1", "arb-1").await.assert_ok().sequence();
    caught_up(&app, "q-1", assigned).await;
    let entries = queue(&app).await;
    for entry in entries.iter().filter(|e| e["dispute_id"] == "q-1") {
        assert_eq!((&entry["sla_breached"], &entry["assignee"]), (&json!(false), &json!("arb-1")), "{entry}");
    }
    let waiting: Vec<&Value> = entries.iter().filter(|e| e["dispute_id"] != "q-1").collect();
    assert_eq!(waiting.iter().map(|e| e["dispute_id"].as_str().unwrap()).collect::<Vec<_>>(), ["q-2", "q-3"]);
    assert_eq!(waiting[0]["sla_breached"], true);

    let auditor = read(&app, "/v1/platform/queue", Role::Auditor, AUDITOR).await;
    assert_eq!(auditor["queue"].as_array().expect("queue"), &entries);
    for (role, sub) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT), (Role::System, "order-service")] {
        get(&app, "/v1/platform/queue", role, sub, None).await.assert_problem(403, "forbidden");
    }
}

#[tokio::test]
async fn the_platform_queue_shows_who_is_assigned() {
    let app = TestApp::postgres().await;
    for id in ["qa-1", "qa-2"] {
        app.register(&order(id)).await.assert_ok();
        escalated(&app, id, 1_000).await;
    }
    app.advance(Duration::hours(25));
    let assigned = app.assign("qa-1", "arb-1").await.assert_ok().sequence();
    caught_up(&app, "qa-1", assigned).await;
    let entries = queue(&app).await;
    assert_eq!(queue_ids(&entries), ["qa-1", "qa-2"]);
    assert_eq!((&entries[0]["assignee"], &entries[0]["sla_breached"]), (&json!("arb-1"), &json!(false)));
    assert_eq!((&entries[1]["assignee"], &entries[1]["sla_breached"]), (&Value::Null, &json!(true)));
}

#[tokio::test]
async fn an_appealed_dispute_waiting_past_the_sla_is_flagged() {
    let app = TestApp::postgres().await;
    app.register(&order("qp-1")).await.assert_ok();
    escalated(&app, "qp-1", 1_000).await;
    app.assign("qp-1", "arb-1").await.assert_ok();
    app.judge("qp-1", "arb-1", no_refund()).await.assert_ok();
    let appealed = appeal(&app, "qp-1", Role::Buyer, BUYER).await.assert_ok().sequence();
    caught_up(&app, "qp-1", appealed).await;
    assert_eq!(breaches(&queue(&app).await), [false]);
    app.advance(Duration::hours(24) + Duration::seconds(1));
    let entries = queue(&app).await;
    assert_eq!(queue_ids(&entries), ["qp-1"]);
    assert_eq!(entries[0]["sla_breached"], true, "{entries:?}");
}

async fn queue_page(app: &TestApp, query: &str) -> Value {
    read(app, &format!("/v1/platform/queue?{query}"), Role::Arbitrator, "arb-1").await
}

#[tokio::test]
async fn the_platform_queue_carries_what_arbitrators_triage_by_filters_and_pages() {
    let app = TestApp::postgres().await;
    for (n, id) in ["qf-1", "qf-2", "qf-3", "qf-4", "qf-5"].into_iter().enumerate() {
        app.register(&order(id)).await.assert_ok();
        let reason = if n % 2 == 0 { "quality_issue" } else { "not_as_described" };
        app.request_refund(id, "refund_only", reason, 1_000 + n as i64).await.assert_ok();
        app.merchant_reject(id).await.assert_ok();
        app.escalate(id).await.assert_ok();
        app.advance(Duration::hours(1));
    }
    app.assign("qf-2", "arb-2").await.assert_ok();
    let last = app.assign("qf-5", "arb-2").await.assert_ok().sequence();
    caught_up(&app, "qf-5", last).await;
    // qf-1 (escalated at hour 0) is unassigned past its 24-hour SLA; qf-3 and qf-4 are not yet.
    app.advance(Duration::hours(20) + Duration::minutes(30));

    let first = &queue(&app).await[0];
    assert_eq!(
        (&first["dispute_id"], &first["buyer_id"], &first["merchant_id"]),
        (&json!("qf-1"), &json!(BUYER), &json!(MERCHANT))
    );
    assert_eq!((&first["reason"], &first["kind"]), (&json!("quality_issue"), &json!("refund_only")));
    assert_eq!(first["requested_amount"], cny(1_000));
    assert_eq!(first["paid_amount"], order("qf-1")["paid_amount"]);
    // The request's photo, and the merchant's rejection evidence (none).
    assert_eq!(first["evidence"], json!({ "buyer": 1, "merchant": 0 }));

    assert_eq!(
        queue_ids(queue_page(&app, "reason=not_as_described").await["queue"].as_array().unwrap()),
        ["qf-2", "qf-4"]
    );
    assert_eq!(
        queue_ids(queue_page(&app, "assignee=arb-2").await["queue"].as_array().unwrap()),
        ["qf-2", "qf-5"]
    );
    assert_eq!(queue_ids(queue_page(&app, "sla_breached=true").await["queue"].as_array().unwrap()), ["qf-1"]);
    assert_eq!(
        queue_ids(
            queue_page(&app, "sla_breached=false&reason=quality_issue").await["queue"].as_array().unwrap()
        ),
        ["qf-3", "qf-5"]
    );

    // Two at a time, in order, each dispute once.
    let mut seen = Vec::new();
    let mut query = "limit=2".to_string();
    loop {
        let body = queue_page(&app, &query).await;
        let entries = body["queue"].as_array().expect("queue");
        assert!(entries.len() <= 2, "{body}");
        seen.extend(queue_ids(entries).into_iter().map(str::to_string));
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["qf-1", "qf-2", "qf-3", "qf-4", "qf-5"]);

    let arbitrator = app.token(Role::Arbitrator, "arb-1");
    for wrong in
        ["reason=bored", "sla_breached=maybe", "limit=0", "limit=201", "cursor=x", "page=2", "cursor=1:%00"]
    {
        let answer =
            app.send(Method::GET, &format!("/v1/platform/queue?{wrong}"), Some(&arbitrator), None, &[]).await;
        answer.assert_problem(400, "malformed_request");
    }
}

/// The queue's query (its SLA flag and filter, its keyset) reads alike on the embedded store.
#[tokio::test]
async fn the_platform_queue_filters_and_flags_on_the_embedded_store() {
    let app = TestApp::sqlite().await;
    for id in ["qs-1", "qs-2"] {
        app.register(&order(id)).await.assert_ok();
        escalated(&app, id, 1_000).await;
    }
    let last = app.assign("qs-2", "arb-2").await.assert_ok().sequence();
    caught_up(&app, "qs-2", last).await;
    app.advance(Duration::hours(25));
    let entries = queue(&app).await;
    assert_eq!((queue_ids(&entries), breaches(&entries)), (vec!["qs-1", "qs-2"], vec![true, false]));
    assert_eq!(queue_ids(queue_page(&app, "sla_breached=true").await["queue"].as_array().unwrap()), ["qs-1"]);
    assert_eq!(
        queue_ids(queue_page(&app, "sla_breached=false").await["queue"].as_array().unwrap()),
        ["qs-2"]
    );
    let first = queue_page(&app, "limit=1").await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let rest = queue_page(&app, &format!("limit=1&cursor={cursor}")).await;
    assert_eq!(queue_ids(rest["queue"].as_array().unwrap()), ["qs-2"]);
}

#[tokio::test]
async fn a_buyer_sees_first_the_disputes_where_the_buyer_must_act_soonest() {
    let app = TestApp::postgres().await;
    for id in ["bu-1", "bu-2", "bu-3"] {
        app.register(&order(id)).await.assert_ok();
    }
    // bu-1: waiting for the merchant, nothing for the buyer to do.
    app.request_refund("bu-1", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.advance(Duration::hours(1));
    // bu-2: rejected an hour later than bu-3, so its escalation window ends later.
    app.request_refund("bu-3", "refund_only", "quality_issue", 1_000).await.assert_ok();
    app.merchant_reject("bu-3").await.assert_ok();
    app.advance(Duration::hours(1));
    app.request_refund("bu-2", "refund_only", "quality_issue", 1_000).await.assert_ok();
    let last = app.merchant_reject("bu-2").await.assert_ok().sequence();
    caught_up(&app, "bu-2", last).await;

    let list = read(&app, &format!("/v1/buyers/{BUYER}/disputes"), Role::Buyer, BUYER).await;
    let disputes = list["disputes"].as_array().expect("disputes");
    let ids: Vec<&str> = disputes.iter().map(|d| d["dispute_id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["bu-3", "bu-2", "bu-1"], "{list}");
    assert!(at(&disputes[0]["act_by"]) < at(&disputes[1]["act_by"]), "{list}");
    assert_eq!(disputes[2]["act_by"], Value::Null, "nothing for the buyer to do while the merchant answers");
    assert!(disputes[0]["actions"].as_array().expect("actions").contains(&json!("escalate")), "{list}");
    assert!(!disputes[2]["actions"].as_array().expect("actions").contains(&json!("escalate")), "{list}");
}

// 7. The platform statistics.

async fn stats(app: &TestApp) -> Value {
    read(app, "/v1/platform/stats", Role::Arbitrator, "arb-1").await
}

#[tokio::test]
async fn platform_stats_count_reasons_outcomes_resolutions_and_workload() {
    platform_stats_count(TestApp::postgres().await).await;
}

/// The statistics are counted in the database: alike in both dialects.
#[tokio::test]
async fn platform_stats_count_alike_on_the_embedded_store() {
    platform_stats_count(TestApp::sqlite().await).await;
}

async fn platform_stats_count(app: TestApp) {
    let empty = stats(&app).await;
    assert_eq!(
        (&empty["by_reason"], &empty["by_outcome"], &empty["resolved"], &empty["workload"]),
        (&json!({}), &json!({}), &json!(0), &json!({}))
    );
    assert!(empty["mean_resolution_seconds"].is_null(), "{empty}");

    for id in ["t-1", "t-2", "t-3", "t-4", "t-5", "t-6"] {
        app.register(&order(id)).await.assert_ok();
    }
    app.request_refund("t-1", "refund_only", "quality_issue", 10_000).await.assert_ok();
    app.request_refund("t-2", "refund_only", "not_as_described", 1_000).await.assert_ok();
    for (id, reason, arbitrator) in
        [("t-3", "wrong_item", "arb-1"), ("t-4", "quality_issue", "arb-2"), ("t-5", "quality_issue", "arb-1")]
    {
        app.request_refund(id, "refund_only", reason, 4_000).await.assert_ok();
        app.merchant_reject(id).await.assert_ok();
        app.escalate(id).await.assert_ok();
        app.assign(id, arbitrator).await.assert_ok();
    }
    app.advance(Duration::hours(1));
    app.merchant_accept("t-1").await.assert_ok();
    app.advance(Duration::hours(1));
    app.refund_paid("t-1", 10_000).await.assert_ok();
    app.advance(Duration::hours(1));
    withdraw(&app, "t-2").await.assert_ok();
    app.advance(Duration::hours(2));
    let last = app.judge("t-4", "arb-2", no_refund()).await.assert_ok().sequence();
    caught_up(&app, "t-4", last).await;

    // Requested at the start; ended after 2, 3 and 5 hours.
    let stats_now = stats(&app).await;
    assert_eq!(stats_now["by_reason"], json!({ "quality_issue": 3, "not_as_described": 1, "wrong_item": 1 }));
    assert_eq!(stats_now["by_outcome"], json!({ "no_refund": 1 }));
    assert_eq!(stats_now["resolved"], 3);
    assert_close(&stats_now["mean_resolution_seconds"], 12_000.0);
    assert_eq!(stats_now["workload"], json!({ "arb-1": 2 }));

    app.judge("t-3", "arb-1", partial(2_000)).await.assert_ok();
    app.advance(Duration::hours(1));
    let paid = app.refund_paid("t-3", 2_000).await.assert_ok().sequence();
    caught_up(&app, "t-3", paid).await;
    let stats_now = stats(&app).await;
    assert_eq!(stats_now["by_outcome"], json!({ "no_refund": 1, "refund_partial": 1 }));
    assert_eq!(stats_now["resolved"], 4);
    assert_close(&stats_now["mean_resolution_seconds"], (7_200.0 + 10_800.0 + 18_000.0 + 21_600.0) / 4.0);
    assert_eq!(stats_now["workload"], json!({ "arb-1": 1 }));

    assert_eq!(read(&app, "/v1/platform/stats", Role::Auditor, AUDITOR).await, stats_now);
    for (role, sub) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT), (Role::System, "order-service")] {
        get(&app, "/v1/platform/stats", role, sub, None).await.assert_problem(403, "forbidden");
    }
}

#[tokio::test]
async fn every_view_route_checks_the_caller() {
    let app = TestApp::postgres().await;
    app.register(&order("pc-1")).await.assert_ok();
    let last = app.request_refund("pc-1", "refund_only", "quality_issue", 1_000).await.assert_ok().sequence();
    caught_up(&app, "pc-1", last).await;

    for (path, unknown) in [
        ("/v1/disputes/pc-1", "/v1/disputes/nope"),
        ("/v1/disputes/pc-1/timeline", "/v1/disputes/nope/timeline"),
    ] {
        let unknown_answer = get(&app, unknown, Role::Buyer, "buyer-2", None).await;
        unknown_answer.assert_problem(404, "not_found");
        get(&app, unknown, Role::Auditor, AUDITOR, None).await.assert_problem(404, "not_found");
        // Someone else's dispute answers exactly as an unknown one, also when asked to wait.
        for (role, sub) in [(Role::Buyer, "buyer-2"), (Role::Merchant, "merchant-2")] {
            for min in [None, Some(last)] {
                let answer = get(&app, path, role, sub, min).await;
                answer.assert_problem(404, "not_found");
                assert_eq!(answer.body, unknown_answer.body, "{path} as {sub}");
            }
        }
        get(&app, path, Role::System, "order-service", None).await.assert_problem(403, "forbidden");
        anonymous(&app, path).await.assert_problem(401, "unauthenticated");
        let forged = app.send(Method::GET, path, Some("not-a-token"), None, &[]).await;
        forged.assert_problem(401, "unauthenticated");
        for (role, sub) in [
            (Role::Buyer, BUYER),
            (Role::Merchant, MERCHANT),
            (Role::Arbitrator, "arb-1"),
            (Role::Auditor, AUDITOR),
        ] {
            get(&app, path, role, sub, Some(last)).await.assert_ok();
        }
    }

    // Lists keyed by a party: that party and auditors only.
    let buyer_list = format!("/v1/buyers/{BUYER}/disputes");
    let unknown = get(&app, "/v1/buyers/nobody/disputes", Role::Buyer, "buyer-2", None).await;
    unknown.assert_problem(404, "not_found");
    let answer = get(&app, &buyer_list, Role::Buyer, "buyer-2", None).await;
    answer.assert_problem(404, "not_found");
    assert_eq!(answer.body, unknown.body);
    for (role, sub) in
        [(Role::Merchant, MERCHANT), (Role::Arbitrator, "arb-1"), (Role::System, "order-service")]
    {
        get(&app, &buyer_list, role, sub, None).await.assert_problem(403, "forbidden");
    }
    anonymous(&app, &buyer_list).await.assert_problem(401, "unauthenticated");
    for (role, sub) in [(Role::Buyer, BUYER), (Role::Auditor, AUDITOR)] {
        assert_eq!(ids(&read(&app, &buyer_list, role, sub).await["disputes"]), ["pc-1"]);
    }

    for suffix in ["disputes", "summary"] {
        let path = format!("/v1/merchants/{MERCHANT}/{suffix}");
        let unknown =
            get(&app, &format!("/v1/merchants/nobody/{suffix}"), Role::Merchant, "merchant-2", None).await;
        unknown.assert_problem(404, "not_found");
        let answer = get(&app, &path, Role::Merchant, "merchant-2", None).await;
        answer.assert_problem(404, "not_found");
        assert_eq!(answer.body, unknown.body, "{path}");
        for (role, sub) in
            [(Role::Buyer, BUYER), (Role::Arbitrator, "arb-1"), (Role::System, "order-service")]
        {
            get(&app, &path, role, sub, None).await.assert_problem(403, "forbidden");
        }
        anonymous(&app, &path).await.assert_problem(401, "unauthenticated");
        read(&app, &path, Role::Merchant, MERCHANT).await;
        read(&app, &path, Role::Auditor, AUDITOR).await;
    }

    for path in ["/v1/platform/queue", "/v1/platform/stats"] {
        for (role, sub) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT), (Role::System, "order-service")]
        {
            get(&app, path, role, sub, None).await.assert_problem(403, "forbidden");
        }
        anonymous(&app, path).await.assert_problem(401, "unauthenticated");
        read(&app, path, Role::Arbitrator, "arb-1").await;
        read(&app, path, Role::Auditor, AUDITOR).await;
    }
}

// 9. Duplicates.

/// Everything the duplicates test compares before and after.
async fn snapshot(app: &TestApp) -> [Value; 6] {
    [
        read(app, &format!("/v1/merchants/{MERCHANT}/summary"), Role::Merchant, MERCHANT).await,
        read(app, "/v1/disputes/d-1", Role::Auditor, AUDITOR).await,
        read(app, "/v1/disputes/d-1/timeline", Role::Auditor, AUDITOR).await,
        read(app, "/v1/disputes/d-2", Role::Auditor, AUDITOR).await,
        read(app, "/v1/disputes/d-2/timeline", Role::Auditor, AUDITOR).await,
        read(app, "/v1/platform/stats", Role::Auditor, AUDITOR).await,
    ]
}

#[tokio::test]
async fn events_applied_again_change_no_view() {
    let app = TestApp::postgres().await;
    app.register(&order("d-1")).await.assert_ok();
    escalated(&app, "d-1", 6_000).await;
    app.assign("d-1", "arb-1").await.assert_ok();
    let ruled = app.judge("d-1", "arb-1", no_refund()).await.assert_ok().sequence();
    app.register(&order("d-2")).await.assert_ok();
    app.request_refund("d-2", "refund_only", "quality_issue", 4_000).await.assert_ok();
    app.merchant_accept("d-2").await.assert_ok();
    let paid = app.refund_paid("d-2", 4_000).await.assert_ok().sequence();
    caught_up(&app, "d-1", ruled).await;
    caught_up(&app, "d-2", paid).await;

    let before = snapshot(&app).await;
    assert_eq!(before[0]["requested"], json!([cny(10_000)]));
    assert_eq!(before[0]["refunded"], json!([cny(4_000)]));

    let mut projector = Projector::new(app.store.clone());
    for (id, last) in [("d-1", ruled), ("d-2", paid)] {
        let events = app.store.stream_events(id, 1, last).await.expect("the log");
        assert_eq!(events.len() as u64, last);
        for event in events.iter().chain([&events[2], &events[2]]) {
            let applied = projector.apply(&Incoming::from(event)).await.expect("applies");
            assert!(!applied, "{id}:{} was applied again", event.sequence);
        }
    }
    assert_eq!(snapshot(&app).await, before);
}

// 10. Gaps.

/// Registers `id`, then request, rejection and escalation: sequences 1 to 4.
async fn escalate_in(store: &Store, id: &str) -> u64 {
    execute(store, id, Role::System, "order-service", registration(id)).await;
    execute(store, id, Role::Buyer, BUYER, refund_request(1_000)).await;
    execute(store, id, Role::Merchant, MERCHANT, rejection()).await;
    execute(store, id, Role::Buyer, BUYER, escalation()).await
}

async fn timeline_sequences(views: &Views, id: &str) -> Vec<u64> {
    views.timeline(id).await.expect("timeline").iter().map(|e| e.sequence).collect()
}

#[tokio::test]
async fn a_later_event_arriving_first_is_applied_after_the_missing_ones_from_the_log() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    assert_eq!(escalate_in(&store, "g-1").await, 4);
    let events = store.stream_events("g-1", 1, 4).await.expect("the log");
    let mut projector = Projector::new(store.clone());
    let views = Views::new(store.clone());
    assert!(views.dispute("g-1").await.expect("views").is_none(), "nothing is projected yet");

    assert!(projector.apply(&Incoming::from(&events[2])).await.expect("applies"));
    let view: DisputeView = views.dispute("g-1").await.expect("views").expect("a view");
    assert_eq!((view.sequence, view.status, view.round), (3, Status::Rejected, 1));
    assert_eq!(view.requested_amount, Some(Money::new(1_000, "CNY")));
    assert!(view.deadlines.escalation_due.is_some(), "{view:?}");
    assert_eq!(timeline_sequences(&views, "g-1").await, [1, 2, 3]);

    for event in [&events[0], &events[1], &events[2]] {
        assert!(!projector.apply(&Incoming::from(event)).await.expect("applies"), "{} again", event.sequence);
    }
    assert_eq!(views.dispute("g-1").await.expect("views"), Some(view));

    // An event the log does not hold yet cannot be filled: an error, and nothing changes.
    let mut ahead = Incoming::from(&events[3]);
    ahead.sequence = 9;
    assert!(projector.apply(&ahead).await.is_err(), "a gap the log cannot fill is an error");
    assert_eq!(views.dispute("g-1").await.expect("views").map(|v| v.sequence), Some(3));

    assert!(projector.apply(&Incoming::from(&events[3])).await.expect("applies"));
    let view = views.dispute("g-1").await.expect("views").expect("a view");
    assert_eq!((view.sequence, view.status), (4, Status::Escalated));
    assert_eq!(timeline_sequences(&views, "g-1").await, [1, 2, 3, 4]);
    store.close().await;
}

#[tokio::test]
async fn a_view_kept_by_one_projector_never_moves_back_a_view_another_projector_took_further() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    assert_eq!(escalate_in(&store, "k-1").await, 4);
    let events = store.stream_events("k-1", 1, 4).await.expect("the log");
    let views = Views::new(store.clone());
    // One projector folds the first two events and keeps the view; another (an instance
    // that did not see them) folds the rest onto the stored view.
    let mut keeping = Projector::new(store.clone());
    for event in &events[..2] {
        assert!(keeping.apply(&Incoming::from(event)).await.expect("applies"));
    }
    let mut other = Projector::new(store.clone());
    for event in &events[2..] {
        assert!(other.apply(&Incoming::from(event)).await.expect("applies"));
    }
    let escalated: DisputeView = views.dispute("k-1").await.expect("views").expect("a view");
    assert_eq!((escalated.sequence, escalated.status), (4, Status::Escalated));

    // The kept view is behind the stored one: folding the next events onto it changes nothing.
    for event in &events[2..] {
        assert!(!keeping.apply(&Incoming::from(event)).await.expect("applies"), "{} again", event.sequence);
    }
    assert_eq!(views.dispute("k-1").await.expect("views"), Some(escalated));
    assert_eq!(timeline_sequences(&views, "k-1").await, [1, 2, 3, 4]);
    store.close().await;
}

#[tokio::test]
async fn events_applied_again_write_the_timeline_entries_a_rebuilt_timeline_lacks() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    assert_eq!(escalate_in(&store, "t-1").await, 4);
    let events = store.stream_events("t-1", 1, 4).await.expect("the log");
    let views = Views::new(store.clone());
    let mut projector = Projector::new(store.clone());
    for event in &events {
        assert!(projector.apply(&Incoming::from(event)).await.expect("applies"));
    }
    // The timeline lost entries its view reflects, as a timeline rebuilt apart from the views
    // up to an earlier point of the log would.
    let mut db_connection =
        <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.expect("the database");
    sqlx::query("DELETE FROM view_timeline WHERE order_id = 't-1' AND sequence IN (2, 3)")
        .execute(&mut db_connection)
        .await
        .expect("entries deleted");
    assert_eq!(timeline_sequences(&views, "t-1").await, [1, 4]);

    // Each event again, as a projector that reads the stored view finds it (one that kept a
    // view of its own folds onto that).
    for event in &events {
        let mut again = Projector::new(store.clone());
        assert!(!again.apply(&Incoming::from(event)).await.expect("applies"), "{} again", event.sequence);
    }
    assert_eq!(timeline_sequences(&views, "t-1").await, [1, 2, 3, 4]);
    assert_eq!(views.dispute("t-1").await.expect("views").map(|v| v.sequence), Some(4));
    store.close().await;
}

// 11. Waiting for a sequence.

#[tokio::test]
async fn a_sequence_the_view_never_reaches_is_view_behind_and_a_malformed_one_is_refused() {
    let app = TestApp::postgres().await;
    app.register(&order("w-1")).await.assert_ok();
    let last = app.request_refund("w-1", "refund_only", "quality_issue", 1_000).await.assert_ok().sequence();
    caught_up(&app, "w-1", last).await;
    get(&app, "/v1/disputes/w-1", Role::Buyer, BUYER, Some(last + 100))
        .await
        .assert_problem(409, "view_behind");

    let token = app.token(Role::Buyer, BUYER);
    for path in ["/v1/disputes/w-1", "/v1/disputes/w-1/timeline"] {
        for bad in ["abc", "-1", "1.5", ""] {
            let answer = app.send(Method::GET, path, Some(&token), None, &[("X-Min-Sequence", bad)]).await;
            answer.assert_problem(400, "malformed_request");
        }
    }
}

#[tokio::test]
async fn a_wait_for_a_sequence_this_process_projected_is_answered_without_reading_the_store() {
    let app = TestApp::postgres().await;
    app.register(&order("w-1")).await.assert_ok();
    let last = app.request_refund("w-1", "refund_only", "quality_issue", 1_000).await.assert_ok().sequence();
    let projected = view(&app, "w-1", Role::Buyer, BUYER, last).await;
    // With the stored row gone, only what this process's projector committed can answer.
    app.sql("DELETE FROM view_disputes WHERE order_id = 'w-1'").await;
    let answer = get(&app, "/v1/disputes/w-1", Role::Buyer, BUYER, Some(last)).await;
    answer.assert_ok();
    for field in ["sequence", "status", "requested", "buyer_id"] {
        assert_eq!(answer.body[field], projected[field], "{field}");
    }
    // The parties are still checked, and a read without a sequence reads the store.
    get(&app, "/v1/disputes/w-1", Role::Merchant, "another-merchant", Some(last))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(get(&app, "/v1/disputes/w-1", Role::Buyer, BUYER, None).await.status, 404);
}

// 12. Views from NATS.

#[tokio::test]
async fn views_are_built_from_the_nats_stream() {
    let db = TestDatabase::create().await;
    let (urls, stream) = (nats_url(), unique_stream());
    // The relay and the JetStream consumer, as `disputes serve` starts them with NATS.
    let app = disputes::App::start(disputes::Config {
        store: dispute_store::StoreConfig::Postgres { url: db.url.clone(), max_connections: 8 },
        services: dispute_domain::DisputeServices::new(
            std::sync::Arc::new(dispute_domain::ManualClock::new(epoch())),
            std::sync::Arc::new(dispute_domain::Policy::builtin()),
        ),
        bus: Some(disputes::BusConfig { urls: urls.clone(), stream: stream.clone() }),
        tokens: dispute_api::TokenKeys::new(SECRET),
        idempotency: Default::default(),
        edge: Default::default(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        parts: disputes::Parts { projections: true, timer: false },
    })
    .await
    .expect("the service starts");
    let store = app.store().clone();

    let last = escalate_in(&store, "nv-1").await;
    execute(&store, "nv-2", Role::System, "order-service", registration("nv-2")).await;
    let views = Views::new(store.clone());
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    let view = loop {
        if let Some(view) = views.dispute("nv-1").await.expect("views")
            && view.sequence >= last
        {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "the views did not reach nv-1:{last} from NATS");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    };
    assert_eq!((view.sequence, view.status, view.round), (4, Status::Escalated, 1));
    assert_eq!(view.requested_amount, Some(Money::new(1_000, "CNY")));

    // The timeline carries what the log recorded: types, actors and times.
    let stored = store.stream_events("nv-1", 1, last).await.expect("the log");
    let from_log: Vec<TimelineRow> = stored
        .iter()
        .map(|e| {
            let meta = |key: &str| e.metadata[key].as_str().expect("metadata").to_string();
            (e.sequence, e.event_type.clone(), meta("actor_role"), meta("actor_id"), at(&e.metadata["time"]))
        })
        .collect();
    let from_bus: Vec<TimelineRow> = views
        .timeline("nv-1")
        .await
        .expect("timeline")
        .into_iter()
        .map(|e| (e.sequence, e.event_type, e.actor_role, e.actor_id, at(&json!(e.time))))
        .collect();
    assert_eq!(from_bus, from_log);

    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    let other = loop {
        if let Some(view) = views.dispute("nv-2").await.expect("views") {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "the views did not reach nv-2 from NATS");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    };
    assert_eq!((other.sequence, other.status), (1, Status::Open));

    app.stop().await.expect("the service stops");
    delete_stream(&urls, &stream).await;
}

// 13. The embedded default.

#[tokio::test]
async fn views_on_the_embedded_store() {
    let app = TestApp::sqlite().await;
    app.register(&order("e-1")).await.assert_ok();
    app.request_refund("e-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.advance(Duration::hours(1));
    app.merchant_reject("e-1").await.assert_ok();
    app.advance(Duration::hours(1));
    let last = app.escalate("e-1").await.assert_ok().sequence();
    assert_eq!(last, 4);

    let mut want = registered();
    merge(
        &mut want,
        json!({
            "sequence": 4, "status": "escalated", "round": 1, "requested_amount": cny(6_000),
            "requested_total": cny(6_000), "deadlines": { "evidence_due": t(2 + 72), "assignment_due": t(2 + 24) },
        }),
    );
    assert_view(
        &app,
        "e-1",
        &want,
        actions(&["evidence", "withdraw", "messages"], &["evidence", "messages"], &["assign"]),
    )
    .await;

    let body = timeline(&app, "e-1", Role::Merchant, MERCHANT, last).await;
    let types: Vec<&str> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["OrderRegistered", "RefundRequested", "MerchantRejected", "DisputeEscalated"]);
    let times: Vec<DateTime<Utc>> =
        body["events"].as_array().expect("events").iter().map(|e| at(&e["time"])).collect();
    assert_eq!(times, [t(0), t(0), t(1), t(2)]);

    app.register(&order("e-2")).await.assert_ok();
    let other = app.request_refund("e-2", "refund_only", "quality_issue", 1_000).await.assert_ok().sequence();
    caught_up(&app, "e-2", other).await;
    let list = read(&app, &format!("/v1/merchants/{MERCHANT}/disputes"), Role::Merchant, MERCHANT).await;
    assert_eq!(ids(&list["disputes"]), ["e-2", "e-1"]);
    let summary = read(&app, &format!("/v1/merchants/{MERCHANT}/summary"), Role::Merchant, MERCHANT).await;
    assert_eq!(summary["by_status"], json!({ "escalated": 1, "awaiting_merchant": 1 }));
}

/// A view read with no token at all.
async fn anonymous(app: &TestApp, path: &str) -> Answer {
    app.send(reqwest::Method::GET, path, None, None, &[]).await
}

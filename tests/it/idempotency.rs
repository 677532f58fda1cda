//! `Idempotency-Key`: the same key and request replay the first answer and write nothing; the
//! same key for another request is refused; keys belong to the caller; concurrent retries run
//! the command once.

use std::sync::Arc;

use dispute_domain::Role;
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

fn replayed(answer: &Answer) -> bool {
    answer.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()) == Some("true")
}

async fn stream_sequence(app: &TestApp, order: &str) -> u64 {
    app.store.load(order).await.expect("the stream loads").1
}

async fn keyed(app: &TestApp, path: &str, role: Role, sub: &str, body: &Value, key: &str) -> Answer {
    let token = app.token(role, sub);
    app.send(Method::POST, path, Some(&token), Some(body), &[("idempotency-key", key)]).await
}

fn evidence_body(kind: &str) -> Value {
    json!({ "evidence": [evidence(kind)] })
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_answer_and_write_nothing() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let body = json!({
        "kind": "refund_only", "reason": "quality_issue", "amount": cny(6_000),
        "description": "torn", "evidence": [evidence("photo")],
    });
    let first = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &body, "req-1").await;
    assert_eq!(first.assert_ok().sequence(), 2);
    assert!(!replayed(&first), "the first answer is not a replay");
    let state = app.store.load("o-1").await.expect("the stream loads");

    for _ in 0..3 {
        let again = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &body, "req-1").await;
        again.assert_ok();
        assert!(replayed(&again), "a retry is marked as replayed: {:?}", again.headers);
        assert_eq!(again.body, first.body);
        assert_eq!(app.store.load("o-1").await.expect("the stream loads"), state, "a replay writes nothing");
    }

    // Still the first answer after the dispute moved on.
    assert_eq!(app.merchant_reject("o-1").await.assert_ok().sequence(), 3);
    let later = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &body, "req-1").await;
    assert!(replayed(&later));
    assert_eq!((later.body.clone(), later.status_text()), (first.body.clone(), "awaiting_merchant"));
    assert_eq!(stream_sequence(&app, "o-1").await, 3);
}

#[tokio::test]
async fn the_same_key_for_another_request_is_409_idempotency_key_reused() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    app.register(&order("o-2")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.request_refund("o-2", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let first =
        keyed(&app, "/v1/disputes/o-1/evidence", Role::Buyer, BUYER, &evidence_body("photo"), "k").await;
    assert_eq!(first.assert_ok().sequence(), 3);

    let others = [
        ("/v1/disputes/o-1/evidence", evidence_body("video"), "another body"),
        ("/v1/disputes/o-2/evidence", evidence_body("photo"), "another order"),
        ("/v1/disputes/o-1/withdraw", json!({}), "another command"),
    ];
    for (path, body, what) in others {
        let answer = keyed(&app, path, Role::Buyer, BUYER, &body, "k").await;
        assert_eq!(answer.status, 409, "{what}: {}", answer.body);
        answer.assert_problem(409, "idempotency_key_reused");
    }
    let token = app.token(Role::Buyer, BUYER);
    let with_if_match = app
        .send(
            Method::POST,
            "/v1/disputes/o-1/evidence",
            Some(&token),
            Some(&evidence_body("photo")),
            &[("idempotency-key", "k"), ("if-match", "2")],
        )
        .await;
    with_if_match.assert_problem(409, "idempotency_key_reused");
    assert_eq!((stream_sequence(&app, "o-1").await, stream_sequence(&app, "o-2").await), (3, 2));

    // The first request with its key still replays.
    let again =
        keyed(&app, "/v1/disputes/o-1/evidence", Role::Buyer, BUYER, &evidence_body("photo"), "k").await;
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
}

#[tokio::test]
async fn keys_belong_to_the_caller() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let mut theirs = order("o-2");
    theirs["buyer_id"] = json!("buyer-2");
    app.register(&theirs).await.assert_ok();
    let body = json!({
        "kind": "refund_only", "reason": "quality_issue", "amount": cny(6_000),
        "description": "torn", "evidence": [],
    });
    let mine = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &body, "shared-key").await;
    assert_eq!(mine.assert_ok().sequence(), 2);
    // Another buyer, the same key: a request of its own, executed.
    let other_buyer =
        keyed(&app, "/v1/disputes/o-2/request", Role::Buyer, "buyer-2", &body, "shared-key").await;
    assert_eq!(other_buyer.assert_ok().sequence(), 2);
    assert!(!replayed(&other_buyer));
    assert_eq!(other_buyer.body["dispute_id"], "o-2");
    // The merchant, the same key, the same order: executed too.
    let merchant = keyed(
        &app,
        "/v1/disputes/o-1/evidence",
        Role::Merchant,
        MERCHANT,
        &evidence_body("receipt"),
        "shared-key",
    )
    .await;
    assert_eq!(merchant.assert_ok().sequence(), 3);
    assert!(!replayed(&merchant));
    assert_eq!((stream_sequence(&app, "o-1").await, stream_sequence(&app, "o-2").await), (3, 2));
}

#[tokio::test]
async fn a_refusal_replays_as_the_same_refusal() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let too_much = json!({
        "kind": "refund_only", "reason": "quality_issue", "amount": cny(10_001),
        "description": "torn", "evidence": [],
    });
    let first = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &too_much, "req-1").await;
    first.assert_problem(422, "amount_exceeds_refundable");
    let again = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &too_much, "req-1").await;
    again.assert_problem(422, "amount_exceeds_refundable");
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    assert_eq!(stream_sequence(&app, "o-1").await, 1, "a refusal writes nothing, twice");
    // A corrected request under a new key executes.
    let mut corrected = too_much.clone();
    corrected["amount"] = cny(10_000);
    let fixed = keyed(&app, "/v1/disputes/o-1/request", Role::Buyer, BUYER, &corrected, "req-2").await;
    assert_eq!(fixed.assert_ok().sequence(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_retries_execute_once() {
    let app = Arc::new(TestApp::postgres().await);
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let body = json!({ "amount": cny(3_000), "note": "half back" });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        let body = body.clone();
        tasks.spawn(async move {
            keyed(&app, "/v1/disputes/o-1/merchant-offer", Role::Merchant, MERCHANT, &body, "offer-1").await
        });
    }
    let answers: Vec<Answer> = tasks.join_all().await;
    assert_eq!(answers.len(), 20);
    for answer in &answers {
        assert_eq!(answer.status, 200, "every retry gets the one answer: {}", answer.body);
        assert_eq!(answer.sequence(), 3);
        assert_eq!(answer.body, answers[0].body);
    }
    let executed = answers.iter().filter(|a| !replayed(a)).count();
    assert_eq!(executed, 1, "exactly one request executed, the others replayed it");
    let (dispute, sequence) = app.store.load("o-1").await.expect("the stream loads");
    assert_eq!(sequence, 3, "exactly one new event");
    assert_eq!(dispute.status().as_str(), "offer_pending");
}

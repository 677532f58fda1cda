//! `Idempotency-Key`: the same key and request replay the first answer and write nothing; the
//! same key for another request is refused; keys belong to the caller; concurrent retries run
//! the command once.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use dispute_domain::Role;
use dispute_store::ClaimTimes;
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

/// Sends `body` exactly as written, with a key.
async fn keyed_text(app: &TestApp, path: &str, role: Role, sub: &str, body: &str, key: &str) -> Answer {
    let mut request = reqwest::Client::new()
        .post(app.url(path))
        .bearer_auth(app.token(role, sub))
        .header("idempotency-key", key);
    if !body.is_empty() {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a body");
    Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

#[tokio::test]
async fn the_same_json_written_differently_replays_and_other_json_is_409() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let path = "/v1/disputes/o-1/request";
    let compact = r#"{"kind":"refund_only","reason":"quality_issue","amount":{"amount_minor":6000,"currency":"CNY"},"description":"torn","evidence":[]}"#;
    let first = keyed_text(&app, path, Role::Buyer, BUYER, compact, "req-1").await;
    assert_eq!(first.assert_ok().sequence(), 2);
    let state = app.store.load("o-1").await.expect("the stream loads");

    // Other whitespace, another key order at every level, another escape of the same text.
    let reformatted = "{\n  \"evidence\": [ ],\n  \"description\": \"t\\u006frn\",\n  \"amount\": { \"currency\": \"CNY\", \"amount_minor\": 6000 },\r\n  \"reason\": \"quality_issue\",\t\"kind\" : \"refund_only\"\n}\n";
    let again = keyed_text(&app, path, Role::Buyer, BUYER, reformatted, "req-1").await;
    again.assert_ok();
    assert!(replayed(&again), "the same parameters replay: {:?}", again.headers);
    assert_eq!(again.body, first.body);
    assert_eq!(app.store.load("o-1").await.expect("the stream loads"), state, "a replay writes nothing");

    // Genuinely different parameters, however close: still the key reused.
    for other in [
        r#"{"kind":"refund_only","reason":"quality_issue","amount":{"amount_minor":6001,"currency":"CNY"},"description":"torn","evidence":[]}"#,
        r#"{"kind":"refund_only","reason":"quality_issue","amount":{"amount_minor":6000,"currency":"CNY"},"description":"torn ","evidence":[]}"#,
        r#"{"kind":"refund_only","reason":"quality_issue","amount":{"amount_minor":6000,"currency":"CNY"},"description":"torn"}"#,
    ] {
        let answer = keyed_text(&app, path, Role::Buyer, BUYER, other, "req-1").await;
        answer.assert_problem(409, "idempotency_key_reused");
    }
    assert_eq!(app.store.load("o-1").await.expect("the stream loads"), state);

    // A command whose body is optional: no body and `{}` are the same request.
    let withdrawn = keyed_text(&app, "/v1/disputes/o-1/withdraw", Role::Buyer, BUYER, "", "w-1").await;
    assert_eq!((withdrawn.assert_ok().sequence(), withdrawn.status_text()), (3, "closed"));
    let again = keyed_text(&app, "/v1/disputes/o-1/withdraw", Role::Buyer, BUYER, " { } ", "w-1").await;
    assert!(replayed(again.assert_ok()), "`{{}}` replays the empty body's answer");
    assert_eq!(again.body, withdrawn.body);
    let noted =
        keyed_text(&app, "/v1/disputes/o-1/withdraw", Role::Buyer, BUYER, r#"{"note":"n"}"#, "w-1").await;
    noted.assert_problem(409, "idempotency_key_reused");
    assert_eq!(stream_sequence(&app, "o-1").await, 3);
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

// A crash between the commit and the recorded answer. The database refuses to store the answer
// (a trigger: the failpoint), as a process killed right after its commit would never store it.

/// Claims that wait briefly, and lapse after 30 s of the test's clock.
fn quick_claims() -> ClaimTimes {
    ClaimTimes { wait: StdDuration::from_millis(200), takeover_after: StdDuration::from_secs(30) }
}

/// From now on the answer to a key is never stored (the failure a crash causes).
async fn answers_fail(app: &TestApp) {
    app.sql(
        "CREATE FUNCTION failpoint() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'failpoint'; END $$; \
         CREATE TRIGGER answers_fail BEFORE UPDATE ON idempotency_keys FOR EACH ROW \
         WHEN (NEW.response_status IS NOT NULL) EXECUTE FUNCTION failpoint();",
    )
    .await;
}

/// From now on no event commits (the failure a crash before the commit causes).
async fn commits_fail(app: &TestApp) {
    app.sql(
        "CREATE FUNCTION failpoint() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'failpoint'; END $$; \
         CREATE TRIGGER commits_fail BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION failpoint();",
    )
    .await;
}

async fn failpoints_off(app: &TestApp) {
    app.sql("DROP FUNCTION failpoint() CASCADE").await;
}

/// The events of `order` that carry `key`, as (sequence, event type).
async fn events_with_key(app: &TestApp, order: &str, key: &str) -> Vec<(i64, String)> {
    use sqlx::Connection;
    let Backing::Postgres(db) = &app.backing else { panic!("these tests run on PostgreSQL") };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("the test database answers");
    sqlx::query_as(
        "SELECT sequence, event_type FROM events \
         WHERE aggregate_id = $1 AND metadata->>'idempotency_key' = $2 ORDER BY sequence",
    )
    .bind(order)
    .bind(key)
    .fetch_all(&mut conn)
    .await
    .expect("the events are read")
}

#[tokio::test]
async fn a_payment_committed_before_its_answer_was_recorded_is_answered_as_committed_and_paid_once() {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_accept("o-1").await.assert_ok();
    let paid = json!({
        "amount": cny(6_000), "channel": "alipay", "payment_ref": "ali-77", "paid_at": app.now(),
    });
    let path = "/v1/disputes/o-1/refund-paid";

    answers_fail(&app).await;
    let first = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    assert_eq!((first.assert_ok().sequence(), first.status_text()), (4, "refunded"));
    failpoints_off(&app).await;

    // The claim has no answer and has not lapsed: a retry is told when to come back.
    let early = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    early.assert_problem(409, "concurrent_modification");
    let retry_after: u64 = early.headers["retry-after"].to_str().unwrap().parse().expect("seconds");
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");

    // Once the claim lapses, the retry finds the payment in the log: the first answer, once.
    app.advance(chrono::Duration::seconds(31));
    let retried = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    assert_eq!(retried.status, 200, "a committed payment is answered as committed: {}", retried.body);
    assert_eq!(retried.body, first.body);
    assert!(replayed(&retried));
    assert_eq!(events_with_key(&app, "o-1", "pay-1").await, vec![(4, "RefundPaid".to_string())]);
    assert_eq!(stream_sequence(&app, "o-1").await, 4);

    // The answer is recorded now: later retries replay it without waiting.
    let again = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    assert_eq!((again.status, &again.body), (200, &first.body));
}

#[tokio::test]
async fn evidence_committed_before_its_answer_was_recorded_takes_effect_once() {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let path = "/v1/disputes/o-1/evidence";

    answers_fail(&app).await;
    let first = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!(first.assert_ok().sequence(), 3);
    failpoints_off(&app).await;
    // The dispute moves on before the retry arrives.
    let merchant = app.command("o-1", "evidence", Role::Merchant, MERCHANT, evidence_body("receipt")).await;
    assert_eq!(merchant.assert_ok().sequence(), 4);

    app.advance(chrono::Duration::seconds(31));
    let retried = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body, first.body, "the answer is the state right after the evidence");
    assert_eq!(
        events_with_key(&app, "o-1", "ev-1").await,
        vec![(3, "EvidenceSubmitted".to_string())],
        "the evidence is stored once"
    );
    assert_eq!(stream_sequence(&app, "o-1").await, 4);
}

#[tokio::test]
async fn a_command_that_failed_before_its_commit_runs_once_on_the_retry() {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let path = "/v1/disputes/o-1/evidence";

    commits_fail(&app).await;
    let failed = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    failed.assert_problem(500, "internal");
    failpoints_off(&app).await;

    // The outcome was unknown to the service too: the retry resolves it from the log at once.
    let retried = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!(retried.assert_ok().sequence(), 3);
    assert!(!replayed(&retried), "it ran now");
    let again = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!((again.body.clone(), replayed(&again)), (retried.body.clone(), true));
    assert_eq!(events_with_key(&app, "o-1", "ev-1").await, vec![(3, "EvidenceSubmitted".to_string())]);
}

#[tokio::test]
async fn a_key_reused_after_its_answer_was_purged_is_a_new_request_even_when_resumed() {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let path = "/v1/disputes/o-1/evidence";
    let old = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!(old.assert_ok().sequence(), 3);
    app.advance(chrono::Duration::hours(49));
    assert_eq!(app.store.purge_idempotency(chrono::Duration::hours(48)).await.expect("purge"), 1);

    commits_fail(&app).await;
    keyed(&app, path, Role::Buyer, BUYER, &evidence_body("photo"), "ev-1")
        .await
        .assert_problem(500, "internal");
    failpoints_off(&app).await;
    // The log holds the key's old evidence, from before this request first claimed it.
    let retried = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("photo"), "ev-1").await;
    assert_eq!(retried.assert_ok().sequence(), 4, "the new request ran: {}", retried.body);
    assert_eq!(
        events_with_key(&app, "o-1", "ev-1").await,
        vec![(3, "EvidenceSubmitted".to_string()), (4, "EvidenceSubmitted".to_string())]
    );
}

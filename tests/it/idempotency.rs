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
    // On the embedded store, retries that queue together are committed in one group.
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        twenty_retries_at_once(Arc::new(app)).await;
    }
}

async fn twenty_retries_at_once(app: Arc<TestApp>) {
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

// Crashes around a commit. A keyed command that writes events commits its answer with them,
// so no crash leaves one without the other: the tests show it with a failpoint (a trigger) that
// refuses the second write an answer once took. A claim left without an answer still arises:
// a request whose process was killed before its commit, or a process of an earlier version
// killed between its commit and its answer, which it wrote in two transactions. The tests make
// that state as those processes left it.

/// Claims that wait briefly, and lapse after 30 s of the test's clock.
fn quick_claims() -> ClaimTimes {
    ClaimTimes { wait: StdDuration::from_millis(200), takeover_after: StdDuration::from_secs(30) }
}

/// From now on an answer is never stored by a write of its own, after its command's commit.
async fn answers_fail_after_commits(app: &TestApp) {
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

/// The record of `key` as a process of an earlier version left it when it was killed after its
/// command's commit and before its answer: claimed, unanswered.
async fn answer_never_recorded(app: &TestApp, key: &str) {
    app.sql(&format!(
        "UPDATE idempotency_keys SET response_status = NULL, response_body = NULL WHERE key = '{key}'"
    ))
    .await;
}

/// The events of `order` that carry `key`, as (sequence, event type).
async fn events_with_key(app: &TestApp, order: &str, key: &str) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT sequence, event_type FROM events \
         WHERE aggregate_id = $1 AND metadata->>'idempotency_key' = $2 ORDER BY sequence",
    )
    .bind(order)
    .bind(key)
    .fetch_all(&mut connect(app).await)
    .await
    .expect("the events are read")
}

async fn connect(app: &TestApp) -> sqlx::PgConnection {
    use sqlx::Connection;
    let Backing::Postgres(db) = &app.backing else { panic!("these tests run on PostgreSQL") };
    sqlx::PgConnection::connect(&db.url).await.expect("the test database answers")
}

/// The record of a key, if any: (fingerprint, answer status).
async fn record_of(app: &TestApp, key: &str) -> Option<(String, Option<i32>)> {
    sqlx::query_as("SELECT fingerprint, response_status FROM idempotency_keys WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut connect(app).await)
        .await
        .expect("the record is read")
}

/// An app with quick claims whose order `o-1` awaits its refund's payment; the payment's path
/// and body.
async fn awaiting_payment() -> (TestApp, &'static str, Value) {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_accept("o-1").await.assert_ok();
    let paid = json!({
        "amount": cny(6_000), "channel": "alipay", "payment_ref": "ali-77", "paid_at": app.now(),
    });
    (app, "/v1/disputes/o-1/refund-paid", paid)
}

#[tokio::test]
async fn a_payment_commits_with_its_answer_so_a_retry_replays_it_at_once_and_pays_once() {
    let (app, path, paid) = awaiting_payment().await;

    answers_fail_after_commits(&app).await;
    let first = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    assert_eq!((first.assert_ok().sequence(), first.status_text()), (4, "refunded"));
    // The answer needed no write after the commit: the retry replays it, without waiting for
    // the claim to lapse.
    let retried = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    failpoints_off(&app).await;
    assert_eq!((retried.status, &retried.body), (200, &first.body), "replayed at once");
    assert!(replayed(&retried));
    assert_eq!(events_with_key(&app, "o-1", "pay-1").await, vec![(4, "RefundPaid".to_string())]);
    assert_eq!(stream_sequence(&app, "o-1").await, 4);
}

#[tokio::test]
async fn a_payment_retried_after_the_database_ended_every_session_is_paid_once() {
    let (app, path, paid) = awaiting_payment().await;
    // Connections the service keeps between statements, then every session ended by the
    // server, as a restart or a failover does.
    for n in 0..4 {
        app.register(&order(&format!("o-warm-{n}"))).await.assert_ok();
    }
    app.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;

    // A payment client retries on the server's failures; each lost connection fails one
    // request at most, as the store not answering (503, to be retried), never as the
    // request's fault nor as an internal failure.
    let first = past_lost_connections(|| keyed(&app, path, Role::System, "payments", &paid, "pay-1")).await;
    assert_eq!((first.assert_ok().sequence(), first.status_text()), (4, "refunded"));
    let retried = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    assert_eq!((retried.status, &retried.body), (200, &first.body));
    assert!(replayed(&retried));
    assert_eq!(events_with_key(&app, "o-1", "pay-1").await, vec![(4, "RefundPaid".to_string())]);
    assert_eq!(stream_sequence(&app, "o-1").await, 4);
    // And the service goes on.
    app.register(&order("o-after")).await.assert_ok();
}

#[tokio::test]
async fn a_payment_committed_before_its_answer_was_recorded_is_answered_as_committed_and_paid_once() {
    let (app, path, paid) = awaiting_payment().await;

    let first = keyed(&app, path, Role::System, "payments", &paid, "pay-1").await;
    assert_eq!((first.assert_ok().sequence(), first.status_text()), (4, "refunded"));
    answer_never_recorded(&app, "pay-1").await;

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

    let first = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!(first.assert_ok().sequence(), 3);
    answer_never_recorded(&app, "ev-1").await;
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
async fn a_command_that_failed_before_its_commit_wrote_nothing_and_runs_once_on_the_retry() {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let path = "/v1/disputes/o-1/evidence";

    commits_fail(&app).await;
    let failed = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    failed.assert_problem(500, "internal");
    // The same on a stream read from the log: a new process holds no head.
    let app = app.restart().await;
    let failed = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    failed.assert_problem(500, "internal");
    failpoints_off(&app).await;
    assert_eq!(record_of(&app, "ev-1").await, None, "the key's record failed with the events");

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
    let (fingerprint, _) = record_of(&app, "ev-1").await.expect("the key's record");
    app.advance(chrono::Duration::hours(49));
    assert_eq!(app.store.purge_idempotency(chrono::Duration::hours(48)).await.expect("purge"), 1);

    // The same request again, a new one now: it claims the key, and its process is killed
    // before its commit.
    let subject = format!("buyer:{BUYER}");
    let claim = app.store.claim_idempotency(&subject, "ev-1", &fingerprint, quick_claims()).await;
    assert!(matches!(claim, Ok(dispute_store::Claim::Held(_))), "{claim:?}");
    app.advance(chrono::Duration::seconds(31));
    // The log holds the key's old evidence, from before this request first claimed it.
    let retried = keyed(&app, path, Role::Buyer, BUYER, &evidence_body("video"), "ev-1").await;
    assert_eq!(retried.assert_ok().sequence(), 4, "the new request ran: {}", retried.body);
    assert_eq!(
        events_with_key(&app, "o-1", "ev-1").await,
        vec![(3, "EvidenceSubmitted".to_string()), (4, "EvidenceSubmitted".to_string())]
    );
}

/// A request slower than the take-over time is not dead: the request that took its claim over
/// runs the command, and the slow one's events are refused with its lapsed claim.
#[tokio::test]
async fn a_request_whose_claim_was_taken_over_writes_nothing() {
    let app = TestApp::postgres_with_idempotency(quick_claims()).await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let store = &app.store;
    let claim = || store.claim_idempotency("buyer", "ev-1", "video", quick_claims());
    let Ok(dispute_store::Claim::Held(slow)) = claim().await else { panic!("the key is new") };
    app.advance(chrono::Duration::seconds(31));
    let Ok(dispute_store::Claim::Held(taker)) = claim().await else { panic!("the claim lapsed") };
    assert!(taker.resumed_since.is_some());

    let command = || {
        let action = serde_json::from_value(json!({ "evidence": [evidence("video")] })).expect("evidence");
        dispute_domain::DisputeCommand::new(
            dispute_domain::Actor::new(Role::Buyer, BUYER),
            dispute_domain::Action::SubmitEvidence(action),
        )
    };
    let metadata = dispute_store::CommandMetadata {
        correlation_id: "c".to_string(),
        idempotency_key: Some("ev-1".to_string()),
    };
    let answer = |o: &dispute_store::Outcome| dispute_store::StoredResponse {
        status: 200,
        body: o.sequence.to_string(),
    };
    let request =
        dispute_store::KeyedRequest { subject: "buyer", key: "ev-1", fingerprint: "video", answer: &answer };
    let ran = store.execute_claimed("o-1", &command(), None, &metadata, &request, &taker).await;
    assert!(matches!(ran, Ok(dispute_store::Executed::Now(ref o)) if o.sequence == 3), "{ran:?}");
    let late = store.execute_claimed("o-1", &command(), None, &metadata, &request, &slow).await;
    assert!(matches!(late, Err(dispute_store::ExecuteError::ClaimLost)), "{late:?}");
    assert_eq!(events_with_key(&app, "o-1", "ev-1").await, vec![(3, "EvidenceSubmitted".to_string())]);
    assert_eq!(record_of(&app, "ev-1").await, Some(("video".to_string(), Some(200))));
}

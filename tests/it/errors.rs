//! Every problem the API answers with, over HTTP against PostgreSQL: the status, the stable
//! `code`, `application/problem+json`, and that a refused command writes nothing.

use std::future::Future;

use chrono::Duration;
use dispute_api::TokenKeys;
use dispute_domain::{Actor, Role};
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Sends `body` as it is (possibly not JSON at all) with the given token and headers.
async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request = request.header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a body");
    Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// Runs `request`, which must be refused with `status` and `code`, and checks that the order's
/// stream (state and sequence) is exactly what it was before.
async fn refuse(
    app: &TestApp,
    order: &str,
    status: u16,
    code: &str,
    request: impl Future<Output = Answer>,
) -> Answer {
    let before = app.store.load(order).await.expect("the stream loads");
    let answer = request.await;
    answer.assert_problem(status, code);
    assert_eq!(answer.body["status"], status, "the problem repeats its status: {}", answer.body);
    for field in ["type", "title", "detail"] {
        assert!(answer.body[field].is_string(), "a problem has a {field}: {}", answer.body);
    }
    let after = app.store.load(order).await.expect("the stream loads");
    assert_eq!(after, before, "refused with {code}, yet the stream of {order} changed");
    answer
}

fn sequence_of(app_answer: &Answer) -> u64 {
    app_answer.assert_ok().sequence()
}

async fn stream_sequence(app: &TestApp, order: &str) -> u64 {
    app.store.load(order).await.expect("the stream loads").1
}

/// An order with a request of 60.00 waiting for the merchant (sequence 2).
async fn awaiting_merchant(app: &TestApp, id: &str) {
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 6_000).await.assert_ok();
}

/// Rejected, escalated and assigned to `arbitrator` (sequence 5).
async fn under_review(app: &TestApp, id: &str, arbitrator: &str) {
    awaiting_merchant(app, id).await;
    app.merchant_reject(id).await.assert_ok();
    app.escalate(id).await.assert_ok();
    let assigned = app.assign(id, arbitrator).await;
    assert_eq!((assigned.assert_ok().status_text(), assigned.sequence()), ("under_review", 5));
}

fn partial(amount: i64, return_required: bool) -> Value {
    json!({ "outcome": "refund_partial", "amount": cny(amount), "return_required": return_required, "rationale": "both at fault" })
}

fn request_body(amount: Value, evidence: Vec<Value>) -> Value {
    json!({
        "kind": "refund_only", "reason": "quality_issue", "amount": amount,
        "description": "the item is not what I paid for", "evidence": evidence,
    })
}

#[tokio::test]
async fn health_readiness_and_openapi_document() {
    let app = TestApp::postgres().await;
    let health = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let ready = app.send(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    let doc = app.send(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(doc.status, 200);
    let content_type = doc.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("application/json"), "openapi is JSON, got {content_type}");
    let version = doc.body["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");
    assert!(!dispute_api::ROUTES.is_empty());
    for route in dispute_api::ROUTES {
        let method = format!("{:?}", route.method).to_lowercase();
        let operation = &doc.body["paths"][route.path][&method];
        assert!(operation.is_object(), "{} {} is documented", method, route.path);
    }
}

#[tokio::test]
async fn an_accepted_command_carries_its_sequence_as_etag() {
    let app = TestApp::postgres().await;
    let registered = app.register(&order("o-1")).await;
    let requested = app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await;
    let offered = app.merchant_offer("o-1", 3_000).await;
    for (answer, sequence) in [(&registered, 1), (&requested, 2), (&offered, 3)] {
        assert_eq!(answer.assert_ok().sequence(), sequence);
        let etag = answer.headers.get("etag").and_then(|v| v.to_str().ok());
        assert_eq!(etag, Some(format!("\"{sequence}\"").as_str()), "ETag of {}", answer.body);
    }
    assert_eq!(offered.body["dispute_id"], "o-1");
    assert_eq!(offered.status_text(), "offer_pending");
    assert_eq!(offered.body["round"], 1);
    assert_eq!(offered.body["refunded_total"], cny(0));
}

#[tokio::test]
async fn malformed_requests_are_refused_with_400() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let buyer = app.token(Role::Buyer, BUYER);
    let merchant = app.token(Role::Merchant, MERCHANT);
    let system = app.token(Role::System, "order-service");
    let valid_evidence = json!({ "evidence": [evidence("photo")] });
    let long_key = "k".repeat(256);
    let mut with_status = order("o-1");
    with_status["status"] = json!("refunded");
    let other_id = order("o-2");

    // (what, method, path, token, body, headers)
    type Case<'a> = (&'a str, Method, &'a str, &'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("truncated JSON", Method::POST, "/v1/disputes/o-1/evidence", &buyer, r#"{"evidence": ["#.into(), vec![]),
        ("not JSON", Method::POST, "/v1/disputes/o-1/evidence", &buyer, "evidence please".into(), vec![]),
        ("an empty body", Method::POST, "/v1/disputes/o-1/evidence", &buyer, String::new(), vec![]),
        ("a missing field", Method::POST, "/v1/disputes/o-1/evidence", &buyer, "{}".into(), vec![]),
        (
            "an unknown field",
            Method::POST,
            "/v1/disputes/o-1/evidence",
            &buyer,
            json!({ "evidence": [evidence("photo")], "status": "refunded" }).to_string(),
            vec![],
        ),
        (
            "an unknown field in an evidence item",
            Method::POST,
            "/v1/disputes/o-1/evidence",
            &buyer,
            json!({ "evidence": [{ "kind": "photo", "uri": "https://e.example/1", "sha256": "a".repeat(64), "verified": true }] })
                .to_string(),
            vec![],
        ),
        (
            "an unknown evidence kind",
            Method::POST,
            "/v1/disputes/o-1/evidence",
            &buyer,
            json!({ "evidence": [{ "kind": "hologram", "uri": "https://e.example/1", "sha256": "a".repeat(64) }] })
                .to_string(),
            vec![],
        ),
        (
            "an unknown field on an optional body",
            Method::POST,
            "/v1/disputes/o-1/merchant-accept",
            &merchant,
            json!({ "status": "refunded" }).to_string(),
            vec![],
        ),
        (
            "an unknown field on withdraw",
            Method::POST,
            "/v1/disputes/o-1/withdraw",
            &buyer,
            json!({ "refunded_total": cny(6_000) }).to_string(),
            vec![],
        ),
        (
            "a body on accept-offer",
            Method::POST,
            "/v1/disputes/o-1/accept-offer",
            &buyer,
            json!({ "status": "refunded" }).to_string(),
            vec![],
        ),
        (
            "a fractional amount",
            Method::POST,
            "/v1/disputes/o-1/merchant-offer",
            &merchant,
            json!({ "amount": { "amount_minor": 30.5, "currency": "CNY" }, "note": "half" }).to_string(),
            vec![],
        ),
        (
            "an amount as a string",
            Method::POST,
            "/v1/disputes/o-1/merchant-offer",
            &merchant,
            json!({ "amount": { "amount_minor": "3000", "currency": "CNY" }, "note": "half" }).to_string(),
            vec![],
        ),
        (
            "an unknown field in a money object",
            Method::POST,
            "/v1/disputes/o-1/merchant-offer",
            &merchant,
            json!({ "amount": { "amount_minor": 3000, "currency": "CNY", "approved": true }, "note": "half" })
                .to_string(),
            vec![],
        ),
        (
            "an unknown rejection reason",
            Method::POST,
            "/v1/disputes/o-1/merchant-reject",
            &merchant,
            json!({ "reason_code": "because", "note": "no" }).to_string(),
            vec![],
        ),
        (
            "a status in the order facts",
            Method::PUT,
            "/v1/orders/o-1",
            &system,
            with_status.to_string(),
            vec![],
        ),
        (
            "an order id differing from the path",
            Method::PUT,
            "/v1/orders/o-1",
            &system,
            other_id.to_string(),
            vec![],
        ),
        (
            "a delivery time that is not a time",
            Method::POST,
            "/v1/orders/o-1/delivered",
            &system,
            json!({ "delivered_at": "yesterday" }).to_string(),
            vec![],
        ),
        (
            "an If-Match that is not a sequence",
            Method::POST,
            "/v1/disputes/o-1/evidence",
            &buyer,
            valid_evidence.to_string(),
            vec![("if-match", "abc")],
        ),
        (
            "a negative If-Match",
            Method::POST,
            "/v1/disputes/o-1/evidence",
            &buyer,
            valid_evidence.to_string(),
            vec![("if-match", "-1")],
        ),
        (
            "an Idempotency-Key too long",
            Method::POST,
            "/v1/disputes/o-1/evidence",
            &buyer,
            valid_evidence.to_string(),
            vec![("idempotency-key", long_key.as_str())],
        ),
    ];
    for (what, method, path, token, body, headers) in cases {
        let answer = refuse(
            &app,
            "o-1",
            400,
            "malformed_request",
            send_raw(&app, method, path, Some(token), body, &headers),
        )
        .await;
        assert_eq!(answer.code(), "malformed_request", "{what}");
    }
    assert_eq!(stream_sequence(&app, "o-2").await, 0, "o-2 was never registered");

    // Nothing was written: the next accepted command is the stream's third event.
    let accepted = app.command("o-1", "evidence", Role::Buyer, BUYER, valid_evidence).await;
    assert_eq!(sequence_of(&accepted), 3);
}

#[tokio::test]
async fn missing_token_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let body = json!({ "reason_code": "item_used", "note": "the tags were removed" });
    refuse(
        &app,
        "o-1",
        401,
        "unauthenticated",
        app.send(Method::POST, "/v1/disputes/o-1/merchant-reject", None, Some(&body), &[]),
    )
    .await;
    refuse(
        &app,
        "o-9",
        401,
        "unauthenticated",
        app.send(Method::PUT, "/v1/orders/o-9", None, Some(&order("o-9")), &[]),
    )
    .await;
    refuse(
        &app,
        "o-1",
        401,
        "unauthenticated",
        app.send(
            Method::POST,
            "/v1/disputes/o-1/merchant-reject",
            None,
            Some(&body),
            &[("authorization", "Basic bWVyY2hhbnQtMTpzZWNyZXQ=")],
        ),
    )
    .await;
    assert_eq!(sequence_of(&app.merchant_reject("o-1").await), 3);
}

#[tokio::test]
async fn wrong_role_is_403() {
    let app = TestApp::postgres().await;
    under_review(&app, "o-1", "arb-1").await;
    refuse(
        &app,
        "o-1",
        403,
        "forbidden",
        app.command("o-1", "merchant-accept", Role::Buyer, BUYER, json!({})),
    )
    .await;
    refuse(
        &app,
        "o-1",
        403,
        "forbidden",
        app.command(
            "o-1",
            "evidence",
            Role::Auditor,
            "auditor-1",
            json!({ "evidence": [evidence("photo")] }),
        ),
    )
    .await;
    refuse(
        &app,
        "o-1",
        403,
        "forbidden",
        app.command("o-1", "judge", Role::Buyer, BUYER, partial(6_000, false)),
    )
    .await;
    // Only the assigned arbitrator may judge.
    refuse(&app, "o-1", 403, "forbidden", app.judge("o-1", "arb-2", partial(3_000, false))).await;
    refuse(
        &app,
        "o-9",
        403,
        "forbidden",
        app.send(
            Method::PUT,
            "/v1/orders/o-9",
            Some(&app.token(Role::Buyer, BUYER)),
            Some(&order("o-9")),
            &[],
        ),
    )
    .await;
    assert_eq!(sequence_of(&app.judge("o-1", "arb-1", partial(3_000, false)).await), 6);
}

#[tokio::test]
async fn unknown_order_and_unknown_route_are_404() {
    let app = TestApp::postgres().await;
    refuse(
        &app,
        "o-404",
        404,
        "not_found",
        app.request_refund("o-404", "refund_only", "quality_issue", 1_000),
    )
    .await;
    refuse(&app, "o-404", 404, "not_found", app.merchant_accept("o-404")).await;
    refuse(&app, "o-404", 404, "not_found", app.delivered("o-404", epoch())).await;
    refuse(&app, "o-404", 404, "not_found", app.refund_paid("o-404", 1_000)).await;

    let token = app.token(Role::Buyer, BUYER);
    for (method, path) in [
        (Method::GET, "/v1/nowhere"),
        (Method::POST, "/v1/disputes/o-404/explode"),
        (Method::POST, "/v2/disputes/o-404/request"),
    ] {
        let answer = app.send(method, path, Some(&token), Some(&json!({})), &[]).await;
        answer.assert_problem(404, "not_found");
    }
    assert_eq!(stream_sequence(&app, "o-404").await, 0);
}

#[tokio::test]
async fn commands_that_do_not_apply_now_are_409_invalid_transition() {
    let app = TestApp::postgres().await;
    assert_eq!(sequence_of(&app.register(&order("o-1")).await), 1);
    refuse(&app, "o-1", 409, "invalid_transition", app.merchant_accept("o-1")).await;
    refuse(&app, "o-1", 409, "invalid_transition", app.escalate("o-1")).await;
    refuse(&app, "o-1", 409, "invalid_transition", app.refund_paid("o-1", 6_000)).await;

    // The same facts again answer as before; other facts are refused; delivery is fixed once known.
    assert_eq!(sequence_of(&app.register(&order("o-1")).await), 1);
    let mut changed = order("o-1");
    changed["paid_amount"] = cny(20_000);
    refuse(&app, "o-1", 409, "invalid_transition", app.register(&changed)).await;
    refuse(&app, "o-1", 409, "invalid_transition", app.delivered("o-1", epoch())).await;

    assert_eq!(sequence_of(&app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await), 2);
    refuse(
        &app,
        "o-1",
        409,
        "invalid_transition",
        app.request_refund("o-1", "refund_only", "quality_issue", 6_000),
    )
    .await;
    refuse(
        &app,
        "o-1",
        409,
        "invalid_transition",
        app.command("o-1", "accept-offer", Role::Buyer, BUYER, json!({})),
    )
    .await;
    refuse(&app, "o-1", 409, "invalid_transition", app.assign("o-1", "arb-1")).await;
    refuse(&app, "o-1", 409, "invalid_transition", app.judge("o-1", "arb-1", partial(3_000, false))).await;
    assert_eq!(sequence_of(&app.merchant_reject("o-1").await), 3);
}

#[tokio::test]
async fn stale_if_match_is_409_concurrent_modification() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let merchant = app.token(Role::Merchant, MERCHANT);
    let body = json!({ "evidence": [evidence("receipt")] });
    let path = "/v1/disputes/o-1/evidence";
    for stale in ["1", "\"1\"", "3", "W/\"0\""] {
        refuse(
            &app,
            "o-1",
            409,
            "concurrent_modification",
            app.send(Method::POST, path, Some(&merchant), Some(&body), &[("if-match", stale)]),
        )
        .await;
    }
    // The current sequence, as the last answer's ETag gave it, is accepted.
    let accepted = app.send(Method::POST, path, Some(&merchant), Some(&body), &[("if-match", "\"2\"")]).await;
    assert_eq!(sequence_of(&accepted), 3);
    let etag = accepted.headers.get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_string();
    refuse(
        &app,
        "o-1",
        409,
        "concurrent_modification",
        app.send(Method::POST, path, Some(&merchant), Some(&body), &[("if-match", "\"2\"")]),
    )
    .await;
    let next = app.send(Method::POST, path, Some(&merchant), Some(&body), &[("if-match", &etag)]).await;
    assert_eq!(sequence_of(&next), 4);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_409() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let merchant = app.token(Role::Merchant, MERCHANT);
    let path = "/v1/disputes/o-1/evidence";
    let key = [("idempotency-key", "key-1")];
    let first = app
        .send(Method::POST, path, Some(&merchant), Some(&json!({ "evidence": [evidence("photo")] })), &key)
        .await;
    assert_eq!(sequence_of(&first), 3);
    refuse(
        &app,
        "o-1",
        409,
        "idempotency_key_reused",
        app.send(
            Method::POST,
            path,
            Some(&merchant),
            Some(&json!({ "evidence": [evidence("video")] })),
            &key,
        ),
    )
    .await;
    assert_eq!(sequence_of(&app.merchant_reject("o-1").await), 4);
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = TestApp::postgres().await;
    assert_eq!(sequence_of(&app.register(&order("o-1")).await), 1);
    let mut body = request_body(cny(6_000), vec![evidence("photo")]);
    body["description"] = json!("x".repeat(70 * 1024));
    let answer = refuse(
        &app,
        "o-1",
        413,
        "payload_too_large",
        app.send(
            Method::POST,
            "/v1/disputes/o-1/request",
            Some(&app.token(Role::Buyer, BUYER)),
            Some(&body),
            &[],
        ),
    )
    .await;
    assert_eq!(answer.status, 413);
    assert_eq!(sequence_of(&app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await), 2);
}

#[tokio::test]
async fn a_request_breaking_a_rule_is_422() {
    let app = TestApp::postgres().await;
    assert_eq!(sequence_of(&app.register(&order("o-1")).await), 1);
    let too_much: Vec<Value> = (0..21).map(|_| evidence("photo")).collect();
    let mut blank = request_body(cny(6_000), vec![]);
    blank["description"] = json!("   ");
    let bad_sha = json!({ "kind": "photo", "uri": "https://e.example/1", "sha256": "abc" });
    let not_hex = json!({ "kind": "photo", "uri": "https://e.example/1", "sha256": "g".repeat(64) });
    let no_uri = json!({ "kind": "photo", "uri": " ", "sha256": "a".repeat(64) });
    let cases = [
        (request_body(cny(10_001), vec![]), "amount_exceeds_refundable"),
        (request_body(cny(0), vec![]), "invalid_amount"),
        (request_body(cny(-100), vec![]), "invalid_amount"),
        (request_body(json!({ "amount_minor": 100, "currency": "cny" }), vec![]), "invalid_currency"),
        (request_body(json!({ "amount_minor": 100, "currency": "USD" }), vec![]), "currency_mismatch"),
        (request_body(cny(6_000), too_much), "too_much_evidence"),
        (request_body(cny(6_000), vec![bad_sha.clone()]), "invalid_evidence"),
        (request_body(cny(6_000), vec![not_hex]), "invalid_evidence"),
        (request_body(cny(6_000), vec![no_uri]), "invalid_evidence"),
        (blank, "empty_field"),
    ];
    for (body, code) in cases {
        refuse(&app, "o-1", 422, code, app.command("o-1", "request", Role::Buyer, BUYER, body)).await;
    }

    // Twenty items are the limit per party and dispute.
    let twenty: Vec<Value> = (0..20).map(|_| evidence("photo")).collect();
    let requested =
        app.command("o-1", "request", Role::Buyer, BUYER, request_body(cny(10_000), twenty)).await;
    assert_eq!(sequence_of(&requested), 2);
    for (body, code) in [
        (json!({ "evidence": [evidence("video")] }), "too_much_evidence"),
        (json!({ "evidence": [] }), "empty_field"),
        (json!({ "evidence": [bad_sha] }), "invalid_evidence"),
    ] {
        refuse(&app, "o-1", 422, code, app.command("o-1", "evidence", Role::Buyer, BUYER, body)).await;
    }
    let merchant = app.command(
        "o-1",
        "evidence",
        Role::Merchant,
        MERCHANT,
        json!({ "evidence": [evidence("receipt")] }),
    );
    assert_eq!(sequence_of(&merchant.await), 3);
}

#[tokio::test]
async fn registering_bad_order_facts_is_422() {
    let app = TestApp::postgres().await;
    let long_id = "o".repeat(129);
    refuse(&app, &long_id, 422, "invalid_order_id", app.register(&order(&long_id))).await;
    let mut no_buyer = order("o-1");
    no_buyer["buyer_id"] = json!(" ");
    refuse(&app, "o-1", 422, "empty_field", app.register(&no_buyer)).await;
    let mut nothing_paid = order("o-1");
    nothing_paid["paid_amount"] = cny(0);
    refuse(&app, "o-1", 422, "invalid_amount", app.register(&nothing_paid)).await;
    let mut bad_currency = order("o-1");
    bad_currency["paid_amount"] = json!({ "amount_minor": 100, "currency": "yuan" });
    refuse(&app, "o-1", 422, "invalid_currency", app.register(&bad_currency)).await;
    assert_eq!(sequence_of(&app.register(&order("o-1")).await), 1);
}

#[tokio::test]
async fn outside_the_request_window_is_422() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let mut gadget = order("o-2");
    gadget["category"] = json!("electronics");
    app.register(&gadget).await.assert_ok();
    // Delivered a day before the epoch: seven days from delivery end six days after it.
    app.advance(Duration::days(6) + Duration::seconds(1));
    refuse(
        &app,
        "o-1",
        422,
        "outside_request_window",
        app.request_refund("o-1", "refund_only", "quality_issue", 6_000),
    )
    .await;
    // Electronics grant fifteen days.
    assert_eq!(sequence_of(&app.request_refund("o-2", "refund_only", "quality_issue", 6_000).await), 2);

    // A delivery recorded later counts from its own time.
    let mut late = order("o-3");
    late["delivered_at"] = Value::Null;
    app.register(&late).await.assert_ok();
    app.delivered("o-3", app.now() - Duration::days(8)).await.assert_ok();
    refuse(
        &app,
        "o-3",
        422,
        "outside_request_window",
        app.request_refund("o-3", "refund_only", "quality_issue", 6_000),
    )
    .await;
    assert_eq!(stream_sequence(&app, "o-3").await, 2);
}

#[tokio::test]
async fn no_reason_where_the_category_forbids_it_is_422() {
    let app = TestApp::postgres().await;
    let mut fresh = order("o-1");
    fresh["category"] = json!("fresh");
    app.register(&fresh).await.assert_ok();
    refuse(
        &app,
        "o-1",
        422,
        "no_reason_not_allowed",
        app.request_refund("o-1", "return_and_refund", "no_reason_7d", 6_000),
    )
    .await;
    assert_eq!(sequence_of(&app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await), 2);
    app.register(&order("o-2")).await.assert_ok();
    assert_eq!(sequence_of(&app.request_refund("o-2", "return_and_refund", "no_reason_7d", 6_000).await), 2);
}

#[tokio::test]
async fn a_shipped_undelivered_order_only_for_not_received_is_422() {
    let app = TestApp::postgres().await;
    let mut in_transit = order("o-1");
    in_transit["delivered_at"] = Value::Null;
    app.register(&in_transit).await.assert_ok();
    refuse(
        &app,
        "o-1",
        422,
        "reason_not_allowed",
        app.request_refund("o-1", "refund_only", "quality_issue", 6_000),
    )
    .await;
    assert_eq!(sequence_of(&app.request_refund("o-1", "refund_only", "not_received", 6_000).await), 2);
}

#[tokio::test]
async fn a_fourth_round_is_422_max_rounds_reached() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    for round in 1..=3u64 {
        app.request_refund("o-1", "refund_only", "quality_issue", 1_000).await.assert_ok();
        let withdrawn = app.command("o-1", "withdraw", Role::Buyer, BUYER, json!({})).await;
        assert_eq!((sequence_of(&withdrawn), withdrawn.status_text()), (1 + 2 * round, "closed"));
    }
    refuse(
        &app,
        "o-1",
        422,
        "max_rounds_reached",
        app.request_refund("o-1", "refund_only", "quality_issue", 1_000),
    )
    .await;
    assert_eq!(stream_sequence(&app, "o-1").await, 7);
}

#[tokio::test]
async fn merchant_answers_breaking_a_rule_are_422() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let offer = |amount: Value, note: &str| json!({ "amount": amount, "note": note });
    let cases = [
        ("merchant-offer", offer(cny(6_000), "all of it"), "offer_not_below_request"),
        ("merchant-offer", offer(cny(7_000), "more"), "offer_not_below_request"),
        ("merchant-offer", offer(cny(0), "nothing"), "invalid_amount"),
        (
            "merchant-offer",
            offer(json!({ "amount_minor": 100, "currency": "EUR" }), "euros"),
            "currency_mismatch",
        ),
        ("merchant-offer", offer(cny(3_000), ""), "empty_field"),
        ("merchant-reject", json!({ "reason_code": "other", "note": " " }), "empty_field"),
        (
            "merchant-reject",
            json!({ "reason_code": "other", "note": "see photo", "evidence": [{ "kind": "photo", "uri": "u", "sha256": "00" }] }),
            "invalid_evidence",
        ),
    ];
    for (command, body, code) in cases {
        refuse(&app, "o-1", 422, code, app.command("o-1", command, Role::Merchant, MERCHANT, body)).await;
    }
    assert_eq!(sequence_of(&app.merchant_offer("o-1", 3_000).await), 3);
}

#[tokio::test]
async fn answering_after_the_merchant_deadline_is_422() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    app.advance(Duration::hours(48) + Duration::seconds(1));
    refuse(&app, "o-1", 422, "response_deadline_passed", app.merchant_reject("o-1")).await;
    refuse(&app, "o-1", 422, "response_deadline_passed", app.merchant_offer("o-1", 3_000)).await;
    // The buyer may escalate: the missed deadline and the escalation are two events.
    let escalated = app.escalate("o-1").await;
    assert_eq!((sequence_of(&escalated), escalated.status_text()), (4, "escalated"));
}

#[tokio::test]
async fn escalating_after_the_window_is_422() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    app.merchant_reject("o-1").await.assert_ok();
    let blank = json!({ "note": "" });
    refuse(&app, "o-1", 422, "empty_field", app.command("o-1", "escalate", Role::Buyer, BUYER, blank)).await;
    app.advance(Duration::days(7) + Duration::seconds(1));
    refuse(&app, "o-1", 422, "escalation_window_closed", app.escalate("o-1")).await;
    let withdrawn = app.command("o-1", "withdraw", Role::Buyer, BUYER, json!({ "note": "never mind" })).await;
    assert_eq!((sequence_of(&withdrawn), withdrawn.status_text()), (4, "closed"));
}

#[tokio::test]
async fn evidence_after_the_window_is_422() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    app.merchant_reject("o-1").await.assert_ok();
    app.escalate("o-1").await.assert_ok();
    app.advance(Duration::hours(72) + Duration::seconds(1));
    for (role, sub) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT)] {
        let body = json!({ "evidence": [evidence("chat_log")] });
        refuse(&app, "o-1", 422, "evidence_window_closed", app.command("o-1", "evidence", role, sub, body))
            .await;
    }
    assert_eq!(sequence_of(&app.assign("o-1", "arb-1").await), 5);
}

#[tokio::test]
async fn rulings_breaking_a_rule_are_422() {
    let app = TestApp::postgres().await;
    under_review(&app, "o-1", "arb-1").await;
    let ruling = |outcome: &str, amount: Option<Value>, return_required: bool, rationale: &str| {
        let mut body =
            json!({ "outcome": outcome, "return_required": return_required, "rationale": rationale });
        if let Some(amount) = amount {
            body["amount"] = amount;
        }
        body
    };
    let cases = [
        (ruling("refund_partial", None, false, "half"), "amount_required"),
        (ruling("refund_full", Some(cny(6_000)), false, "all"), "amount_not_allowed"),
        (ruling("no_refund", Some(cny(1)), false, "none"), "amount_not_allowed"),
        (ruling("no_refund", None, true, "none"), "return_without_refund"),
        (ruling("refund_partial", Some(cny(10_001)), false, "more than paid"), "amount_exceeds_refundable"),
        (ruling("refund_partial", Some(cny(0)), false, "zero"), "invalid_amount"),
        (
            ruling(
                "refund_partial",
                Some(json!({ "amount_minor": 100, "currency": "USD" })),
                false,
                "dollars",
            ),
            "currency_mismatch",
        ),
        (ruling("refund_partial", Some(cny(3_000)), false, "  "), "empty_field"),
    ];
    for (body, code) in cases {
        refuse(&app, "o-1", 422, code, app.judge("o-1", "arb-1", body)).await;
    }
    assert_eq!(sequence_of(&app.judge("o-1", "arb-1", partial(3_000, false)).await), 6);
}

#[tokio::test]
async fn assigning_the_first_arbitrator_to_an_appeal_is_422() {
    let app = TestApp::postgres().await;
    under_review(&app, "o-1", "arb-1").await;
    app.judge("o-1", "arb-1", partial(3_000, false)).await.assert_ok();
    let appealed =
        app.command("o-1", "appeal", Role::Merchant, MERCHANT, json!({ "note": "too much" })).await;
    assert_eq!((sequence_of(&appealed), appealed.status_text()), (7, "appealed"));
    refuse(&app, "o-1", 422, "same_arbitrator", app.assign("o-1", "arb-1")).await;
    refuse(
        &app,
        "o-1",
        422,
        "empty_field",
        app.command("o-1", "assign", Role::Arbitrator, "arb-2", json!({ "arbitrator_id": "" })),
    )
    .await;
    assert_eq!(sequence_of(&app.assign("o-1", "arb-2").await), 8);
}

#[tokio::test]
async fn appealing_after_the_window_is_422() {
    let app = TestApp::postgres().await;
    under_review(&app, "o-1", "arb-1").await;
    app.judge("o-1", "arb-1", partial(3_000, false)).await.assert_ok();
    refuse(
        &app,
        "o-1",
        422,
        "empty_field",
        app.command("o-1", "appeal", Role::Buyer, BUYER, json!({ "note": "" })),
    )
    .await;
    app.advance(Duration::days(3) + Duration::seconds(1));
    for (role, sub) in [(Role::Buyer, BUYER), (Role::Merchant, MERCHANT)] {
        let body = json!({ "note": "unfair" });
        refuse(&app, "o-1", 422, "appeal_window_closed", app.command("o-1", "appeal", role, sub, body)).await;
    }
    assert_eq!(sequence_of(&app.refund_paid("o-1", 3_000).await), 7);
}

#[tokio::test]
async fn shipping_a_return_after_the_window_is_422() {
    let app = TestApp::postgres().await;
    under_review(&app, "o-1", "arb-1").await;
    let ruled = app.judge("o-1", "arb-1", partial(3_000, true)).await;
    assert_eq!((sequence_of(&ruled), ruled.status_text()), (6, "awaiting_return"));
    let ship = |carrier: &str| json!({ "carrier": carrier, "tracking_number": "SF123" });
    refuse(&app, "o-1", 422, "empty_field", app.command("o-1", "ship-return", Role::Buyer, BUYER, ship("")))
        .await;
    app.advance(Duration::days(7) + Duration::seconds(1));
    refuse(
        &app,
        "o-1",
        422,
        "return_window_closed",
        app.command("o-1", "ship-return", Role::Buyer, BUYER, ship("SF Express")),
    )
    .await;
    assert_eq!(stream_sequence(&app, "o-1").await, 6);
}

#[tokio::test]
async fn a_refund_paid_unlike_the_approval_is_422() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let accepted = app.merchant_accept("o-1").await;
    assert_eq!((sequence_of(&accepted), accepted.status_text()), (3, "refund_pending"));
    let paid = |amount: Value, channel: &str, payment_ref: &str| json!({ "amount": amount, "channel": channel, "payment_ref": payment_ref, "paid_at": epoch() });
    let cases = [
        (paid(cny(5_999), "alipay", "pay-1"), "amount_mismatch"),
        (paid(cny(10_000), "alipay", "pay-1"), "amount_mismatch"),
        (paid(cny(6_000), "wechat_pay", "pay-1"), "channel_mismatch"),
        (paid(cny(6_000), "bank_card", "pay-1"), "channel_mismatch"),
        (paid(json!({ "amount_minor": 6_000, "currency": "USD" }), "alipay", "pay-1"), "currency_mismatch"),
        (paid(cny(-6_000), "alipay", "pay-1"), "invalid_amount"),
        (paid(cny(6_000), "alipay", ""), "empty_field"),
        (
            json!({ "amount": cny(6_000), "channel": "alipay", "payment_ref": "pay-1", "paid_at": "2030-01-01T00:00:00Z" }),
            "paid_in_future",
        ),
        (
            json!({ "amount": cny(6_000), "channel": "alipay", "payment_ref": "pay-1", "paid_at": epoch() - Duration::days(1) }),
            "paid_before_approval",
        ),
    ];
    for (body, code) in cases {
        refuse(&app, "o-1", 422, code, app.command("o-1", "refund-paid", Role::System, "payments", body))
            .await;
    }
    let done = app.refund_paid("o-1", 6_000).await;
    assert_eq!((sequence_of(&done), done.status_text()), (4, "refunded"));
    // Exactly once per approval.
    refuse(&app, "o-1", 409, "invalid_transition", app.refund_paid("o-1", 6_000)).await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_a_problem_too() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let token = app.token(Role::Buyer, BUYER);
    for (method, path) in [
        (Method::GET, "/v1/disputes/o-1/request"),
        (Method::PUT, "/v1/disputes/o-1/request"),
        (Method::DELETE, "/v1/orders/o-1"),
    ] {
        let answer = app.send(method.clone(), path, Some(&token), Some(&json!({})), &[]).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        let content_type = answer.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(content_type, "application/problem+json", "{method} {path}: errors are problems");
        assert_eq!(answer.body["status"], 405, "{method} {path}: {}", answer.body);
        assert!(!answer.code().is_empty(), "{method} {path}: a problem has a code");
    }
    assert_eq!(stream_sequence(&app, "o-1").await, 1);
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_query_or_path_axum_cannot_read_is_400_malformed_request() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let merchant = app.token(Role::Merchant, MERCHANT);
    let buyer = app.token(Role::Buyer, BUYER);
    let auditor = app.token(Role::Auditor, "auditor-1");

    // (path, token, a word the detail names)
    let reads = [
        ("/v1/merchants/merchant-1/disputes?limit=abc", &merchant, "limit"),
        ("/v1/merchants/merchant-1/disputes?limit=-1", &merchant, "limit"),
        ("/v1/merchants/merchant-1/disputes?colour=red", &merchant, "colour"),
        ("/v1/audit/disputes/o-1?as_of=2026-06-01T08:00:00Z&colour=red", &auditor, "colour"),
        // %FF decodes to a byte that is not UTF-8.
        ("/v1/disputes/%FF", &buyer, "UTF-8"),
        ("/v1/disputes/%FF/timeline", &buyer, "UTF-8"),
        ("/v1/buyers/%FF/disputes", &buyer, "UTF-8"),
        ("/v1/merchants/%C3%28/summary", &merchant, "UTF-8"),
        ("/v1/audit/disputes/%FF/events", &auditor, "UTF-8"),
    ];
    for (path, token, named) in reads {
        let answer = app.send(Method::GET, path, Some(token), None, &[]).await;
        answer.assert_problem(400, "malformed_request");
        let detail = answer.body["detail"].as_str().unwrap_or("");
        assert!(detail.contains(named), "GET {path}: the detail names {named}: {detail}");
    }

    // A command route's path is read before the body, and refused the same way.
    let body = request_body(cny(6_000), vec![evidence("photo")]);
    let answer = app.send(Method::POST, "/v1/disputes/%FF/request", Some(&buyer), Some(&body), &[]).await;
    answer.assert_problem(400, "malformed_request");
    let answer =
        send_raw(&app, Method::PUT, "/v1/orders/%FF", Some(&app.token(Role::System, "orders")), "{", &[])
            .await;
    answer.assert_problem(400, "malformed_request");
    assert_eq!(stream_sequence(&app, "o-1").await, 1);
}

#[tokio::test]
async fn a_401_challenges_for_a_bearer_token() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let foreign = TokenKeys::new("another-secret-of-at-least-32-bytes!!")
        .issue(&Actor::new(Role::Buyer, BUYER), Duration::hours(1));
    let expired = TokenKeys::new(SECRET).issue(&Actor::new(Role::Buyer, BUYER), Duration::hours(-1));
    // (what, token, headers, the challenge)
    type Case<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        ("no token", None, &[], "Bearer"),
        ("another scheme", None, &[("authorization", "Basic YnV5ZXItMTpzZWNyZXQ=")], "Bearer"),
        ("a token signed with another secret", Some(&foreign), &[], r#"Bearer error="invalid_token""#),
        ("an expired token", Some(&expired), &[], r#"Bearer error="invalid_token""#),
        ("not a JWT", Some("not-a-jwt"), &[], r#"Bearer error="invalid_token""#),
    ];
    for (what, token, headers, challenge) in cases {
        for (method, path) in [(Method::GET, "/v1/disputes/o-1"), (Method::POST, "/v1/disputes/o-1/withdraw")]
        {
            let answer = app.send(method.clone(), path, token, Some(&json!({})), headers).await;
            answer.assert_problem(401, "unauthenticated");
            assert_eq!(header(&answer, "www-authenticate"), Some(challenge), "{what}: {method} {path}");
        }
    }
    assert_eq!(stream_sequence(&app, "o-1").await, 1);
}

#[tokio::test]
async fn a_view_that_stays_behind_says_when_to_retry() {
    let app = TestApp::postgres().await;
    let registered = app.register(&order("o-1")).await.assert_ok().sequence();
    let token = app.token(Role::Buyer, BUYER);
    let wanted = (registered + 100).to_string();
    let answer =
        app.send(Method::GET, "/v1/disputes/o-1", Some(&token), None, &[("x-min-sequence", &wanted)]).await;
    answer.assert_problem(409, "view_behind");
    assert_eq!(header(&answer, "retry-after"), Some("1"));
}

#[tokio::test]
async fn not_ready_says_when_to_retry() {
    let app = TestApp::postgres().await;
    app.send(Method::GET, "/readyz", None, None, &[]).await.assert_ok();
    // Closing the store's pool is the database going away, as the readiness check sees it.
    // (Closing waits for connections in use; the pool refuses new work at once.)
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), app.store.close()).await;
    let answer = app.send(Method::GET, "/readyz", None, None, &[]).await;
    answer.assert_problem(503, "not_ready");
    assert_eq!(header(&answer, "retry-after"), Some("5"));
}

/// A lost connection to the database is the store not answering, not an internal failure:
/// 503 `not_ready` with `Retry-After`, for a command and for a read, nothing written; once the
/// database answers again, the same command goes through, once.
#[tokio::test]
async fn a_lost_database_connection_answers_not_ready_and_the_command_goes_through_after_it() {
    let (app, proxy) = TestApp::postgres_through_proxy(Setup::default()).await;
    app.register(&order("o-1")).await.assert_ok();

    proxy.cut();
    let app = &app;
    let command = || {
        let key = [("idempotency-key", "request-o-1")];
        let body = json!({
            "kind": "refund_only", "reason": "quality_issue", "amount": cny(6_000),
            "description": "the item is not what I paid for", "evidence": [evidence("photo")],
        });
        let token = app.token(Role::Buyer, BUYER);
        async move { app.send(Method::POST, "/v1/disputes/o-1/request", Some(&token), Some(&body), &key).await }
    };
    let lost = command().await;
    lost.assert_problem(503, "not_ready");
    assert_eq!(header(&lost, "retry-after"), Some("5"));
    let queue = app.token(Role::Arbitrator, "arb-1");
    app.send(Method::GET, "/v1/platform/queue", Some(&queue), None, &[])
        .await
        .assert_problem(503, "not_ready");

    proxy.heal();
    let answer = past_lost_connections(command).await;
    assert_eq!(answer.assert_ok().sequence(), 2, "{}", answer.body);
    let (_, sequence) = app.store.load("o-1").await.expect("the stream loads");
    assert_eq!(sequence, 2, "the command took effect once");
}

/// A refusal says what would have been allowed: how much is refundable, when the window
/// ended, that a ruling on appeal is final.
#[tokio::test]
async fn refusals_say_why_in_their_detail() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let too_much = refuse(
        &app,
        "o-1",
        422,
        "amount_exceeds_refundable",
        app.request_refund("o-1", "refund_only", "quality_issue", 10_001),
    )
    .await;
    let detail = too_much.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("at most 100.00 CNY (10000 minor units) is refundable"), "{}", too_much.body);

    // Delivered a day before the epoch: the seven days end six days after it.
    app.advance(Duration::days(6) + Duration::seconds(1));
    let late = refuse(
        &app,
        "o-1",
        422,
        "outside_request_window",
        app.request_refund("o-1", "refund_only", "quality_issue", 100),
    )
    .await;
    let detail = late.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("7 days from delivery, which ended at 2026-06-07T08:00:00Z"), "{}", late.body);
}

#[tokio::test]
async fn an_appeal_of_a_final_ruling_says_the_ruling_is_final() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_reject("o-1").await.assert_ok();
    app.escalate("o-1").await.assert_ok();
    app.assign("o-1", "arb-1").await.assert_ok();
    let no_refund =
        json!({ "outcome": "no_refund", "return_required": false, "rationale": "the item was used" });
    app.judge("o-1", "arb-1", no_refund.clone()).await.assert_ok();
    let appeal = json!({ "note": "the ruling ignores the chat log" });
    app.command("o-1", "appeal", Role::Buyer, BUYER, appeal.clone()).await.assert_ok();
    app.assign("o-1", "arb-2").await.assert_ok();
    app.judge("o-1", "arb-2", no_refund).await.assert_ok();
    let again = refuse(
        &app,
        "o-1",
        409,
        "invalid_transition",
        app.command("o-1", "appeal", Role::Buyer, BUYER, appeal),
    )
    .await;
    let detail = again.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("final"), "{}", again.body);
}

/// Category names match without regard to case: a `Fresh` order has fresh food's rules.
#[tokio::test]
async fn a_category_in_other_letters_has_its_rules() {
    let app = TestApp::postgres().await;
    let mut fresh = order("o-1");
    fresh["category"] = json!("Fresh");
    app.register(&fresh).await.assert_ok();
    refuse(
        &app,
        "o-1",
        422,
        "no_reason_not_allowed",
        app.request_refund("o-1", "return_and_refund", "changed_mind", 6_000),
    )
    .await;
    // An order in a category the policy does not name is registered, with the default rules.
    let mut tools = order("o-2");
    tools["category"] = json!("Garden tools");
    app.register(&tools).await.assert_ok();
    app.request_refund("o-2", "return_and_refund", "changed_mind", 6_000).await.assert_ok();
}

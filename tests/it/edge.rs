//! The HTTP edge behind a load balancer: time limits on requests and on their headers, the
//! correlation id from request to answer, event and published CloudEvent, CORS from the
//! configuration, rate limits per caller.

use std::num::NonZeroU32;
use std::time::Duration;

use dispute_api::EdgeConfig;
use dispute_bus::CloudEvent;
use dispute_domain::Role;
use disputes_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above the one-second limits the edge runs with here: an answer or a close before it is
/// the limit at work, not the test's patience.
const BOUND: Duration = Duration::from_secs(10);

/// The service on the embedded store with one-second request and header limits.
async fn quick_limits() -> TestApp {
    with_edge(EdgeConfig {
        request_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        ..EdgeConfig::default()
    })
    .await
}

async fn with_edge(edge: EdgeConfig) -> TestApp {
    TestApp::sqlite_with(Setup { edge, ..Setup::default() }).await
}

fn system_token(app: &TestApp) -> String {
    app.token(Role::System, "order-service")
}

/// Everything the server sends until it closes the connection (or the bound passes: panics).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut received))
        .await
        .expect("the server answers or closes before the bound")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_request_timeout() {
    let edge = quick_limits().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    let head = format!(
        "PUT /v1/orders/o-1 HTTP/1.1\r\nhost: disputes\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"order_id\":",
        system_token(&edge)
    );
    stream.write_all(head.as_bytes()).await.expect("sends the headers and part of the body");

    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn half_a_request_line_is_disconnected() {
    let edge = quick_limits().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    stream.write_all(b"GET /healthz HT").await.expect("sends half a request line");

    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "no answer to an unfinished request: {answer}");
}

#[tokio::test]
async fn stalled_headers_are_disconnected() {
    let edge = quick_limits().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: disputes\r\n").await.expect("sends some headers");

    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "no answer to unfinished headers: {answer}");
}

#[tokio::test]
async fn a_prompt_request_is_answered_within_the_limits() {
    let edge = quick_limits().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: disputes\r\nconnection: close\r\n\r\n")
        .await
        .expect("sends a request");

    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The correlation id the answer carries, the one in the events' metadata and the one the
/// relay publishes with them.
async fn correlation_ids(
    app: &TestApp,
    order_id: &str,
    answer: &Answer,
) -> (String, Vec<String>, Vec<String>) {
    let answered = answer.headers.get("x-correlation-id").expect("the answer names its correlation id");
    let answered = answered.to_str().expect("a text header").to_string();
    let events = app.store.whole_stream(order_id).await.expect("the stream reads");
    assert!(!events.is_empty(), "the command wrote events");
    let stored = events.iter().map(|e| e.typed_metadata().expect("metadata").correlation_id).collect();
    let published = events
        .iter()
        .map(|e| {
            let json = serde_json::to_value(CloudEvent::from_stored(e, "disputes")).expect("serializes");
            json["correlationid"].as_str().expect("the extension correlationid").to_string()
        })
        .collect();
    (answered, stored, published)
}

#[tokio::test]
async fn the_callers_correlation_id_is_echoed_and_travels_with_the_events() {
    let app = TestApp::sqlite().await;
    let token = app.token(Role::System, "order-service");
    let answer = app
        .send(
            reqwest::Method::PUT,
            "/v1/orders/c-1",
            Some(&token),
            Some(&order("c-1")),
            &[("x-correlation-id", "checkout-42")],
        )
        .await;
    answer.assert_ok();

    let (answered, stored, published) = correlation_ids(&app, "c-1", &answer).await;
    assert_eq!(answered, "checkout-42");
    assert!(stored.iter().all(|id| id == "checkout-42"), "{stored:?}");
    assert!(published.iter().all(|id| id == "checkout-42"), "{published:?}");
}

#[tokio::test]
async fn without_a_correlation_id_one_is_generated_and_used_throughout() {
    let app = TestApp::sqlite().await;
    let answer = app.register(&order("c-2")).await;
    answer.assert_ok();

    let (answered, stored, published) = correlation_ids(&app, "c-2", &answer).await;
    assert!(uuid::Uuid::parse_str(&answered).is_ok(), "a generated UUID: {answered}");
    assert!(stored.iter().all(|id| *id == answered), "{stored:?} vs {answered}");
    assert!(published.iter().all(|id| *id == answered), "{published:?} vs {answered}");
}

#[tokio::test]
async fn every_answer_echoes_the_correlation_id() {
    let app = TestApp::sqlite().await;
    for (path, token) in [("/healthz", None), ("/no/such/route", None), ("/v1/disputes/nope", None)] {
        let answer =
            app.send(reqwest::Method::GET, path, token, None, &[("x-correlation-id", "probe-7")]).await;
        let echoed = answer.headers.get("x-correlation-id").and_then(|v| v.to_str().ok());
        assert_eq!(echoed, Some("probe-7"), "{path} answered {}", answer.status);
    }
    let too_long = "x".repeat(129);
    let answer =
        app.send(reqwest::Method::GET, "/healthz", None, None, &[("x-correlation-id", &too_long)]).await;
    let echoed = answer.headers.get("x-correlation-id").and_then(|v| v.to_str().ok()).expect("an id");
    assert!(uuid::Uuid::parse_str(echoed).is_ok(), "an over-long id is replaced: {echoed}");
}

const SHOP: &str = "https://shop.example";

async fn with_cors(origins: &str) -> TestApp {
    let cors_origins = dispute_api::parse_cors_origins(origins).expect("origins");
    with_edge(EdgeConfig { cors_origins, ..EdgeConfig::default() }).await
}

/// A browser's preflight for a command from `origin`.
async fn preflight(edge: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("http://{}/v1/disputes/o-1/request", edge.addr))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, idempotency-key")
        .send()
        .await
        .expect("the service answers")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_preflight_from_a_configured_origin_is_allowed() {
    let edge = with_cors("https://admin.example, https://shop.example").await;
    let answer = preflight(&edge, SHOP).await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(SHOP));
    let methods = header(&answer, "access-control-allow-methods").expect("allowed methods");
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&answer, "access-control-allow-headers").expect("allowed headers");
    for name in ["authorization", "content-type", "idempotency-key"] {
        assert!(headers.contains(name), "{name} in {headers}");
    }

    let answer = reqwest::Client::new()
        .get(format!("http://{}/healthz", edge.addr))
        .header("origin", SHOP)
        .send()
        .await
        .expect("the service answers");
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(SHOP));
    let exposed = header(&answer, "access-control-expose-headers").expect("exposed headers");
    assert!(exposed.contains("x-correlation-id"), "{exposed}");
}

#[tokio::test]
async fn a_preflight_from_another_origin_is_not_allowed() {
    let edge = with_cors(SHOP).await;
    let answer = preflight(&edge, "https://elsewhere.example").await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors() {
    let edge = with_cors("").await;
    let answer = preflight(&edge, SHOP).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    assert_eq!(header(&answer, "access-control-allow-methods"), None);
}

/// The whole-seconds wait an answer asks for.
fn retry_after(answer: &Answer) -> u64 {
    let value = answer.headers.get("retry-after").expect("a Retry-After header");
    value.to_str().ok().and_then(|text| text.parse().ok()).expect("whole seconds")
}

#[tokio::test]
async fn a_caller_over_its_rate_limit_is_answered_429_while_others_are_served() {
    // Two requests at once, then one an hour: nothing comes back while the test runs.
    let limit = dispute_api::parse_rate_limit("1/h").expect("a rate");
    let limit = limit.with_burst(NonZeroU32::new(2).expect("two"));
    let app = with_edge(EdgeConfig { rate_limit: Some(limit), ..EdgeConfig::default() }).await;

    app.register(&order("r-1")).await.assert_ok();
    app.register(&order("r-2")).await.assert_ok();
    let limited = app.register(&order("r-3")).await;
    limited.assert_problem(429, "rate_limited");
    let wait = retry_after(&limited);
    assert!((3000..=3600).contains(&wait), "about an hour until one request is back: {wait}");
    let written = app.store.whole_stream("r-3").await.expect("the stream reads");
    assert!(written.is_empty(), "a limited command writes nothing: {written:?}");

    // Meanwhile another caller is served, on its own budget.
    app.request_refund("r-1", "refund_only", "changed_mind", 4000).await.assert_ok();
    let other_service = app.token(Role::System, "returns-service");
    let answer = app
        .send(reqwest::Method::PUT, "/v1/orders/r-3", Some(&other_service), Some(&order("r-3")), &[])
        .await;
    answer.assert_ok();

    // A limited command on a stream with events adds none, whatever its key.
    app.request_refund("r-2", "refund_only", "changed_mind", 4000).await.assert_ok();
    let before = app.store.whole_stream("r-2").await.expect("the stream reads").len();
    let buyer = app.token(Role::Buyer, BUYER);
    let body = serde_json::json!({
        "kind": "refund_only", "reason": "changed_mind", "amount": cny(4000),
        "description": "once more", "evidence": [],
    });
    let answer = app
        .send(
            reqwest::Method::POST,
            "/v1/disputes/r-2/request",
            Some(&buyer),
            Some(&body),
            &[("idempotency-key", "again-1")],
        )
        .await;
    answer.assert_problem(429, "rate_limited");
    assert!(retry_after(&answer) >= 3000, "{:?}", answer.headers);
    let after = app.store.whole_stream("r-2").await.expect("the stream reads").len();
    assert_eq!(after, before, "no new events on the limited stream");

    // Routes without a token are not limited; a request without one is unauthenticated.
    for _ in 0..5 {
        let answer = app.send(reqwest::Method::GET, "/healthz", None, None, &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    app.send(reqwest::Method::GET, "/v1/disputes/r-1", None, None, &[])
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn without_a_rate_limit_a_caller_is_never_answered_429() {
    let app = TestApp::sqlite().await;
    for n in 0..20 {
        app.register(&order(&format!("u-{n}"))).await.assert_ok();
    }
}

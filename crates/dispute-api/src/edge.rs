//! What the edge does to every request before a handler sees it, so that the service can run
//! behind a load balancer: a time limit on each request and on reading its headers, a
//! correlation id on every request and answer, a log line and span per request, CORS for
//! the configured origins, and a rate limit per caller (`ratelimit.rs`).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::ApiError;

/// How the edge treats connections and requests.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// How long a request may take, from its headers to the answer (reading its body
    /// included). A request over the limit is answered 408 `request_timeout`: a stalled client
    /// does not hold a handler and a database connection for ever.
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers (a slow-loris client), after
    /// which its connection is closed without an answer.
    pub header_timeout: Duration,
    /// The origins (`https://shop.example`) whose browser pages may call the API. Empty: no
    /// CORS headers at all, so browsers keep other origins out.
    pub cors_origins: Vec<HeaderValue>,
    /// How many requests each authenticated caller (role and token subject) may make; over it,
    /// 429 `rate_limited` with `Retry-After`. `None`: no limit.
    pub rate_limit: Option<crate::RateLimit>,
    /// How long a view read with `X-Min-Sequence` waits for the view to reach it before
    /// answering 409 `view_behind`.
    pub view_wait: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            rate_limit: None,
            view_wait: Duration::from_secs(5),
        }
    }
}

/// Reads a comma-separated list of origins (`scheme://host[:port]`, as browsers send them in
/// `Origin`); blanks are skipped. The error names the first origin that is not one.
pub fn parse_cors_origins(text: &str) -> Result<Vec<HeaderValue>, String> {
    let origin = |text: &str| {
        let (scheme, rest) = text.split_once("://")?;
        let host = !rest.is_empty() && !rest.contains(['/', '?', '#']);
        let value = HeaderValue::from_str(text).ok()?;
        (matches!(scheme, "http" | "https") && host && !text.contains(char::is_whitespace)).then_some(value)
    };
    text.split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(|text| origin(text).ok_or_else(|| text.to_string()))
        .collect()
}

/// CORS for browser pages on `origins`, or nothing when the list is empty. A preflight from
/// another origin is answered without `Access-Control-Allow-Origin`, so the browser refuses.
pub(crate) fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("idempotency-key"),
            CORRELATION_ID,
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER, header::WWW_AUTHENTICATE, CORRELATION_ID])
        .max_age(Duration::from_secs(3600));
    Some(layer)
}

/// Answers 408 `request_timeout` when the handler (reading the body included) has not answered
/// within `limit`. The handler is dropped, as when the client disconnects.
pub(crate) async fn time_limit(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// The header a caller (or the load balancer) names a request with; it becomes the events'
/// `correlation_id` and is echoed on the answer.
pub(crate) const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The longest correlation id taken from a request; a longer one is replaced.
const MAX_CORRELATION_ID_LEN: usize = 128;

/// Gives every request an `X-Correlation-Id`: the caller's when it is 1 to 128 visible ASCII
/// characters, otherwise a new UUID, which replaces it in the request so that the handlers and
/// the events see the same one. Every answer carries it back.
pub(crate) async fn correlate(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(&CORRELATION_ID).filter(|value| {
        value.to_str().is_ok_and(|text| !text.is_empty() && text.len() <= MAX_CORRELATION_ID_LEN)
    });
    let id = match given {
        Some(value) => value.clone(),
        None => {
            let generated = HeaderValue::try_from(uuid::Uuid::new_v4().to_string());
            generated.expect("a UUID is a header value")
        }
    };
    request.headers_mut().insert(CORRELATION_ID, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(CORRELATION_ID, id);
    response
}

/// One span per request (method, matched route, correlation id) around everything the request
/// logs, and one `info` line when it is answered, with the status and the latency; the same
/// route, status and latency are counted ([`crate::metrics::record_request`]). The route
/// is the pattern (`/v1/disputes/{id}`), never the path with its ids; `-` when none matched.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string());
    let correlation_id = request.headers().get(&CORRELATION_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = route.as_deref().unwrap_or("-"),
        correlation_id,
    );
    async move {
        let response = next.run(request).await;
        let elapsed = started.elapsed();
        crate::metrics::record_request(route.as_deref().unwrap_or("-"), response.status(), elapsed);
        let latency_ms = elapsed.as_micros() as f64 / 1000.0;
        tracing::info!(status = response.status().as_u16(), latency_ms, "answered");
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_scheme_host_and_port() {
        let origins = parse_cors_origins(" https://shop.example, http://localhost:3000 ,").expect("origins");
        assert_eq!(origins, ["https://shop.example", "http://localhost:3000"]);
        assert_eq!(parse_cors_origins(""), Ok(Vec::new()));
        for wrong in ["shop.example", "https://shop.example/", "ftp://shop.example", "https://", "*"] {
            assert_eq!(parse_cors_origins(wrong), Err(wrong.to_string()), "{wrong}");
        }
    }
}

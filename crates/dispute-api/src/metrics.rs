//! What the edge measures (requests by route and status, commands by outcome, idempotent
//! replays) and the `/metrics` route that renders every metric of the process.
//!
//! This crate records through the `metrics` facade only; the recorder and its Prometheus text
//! come from the composition root as a [`RenderMetrics`], so the API knows no exporter.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

/// Requests answered, by matched route template and status.
pub const HTTP_REQUESTS_TOTAL: &str = "disputes_http_requests_total";
/// How long requests took, from the edge's first layer to the answer, by route and status.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "disputes_http_request_duration_seconds";
/// Command requests by command name and outcome (`code` on refusals).
pub const COMMANDS_TOTAL: &str = "disputes_commands_total";
/// Command requests answered from an earlier request with the same `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYS_TOTAL: &str = "disputes_idempotent_replays_total";

/// The bucket bounds of [`HTTP_REQUEST_DURATION_SECONDS`]: a millisecond to the request time
/// limit.
pub const HTTP_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Renders every metric of the process in the Prometheus text format (version 0.0.4).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Describes this crate's metrics to the installed recorder (their `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests answered, by route template and status.");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency, by route template and status."
    );
    metrics::describe_counter!(
        COMMANDS_TOTAL,
        "Command requests by command and outcome (accepted, refused with its code, conflict, invalid, error)."
    );
    metrics::describe_counter!(
        IDEMPOTENT_REPLAYS_TOTAL,
        "Command requests answered again from an earlier request with the same Idempotency-Key."
    );
}

/// Counts one answered request. `route` is the matched template (`-` when none matched), never
/// the path, so that ids do not become series.
pub(crate) fn record_request(route: &str, status: StatusCode, elapsed: Duration) {
    let labels = [("route", route.to_string()), ("status", status.as_str().to_string())];
    metrics::counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels).record(elapsed.as_secs_f64());
}

/// Counts one command request by what became of it: a replayed answer is a replay, whatever
/// it answered; otherwise its outcome.
pub(crate) fn record_command(command: &'static str, result: &Result<Response, ApiError>) {
    let outcome = match result {
        Ok(response) if response.headers().contains_key("idempotent-replayed") => {
            metrics::counter!(IDEMPOTENT_REPLAYS_TOTAL, "command" => command).increment(1);
            return;
        }
        Ok(_) => "accepted",
        Err(ApiError::Refused(refusal)) => {
            metrics::counter!(COMMANDS_TOTAL, "command" => command, "outcome" => "refused", "code" => refusal.code())
                .increment(1);
            return;
        }
        // A lost race, a stale `If-Match`, or a key another request still holds.
        Err(ApiError::ConcurrentModification | ApiError::IdempotencyKeyInFlight { .. }) => "conflict",
        Err(ApiError::Internal(_)) => "error",
        // The request never reached the rules: a malformed body or header, a reused key.
        Err(_) => "invalid",
    };
    metrics::counter!(COMMANDS_TOTAL, "command" => command, "outcome" => outcome).increment(1);
}

/// `GET /metrics`: every metric of the process, for a Prometheus scraper. Unauthenticated, like
/// the probes: keep it off the public edge.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Every metric of the process (Prometheus text format 0.0.4).",
         body = String, content_type = "text/plain"),
        (status = 404, description = "This process exports no metrics. Codes: `not_found`.",
         body = crate::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let render = state.metrics.ok_or(ApiError::RouteNotFound)?;
    let mut response = render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    Ok(response)
}

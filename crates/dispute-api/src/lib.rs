//! The HTTP edge of the disputes service: routes, bearer-token auth, problem+json errors and
//! the OpenAPI document.
//!
//! Invariant: only this crate knows HTTP. Rules live in `dispute-domain`; storage in
//! `dispute-store`; this crate authenticates, parses, and maps their answers to the wire.

mod audit;
mod auth;
mod commands;
mod edge;
mod error;
mod extract;
mod metrics;
mod openapi;
mod views;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on};
use axum::{Json, Router};
use dispute_store::{ClaimTimes, Store};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::{Caller, KeyError, TokenKeys};
pub use commands::{CommandAnswer, ROUTES};
pub use edge::{EdgeConfig, parse_cors_origins};
pub use error::{ApiError, Problem};
pub use metrics::{
    COMMANDS_TOTAL, HTTP_DURATION_BUCKETS, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL,
    IDEMPOTENT_REPLAYS_TOTAL, RenderMetrics, describe as describe_metrics,
};
pub use openapi::document as openapi_document;

/// The largest request body accepted (evidence is referenced by URI, never uploaded).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub views: dispute_views::Views,
    pub tokens: Arc<TokenKeys>,
    /// How long a keyed request waits for a concurrent one, and when a dead one's claim lapses.
    pub idempotency: ClaimTimes,
    /// Time limits (and the like) applied to every request and connection.
    pub edge: EdgeConfig,
    /// Renders `GET /metrics`; without it the route answers 404.
    pub metrics: Option<RenderMetrics>,
}

impl AppState {
    pub fn new(store: Arc<Store>, tokens: TokenKeys) -> Self {
        Self {
            views: dispute_views::Views::new(store.clone()),
            store,
            tokens: Arc::new(tokens),
            idempotency: ClaimTimes::default(),
            edge: EdgeConfig::default(),
            metrics: None,
        }
    }

    pub fn with_idempotency(self, idempotency: ClaimTimes) -> Self {
        Self { idempotency, ..self }
    }

    pub fn with_edge(self, edge: EdgeConfig) -> Self {
        Self { edge, ..self }
    }

    pub fn with_metrics(self, render: RenderMetrics) -> Self {
        Self { metrics: Some(render), ..self }
    }
}

/// The full router.
pub fn router(state: AppState) -> Router {
    let edge = state.edge.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::scrape))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/v1/disputes/{id}", get(views::dispute))
        .route("/v1/disputes/{id}/timeline", get(views::timeline))
        .route("/v1/buyers/{id}/disputes", get(views::buyer_disputes))
        .route("/v1/merchants/{id}/disputes", get(views::merchant_disputes))
        .route("/v1/merchants/{id}/summary", get(views::merchant_summary))
        .route("/v1/platform/queue", get(views::platform_queue))
        .route("/v1/platform/stats", get(views::platform_stats))
        .route("/v1/audit/disputes/{id}", get(audit::replayed))
        .route("/v1/audit/disputes/{id}/events", get(audit::events));
    for route in ROUTES {
        let method = match route.method {
            dispute_domain::Method::Put => axum::routing::MethodFilter::PUT,
            dispute_domain::Method::Post => axum::routing::MethodFilter::POST,
        };
        router = router.route(
            route.path,
            on(method, move |state, caller, path, headers, body| {
                commands::endpoint(route, state, caller, path, headers, body)
            }),
        );
    }
    let router = router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(catch_panics());
    edge_layers(router, &edge).with_state(state)
}

/// What wraps every route and fallback, from the inside out: the time limit, CORS when
/// configured (a preflight is answered there), the request's log line and span, the
/// correlation id (outermost, so that every answer and log line has it).
fn edge_layers<S: Clone + Send + Sync + 'static>(router: Router<S>, edge: &EdgeConfig) -> Router<S> {
    let request_timeout = edge.request_timeout;
    let mut router = router.layer(axum::middleware::from_fn(move |request, next| {
        edge::time_limit(request_timeout, request, next)
    }));
    if let Some(cors) = edge::cors(&edge.cors_origins) {
        router = router.layer(cors);
    }
    router
        .layer(axum::middleware::from_fn(edge::log_request))
        .layer(axum::middleware::from_fn(edge::correlate))
}

/// A panicking handler answers 500 `internal` (problem+json) instead of dropping the
/// connection.
fn catch_panics() -> CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response> {
    CatchPanicLayer::custom(error::panic_response)
}

async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::NotReady
    })?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))))
}

/// Serves the API on `listener` until `shutdown` completes, then drains in-flight requests.
///
/// HTTP/1.1 only. A client that has not sent a request's headers within the edge's
/// `header_timeout` is disconnected (axum's own `serve` has no such limit).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(state.edge.header_timeout);
    let service = TowerToHyperService::new(router(state));
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    }
    // No new connections; open ones finish their request in progress and close.
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// A connection that failed while being accepted is the client's; anything else (e.g. too
/// many open files) is waited out, as axum's `serve` does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, header};
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("the handler broke")
    }

    /// The production router has no route that panics: the layer it uses is tried on one.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_internal() {
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(catch_panics());
        let request = Request::get("/boom").body(Body::empty()).expect("a request");
        let response = router.clone().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        assert_eq!(content_type.as_ref().and_then(|v| v.to_str().ok()), Some("application/problem+json"));
        let body = to_bytes(response.into_body(), 4096).await.expect("a body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("a problem");
        assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(500), Some("internal")));
        assert!(!problem.to_string().contains("the handler broke"), "the cause stays in the log: {problem}");

        let request = Request::get("/fine").body(Body::empty()).expect("a request");
        let response = router.oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK, "the router serves on after a panic");
    }

    /// What the log receives, for the test that reads it.
    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("the log").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The edge's layers on a small router (the production one needs a store).
    fn edged() -> Router {
        let router = Router::new().route("/orders/{id}", get(|| async { "an order" }));
        edge_layers(router, &EdgeConfig::default())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_request_logs_one_line_with_route_status_latency_and_correlation_id() {
        let log = Log::default();
        let writer = log.clone();
        let subscriber =
            tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let _logging = tracing::subscriber::set_default(subscriber);

        let request = Request::get("/orders/o-secret")
            .header("x-correlation-id", "corr-9")
            .body(Body::empty())
            .expect("a request");
        let response = edged().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        let request = Request::get("/nowhere").body(Body::empty()).expect("a request");
        let response = edged().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let text = String::from_utf8(log.0.lock().expect("the log").clone()).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "one line per request: {text}");
        for part in [
            "INFO",
            "method=GET",
            r#"route="/orders/{id}""#,
            r#"correlation_id="corr-9""#,
            "status=200",
            "latency_ms=",
        ] {
            assert!(lines[0].contains(part), "{part} in {}", lines[0]);
        }
        assert!(!lines[0].contains("o-secret"), "the route, not the path: {}", lines[0]);
        assert!(lines[1].contains(r#"route="-""#) && lines[1].contains("status=404"), "{}", lines[1]);
    }
}

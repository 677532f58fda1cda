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
mod ratelimit;
mod views;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::{Json, Router};
use dispute_store::{ClaimTimes, Store};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Caller, KeyError, TokenKeys};
pub use commands::{CommandAnswer, ROUTES};
pub use edge::{EdgeConfig, parse_cors_origins};
pub use error::{ApiError, Problem};
pub use metrics::{
    COMMANDS_TOTAL, HTTP_DURATION_BUCKETS, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL,
    IDEMPOTENT_REPLAYS_TOTAL, RenderMetrics, describe as describe_metrics,
};
pub use openapi::document as openapi_document;
pub use ratelimit::{RateLimit, parse_rate_limit};

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
    /// Each caller's request budget, from `edge.rate_limit`.
    rate_limits: ratelimit::RateLimits,
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
            rate_limits: ratelimit::RateLimits::default(),
            metrics: None,
        }
    }

    pub fn with_idempotency(self, idempotency: ClaimTimes) -> Self {
        Self { idempotency, ..self }
    }

    pub fn with_edge(self, edge: EdgeConfig) -> Self {
        Self { rate_limits: ratelimit::RateLimits::new(edge.rate_limit), edge, ..self }
    }

    pub fn with_metrics(self, render: RenderMetrics) -> Self {
        Self { metrics: Some(render), ..self }
    }
}

/// Every route of the API and its documentation, registered together: a route is served only
/// as documented, and documented only where it is served.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi as _;
    let mut api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics::scrape))
        .routes(routes!(views::dispute))
        .routes(routes!(views::timeline))
        .routes(routes!(views::buyer_disputes))
        .routes(routes!(views::merchant_disputes))
        .routes(routes!(views::merchant_summary))
        .routes(routes!(views::platform_queue))
        .routes(routes!(views::platform_stats))
        .routes(routes!(views::refunds_overdue))
        .routes(routes!(audit::replayed))
        .routes(routes!(audit::events));
    for command in openapi::commands() {
        api = api.routes(command);
    }
    utoipa::Modify::modify(&openapi::Edge, api.get_openapi_mut());
    api
}

/// The full router: the API, its document at `/openapi.json` and its browsable page at
/// `/docs`.
pub fn router(state: AppState) -> Router {
    let edge = state.edge.clone();
    let (router, document) = api().split_for_parts();
    let document = Arc::new(document);
    let router = router
        .layer(axum::Extension(document.clone()))
        .merge(docs_page())
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

/// The answer of `/healthz` and `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is alive: it answers, whatever the state of its store.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The status.", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The event store answers: send traffic here.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The status.", body = Health),
        (status = 503, description = "The event store does not answer. Codes: `not_ready`.",
         body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before asking again."))),
    )
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::NotReady
    })?;
    Ok(Json(Health { status: "ready" }))
}

/// This document (OpenAPI 3.1); a browsable page of it is at `/docs`.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", body = Object))
)]
async fn openapi_json(
    axum::Extension(document): axum::Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<Arc<utoipa::openapi::OpenApi>> {
    Json(document)
}

/// Swagger UI on the document, its assets built into the binary.
fn docs_page<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let config = utoipa_swagger_ui::Config::from("/openapi.json");
    utoipa_swagger_ui::SwaggerUi::new("/docs").config(config).into()
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
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
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

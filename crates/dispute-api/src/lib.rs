//! The HTTP edge of the disputes service: routes, bearer-token auth, problem+json errors and
//! the OpenAPI document.
//!
//! Invariant: only this crate knows HTTP. Rules live in `dispute-domain`; storage in
//! `dispute-store`; this crate authenticates, parses, and maps their answers to the wire.

mod audit;
mod auth;
mod commands;
mod error;
mod openapi;
mod views;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, on};
use axum::{Json, Router};
use dispute_store::{ClaimTimes, Store};
use tokio::net::TcpListener;

pub use auth::{Caller, TokenKeys};
pub use commands::{CommandAnswer, ROUTES};
pub use error::{ApiError, Problem};
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
}

impl AppState {
    pub fn new(store: Arc<Store>, tokens: TokenKeys) -> Self {
        Self {
            views: dispute_views::Views::new(store.clone()),
            store,
            tokens: Arc::new(tokens),
            idempotency: ClaimTimes::default(),
        }
    }

    pub fn with_idempotency(self, idempotency: ClaimTimes) -> Self {
        Self { idempotency, ..self }
    }
}

/// The full router.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/readyz", get(ready))
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
    router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::NotReady
    })?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))))
}

/// Serves the API on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

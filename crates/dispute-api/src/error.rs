//! The one error type of the HTTP edge, rendered as `application/problem+json` (RFC 9457).
//! Internal failures are logged and never described to the client.
//!
//! Every answer that is not a success goes through here: axum's own rejections (path, query,
//! body) are mapped by the `From` impls below, a panicking handler by [`panic_response`].
//! A 401 carries `WWW-Authenticate: Bearer` (RFC 6750 §3); `view_behind`, `not_ready` and a
//! held `Idempotency-Key` and `rate_limited` carry `Retry-After`.

use std::any::Any;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispute_domain::{DisputeError, RefusalKind};
use dispute_store::{ExecuteError, StoreError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    /// No bearer token was sent.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A bearer token was sent and refused (bad signature, algorithm or claims, expired).
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error(transparent)]
    Refused(#[from] DisputeError),
    #[error("the dispute changed since it was read, or another request won a race; reload and retry")]
    ConcurrentModification,
    /// Another request with the same `Idempotency-Key` is still executing (or died, and its
    /// claim has not lapsed yet).
    #[error("a request with this Idempotency-Key is in progress; retry after the time given")]
    IdempotencyKeyInFlight { retry_after: std::time::Duration },
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    #[error("the view has not caught up with the requested sequence yet; retry")]
    ViewBehind,
    #[error("no such route")]
    RouteNotFound,
    #[error("this route does not take this method")]
    MethodNotAllowed,
    #[error("the service is not ready")]
    NotReady,
    /// The request (its body included) took longer than the configured limit.
    #[error("the request took longer than the time limit")]
    RequestTimeout,
    /// The caller sent more requests than its rate limit allows; one is allowed again after
    /// `retry_after`.
    #[error("too many requests from this caller; retry after the time given")]
    RateLimited { retry_after: Duration },
    /// Logged with its cause; the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

/// The problem document (RFC 9457) of every answer that is not a success. `code` is the
/// stable machine-readable reason; `detail` is for people and may change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:disputes:problem:outside_request_window",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "the refund request window has closed",
    "code": "outside_request_window"
}))]
pub struct Problem {
    /// `urn:disputes:problem:{code}`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// The reason, in snake_case; each answer's description lists the codes it may carry.
    #[schema(pattern = "^[a-z_]+$")]
    pub code: &'static str,
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::Refused(e) => match e.kind() {
                RefusalKind::NotFound => StatusCode::NOT_FOUND,
                RefusalKind::Forbidden => StatusCode::FORBIDDEN,
                RefusalKind::Conflict => StatusCode::CONFLICT,
                RefusalKind::RuleViolation => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::ConcurrentModification
            | ApiError::IdempotencyKeyInFlight { .. }
            | ApiError::IdempotencyKeyReused
            | ApiError::ViewBehind => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed_request",
            ApiError::Unauthenticated(_) | ApiError::InvalidToken => "unauthenticated",
            ApiError::Refused(e) => e.code(),
            ApiError::ConcurrentModification | ApiError::IdempotencyKeyInFlight { .. } => {
                "concurrent_modification"
            }
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::ViewBehind => "view_behind",
            ApiError::RouteNotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NotReady => "not_ready",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let code = self.code();
        let detail = match self {
            // A rule's message may name the order's state but never another party's data.
            ApiError::Refused(DisputeError::NotAParty) => DisputeError::OrderNotFound.to_string(),
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("urn:disputes:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
        }
    }

    /// How long the client should wait before retrying, for the answers that say so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::IdempotencyKeyInFlight { retry_after } | ApiError::RateLimited { retry_after } => {
                Some(*retry_after)
            }
            ApiError::ViewBehind => Some(VIEW_BEHIND_RETRY),
            ApiError::NotReady => Some(NOT_READY_RETRY),
            _ => None,
        }
    }

    /// Any rejection of an axum extractor: a 4xx is the client's (400, or 413 for a body over
    /// the limit), a 5xx is a wiring fault of this crate and stays internal.
    fn rejected(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            status if status.is_server_error() => ApiError::Internal(text),
            _ => ApiError::Malformed(text),
        }
    }
}

/// A view that has not caught up within the wait is usually there a moment later.
const VIEW_BEHIND_RETRY: Duration = Duration::from_secs(1);
/// The database is unreachable: ask load balancers and clients to look again in a while.
const NOT_READY_RETRY: Duration = Duration::from_secs(5);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

/// The answer to a panicking handler (for tower-http's `CatchPanicLayer`): a 500 `internal`
/// problem, the panic's message logged.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|m| m.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    ApiError::Internal(format!("the handler panicked: {message}")).into_response()
}

impl From<ExecuteError> for ApiError {
    fn from(err: ExecuteError) -> Self {
        match err {
            ExecuteError::Refused(e) => ApiError::Refused(e),
            ExecuteError::Conflict => ApiError::ConcurrentModification,
            // Another request with the key took the claim over and executes the command now:
            // a retry finds its answer.
            ExecuteError::ClaimLost => {
                ApiError::IdempotencyKeyInFlight { retry_after: std::time::Duration::from_secs(1) }
            }
            err @ ExecuteError::Store(_) => ApiError::failed(&err, err.is_unavailable()),
        }
    }
}

impl From<dispute_views::ViewError> for ApiError {
    fn from(err: dispute_views::ViewError) -> Self {
        let unavailable = matches!(&err, dispute_views::ViewError::Store(e) if e.is_unavailable());
        ApiError::failed(&err, unavailable)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::failed(&err, err.is_unavailable())
    }
}

impl ApiError {
    /// A failure of the store: 503 `not_ready` when the database did not answer (a lost
    /// session, a restart), which the same request may get past a moment later; else internal.
    fn failed(err: &dyn std::fmt::Display, unavailable: bool) -> Self {
        if unavailable {
            tracing::warn!(error = %err, "the event store does not answer");
            ApiError::NotReady
        } else {
            ApiError::Internal(err.to_string())
        }
    }
}

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let status = self.status_code();
        let body = serde_json::to_vec(&self.problem()).expect("a problem serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(retry_after) = self.retry_after() {
            // Whole seconds, rounded up (RFC 9110 §10.2.3).
            let seconds = retry_after.as_nanos().div_ceil(1_000_000_000).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
        }
        match self {
            // RFC 6750 §3: no error code when no credentials were sent.
            ApiError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::InvalidToken => {
                let challenge = HeaderValue::from_static(r#"Bearer error="invalid_token""#);
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            // RFC 9110 §15.5.9: the connection may hold the rest of an unread body.
            ApiError::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

//! The one error type of the HTTP edge, rendered as `application/problem+json` (RFC 9457).
//! Internal failures are logged and never described to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispute_domain::{DisputeError, RefusalKind};
use dispute_store::{ExecuteError, StoreError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
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
    /// Logged with its cause; the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

/// The problem document. `code` is the stable machine-readable reason.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
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
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed_request",
            ApiError::Unauthenticated(_) => "unauthenticated",
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
}

impl From<ExecuteError> for ApiError {
    fn from(err: ExecuteError) -> Self {
        match err {
            ExecuteError::Refused(e) => ApiError::Refused(e),
            ExecuteError::Conflict => ApiError::ConcurrentModification,
            err @ ExecuteError::Store(_) => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<dispute_views::ViewError> for ApiError {
    fn from(err: dispute_views::ViewError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
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
        if let ApiError::IdempotencyKeyInFlight { retry_after } = &self {
            // Whole seconds, rounded up (RFC 9110 §10.2.3).
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
        }
        response
    }
}

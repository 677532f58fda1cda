//! What the edge does to every request before a handler sees it, so that the service can run
//! behind a load balancer: a time limit on each request and on reading its headers.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(30), header_timeout: Duration::from_secs(10) }
    }
}

/// Answers 408 `request_timeout` when the handler (reading the body included) has not answered
/// within `limit`. The handler is dropped, as when the client disconnects.
pub(crate) async fn time_limit(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

//! The audit routes, for the `auditor` role only: a dispute's state replayed from the log as
//! of an instant, and its raw events with their hashes. Read-only; auditors never write.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use dispute_audit::{ChainCheck, EventRecord, ReplayedRecord};
use dispute_domain::{DisputeError, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::extract::{Path, Query};
use crate::views::OrderId;
use crate::{ApiError, AppState, Problem};

fn auditor(caller: &Caller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Auditor => Ok(()),
        _ => Err(DisputeError::Forbidden.into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsOf {
    /// The instant (RFC 3339); the latest state when absent.
    #[param(format = DateTime, example = "2026-11-05T12:00:00Z")]
    as_of: Option<String>,
}

/// `GET /v1/audit/disputes/{id}?as_of=RFC3339`: the state folded from the events at or before
/// the instant.
#[utoipa::path(
    get, path = "/v1/audit/disputes/{id}", tag = "audit", security(("bearer" = [])),
    params(OrderId, AsOf),
    responses(
        (status = 200, description = "The replayed state.", body = ReplayedRecord),
        (status = 400, description = "`as_of` is not an RFC 3339 instant. Codes: `malformed_request`.",
         body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No events (as of the instant). Codes: `not_found`.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn replayed(
    State(state): State<AppState>,
    caller: Caller,
    Path(OrderId { id: order_id }): Path<OrderId>,
    Query(query): Query<AsOf>,
) -> Result<Json<ReplayedRecord>, ApiError> {
    auditor(&caller)?;
    let as_of = query
        .as_of
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::Malformed("as_of must be an RFC 3339 instant".to_string()))
        })
        .transpose()?;
    let events = state.store.whole_stream(&order_id).await?;
    let replayed = dispute_audit::replay(&events, as_of).map_err(|e| ApiError::Internal(e.to_string()))?;
    let replayed = replayed.ok_or(ApiError::Refused(DisputeError::OrderNotFound))?;
    Ok(Json(replayed.record()))
}

/// A dispute's stored events and the check of their hash chain.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditedEvents {
    dispute_id: String,
    /// The last event's sequence.
    sequence: u64,
    chain: ChainCheck,
    events: Vec<EventRecord>,
}

/// `GET /v1/audit/disputes/{id}/events`: every stored event with its hashes.
#[utoipa::path(
    get, path = "/v1/audit/disputes/{id}/events", tag = "audit", security(("bearer" = [])),
    params(OrderId),
    responses(
        (status = 200, description = "The events and the chain check.", body = AuditedEvents),
        (status = 404, description = "No events. Codes: `not_found`.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(OrderId { id: order_id }): Path<OrderId>,
) -> Result<Json<AuditedEvents>, ApiError> {
    auditor(&caller)?;
    let events = state.store.whole_stream(&order_id).await?;
    let Some(last) = events.last() else { return Err(DisputeError::OrderNotFound.into()) };
    Ok(Json(AuditedEvents {
        dispute_id: order_id,
        sequence: last.sequence,
        chain: ChainCheck::of(&events),
        events: events.iter().map(EventRecord::of).collect(),
    }))
}

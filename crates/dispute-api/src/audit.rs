//! The audit routes, for the `auditor` role only: a dispute's state replayed from the log as
//! of an instant, and its raw events with their hashes. Read-only; auditors never write.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use dispute_domain::{DisputeError, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::extract::{Path, Query};
use crate::{ApiError, AppState};

fn auditor(caller: &Caller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Auditor => Ok(()),
        _ => Err(DisputeError::Forbidden.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsOf {
    as_of: Option<String>,
}

/// `GET /v1/audit/disputes/{id}?as_of=RFC3339`
pub(crate) async fn replayed(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    Query(query): Query<AsOf>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(replayed.to_json()))
}

/// `GET /v1/audit/disputes/{id}/events`
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auditor(&caller)?;
    let events = state.store.whole_stream(&order_id).await?;
    if events.is_empty() {
        return Err(DisputeError::OrderNotFound.into());
    }
    Ok(Json(json!({
        "dispute_id": order_id,
        "sequence": events.last().map(|e| e.sequence),
        "chain": dispute_audit::chain_json(&events),
        "events": events.iter().map(dispute_audit::event_json).collect::<Vec<_>>(),
    })))
}

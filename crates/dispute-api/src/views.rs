//! The view routes: read-only, eventually consistent, each answer carrying the sequence it
//! reflects. `X-Min-Sequence: N` waits (at most 5 s) until a dispute's view reflects N, woken
//! by the projector of this process or, for views projected by another instance, by a poll.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use dispute_domain::{DisputeError, Role};
use dispute_views::DisputeView;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::extract::{Path, Query};
use crate::{ApiError, AppState};

const MAX_WAIT: Duration = Duration::from_secs(5);
/// How often a wait for `X-Min-Sequence` looks again without a local projection signal.
const POLL: Duration = Duration::from_millis(20);
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

fn min_sequence(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("x-min-sequence") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::Malformed("X-Min-Sequence must be a sequence number".to_string()))
}

/// The dispute's view once it reflects `min` (if given), checked against the caller.
async fn readable_dispute(
    state: &AppState,
    caller: &Caller,
    order_id: &str,
    headers: &HeaderMap,
) -> Result<DisputeView, ApiError> {
    let actor = &caller.0;
    if !matches!(actor.role, Role::Buyer | Role::Merchant | Role::Arbitrator | Role::Auditor) {
        return Err(DisputeError::Forbidden.into());
    }
    let min = min_sequence(headers)?;
    let deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        // Armed before the read, so a projection committed in between is not missed.
        let projected = state.store.projected().notified();
        tokio::pin!(projected);
        projected.as_mut().enable();
        let view = state.views.dispute(order_id).await?;
        if let Some(view) = &view {
            let is_party = match actor.role {
                Role::Buyer => view.buyer_id == actor.id,
                Role::Merchant => view.merchant_id == actor.id,
                _ => true,
            };
            if !is_party {
                return Err(DisputeError::NotAParty.into());
            }
        }
        match (view, min) {
            (Some(view), Some(min)) if view.sequence >= min => return Ok(view),
            (Some(view), None) => return Ok(view),
            (None, None) => return Err(DisputeError::OrderNotFound.into()),
            _ if tokio::time::Instant::now() >= deadline => return Err(ApiError::ViewBehind),
            // Woken by this process's projector; the poll covers views projected elsewhere.
            _ => {
                tokio::select! {
                    _ = projected => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }
}

pub(crate) async fn dispute(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let view = readable_dispute(&state, &caller, &order_id, &headers).await?;
    let role = caller.0.role;
    let now = state.store.services().clock.now();
    let mut body = serde_json::to_value(&view).expect("views serialize");
    let policy = state.store.services().policy.for_category(&view.category);
    body["actions"] = json!(view.actions(role, now, policy));
    body["act_by"] = json!(view.act_by(role, now));
    Ok(Json(body))
}

pub(crate) async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let view = readable_dispute(&state, &caller, &order_id, &headers).await?;
    let mut events = state.views.timeline(&order_id).await?;
    events.retain(|e| e.sequence <= view.sequence);
    Ok(Json(json!({ "dispute_id": order_id, "sequence": view.sequence, "events": events })))
}

/// Lists keyed by a party's id: that party (or an auditor) only.
fn own_list(caller: &Caller, role: Role, id: &str) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Auditor => Ok(()),
        r if r == role && caller.0.id == id => Ok(()),
        r if r == role => Err(DisputeError::NotAParty.into()),
        _ => Err(DisputeError::Forbidden.into()),
    }
}

pub(crate) async fn buyer_disputes(
    State(state): State<AppState>,
    caller: Caller,
    Path(buyer_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    own_list(&caller, Role::Buyer, &buyer_id)?;
    let disputes = state.views.buyer_disputes(&buyer_id).await?;
    Ok(Json(json!({ "buyer_id": buyer_id, "disputes": disputes })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MerchantQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) async fn merchant_disputes(
    State(state): State<AppState>,
    caller: Caller,
    Path(merchant_id): Path<String>,
    Query(query): Query<MerchantQuery>,
) -> Result<Json<Value>, ApiError> {
    own_list(&caller, Role::Merchant, &merchant_id)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page = state
        .views
        .merchant_disputes(&merchant_id, query.status.as_deref(), limit, query.cursor.as_deref())
        .await?;
    Ok(Json(
        json!({ "merchant_id": merchant_id, "disputes": page.disputes, "next_cursor": page.next_cursor }),
    ))
}

pub(crate) async fn merchant_summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(merchant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    own_list(&caller, Role::Merchant, &merchant_id)?;
    Ok(Json(serde_json::to_value(state.views.merchant_summary(&merchant_id).await?).expect("serializes")))
}

fn platform_reader(caller: &Caller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Arbitrator | Role::Auditor => Ok(()),
        _ => Err(DisputeError::Forbidden.into()),
    }
}

pub(crate) async fn platform_queue(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    platform_reader(&caller)?;
    let now = state.store.services().clock.now();
    Ok(Json(json!({ "queue": state.views.platform_queue(now).await? })))
}

pub(crate) async fn platform_stats(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    platform_reader(&caller)?;
    Ok(Json(serde_json::to_value(state.views.platform_stats().await?).expect("serializes")))
}

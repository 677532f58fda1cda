//! The view routes: read-only, eventually consistent, each answer carrying the sequence it
//! reflects. `X-Min-Sequence: N` waits (5 s unless configured) until a dispute's view reflects
//! N, woken by the projector of this process or, for views projected by another instance, by a
//! poll.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use dispute_domain::{DisputeError, RefundReason, Role, Status};
use dispute_views::{
    DisputeView, MerchantSummary, Overdue, PlatformStats, QueueEntry, QueueQuery, TimelineEntry,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::extract::{Path, Query};
use crate::{ApiError, AppState, Problem};

/// The dispute a route is about, named by its order id.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct OrderId {
    /// The order id; an order has one dispute, named by it.
    #[param(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_:-]+$", example = "o-1001")]
    pub(crate) id: String,
}

/// The party a list is about.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PartyId {
    /// The buyer's or merchant's id, as the token's `sub` names it.
    #[param(example = "m-1")]
    id: String,
}

/// Waiting for one's own write.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read from the headers by `min_sequence`; declared for the document
pub(crate) struct MinSequence {
    /// Wait until the view reflects this sequence (a command's answer's `sequence`); 409
    /// `view_behind` if it does not within the service's view wait (5 s by default).
    #[param(rename = "X-Min-Sequence", value_type = String, required = false, pattern = "^[0-9]{1,19}$")]
    x_min_sequence: Option<String>,
}

/// How often a wait for `X-Min-Sequence` looks again without a local projection signal.
const POLL: Duration = Duration::from_millis(20);
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

fn min_sequence(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("x-min-sequence") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
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
    let deadline = tokio::time::Instant::now() + state.edge.view_wait;
    let projected = state.store.projected();
    // A sequence a command of this process handed its projector is waited for from the
    // projector: read now, the store would still be behind. The poll covers a projection that
    // failed and came from elsewhere.
    let mut read = min.is_none_or(|min| projected.reached(order_id, min) || !projected.handed(order_id, min));
    let mut next_poll = tokio::time::Instant::now() + if read { Duration::ZERO } else { POLL };
    loop {
        // Armed before the read, so a projection committed in between is not missed.
        let committed = projected.notified();
        tokio::pin!(committed);
        committed.as_mut().enable();
        if read {
            // What this process's projector committed, if that far already; else the store.
            let view =
                match min.map(|min| state.views.projected_dispute(order_id, min)).transpose()?.flatten() {
                    Some(view) => Some(view),
                    None => state.views.dispute(order_id).await?,
                };
            next_poll = tokio::time::Instant::now() + POLL;
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
                _ => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::ViewBehind);
        }
        // Read again once this process's projector has committed the view that far, or at
        // the poll, which covers views projected elsewhere.
        tokio::select! {
            _ = committed => read = min.is_some_and(|min| projected.reached(order_id, min)),
            _ = tokio::time::sleep_until(next_poll.min(deadline)) => read = true,
        }
    }
}

/// A dispute as the caller reads it: the view, and what the caller may do now.
#[derive(Serialize, ToSchema)]
pub(crate) struct DisputeAnswer {
    #[serde(flatten)]
    view: DisputeView,
    /// The commands the caller's role may send now (the route's last segment, e.g. `appeal`).
    actions: Vec<&'static str>,
    /// When the caller's next step is due, if one is.
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    act_by: Option<DateTime<Utc>>,
    /// The refund's late steps, as of now (the service clock).
    #[serde(flatten)]
    overdue: Overdue,
}

/// What a read of one dispute's view may answer instead of it (both per-dispute routes).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; `ApiError` makes them
pub(crate) enum ReadProblems {
    /// A malformed `X-Min-Sequence`. Codes: `malformed_request`.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// No such dispute, or not the caller's. Codes: `not_found`.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The view has not reached `X-Min-Sequence` within the wait. Codes: `view_behind`.
    #[response(
        status = 409,
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))
    )]
    Behind(Problem),
}

/// A dispute's events, in order, as far as its view reflects them.
#[derive(Serialize, ToSchema)]
pub(crate) struct Timeline {
    dispute_id: String,
    sequence: u64,
    events: Vec<TimelineEntry>,
}

/// `GET /v1/disputes/{id}`: one dispute, for its parties, arbitrators and auditors.
#[utoipa::path(
    get, path = "/v1/disputes/{id}", tag = "views", security(("bearer" = [])),
    params(OrderId, MinSequence),
    responses(
        (status = 200, description = "The dispute, and what the caller may do now.", body = DisputeAnswer),
        ReadProblems,
    )
)]
pub(crate) async fn dispute(
    State(state): State<AppState>,
    caller: Caller,
    Path(OrderId { id: order_id }): Path<OrderId>,
    headers: HeaderMap,
) -> Result<Json<DisputeAnswer>, ApiError> {
    let view = readable_dispute(&state, &caller, &order_id, &headers).await?;
    let now = state.store.services().clock.now();
    Ok(Json(DisputeAnswer::new(&state, view, caller.0.role, now)))
}

impl DisputeAnswer {
    /// The view with what `role` may do at `now`.
    fn new(state: &AppState, view: DisputeView, role: Role, now: DateTime<Utc>) -> Self {
        let policy = state.store.services().policy.for_category(&view.category);
        let actions = view.actions(role, now, policy);
        let act_by = view.act_by(role, now);
        let overdue = view.overdue(now);
        Self { view, actions, act_by, overdue }
    }
}

/// `GET /v1/disputes/{id}/timeline`: the dispute's events, for the same readers.
#[utoipa::path(
    get, path = "/v1/disputes/{id}/timeline", tag = "views", security(("bearer" = [])),
    params(OrderId, MinSequence),
    responses(
        (status = 200, description = "The events, oldest first.", body = Timeline),
        ReadProblems,
    )
)]
pub(crate) async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(OrderId { id: order_id }): Path<OrderId>,
    headers: HeaderMap,
) -> Result<Json<Timeline>, ApiError> {
    let view = readable_dispute(&state, &caller, &order_id, &headers).await?;
    let mut events = state.views.timeline(&order_id).await?;
    events.retain(|e| e.sequence <= view.sequence);
    Ok(Json(Timeline { dispute_id: order_id, sequence: view.sequence, events }))
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

/// A buyer's disputes, the most urgent first, each with what the caller may do now.
#[derive(Serialize, ToSchema)]
pub(crate) struct BuyerDisputes {
    buyer_id: String,
    /// Those where the buyer must act first, soonest `act_by` first; then the others, newest
    /// request first.
    disputes: Vec<DisputeAnswer>,
}

/// `GET /v1/buyers/{id}/disputes`: the buyer's own disputes (or any buyer's, for auditors).
#[utoipa::path(
    get, path = "/v1/buyers/{id}/disputes", tag = "views", security(("bearer" = [])),
    params(PartyId),
    responses(
        (status = 200, description = "The buyer's disputes.", body = BuyerDisputes),
        (status = 404, description = "Another buyer's list. Codes: `not_found`.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn buyer_disputes(
    State(state): State<AppState>,
    caller: Caller,
    Path(PartyId { id: buyer_id }): Path<PartyId>,
) -> Result<Json<BuyerDisputes>, ApiError> {
    own_list(&caller, Role::Buyer, &buyer_id)?;
    let now = state.store.services().clock.now();
    let views = state.views.buyer_disputes(&buyer_id, now).await?;
    let disputes =
        views.into_iter().map(|view| DisputeAnswer::new(&state, view, caller.0.role, now)).collect();
    Ok(Json(BuyerDisputes { buyer_id, disputes }))
}

/// A page of a merchant's disputes, the most urgent first.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MerchantQuery {
    /// Only disputes in this status.
    status: Option<Status>,
    /// How many disputes per page (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    #[param(pattern = "^-?[0-9]{1,19}:.+$")]
    cursor: Option<String>,
}

/// A page of a merchant's disputes.
#[derive(Serialize, ToSchema)]
pub(crate) struct MerchantDisputes {
    merchant_id: String,
    disputes: Vec<DisputeView>,
    /// Send as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /v1/merchants/{id}/disputes`: the merchant's own disputes, a page at a time.
#[utoipa::path(
    get, path = "/v1/merchants/{id}/disputes", tag = "views", security(("bearer" = [])),
    params(PartyId, MerchantQuery),
    responses(
        (status = 200, description = "A page of the merchant's disputes.", body = MerchantDisputes),
        (status = 400, description = "A malformed query. Codes: `malformed_request`.",
         body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Another merchant's list. Codes: `not_found`.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn merchant_disputes(
    State(state): State<AppState>,
    caller: Caller,
    Path(PartyId { id: merchant_id }): Path<PartyId>,
    Query(query): Query<MerchantQuery>,
) -> Result<Json<MerchantDisputes>, ApiError> {
    own_list(&caller, Role::Merchant, &merchant_id)?;
    let limit = page_size(query.limit)?;
    let cursor = query.cursor.map(|text| parse_cursor(&text)).transpose()?;
    let status = query.status.map(|s| s.as_str());
    let page = state.views.merchant_disputes(&merchant_id, status, limit, cursor).await?;
    Ok(Json(MerchantDisputes { merchant_id, disputes: page.disputes, next_cursor: page.next_cursor }))
}

/// A page's size: `DEFAULT_PAGE` when not given, at most `MAX_PAGE`.
fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Malformed(format!("limit must be 1 to {MAX_PAGE}")));
    }
    Ok(limit)
}

/// A cursor as `next_cursor` gives it: `{sort key}:{order id}`.
fn parse_cursor(text: &str) -> Result<(i64, String), ApiError> {
    // The id is an order id (a cursor this route gave): its alphabet keeps bytes such as NUL,
    // which PostgreSQL text refuses, from reaching the query.
    let order_id = |id: &str| {
        (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
    };
    text.split_once(':')
        .filter(|(due, id)| order_id(id) && due.len() <= 20)
        .and_then(|(due, id)| Some((due.parse().ok()?, id.to_string())))
        .ok_or_else(|| ApiError::Malformed("cursor must be a next_cursor this route gave".to_string()))
}

/// `GET /v1/merchants/{id}/summary`: the merchant's counts and amounts.
#[utoipa::path(
    get, path = "/v1/merchants/{id}/summary", tag = "views", security(("bearer" = [])),
    params(PartyId),
    responses(
        (status = 200, description = "The summary.", body = MerchantSummary),
        (status = 404, description = "Another merchant's summary. Codes: `not_found`.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn merchant_summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(PartyId { id: merchant_id }): Path<PartyId>,
) -> Result<Json<MerchantSummary>, ApiError> {
    own_list(&caller, Role::Merchant, &merchant_id)?;
    Ok(Json(state.views.merchant_summary(&merchant_id).await?))
}

fn platform_reader(caller: &Caller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Arbitrator | Role::Auditor => Ok(()),
        _ => Err(DisputeError::Forbidden.into()),
    }
}

/// Which of the platform's disputes to list, a page at a time.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueParams {
    /// Only disputes asked for this reason.
    reason: Option<RefundReason>,
    /// Only disputes assigned to this arbitrator.
    assignee: Option<String>,
    /// Only those unassigned past the assignment SLA (`true`), or the others (`false`).
    sla_breached: Option<bool>,
    /// How many per page (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    #[param(pattern = "^-?[0-9]{1,19}:.+$")]
    cursor: Option<String>,
}

/// A page of the disputes waiting for the platform.
#[derive(Serialize, ToSchema)]
pub(crate) struct PlatformQueue {
    queue: Vec<QueueEntry>,
    /// Send as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /v1/platform/queue`: escalated and appealed disputes, for arbitrators and auditors.
#[utoipa::path(
    get, path = "/v1/platform/queue", tag = "views", security(("bearer" = [])),
    params(QueueParams),
    responses(
        (status = 200, description = "A page of the queue, longest waiting first.", body = PlatformQueue),
        (status = 400, description = "A malformed query. Codes: `malformed_request`.",
         body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn platform_queue(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<QueueParams>,
) -> Result<Json<PlatformQueue>, ApiError> {
    platform_reader(&caller)?;
    let query = QueueQuery {
        reason: params.reason,
        assignee: params.assignee,
        sla_breached: params.sla_breached,
        after: params.cursor.map(|text| parse_cursor(&text)).transpose()?,
        limit: page_size(params.limit)?,
    };
    let now = state.store.services().clock.now();
    let page = state.views.platform_queue(now, query).await?;
    Ok(Json(PlatformQueue { queue: page.queue, next_cursor: page.next_cursor }))
}

/// Approved refunds the payment system has not paid by their due time.
#[derive(Serialize, ToSchema)]
pub(crate) struct RefundsOverdue {
    disputes: Vec<DisputeView>,
}

/// `GET /v1/platform/refunds-overdue`: refunds past their payment due time at the service's
/// clock, for arbitrators and auditors.
#[utoipa::path(
    get, path = "/v1/platform/refunds-overdue", tag = "views", security(("bearer" = [])),
    responses((status = 200, description = "The overdue refunds, longest overdue first.", body = RefundsOverdue))
)]
pub(crate) async fn refunds_overdue(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RefundsOverdue>, ApiError> {
    platform_reader(&caller)?;
    let now = state.store.services().clock.now();
    Ok(Json(RefundsOverdue { disputes: state.views.refunds_overdue(now).await? }))
}

/// `GET /v1/platform/stats`: counts by reason, outcome and arbitrator.
#[utoipa::path(
    get, path = "/v1/platform/stats", tag = "views", security(("bearer" = [])),
    responses((status = 200, description = "The counts.", body = PlatformStats))
)]
pub(crate) async fn platform_stats(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PlatformStats>, ApiError> {
    platform_reader(&caller)?;
    Ok(Json(state.views.platform_stats().await?))
}

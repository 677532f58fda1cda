//! The queries behind the view routes. Both dialects read them alike, so each is one text.

use super::{TIMELINE, TimelineRow, ViewShape};
use crate::{Store, StoreError, on_pool};

const DISPUTE: &str = "SELECT view FROM view_disputes WHERE order_id = $1";

/// Newest request first.
const BUYER: &str = "SELECT view FROM view_disputes WHERE buyer_id = $1 AND round > 0 \
     ORDER BY requested_at_ms DESC, order_id";

/// Soonest merchant deadline first, from a keyset cursor `($3, $4)`, `$5` rows at most.
const MERCHANT: &str = "SELECT order_id, merchant_due_ms, view FROM view_disputes \
     WHERE merchant_id = $1 AND round > 0 AND ($2 IS NULL OR status = $2) \
       AND (merchant_due_ms > $3 OR (merchant_due_ms = $3 AND order_id > $4)) \
     ORDER BY merchant_due_ms, order_id LIMIT $5";

/// A merchant's orders counted and summed in the database, one row per status and currency
/// (and whether the order is disputed): a handful of rows however many orders.
const MERCHANT_SUMMARY: &str = "SELECT status, round > 0 AS disputed, currency, count(*) AS orders, \
       CAST(sum(requested_minor) AS BIGINT) AS requested_minor, \
       CAST(sum(refunded_minor) AS BIGINT) AS refunded_minor, \
       CAST(sum(merchant_wins) AS BIGINT) AS merchant_wins, \
       CAST(sum(merchant_losses) AS BIGINT) AS merchant_losses \
     FROM view_disputes WHERE merchant_id = $1 GROUP BY status, round > 0, currency";

/// Longest waiting first, with a reason `$1`, an assignee `$2`, the assignment SLA breached
/// at `$4` or not (`$3`) if given, from a keyset cursor `($5, $6)`, `$7` rows at most. The
/// breach is defined once, here: unassigned past the assignment's due time.
const PLATFORM_QUEUE: &str = "SELECT order_id, sequence, waiting_since_ms, assignee, assignment_due_ms, \
       sla_breached, view FROM ( \
       SELECT order_id, sequence, COALESCE(escalated_at_ms, 0) AS waiting_since_ms, assignee, \
         assignment_due_ms, (assignee IS NULL AND COALESCE(assignment_due_ms < $4, FALSE)) AS sla_breached, view \
       FROM view_disputes WHERE status IN ('escalated', 'under_review', 'appealed') \
         AND ($1 IS NULL OR reason = $1) AND ($2 IS NULL OR assignee = $2)) waiting \
     WHERE ($3 IS NULL OR sla_breached = $3) \
       AND (waiting_since_ms > $5 OR (waiting_since_ms = $5 AND order_id > $6)) \
     ORDER BY waiting_since_ms, order_id LIMIT $7";

/// Approved refunds not yet paid; the caller picks the late ones with the clock.
const REFUND_PENDING: &str =
    "SELECT view FROM view_disputes WHERE status = 'refund_pending' ORDER BY order_id";

/// Every dispute (an order with at least one request) counted in the database, one row per
/// reason, outcome and arbitrator reviewing it: as many rows as combinations, not disputes.
/// `resolved` counts the disputes with both times, `resolution_ms` sums their spans.
const PLATFORM_STATS: &str = "SELECT reason, outcome, \
       CASE WHEN status = 'under_review' THEN assignee END AS reviewing, count(*) AS disputes, \
       count(resolved_at_ms - requested_at_ms) AS resolved, \
       CAST(sum(resolved_at_ms - requested_at_ms) AS BIGINT) AS resolution_ms \
     FROM view_disputes WHERE round > 0 \
     GROUP BY reason, outcome, CASE WHEN status = 'under_review' THEN assignee END";

/// One dispute of a merchant's list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MerchantRow {
    pub order_id: String,
    pub merchant_due_ms: i64,
    /// The `DisputeView` as JSON text.
    pub view: String,
}

/// A merchant's summary over its orders with one status and currency, disputed or not.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SummaryRow {
    pub status: String,
    /// Whether the orders have had a refund request.
    pub disputed: bool,
    pub currency: String,
    pub orders: i64,
    /// Summed over the orders.
    pub requested_minor: i64,
    pub refunded_minor: i64,
    pub merchant_wins: i64,
    pub merchant_losses: i64,
}

/// One dispute waiting for the platform.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRow {
    pub order_id: String,
    pub sequence: i64,
    /// When it was escalated (or appealed); the queue's order and cursor.
    pub waiting_since_ms: i64,
    pub assignee: Option<String>,
    pub assignment_due_ms: Option<i64>,
    /// Unassigned past the assignment's due time, at the filter's `now_ms`.
    pub sla_breached: bool,
    /// The `DisputeView` as JSON text.
    pub view: String,
}

/// Which disputes of the platform's queue to read.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub reason: Option<String>,
    pub assignee: Option<String>,
    /// Only those whose assignment SLA has (`true`) or has not (`false`) passed unassigned at
    /// `now_ms`.
    pub sla_breached: Option<bool>,
    pub now_ms: i64,
    /// The keyset cursor: after this (waiting_since_ms, order_id).
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// The platform's statistics over the disputes with one reason, outcome and reviewing
/// arbitrator.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatsRow {
    pub reason: Option<String>,
    pub outcome: Option<String>,
    /// The arbitrator the disputes are under review with, if they are.
    pub reviewing: Option<String>,
    pub disputes: i64,
    /// How many of them ended, and their time from request to end summed.
    pub resolved: i64,
    pub resolution_ms: Option<i64>,
}

impl Store {
    /// A dispute's view as JSON text, if projected.
    pub async fn dispute_view(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(&self.backend, pool => sqlx::query_as(DISPUTE).bind(order_id).fetch_optional(pool).await?);
        Ok(row.map(|(view,)| view))
    }

    /// A dispute's timeline, in sequence order.
    pub async fn timeline_rows(&self, order_id: &str) -> Result<Vec<TimelineRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM view_timeline WHERE order_id = $1 ORDER BY sequence",
            ViewShape::names(TIMELINE.columns)
        );
        Ok(on_pool!(&self.backend, pool => sqlx::query_as(&sql).bind(order_id).fetch_all(pool).await?))
    }

    /// The views (JSON text) of a buyer's disputes: orders with at least one request, newest
    /// request first.
    pub async fn buyer_views(&self, buyer_id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            on_pool!(&self.backend, pool => sqlx::query_as(BUYER).bind(buyer_id).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(view,)| view).collect())
    }

    /// Up to `limit` of a merchant's disputes (with `status` if given), soonest merchant
    /// deadline first, after the keyset cursor `after` (merchant_due_ms, order_id).
    pub async fn merchant_rows(
        &self,
        merchant_id: &str,
        status: Option<&str>,
        after: (i64, &str),
        limit: i64,
    ) -> Result<Vec<MerchantRow>, StoreError> {
        Ok(on_pool!(&self.backend, pool => sqlx::query_as(MERCHANT)
            .bind(merchant_id)
            .bind(status)
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// A merchant's orders, counted and summed by status and currency.
    pub async fn merchant_summary_rows(&self, merchant_id: &str) -> Result<Vec<SummaryRow>, StoreError> {
        Ok(on_pool!(&self.backend, pool => sqlx::query_as(MERCHANT_SUMMARY)
            .bind(merchant_id)
            .fetch_all(pool)
            .await?))
    }

    /// Disputes with the platform (escalated, under review, appealed) that `filter` selects,
    /// longest waiting first.
    pub async fn platform_queue_rows(&self, filter: &QueueFilter) -> Result<Vec<QueueRow>, StoreError> {
        let (after_ms, after_id) = filter.after.clone().unwrap_or((i64::MIN, String::new()));
        Ok(on_pool!(&self.backend, pool => sqlx::query_as(PLATFORM_QUEUE)
            .bind(filter.reason.as_deref())
            .bind(filter.assignee.as_deref())
            .bind(filter.sla_breached)
            .bind(filter.now_ms)
            .bind(after_ms)
            .bind(&after_id)
            .bind(filter.limit)
            .fetch_all(pool)
            .await?))
    }

    /// The views (JSON text) of the disputes whose approved refund waits for payment.
    pub async fn refund_pending_views(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            on_pool!(&self.backend, pool => sqlx::query_as(REFUND_PENDING).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|(view,)| view).collect())
    }

    /// Every dispute (order with at least one request), counted as the statistics count it.
    pub async fn platform_stats_rows(&self) -> Result<Vec<StatsRow>, StoreError> {
        Ok(on_pool!(&self.backend, pool => sqlx::query_as(PLATFORM_STATS).fetch_all(pool).await?))
    }
}

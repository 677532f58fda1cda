//! Reading the views. Every answer carries the sequence it reflects where one exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dispute_domain::{Money, RefundKind, RefundReason, Role, Status};
use dispute_store::{QueueFilter, StatsRow, Store, SummaryRow, TimelineRow};
use serde::Serialize;
use serde_json::Value;

use crate::model::EvidenceCounts;
use crate::{DisputeView, ViewError};

/// Read access to the views.
#[derive(Clone)]
pub struct Views {
    store: Arc<Store>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    pub sequence: u64,
    pub event_type: String,
    pub actor_role: String,
    pub actor_id: String,
    pub time: String,
    pub data: Value,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerchantPage {
    pub disputes: Vec<DisputeView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerchantSummary {
    pub merchant_id: String,
    /// Orders registered for the merchant.
    pub orders: u64,
    /// Orders with at least one refund request.
    pub disputes: u64,
    /// `disputes / orders`, 0 when there are no orders.
    pub dispute_rate: f64,
    pub by_status: BTreeMap<String, u64>,
    /// Per currency.
    pub requested: Vec<Money>,
    pub refunded: Vec<Money>,
    /// Rulings in the merchant's favour (no refund) and against.
    pub arbitration_wins: u64,
    pub arbitration_losses: u64,
}

/// One dispute waiting for the platform, with what an arbitrator triages by.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueEntry {
    pub dispute_id: String,
    pub sequence: u64,
    pub status: Status,
    /// When it was escalated, or appealed.
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub escalated_at: Option<DateTime<Utc>>,
    pub assignee: Option<String>,
    #[serde(with = "dispute_domain::rfc3339::option", default)]
    pub assignment_due: Option<DateTime<Utc>>,
    /// No arbitrator assigned and the assignment SLA has passed.
    pub sla_breached: bool,
    pub buyer_id: String,
    pub merchant_id: String,
    pub kind: Option<RefundKind>,
    pub reason: Option<RefundReason>,
    /// The amount the buyer asks for in this round.
    pub requested_amount: Option<Money>,
    pub paid_amount: Money,
    pub evidence: EvidenceCounts,
}

/// A page of the platform's queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueuePage {
    pub queue: Vec<QueueEntry>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Which disputes of the queue to read, and how many.
#[derive(Debug, Clone, Default)]
pub struct QueueQuery {
    pub reason: Option<RefundReason>,
    pub assignee: Option<String>,
    pub sla_breached: Option<bool>,
    /// A `next_cursor` as [`Views::platform_queue`] gave it, parsed: (waiting since, order id).
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformStats {
    /// Each order's current round, by the reason asked.
    pub by_reason: BTreeMap<String, u64>,
    pub by_outcome: BTreeMap<String, u64>,
    /// Orders whose current round has ended (refunded or closed); earlier rounds are not counted.
    pub resolved: u64,
    /// Mean time from request to the end of the current round, in seconds.
    pub mean_resolution_seconds: Option<f64>,
    /// Disputes under review per arbitrator.
    pub workload: BTreeMap<String, u64>,
}

fn time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

impl Views {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    pub async fn dispute(&self, order_id: &str) -> Result<Option<DisputeView>, ViewError> {
        let view = self.store.dispute_view(order_id).await?;
        view.map(|view| serde_json::from_str(&view).map_err(ViewError::from)).transpose()
    }

    /// A dispute's view as this process's projector committed it, if it reflects `sequence` or
    /// later and is still remembered: no read of the store.
    pub fn projected_dispute(&self, order_id: &str, sequence: u64) -> Result<Option<DisputeView>, ViewError> {
        let view = self.store.projected().view(order_id, sequence);
        view.map(|view| serde_json::from_str(&view).map_err(ViewError::from)).transpose()
    }

    pub async fn timeline(&self, order_id: &str) -> Result<Vec<TimelineEntry>, ViewError> {
        let rows = self.store.timeline_rows(order_id).await?;
        rows.into_iter()
            .map(|TimelineRow { sequence, event_type, actor_role, actor_id, time, data, .. }| {
                Ok(TimelineEntry {
                    sequence: sequence as u64,
                    event_type,
                    actor_role,
                    actor_id,
                    time,
                    data: serde_json::from_str(&data)?,
                })
            })
            .collect()
    }

    /// A buyer's disputes (orders with at least one request), newest request first.
    /// A buyer's disputes, the most urgent first: those where the buyer must act, soonest
    /// deadline first (judged at `now`), then the others, newest request first.
    pub async fn buyer_disputes(
        &self,
        buyer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<DisputeView>, ViewError> {
        let views = self.store.buyer_views(buyer_id).await?;
        let mut views: Vec<DisputeView> = views
            .iter()
            .map(|v| serde_json::from_str(v).map_err(ViewError::from))
            .collect::<Result<_, _>>()?;
        // Stable: the store's newest-first order stays among equals.
        views.sort_by_key(|view| {
            view.act_by(Role::Buyer, now).map_or((1, DateTime::<Utc>::MAX_UTC), |due| (0, due))
        });
        Ok(views)
    }

    /// A merchant's disputes, soonest merchant deadline first, `limit` at a time.
    pub async fn merchant_disputes(
        &self,
        merchant_id: &str,
        status: Option<&str>,
        limit: u32,
        after: Option<(i64, String)>,
    ) -> Result<MerchantPage, ViewError> {
        let (after_due, after_id) = after.unwrap_or((i64::MIN, String::new()));
        let rows = self
            .store
            .merchant_rows(merchant_id, status, (after_due, &after_id), i64::from(limit) + 1)
            .await?;
        let more = rows.len() > limit as usize;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next_cursor = more
            .then(|| rows.last().map(|row| format!("{}:{}", row.merchant_due_ms, row.order_id)))
            .flatten();
        let disputes = rows.iter().map(|row| serde_json::from_str(&row.view)).collect::<Result<_, _>>()?;
        Ok(MerchantPage { disputes, next_cursor })
    }

    pub async fn merchant_summary(&self, merchant_id: &str) -> Result<MerchantSummary, ViewError> {
        let rows = self.store.merchant_summary_rows(merchant_id).await?;
        let mut summary = MerchantSummary { merchant_id: merchant_id.to_string(), ..Default::default() };
        let mut requested: BTreeMap<String, i64> = BTreeMap::new();
        let mut refunded: BTreeMap<String, i64> = BTreeMap::new();
        for SummaryRow {
            status,
            disputed,
            currency,
            orders,
            requested_minor,
            refunded_minor,
            merchant_wins,
            merchant_losses,
        } in rows
        {
            let orders = orders as u64;
            summary.orders += orders;
            if !disputed {
                continue;
            }
            summary.disputes += orders;
            *summary.by_status.entry(status).or_default() += orders;
            *requested.entry(currency.clone()).or_default() += requested_minor;
            *refunded.entry(currency).or_default() += refunded_minor;
            summary.arbitration_wins += merchant_wins as u64;
            summary.arbitration_losses += merchant_losses as u64;
        }
        if summary.orders > 0 {
            summary.dispute_rate = summary.disputes as f64 / summary.orders as f64;
        }
        summary.requested = requested.into_iter().map(|(c, a)| Money::new(a, c)).collect();
        summary.refunded = refunded.into_iter().map(|(c, a)| Money::new(a, c)).collect();
        Ok(summary)
    }

    /// A page of the disputes with the platform (escalated, under review, appealed) that
    /// `query` selects, longest waiting first; the SLA judged at `now`.
    pub async fn platform_queue(
        &self,
        now: DateTime<Utc>,
        query: QueueQuery,
    ) -> Result<QueuePage, ViewError> {
        let filter = QueueFilter {
            reason: query.reason.and_then(|r| serde_json::to_value(r).ok()?.as_str().map(str::to_string)),
            assignee: query.assignee,
            sla_breached: query.sla_breached,
            now_ms: now.timestamp_millis(),
            after: query.after,
            limit: i64::from(query.limit) + 1,
        };
        let mut rows = self.store.platform_queue_rows(&filter).await?;
        let more = rows.len() > query.limit as usize;
        rows.truncate(query.limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|row| format!("{}:{}", row.waiting_since_ms, row.order_id)))
            .flatten();
        let queue = rows
            .into_iter()
            .map(|row| {
                let view: DisputeView = serde_json::from_str(&row.view)?;
                Ok(QueueEntry {
                    sla_breached: row.sla_breached,
                    dispute_id: row.order_id,
                    sequence: row.sequence as u64,
                    status: view.status,
                    escalated_at: view.escalated_at,
                    assignee: row.assignee,
                    assignment_due: time(row.assignment_due_ms),
                    buyer_id: view.buyer_id,
                    merchant_id: view.merchant_id,
                    kind: view.kind,
                    reason: view.reason,
                    requested_amount: view.requested_amount,
                    paid_amount: view.paid_amount,
                    evidence: view.evidence,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(QueuePage { queue, next_cursor })
    }

    /// Approved refunds past their payment due time at `now`, the longest overdue first.
    pub async fn refunds_overdue(&self, now: DateTime<Utc>) -> Result<Vec<DisputeView>, ViewError> {
        let views = self.store.refund_pending_views().await?;
        let mut overdue = Vec::new();
        for view in views {
            let view: DisputeView = serde_json::from_str(&view)?;
            if view.overdue(now).refund_payment_overdue {
                overdue.push(view);
            }
        }
        overdue.sort_by(|a, b| (a.refund_due_by, &a.dispute_id).cmp(&(b.refund_due_by, &b.dispute_id)));
        Ok(overdue)
    }

    pub async fn platform_stats(&self) -> Result<PlatformStats, ViewError> {
        let rows = self.store.platform_stats_rows().await?;
        let mut stats = PlatformStats::default();
        let mut total_ms = 0i64;
        for StatsRow { reason, outcome, reviewing, disputes, resolved, resolution_ms } in rows {
            let disputes = disputes as u64;
            if let Some(reason) = reason {
                *stats.by_reason.entry(reason).or_default() += disputes;
            }
            if let Some(outcome) = outcome {
                *stats.by_outcome.entry(outcome).or_default() += disputes;
            }
            stats.resolved += resolved as u64;
            total_ms += resolution_ms.unwrap_or(0);
            if let Some(arbitrator) = reviewing {
                *stats.workload.entry(arbitrator).or_default() += disputes;
            }
        }
        if stats.resolved > 0 {
            stats.mean_resolution_seconds = Some(total_ms as f64 / 1000.0 / stats.resolved as f64);
        }
        Ok(stats)
    }
}

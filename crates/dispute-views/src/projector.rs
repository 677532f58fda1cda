//! The projector: folds each event into the views, exactly once per (order, sequence).
//!
//! A duplicate or a redelivery (sequence already reflected) changes nothing. A gap (a later
//! sequence arrives first) is filled from the event store before the event is applied, so no
//! event is ever skipped. A batch of events commits in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dispute_domain::DisputeEvent;
use dispute_store::{Backend, Store, StoredEvent, on_pool};
use serde_json::Value;

use crate::{DisputeView, ViewError};

pub struct Projector {
    store: Arc<Store>,
    select: String,
    insert_timeline: String,
    upsert_dispute: String,
}

/// The tables a projector writes: the live ones, or a set being rebuilt aside.
#[derive(Debug, Clone)]
pub struct ViewTables {
    pub disputes: String,
    pub timeline: String,
}

impl ViewTables {
    pub fn live() -> Self {
        Self { disputes: "view_disputes".to_string(), timeline: "view_timeline".to_string() }
    }

    /// The tables a rebuild fills before swapping them in.
    pub fn next() -> Self {
        Self { disputes: "view_disputes_next".to_string(), timeline: "view_timeline_next".to_string() }
    }
}

/// One event as the projector needs it, from the log or from the bus.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub order_id: String,
    pub sequence: u64,
    pub event_type: String,
    /// Externally tagged: `{"<EventType>": {…}}`.
    pub payload: Value,
    pub actor_role: String,
    pub actor_id: String,
    pub time: String,
}

impl From<&StoredEvent> for Incoming {
    fn from(e: &StoredEvent) -> Self {
        let meta = |key: &str| e.metadata.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        Self {
            order_id: e.order_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            payload: e.payload.clone(),
            actor_role: meta("actor_role"),
            actor_id: meta("actor_id"),
            time: meta("time"),
        }
    }
}

impl From<&dispute_bus::CloudEvent> for Incoming {
    fn from(e: &dispute_bus::CloudEvent) -> Self {
        let (role, id) = e.actor.split_once(':').unwrap_or((e.actor.as_str(), ""));
        let payload = e.payload().unwrap_or(Value::Null);
        Self {
            order_id: e.subject.clone(),
            sequence: e.sequence,
            event_type: payload.as_object().and_then(|p| p.keys().next().cloned()).unwrap_or_default(),
            payload,
            actor_role: role.to_string(),
            actor_id: id.to_string(),
            time: e.time.clone(),
        }
    }
}

impl Projector {
    pub fn new(store: Arc<Store>) -> Self {
        Self::with_tables(store, &ViewTables::live())
    }

    pub fn with_tables(store: Arc<Store>, tables: &ViewTables) -> Self {
        let ViewTables { disputes, timeline } = tables;
        let lock = match store.backend() {
            Backend::Postgres(_) => " FOR UPDATE",
            Backend::Sqlite(_) => "",
        };
        Self {
            select: format!("SELECT sequence, view FROM {disputes} WHERE order_id = $1{lock}"),
            insert_timeline: format!(
                "INSERT INTO {timeline} (order_id, sequence, event_type, actor_role, actor_id, time, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id, sequence) DO NOTHING"
            ),
            upsert_dispute: format!(
                "INSERT INTO {disputes} (order_id, sequence, buyer_id, merchant_id, status, round, reason, outcome, \
                   assignee, currency, requested_minor, refunded_minor, merchant_due_ms, requested_at_ms, \
                   escalated_at_ms, assignment_due_ms, resolved_at_ms, merchant_wins, merchant_losses, view) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
                 ON CONFLICT (order_id) DO UPDATE SET sequence = excluded.sequence, status = excluded.status, \
                   round = excluded.round, reason = excluded.reason, outcome = excluded.outcome, \
                   assignee = excluded.assignee, requested_minor = excluded.requested_minor, \
                   refunded_minor = excluded.refunded_minor, merchant_due_ms = excluded.merchant_due_ms, \
                   requested_at_ms = excluded.requested_at_ms, escalated_at_ms = excluded.escalated_at_ms, \
                   assignment_due_ms = excluded.assignment_due_ms, resolved_at_ms = excluded.resolved_at_ms, \
                   merchant_wins = excluded.merchant_wins, merchant_losses = excluded.merchant_losses, \
                   view = excluded.view \
                 WHERE {disputes}.sequence < excluded.sequence"
            ),
            store,
        }
    }

    /// Applies one event (and any missing before it). Returns false for a duplicate.
    pub async fn apply(&self, incoming: &Incoming) -> Result<bool, ViewError> {
        Ok(self.apply_batch(std::slice::from_ref(incoming)).await? == 1)
    }

    /// Applies events of any orders in one transaction, each order's in sequence order, with
    /// any gap before them filled from the event store. Returns how many were new; duplicates
    /// change nothing. Orders are locked in order-id order, so two projectors never deadlock.
    pub async fn apply_batch(&self, batch: &[Incoming]) -> Result<usize, ViewError> {
        let mut orders: BTreeMap<&str, Vec<&Incoming>> = BTreeMap::new();
        for incoming in batch {
            orders.entry(&incoming.order_id).or_default().push(incoming);
        }
        let backend = self.store.backend();
        // SQLite: take the write lock up front; upgrading a read transaction fails at once
        // (SQLITE_BUSY) when another connection wrote in between.
        let begin = match backend {
            Backend::Postgres(_) => "BEGIN",
            Backend::Sqlite(_) => "BEGIN IMMEDIATE",
        };
        on_pool!(backend, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let mut applied = 0;
            for (order_id, mut events) in orders {
                events.sort_by_key(|e| e.sequence);
                let row: Option<(i64, String)> =
                    sqlx::query_as(&self.select).bind(order_id).fetch_optional(&mut *tx).await?;
                let (mut last, mut view) = match row {
                    Some((last, view)) => (last as u64, Some(serde_json::from_str::<DisputeView>(&view)?)),
                    None => (0, None),
                };
                let reflected = last;
                for incoming in events {
                    if incoming.sequence <= last {
                        continue;
                    }
                    let mut pending = Vec::new();
                    if incoming.sequence > last + 1 {
                        let missing = self.store.stream_events(order_id, last + 1, incoming.sequence - 1).await?;
                        if missing.len() as u64 != incoming.sequence - 1 - last {
                            return Err(ViewError::Gap { order_id: order_id.to_string(), sequence: incoming.sequence });
                        }
                        pending.extend(missing.iter().map(Incoming::from));
                    }
                    pending.push(incoming.clone());
                    for event in &pending {
                        let domain_event: DisputeEvent = serde_json::from_value(event.payload.clone())?;
                        let time = parse_time(&event.time);
                        match &mut view {
                            Some(view) => view.apply(event.sequence, time, &domain_event),
                            None => {
                                view = DisputeView::registered(&event.order_id, event.sequence, &domain_event);
                                if view.is_none() {
                                    return Err(ViewError::NotRegisteredFirst(event.order_id.clone()));
                                }
                            }
                        }
                        sqlx::query(&self.insert_timeline)
                        .bind(&event.order_id)
                        .bind(event.sequence as i64)
                        .bind(&event.event_type)
                        .bind(&event.actor_role)
                        .bind(&event.actor_id)
                        .bind(&event.time)
                        .bind(domain_event_data(&event.payload))
                        .execute(&mut *tx)
                        .await?;
                    }
                    last = incoming.sequence;
                    applied += 1;
                }
                if last == reflected {
                    continue;
                }
                let view = view.expect("a view exists after applying an event");
                let row = ViewRow::from(&view);
                sqlx::query(&self.upsert_dispute)
                .bind(&view.dispute_id)
                .bind(view.sequence as i64)
                .bind(&view.buyer_id)
                .bind(&view.merchant_id)
                .bind(view.status.as_str())
                .bind(view.round as i32)
                .bind(row.reason)
                .bind(row.outcome)
                .bind(&view.assignee)
                .bind(&view.paid_amount.currency)
                .bind(view.requested_total.amount_minor)
                .bind(view.refunded_total.amount_minor)
                .bind(row.merchant_due_ms)
                .bind(view.requested_at.map(|t| t.timestamp_millis()))
                .bind(view.escalated_at.map(|t| t.timestamp_millis()))
                .bind(view.deadlines.assignment_due.map(|t| t.timestamp_millis()))
                .bind(view.resolved_at.map(|t| t.timestamp_millis()))
                .bind(view.merchant_wins as i32)
                .bind(view.merchant_losses as i32)
                .bind(serde_json::to_string(&view)?)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            self.store.projected().notify_waiters();
            Ok(applied)
        })
    }
}

/// The columns derived from a view for filtering and sorting.
struct ViewRow {
    reason: Option<String>,
    outcome: Option<String>,
    merchant_due_ms: i64,
}

impl From<&DisputeView> for ViewRow {
    fn from(view: &DisputeView) -> Self {
        let text = |v: Value| v.as_str().map(str::to_string);
        Self {
            reason: view.reason.and_then(|r| text(serde_json::to_value(r).ok()?)),
            outcome: view.outcome.and_then(|o| text(serde_json::to_value(o).ok()?)),
            merchant_due_ms: view
                .deadlines
                .merchant_next(view.status)
                .map_or(i64::MAX, |t| t.timestamp_millis()),
        }
    }
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

/// The event's fields without the type tag, as JSON text.
fn domain_event_data(payload: &Value) -> String {
    let inner = payload.as_object().and_then(|o| o.values().next()).unwrap_or(payload);
    inner.to_string()
}

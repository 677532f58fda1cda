//! The projector: folds each event into the views, exactly once per (order, sequence).
//!
//! A duplicate or a redelivery (sequence already reflected) changes nothing. A gap (a later
//! sequence arrives first) is filled from the event store before the event is applied, so no
//! event is ever skipped. A batch of events commits in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dispute_domain::DisputeEvent;
use dispute_store::{Backend, Store, StoredEvent, on_pool};
use serde::Serialize;
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

    /// The statements take their rows as one JSON array each: a batch is three statements
    /// whatever its size (read and lock the views, insert the timeline, upsert the views).
    pub fn with_tables(store: Arc<Store>, tables: &ViewTables) -> Self {
        let ViewTables { disputes, timeline } = tables;
        const TIMELINE: &str = "order_id, sequence, event_type, actor_role, actor_id, time, data";
        const DISPUTE: &str = "order_id, sequence, buyer_id, merchant_id, status, round, reason, outcome, \
            assignee, currency, requested_minor, refunded_minor, merchant_due_ms, requested_at_ms, \
            escalated_at_ms, assignment_due_ms, resolved_at_ms, merchant_wins, merchant_losses, view";
        let (select, timeline_rows, dispute_rows) = match store.backend() {
            Backend::Postgres(_) => (
                // Locked in order-id order, so two projectors never deadlock.
                format!(
                    "SELECT order_id, sequence, view FROM {disputes} \
                     WHERE order_id IN (SELECT json_array_elements_text($1::json)) ORDER BY order_id FOR UPDATE"
                ),
                format!(
                    "SELECT {TIMELINE} FROM json_to_recordset($1::json) AS r(order_id text, sequence bigint, \
                     event_type text, actor_role text, actor_id text, time text, data text)"
                ),
                format!(
                    "SELECT {DISPUTE} FROM json_to_recordset($1::json) AS r(order_id text, sequence bigint, \
                     buyer_id text, merchant_id text, status text, round integer, reason text, outcome text, \
                     assignee text, currency text, requested_minor bigint, refunded_minor bigint, \
                     merchant_due_ms bigint, requested_at_ms bigint, escalated_at_ms bigint, \
                     assignment_due_ms bigint, resolved_at_ms bigint, merchant_wins integer, \
                     merchant_losses integer, view text)"
                ),
            ),
            Backend::Sqlite(_) => {
                let fields = |columns: &str| {
                    columns.split(", ").map(|c| format!("value ->> '{c}'")).collect::<Vec<_>>().join(", ")
                };
                (
                    format!(
                        "SELECT order_id, sequence, view FROM {disputes} \
                         WHERE order_id IN (SELECT value FROM json_each($1)) ORDER BY order_id"
                    ),
                    // `WHERE true` tells SQLite's parser that ON CONFLICT is an upsert clause.
                    format!("SELECT {} FROM json_each($1) WHERE true", fields(TIMELINE)),
                    format!("SELECT {} FROM json_each($1) WHERE true", fields(DISPUTE)),
                )
            }
        };
        Self {
            select,
            insert_timeline: format!(
                "INSERT INTO {timeline} ({TIMELINE}) {timeline_rows} ON CONFLICT (order_id, sequence) DO NOTHING"
            ),
            upsert_dispute: format!(
                "INSERT INTO {disputes} ({DISPUTE}) {dispute_rows} \
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
    /// change nothing.
    pub async fn apply_batch(&self, batch: &[Incoming]) -> Result<usize, ViewError> {
        let mut orders: BTreeMap<&str, Vec<&Incoming>> = BTreeMap::new();
        for incoming in batch {
            orders.entry(&incoming.order_id).or_default().push(incoming);
        }
        if orders.is_empty() {
            return Ok(0);
        }
        let order_ids = serde_json::to_string(&orders.keys().collect::<Vec<_>>())?;
        let backend = self.store.backend();
        // SQLite: take the write lock up front; upgrading a read transaction fails at once
        // (SQLITE_BUSY) when another connection wrote in between.
        let begin = match backend {
            Backend::Postgres(_) => "BEGIN",
            Backend::Sqlite(_) => "BEGIN IMMEDIATE",
        };
        on_pool!(backend, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let rows: Vec<(String, i64, String)> =
                sqlx::query_as(&self.select).bind(&order_ids).fetch_all(&mut *tx).await?;
            let mut current: HashMap<String, (u64, DisputeView)> = HashMap::with_capacity(rows.len());
            for (order_id, sequence, view) in rows {
                current.insert(order_id, (sequence as u64, serde_json::from_str(&view)?));
            }
            let mut changes = Changes::default();
            for (order_id, events) in orders {
                let (last, view) = match current.remove(order_id) {
                    Some((last, view)) => (last, Some(view)),
                    None => (0, None),
                };
                changes.fold(&self.store, order_id, last, view, events).await?;
            }
            if !changes.timeline.is_empty() {
                sqlx::query(&self.insert_timeline)
                    .bind(serde_json::to_string(&changes.timeline)?)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&self.upsert_dispute)
                    .bind(serde_json::to_string(&changes.disputes)?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            self.store.projected().notify_waiters();
            Ok(changes.applied)
        })
    }
}

/// What a batch writes: the new timeline entries and the changed views.
#[derive(Default)]
struct Changes {
    timeline: Vec<TimelineRow>,
    disputes: Vec<DisputeRow>,
    /// Events of the batch that were new.
    applied: usize,
}

impl Changes {
    /// Folds one order's incoming events into its view (reflecting `last`), filling gaps from
    /// the event store.
    async fn fold(
        &mut self,
        store: &Store,
        order_id: &str,
        mut last: u64,
        mut view: Option<DisputeView>,
        mut events: Vec<&Incoming>,
    ) -> Result<(), ViewError> {
        events.sort_by_key(|e| e.sequence);
        let reflected = last;
        for incoming in events {
            if incoming.sequence <= last {
                continue;
            }
            let mut missing = Vec::new();
            if incoming.sequence > last + 1 {
                missing = store.stream_events(order_id, last + 1, incoming.sequence - 1).await?;
                if missing.len() as u64 != incoming.sequence - 1 - last {
                    return Err(ViewError::Gap {
                        order_id: order_id.to_string(),
                        sequence: incoming.sequence,
                    });
                }
            }
            let missing: Vec<Incoming> = missing.iter().map(Incoming::from).collect();
            for event in missing.iter().chain([incoming]) {
                let domain_event: DisputeEvent = serde_json::from_value(event.payload.clone())?;
                match &mut view {
                    Some(view) => view.apply(event.sequence, parse_time(&event.time), &domain_event),
                    None => {
                        view = DisputeView::registered(&event.order_id, event.sequence, &domain_event);
                        if view.is_none() {
                            return Err(ViewError::NotRegisteredFirst(event.order_id.clone()));
                        }
                    }
                }
                self.timeline.push(TimelineRow {
                    order_id: event.order_id.clone(),
                    sequence: event.sequence as i64,
                    event_type: event.event_type.clone(),
                    actor_role: event.actor_role.clone(),
                    actor_id: event.actor_id.clone(),
                    time: event.time.clone(),
                    data: domain_event_data(&event.payload),
                });
            }
            last = incoming.sequence;
            self.applied += 1;
        }
        if last > reflected {
            let view = view.expect("a view exists after applying an event");
            self.disputes.push(DisputeRow::new(&view)?);
        }
        Ok(())
    }
}

/// One `view_timeline` row.
#[derive(Serialize)]
struct TimelineRow {
    order_id: String,
    sequence: i64,
    event_type: String,
    actor_role: String,
    actor_id: String,
    time: String,
    data: String,
}

/// One `view_disputes` row: the view and the columns derived from it for filtering and sorting.
#[derive(Serialize)]
struct DisputeRow {
    order_id: String,
    sequence: i64,
    buyer_id: String,
    merchant_id: String,
    status: &'static str,
    round: i32,
    reason: Option<String>,
    outcome: Option<String>,
    assignee: Option<String>,
    currency: String,
    requested_minor: i64,
    refunded_minor: i64,
    merchant_due_ms: i64,
    requested_at_ms: Option<i64>,
    escalated_at_ms: Option<i64>,
    assignment_due_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    merchant_wins: i32,
    merchant_losses: i32,
    view: String,
}

impl DisputeRow {
    fn new(view: &DisputeView) -> Result<Self, ViewError> {
        let text = |v: Value| v.as_str().map(str::to_string);
        Ok(Self {
            order_id: view.dispute_id.clone(),
            sequence: view.sequence as i64,
            buyer_id: view.buyer_id.clone(),
            merchant_id: view.merchant_id.clone(),
            status: view.status.as_str(),
            round: view.round as i32,
            reason: view.reason.and_then(|r| text(serde_json::to_value(r).ok()?)),
            outcome: view.outcome.and_then(|o| text(serde_json::to_value(o).ok()?)),
            assignee: view.assignee.clone(),
            currency: view.paid_amount.currency.clone(),
            requested_minor: view.requested_total.amount_minor,
            refunded_minor: view.refunded_total.amount_minor,
            merchant_due_ms: view
                .deadlines
                .merchant_next(view.status)
                .map_or(i64::MAX, |t| t.timestamp_millis()),
            requested_at_ms: view.requested_at.map(|t| t.timestamp_millis()),
            escalated_at_ms: view.escalated_at.map(|t| t.timestamp_millis()),
            assignment_due_ms: view.deadlines.assignment_due.map(|t| t.timestamp_millis()),
            resolved_at_ms: view.resolved_at.map(|t| t.timestamp_millis()),
            merchant_wins: view.merchant_wins as i32,
            merchant_losses: view.merchant_losses as i32,
            view: serde_json::to_string(view)?,
        })
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

//! The projector: folds each event into the views, exactly once per (order, sequence).
//!
//! A duplicate or a redelivery (sequence already reflected) changes nothing. A gap (a later
//! sequence arrives first) is filled from the event store before the event is applied, so no
//! event is ever skipped. A batch of events commits in one transaction. An order whose events in
//! the batch start at its first is folded from scratch, and one whose view the projector kept
//! from its own last write is folded onto that, both without reading the stored view: what is
//! stored already is left as it is where it is as far or further (views only move forward,
//! timeline entries are kept).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dispute_domain::DisputeEvent;
use dispute_store::{DisputeRow, Store, StoredEvent, TimelineRow, ViewTables, ViewWriter};
use hashlink::LruCache;
use serde::Deserialize;
use serde_json::Value;

use crate::{DisputeView, ViewError, ViewName};

/// How long events took from their commit to their view transaction's commit, per view.
pub const PROJECTION_LAG_SECONDS: &str = "disputes_projection_lag_seconds";

/// Describes the projector's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        PROJECTION_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Time from an event's commit (its time on the service clock) to its view transaction's commit, by view."
    );
}

/// How many views a projector keeps as it last wrote them: a few kilobytes each.
const KEPT: usize = 4096;

pub struct Projector {
    store: Arc<Store>,
    writer: ViewWriter,
    /// Whether it writes the live views, whose lag is measured (a rebuild's is not a lag).
    live: bool,
    /// The views of the orders it projected lately, each with the sequence it reflects, as
    /// of its last commit. A view is a function of its order's events, which never change, so
    /// a kept view is never wrong, only possibly behind the stored one (another projector
    /// went further): the next events fold onto it without reading the stored view, and
    /// the upsert leaves a stored view that is ahead alone.
    kept: LruCache<String, (u64, DisputeView)>,
}

/// One event as the projector needs it, from the log or from the bus. An event read from the
/// log lends its payload: the projector reads it, and keeps nothing of it but text.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub order_id: String,
    pub sequence: u64,
    pub event_type: String,
    /// Externally tagged: `{"<EventType>": {…}}`.
    pub payload: Cow<'a, Value>,
    pub actor_role: String,
    pub actor_id: String,
    pub time: String,
}

/// What the projector reads of an event's metadata: who, and when.
#[derive(Default, Deserialize)]
struct Caused {
    actor_role: String,
    actor_id: String,
    time: String,
}

impl<'a> From<&'a StoredEvent> for Incoming<'a> {
    fn from(e: &'a StoredEvent) -> Self {
        // Metadata the store never wrote (it always writes all of it) leaves the actor and time
        // empty. The time is kept as stored: every event's is written in one form.
        let Caused { actor_role, actor_id, time } = Caused::deserialize(&e.metadata).unwrap_or_default();
        Self {
            order_id: e.order_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            payload: Cow::Borrowed(&e.payload),
            actor_role,
            actor_id,
            time,
        }
    }
}

impl From<dispute_bus::CloudEvent> for Incoming<'static> {
    /// Moves the event's fields and data rather than copying them.
    fn from(mut e: dispute_bus::CloudEvent) -> Self {
        let (actor_role, actor_id) = match e.actor.split_once(':') {
            Some((role, id)) => (role.to_string(), id.to_string()),
            None => (std::mem::take(&mut e.actor), String::new()),
        };
        let (order_id, time, sequence) =
            (std::mem::take(&mut e.subject), std::mem::take(&mut e.time), e.sequence);
        let event_type = e.event_name().unwrap_or_default().to_string();
        let payload = e.into_payload().unwrap_or(Value::Null);
        Self { order_id, sequence, event_type, payload: Cow::Owned(payload), actor_role, actor_id, time }
    }
}

impl Projector {
    pub fn new(store: Arc<Store>) -> Self {
        Self::with_tables(store, &ViewTables::live())
    }

    /// A projector writing into `tables`: the live views, or a set being rebuilt aside.
    pub fn with_tables(store: Arc<Store>, tables: &ViewTables) -> Self {
        Self {
            writer: ViewWriter::new(&store, tables),
            live: *tables == ViewTables::live(),
            store,
            kept: LruCache::new(KEPT),
        }
    }

    /// Whether the views reflect the event `sequence` of `order_id` already, as far as this
    /// projector knows: it committed a view of that order at that sequence or later.
    pub fn holds(&self, order_id: &str, sequence: u64) -> bool {
        self.kept.peek(order_id).is_some_and(|(kept, _)| *kept >= sequence)
    }

    /// Applies one event (and any missing before it). Returns false for a duplicate.
    pub async fn apply(&mut self, incoming: &Incoming<'_>) -> Result<bool, ViewError> {
        Ok(self.apply_batch(std::slice::from_ref(incoming)).await? == 1)
    }

    /// Applies events of any orders in one transaction, each order's in sequence order, with
    /// any gap before them filled from the event store. Returns how many were new; duplicates
    /// change nothing.
    pub async fn apply_batch(&mut self, batch: &[Incoming<'_>]) -> Result<usize, ViewError> {
        let mut orders: BTreeMap<&str, Vec<&Incoming<'_>>> = BTreeMap::new();
        for incoming in batch {
            orders.entry(&incoming.order_id).or_default().push(incoming);
        }
        if orders.is_empty() {
            return Ok(0);
        }
        // Each order's events fold onto the view they continue: none, for an order whose
        // events start at its first; the view this projector kept, if it reaches the batch's
        // first event; else the stored view, read and locked in the batch's transaction. A
        // batch that reads no stored view is written by one statement on PostgreSQL (see
        // `ViewWriter::write`).
        let mut starts: HashMap<&str, (u64, Option<DisputeView>)> = HashMap::with_capacity(orders.len());
        let mut continued: Vec<&str> = Vec::new();
        for (order_id, events) in &orders {
            let first = events.iter().map(|e| e.sequence).min().unwrap_or(1);
            let start = if first == 1 {
                Some((0, None))
            } else {
                let kept = self.kept.get(*order_id).filter(|(sequence, _)| sequence + 1 >= first);
                kept.map(|(sequence, view)| (*sequence, Some(view.clone())))
            };
            match start {
                Some(start) => {
                    starts.insert(order_id, start);
                }
                None => continued.push(order_id),
            }
        }
        let batch = if continued.is_empty() {
            None
        } else {
            let (writes, stored) = self.writer.lock(&continued).await?;
            for row in stored {
                if let Some((order_id, _)) = orders.get_key_value(row.order_id.as_str()) {
                    starts.insert(order_id, (row.sequence as u64, Some(serde_json::from_str(&row.view)?)));
                }
            }
            Some(writes)
        };
        let mut changes = Changes::default();
        for (order_id, events) in orders {
            let (last, view) = starts.remove(order_id).unwrap_or((0, None));
            changes.fold(&self.store, order_id, last, view, events).await?;
        }
        // The events whose timeline entry is new are those applied now (entry and view are
        // written together).
        let written = match batch {
            Some(writes) => writes.commit(&changes.timeline, &changes.disputes).await?,
            None => self.writer.write(&changes.timeline, &changes.disputes).await?,
        };
        if self.live {
            // What readers are answered from: views set aside for a rebuild are not read yet.
            let views = changes.disputes.iter();
            self.store
                .projected()
                .committed(views.map(|row| (row.order_id.as_str(), row.sequence as u64, row.view.as_str())));
        }
        for (order_id, sequence, view) in changes.views {
            self.kept.insert(order_id, (sequence, view));
        }
        let new: HashSet<(&str, i64)> =
            written.iter().map(|(order_id, sequence)| (order_id.as_str(), *sequence)).collect();
        let applied: Vec<DateTime<Utc>> = changes
            .folded
            .into_iter()
            .filter(|(order_id, sequence, _)| new.contains(&(*order_id, *sequence as i64)))
            .map(|(_, _, time)| time)
            .collect();
        if self.live {
            self.record_lag(&applied);
        }
        Ok(applied.len())
    }

    /// Both views are committed in the batch's one transaction: each new event reached each
    /// view now.
    fn record_lag(&self, times: &[DateTime<Utc>]) {
        let now = self.store.now();
        for view in ViewName::ALL {
            let lag = metrics::histogram!(PROJECTION_LAG_SECONDS, "view" => view.as_str());
            for time in times {
                lag.record((now - *time).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1e6);
            }
        }
    }
}

/// What a batch writes: the timeline entries and the changed views.
#[derive(Default)]
struct Changes<'a> {
    timeline: Vec<TimelineRow>,
    disputes: Vec<DisputeRow>,
    /// The changed views themselves, each with the sequence it reflects.
    views: Vec<(String, u64, DisputeView)>,
    /// The events of the batch folded (not the gaps filled): order, sequence, commit time.
    folded: Vec<(&'a str, u64, DateTime<Utc>)>,
}

impl<'a> Changes<'a> {
    /// Folds one order's incoming events into its view (reflecting `last`), filling gaps from
    /// the event store.
    async fn fold(
        &mut self,
        store: &Store,
        order_id: &'a str,
        mut last: u64,
        mut view: Option<DisputeView>,
        mut events: Vec<&Incoming<'_>>,
    ) -> Result<(), ViewError> {
        // One event can come twice in a batch: from a command's commit and from the relay.
        events.sort_by_key(|e| e.sequence);
        events.dedup_by_key(|e| e.sequence);
        let reflected = last;
        for incoming in events {
            if incoming.sequence <= last {
                // In the view already. Its timeline entry is written where missing: the
                // timeline may have been rebuilt apart from the view, or the view folded by
                // a projector that kept it.
                self.timeline.push(timeline_row(incoming));
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
                let domain_event = DisputeEvent::deserialize(event.payload.as_ref())?;
                match &mut view {
                    Some(view) => view.apply(event.sequence, parse_time(&event.time), &domain_event),
                    None => {
                        view = DisputeView::registered(&event.order_id, event.sequence, &domain_event);
                        if view.is_none() {
                            return Err(ViewError::NotRegisteredFirst(event.order_id.clone()));
                        }
                    }
                }
                self.timeline.push(timeline_row(event));
            }
            last = incoming.sequence;
            self.folded.push((order_id, incoming.sequence, parse_time(&incoming.time)));
        }
        if last > reflected {
            let view = view.expect("a view exists after applying an event");
            self.disputes.push(dispute_row(&view)?);
            self.views.push((order_id.to_string(), last, view));
        }
        Ok(())
    }
}

/// The `view_disputes` row of a view: the view and the columns derived from it for filtering
/// and sorting.
fn dispute_row(view: &DisputeView) -> Result<DisputeRow, ViewError> {
    let text = |v: Value| v.as_str().map(str::to_string);
    Ok(DisputeRow {
        order_id: view.dispute_id.clone(),
        sequence: view.sequence as i64,
        buyer_id: view.buyer_id.clone(),
        merchant_id: view.merchant_id.clone(),
        status: view.status.as_str().to_string(),
        round: view.round as i32,
        reason: view.reason.and_then(|r| text(serde_json::to_value(r).ok()?)),
        outcome: view.outcome.and_then(|o| text(serde_json::to_value(o).ok()?)),
        assignee: view.assignee.clone(),
        currency: view.paid_amount.currency.clone(),
        requested_minor: view.requested_total.amount_minor,
        refunded_minor: view.refunded_total.amount_minor,
        merchant_due_ms: view.merchant_due().map_or(i64::MAX, |t| t.timestamp_millis()),
        requested_at_ms: view.requested_at.map(|t| t.timestamp_millis()),
        escalated_at_ms: view.escalated_at.map(|t| t.timestamp_millis()),
        assignment_due_ms: view.deadlines.assignment_due.map(|t| t.timestamp_millis()),
        resolved_at_ms: view.resolved_at.map(|t| t.timestamp_millis()),
        merchant_wins: view.merchant_wins as i32,
        merchant_losses: view.merchant_losses as i32,
        view: serde_json::to_string(view)?,
    })
}

/// The `view_timeline` row of an event.
fn timeline_row(event: &Incoming<'_>) -> TimelineRow {
    TimelineRow {
        order_id: event.order_id.clone(),
        sequence: event.sequence as i64,
        event_type: event.event_type.clone(),
        actor_role: event.actor_role.clone(),
        actor_id: event.actor_id.clone(),
        time: event.time.clone(),
        data: domain_event_data(&event.payload),
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

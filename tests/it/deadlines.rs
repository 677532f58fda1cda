//! The timer's table against both stores: it holds only the deadlines that run, and each event
//! is recorded once, so an event read again never brings back a deadline a later one ended.

use dispute_domain::{DisputeEvent, Role, TimerChange};
use dispute_store::StoredEvent;
use dispute_store::deadlines::Tracked;
use dispute_timer::DeadlineTimer;
use disputes_tests::*;
use serde_json::json;

use crate::timer::tracked_all;

/// The orders with a row in `deadlines`.
async fn rows(app: &TestApp) -> Vec<String> {
    on_db!(&mut app.db().await, c => {
        sqlx::query_scalar("SELECT order_id FROM deadlines ORDER BY order_id")
            .fetch_all(&mut *c)
            .await
            .expect("deadlines reads")
    })
}

async fn requested(app: &TestApp, id: &str) {
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 5_000).await.assert_ok();
}

async fn withdrawn(app: &TestApp, id: &str) {
    app.command(id, "withdraw", Role::Buyer, BUYER, json!({})).await.assert_ok();
}

/// What `event` does to its order's deadline, as tracking hands it to the store.
fn tracked(event: &StoredEvent) -> Option<Tracked<'_>> {
    let domain: DisputeEvent = serde_json::from_value(event.payload.clone()).expect("the event reads");
    let running = match domain.timer_change() {
        TimerChange::Unchanged => return None,
        TimerChange::Set(timer) => Some(timer),
        TimerChange::Cleared => None,
    };
    Some(Tracked { order_id: &event.order_id, sequence: event.sequence, cursor: event.cursor, running })
}

#[tokio::test]
async fn a_deadline_keeps_its_row_only_while_it_runs() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let timer = DeadlineTimer::new(app.store.clone());
        requested(&app, "k-1").await;
        requested(&app, "k-2").await;
        tracked_all(&app, &timer).await;
        assert_eq!(rows(&app).await, ["k-1", "k-2"]);

        withdrawn(&app, "k-1").await;
        // Set and ended between two reads: one batch, where only the withdrawal counts.
        requested(&app, "k-3").await;
        withdrawn(&app, "k-3").await;
        tracked_all(&app, &timer).await;
        assert_eq!(rows(&app).await, ["k-2"], "ended deadlines keep no row");
        assert_eq!(app.store.deadlines().schedule().await.unwrap().pending, 1);
    }
}

#[tokio::test]
async fn an_event_read_again_never_brings_back_a_deadline_a_later_one_ended() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        requested(&app, "r-1").await;
        withdrawn(&app, "r-1").await;
        let events = app.store.whole_stream("r-1").await.unwrap();
        let changes: Vec<Tracked> = events.iter().filter_map(tracked).collect();
        assert_eq!(
            changes.iter().map(|c| c.running.is_some()).collect::<Vec<_>>(),
            [true, false],
            "the request sets a deadline, the withdrawal ends it"
        );
        let deadlines = app.store.deadlines();
        // One reader records the request, then the withdrawal, which deletes the row...
        let due = changes[0].running.expect("a running deadline").due.timestamp_millis();
        assert_eq!(deadlines.record(&changes[..1]).await.unwrap(), Some(due), "set, due then");
        assert_eq!(rows(&app).await, ["r-1"]);
        deadlines.record(&changes[1..]).await.unwrap();
        assert_eq!(rows(&app).await, Vec::<String>::new());
        // ...and a reader behind it (or the first after a crash) reads the request again,
        // in a batch that ends before the withdrawal.
        assert_eq!(deadlines.record(&changes[..1]).await.unwrap(), None, "recorded once already");
        assert_eq!(rows(&app).await, Vec::<String>::new());
        assert_eq!(deadlines.schedule().await.unwrap().pending, 0);
    }
}

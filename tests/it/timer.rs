//! The deadline timer against the real database: each deadline's effect, deadlines closed in
//! time, category overrides, overdue deadlines at start, and two instances on one database.
//! Time moves on the test clock; the timer is stepped (`track`, `fire_due`) except where its
//! own loop is the subject.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use dispute_domain::{CloseReason, Policy, Role, Status};
use dispute_store::{Cursor, Store};
use dispute_timer::{DeadlineTimer, Fired};
use disputes_tests::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Records what the log holds, then fires what is due now.
async fn step(app: &TestApp, timer: &DeadlineTimer) -> Fired {
    tracked_all(app, timer).await;
    timer.fire_due().await.expect("firing runs")
}

/// Tracks until the timer's checkpoint reaches the last event committed so far. The log is read
/// below the oldest transaction running anywhere on the server, so one pass may stop short while
/// other databases are busy.
pub(crate) async fn tracked_all(app: &TestApp, timer: &DeadlineTimer) {
    let last = app.store.last_cursor().await.expect("the last event reads").map(|c| (c.xid, c.position));
    let Some((xid, position)) = last else { return };
    let limit = Instant::now() + StdDuration::from_secs(10);
    loop {
        timer.track().await.expect("tracking reads the log");
        if app.store.checkpoint("timer").await.unwrap() >= (Cursor { xid, position }) {
            return;
        }
        assert!(Instant::now() < limit, "the timer did not track the log up to ({xid}, {position})");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

async fn status(app: &TestApp, order: &str) -> Status {
    app.store.load(order).await.expect("the dispute loads").0.status()
}

/// The event types of one order's stream, in order.
async fn event_types(store: &Store, order: &str) -> Vec<String> {
    store
        .stream_events(order, 1, u64::MAX >> 1)
        .await
        .expect("the stream reads")
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

fn fired(n: usize) -> Fired {
    Fired { fired: n, ..Fired::default() }
}

fn fresh_order(id: &str) -> Value {
    let mut facts = order(id);
    facts["category"] = json!("fresh");
    facts
}

async fn requested(app: &TestApp, id: &str, kind: &str) {
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, kind, "quality_issue", 5_000).await.assert_ok();
}

async fn ship_return(app: &TestApp, id: &str) {
    app.command(id, "ship-return", Role::Buyer, BUYER, json!({ "carrier": "SF", "tracking_number": "SF1" }))
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_missed_merchant_deadline_lets_the_buyer_escalate_by_default() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "m-1", "refund_only").await;

    app.advance(Duration::hours(48) - Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, Fired::default(), "not due one second early");
    assert_eq!(status(&app, "m-1").await, Status::AwaitingMerchant);

    app.advance(Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(status(&app, "m-1").await, Status::Rejected);
    let events = event_types(&app.store, "m-1").await;
    assert_eq!(events.last().map(String::as_str), Some("MerchantResponseMissed"));
    let stored = app.store.stream_events("m-1", 3, 3).await.unwrap();
    assert_eq!(
        (&stored[0].metadata["actor_role"], &stored[0].metadata["actor_id"]),
        (&json!("system"), &json!("timer")),
        "the timer acts as the system role"
    );

    // The escalation window it opened is tracked next; firing again does nothing now.
    assert_eq!(step(&app, &timer).await, Fired::default());
    app.escalate("m-1").await.assert_ok();
}

#[tokio::test]
async fn a_missed_merchant_deadline_approves_the_refund_in_an_auto_accept_category() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    app.register(&fresh_order("f-1")).await.assert_ok();
    app.request_refund("f-1", "refund_only", "quality_issue", 5_000).await.assert_ok();
    app.advance(Duration::hours(48));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(status(&app, "f-1").await, Status::RefundPending);
    let stored = app.store.stream_events("f-1", 3, 3).await.unwrap();
    assert_eq!(stored[0].payload["RefundApproved"]["approved_by"], json!("merchant_timeout"));
}

#[tokio::test]
async fn category_overrides_set_when_a_deadline_comes_due() {
    let policy = Policy::from_toml(
        "[default]\nmerchant_response = \"48h\"\n\n[category.electronics]\nmerchant_response = \"24h\"\n",
    )
    .expect("the policy parses");
    let app = TestApp::postgres_with_policy(policy).await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "books-1", "refund_only").await;
    let mut electronics = order("elec-1");
    electronics["category"] = json!("electronics");
    app.register(&electronics).await.assert_ok();
    app.request_refund("elec-1", "refund_only", "quality_issue", 5_000).await.assert_ok();

    app.advance(Duration::hours(24));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(
        (status(&app, "elec-1").await, status(&app, "books-1").await),
        (Status::Rejected, Status::AwaitingMerchant)
    );
    app.advance(Duration::hours(24));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(status(&app, "books-1").await, Status::Rejected);
}

#[tokio::test]
async fn a_rejection_not_escalated_in_time_closes_the_dispute() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "e-1", "refund_only").await;
    app.merchant_reject("e-1").await.assert_ok();
    app.advance(Duration::days(7) - Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, Fired::default());
    app.advance(Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, fired(1));
    let (dispute, _) = app.store.load("e-1").await.unwrap();
    assert_eq!(
        (dispute.status(), dispute.close_reason()),
        (Status::Closed, Some(CloseReason::RejectionAccepted))
    );
}

#[tokio::test]
async fn a_return_not_shipped_in_time_closes_the_dispute() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "r-1", "return_and_refund").await;
    app.merchant_accept("r-1").await.assert_ok();
    assert_eq!(status(&app, "r-1").await, Status::AwaitingReturn);
    app.advance(Duration::days(7));
    assert_eq!(step(&app, &timer).await, fired(1));
    let (dispute, _) = app.store.load("r-1").await.unwrap();
    assert_eq!(
        (dispute.status(), dispute.close_reason()),
        (Status::Closed, Some(CloseReason::ReturnNotShipped))
    );
}

#[tokio::test]
async fn a_shipped_return_not_confirmed_in_time_is_confirmed_automatically() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "c-1", "return_and_refund").await;
    app.merchant_accept("c-1").await.assert_ok();
    app.advance(Duration::days(6));
    ship_return(&app, "c-1").await;
    // The return-shipping deadline was met: only the receipt deadline runs now.
    app.advance(Duration::days(10) - Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, Fired::default());
    assert_eq!(status(&app, "c-1").await, Status::ReturnShipped);
    app.advance(Duration::seconds(1));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(status(&app, "c-1").await, Status::RefundPending);
    let last = app.store.stream_events("c-1", 1, 100).await.unwrap().pop().unwrap();
    assert_eq!(last.payload["ReturnReceived"]["confirmed_by"], json!("timeout"));
}

#[tokio::test]
async fn deadlines_closed_in_time_never_fire() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    // Accepted, an offer made and accepted, withdrawn, escalated, and a return shipped and
    // confirmed: each in time.
    for id in ["a-1", "o-1", "w-1", "x-1", "s-1"] {
        requested(&app, id, if id == "s-1" { "return_and_refund" } else { "refund_only" }).await;
    }
    step(&app, &timer).await;
    app.advance(Duration::hours(47));
    app.merchant_accept("a-1").await.assert_ok();
    app.merchant_offer("o-1", 2_000).await.assert_ok();
    app.command("o-1", "accept-offer", Role::Buyer, BUYER, json!({})).await.assert_ok();
    app.command("w-1", "withdraw", Role::Buyer, BUYER, json!({})).await.assert_ok();
    app.merchant_reject("x-1").await.assert_ok();
    app.escalate("x-1").await.assert_ok();
    app.merchant_accept("s-1").await.assert_ok();
    ship_return(&app, "s-1").await;
    app.command("s-1", "confirm-return", Role::Merchant, MERCHANT, json!({})).await.assert_ok();
    let before: Vec<_> = statuses(&app, &["a-1", "o-1", "w-1", "x-1", "s-1"]).await;

    app.advance(Duration::days(30));
    assert_eq!(
        step(&app, &timer).await,
        Fired::default(),
        "no deadline runs, so nothing fires and nothing is stale"
    );
    assert_eq!(statuses(&app, &["a-1", "o-1", "w-1", "x-1", "s-1"]).await, before);
}

async fn statuses(app: &TestApp, ids: &[&str]) -> Vec<Status> {
    let mut statuses = Vec::new();
    for id in ids {
        statuses.push(status(app, id).await);
    }
    statuses
}

#[tokio::test]
async fn a_deadline_of_an_earlier_step_is_refused_quietly_if_its_row_is_stale() {
    // The merchant answers between the timer's tracking and its firing: the row still names the
    // merchant deadline, the aggregate refuses it as stale, and the row is dropped.
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "s-2", "refund_only").await;
    tracked_all(&app, &timer).await;
    app.merchant_reject("s-2").await.assert_ok();
    app.advance(Duration::hours(48));
    assert_eq!(timer.fire_due().await.unwrap(), Fired { stale: 1, ..Fired::default() });
    assert_eq!(status(&app, "s-2").await, Status::Rejected);
    assert_eq!(event_types(&app.store, "s-2").await.len(), 3, "nothing was written");
    // The rejection's own window is tracked next and fires at its time.
    app.advance(Duration::days(7));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(status(&app, "s-2").await, Status::Closed);
}

#[tokio::test]
async fn the_timer_runs_on_the_embedded_store_too() {
    let app = TestApp::sqlite().await;
    let timer = DeadlineTimer::new(app.store.clone());
    requested(&app, "q-1", "refund_only").await;
    app.merchant_reject("q-1").await.assert_ok();
    app.advance(Duration::days(7));
    assert_eq!(step(&app, &timer).await, fired(1));
    assert_eq!(status(&app, "q-1").await, Status::Closed);
}

/// Waits, up to a limit, until `order` has `status`.
async fn until_status(app: &TestApp, order: &str, expected: Status) {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let now = status(app, order).await;
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{order} is still {now:?}, expected {expected:?}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_deadline_that_came_due_while_no_timer_ran_fires_when_one_starts() {
    let app = TestApp::postgres().await;
    requested(&app, "d-1", "refund_only").await;
    app.advance(Duration::days(3));
    let stop = CancellationToken::new();
    let running = tokio::spawn(DeadlineTimer::new(app.store.clone()).run(stop.clone()));
    until_status(&app, "d-1", Status::Rejected).await;
    // And the loop keeps watching: a rejection's window that comes due later fires too.
    app.escalate("d-1").await.assert_ok();
    requested(&app, "d-2", "refund_only").await;
    app.merchant_reject("d-2").await.assert_ok();
    app.advance(Duration::days(7));
    until_status(&app, "d-2", Status::Closed).await;
    stop.cancel();
    running.await.unwrap();
    assert_eq!(status(&app, "d-1").await, Status::Escalated);
}

/// A second instance: its own pool on the same database, with the same clock and policy.
async fn second_instance(app: &TestApp) -> Arc<Store> {
    let Backing::Postgres(db) = &app.backing else { panic!("PostgreSQL only") };
    open_store_on(&db.url, app.clock.clone()).await
}

#[tokio::test]
async fn two_instances_firing_at_once_fire_each_deadline_once() {
    let app = TestApp::postgres().await;
    let ids: Vec<String> = (0..150).map(|i| format!("t-{i}")).collect();
    for id in &ids {
        requested(&app, id, "refund_only").await;
    }
    let one = DeadlineTimer::new(app.store.clone());
    let two = DeadlineTimer::new(second_instance(&app).await);
    tracked_all(&app, &one).await;
    tracked_all(&app, &two).await;
    app.advance(Duration::hours(48));
    let (a, b) = tokio::join!(one.fire_due(), two.fire_due());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.fired + b.fired, ids.len(), "{a:?} {b:?}");
    assert_eq!((a.stale, b.stale, a.retried, b.retried), (0, 0, 0, 0), "claims kept the instances apart");
    for id in &ids {
        let types = event_types(&app.store, id).await;
        assert_eq!(types.iter().filter(|t| *t == "MerchantResponseMissed").count(), 1, "{id}: {types:?}");
    }
}

#[tokio::test]
async fn two_running_instances_give_each_deadline_one_effect() {
    let app = TestApp::postgres().await;
    let ids: Vec<String> = (0..60).map(|i| format!("u-{i}")).collect();
    for id in &ids {
        requested(&app, id, "refund_only").await;
    }
    let stop = CancellationToken::new();
    let runs = [
        tokio::spawn(DeadlineTimer::new(app.store.clone()).run(stop.clone())),
        tokio::spawn(DeadlineTimer::new(second_instance(&app).await).run(stop.clone())),
    ];
    app.advance(Duration::hours(48));
    for id in &ids {
        until_status(&app, id, Status::Rejected).await;
    }
    app.advance(Duration::days(7));
    for id in &ids {
        until_status(&app, id, Status::Closed).await;
    }
    stop.cancel();
    for run in runs {
        run.await.unwrap();
    }
    for id in &ids {
        let types = event_types(&app.store, id).await;
        assert_eq!(
            types[2..],
            ["MerchantResponseMissed".to_string(), "EscalationWindowClosed".to_string()],
            "{id}: one effect per deadline"
        );
    }
}

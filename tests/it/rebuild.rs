//! Rebuilding the views from the log gives exactly the live views, and repairs altered ones.

use dispute_domain::Role;
use dispute_views::{ViewName, rebuild};
use disputes_tests::*;
use serde_json::json;

/// Every row of both views, in a stable order.
async fn snapshot(app: &TestApp) -> (Vec<(String, i64, String)>, Vec<(String, i64, String, String)>) {
    on_db!(&mut app.db().await, c => {
        let disputes = sqlx::query_as("SELECT order_id, sequence, view FROM view_disputes ORDER BY order_id")
            .fetch_all(&mut *c)
            .await
            .expect("view_disputes");
        let timeline = sqlx::query_as(
            "SELECT order_id, sequence, event_type, data FROM view_timeline ORDER BY order_id, sequence",
        )
        .fetch_all(&mut *c)
        .await
        .expect("view_timeline");
        (disputes, timeline)
    })
}

/// A few disputes in different states; returns each order's last sequence.
async fn some_history(app: &TestApp) -> Vec<(String, u64)> {
    let mut last = Vec::new();
    for (n, path) in ["accept", "reject", "escalate", "withdraw"].iter().enumerate() {
        let id = format!("o-{n}");
        app.register(&order(&id)).await.assert_ok();
        let mut answer = app.request_refund(&id, "refund_only", "quality_issue", 5_000).await;
        answer.assert_ok();
        match *path {
            "accept" => answer = app.merchant_accept(&id).await,
            "reject" => answer = app.merchant_reject(&id).await,
            "escalate" => {
                app.merchant_reject(&id).await.assert_ok();
                answer = app.escalate(&id).await;
            }
            _ => answer = app.command(&id, "withdraw", Role::Buyer, BUYER, json!({})).await,
        }
        last.push((id, answer.assert_ok().sequence()));
    }
    last
}

/// Waits (bounded) until each dispute's view reflects its last sequence.
async fn caught_up(app: &TestApp, last: &[(String, u64)]) {
    let token = app.token(Role::Auditor, "audit");
    for (id, sequence) in last {
        let answer = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/disputes/{id}"),
                Some(&token),
                None,
                &[("X-Min-Sequence", &sequence.to_string())],
            )
            .await;
        answer.assert_ok();
    }
}

async fn rebuild_equals_live(app: TestApp) {
    let last = some_history(&app).await;
    caught_up(&app, &last).await;
    let live = snapshot(&app).await;
    assert_eq!(live.0.len(), 4);
    let replayed = rebuild(app.store.clone(), &ViewName::ALL, |_, _| {}).await.expect("rebuild");
    assert_eq!(replayed, last.iter().map(|(_, s)| s).sum::<u64>());
    assert_eq!(snapshot(&app).await, live, "a rebuild gives exactly the live views");

    // An altered view is repaired by a rebuild.
    app.sql("UPDATE view_disputes SET view = '{}', sequence = 99 WHERE order_id = 'o-1'").await;
    sqlx_delete_timeline(&app).await;
    assert_ne!(snapshot(&app).await, live);
    rebuild(app.store.clone(), &[ViewName::Disputes, ViewName::Timeline], |_, _| {}).await.expect("rebuild");
    assert_eq!(snapshot(&app).await, live);
    // The service keeps projecting into the swapped-in tables.
    app.register(&order("after")).await.assert_ok();
    let requested = app.request_refund("after", "refund_only", "quality_issue", 1_000).await;
    caught_up(&app, &[("after".to_string(), requested.assert_ok().sequence())]).await;
}

async fn sqlx_delete_timeline(app: &TestApp) {
    app.sql("DELETE FROM view_timeline WHERE order_id = 'o-2'").await;
}

#[tokio::test]
async fn a_rebuild_equals_the_live_views_on_postgres() {
    rebuild_equals_live(TestApp::postgres().await).await;
}

#[tokio::test]
async fn a_rebuild_equals_the_live_views_on_the_embedded_store() {
    rebuild_equals_live(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn rebuilding_one_view_leaves_the_other_alone() {
    let app = TestApp::postgres().await;
    let last = some_history(&app).await;
    caught_up(&app, &last).await;
    let live = snapshot(&app).await;
    sqlx_delete_timeline(&app).await;
    rebuild(app.store.clone(), &[ViewName::Disputes], |_, _| {}).await.expect("rebuild");
    let after = snapshot(&app).await;
    assert_eq!(after.0, live.0);
    assert!(after.1.len() < live.1.len(), "the timeline was not rebuilt");
}

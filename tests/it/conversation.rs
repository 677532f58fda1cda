//! The conversation on a dispute over HTTP: messages from each party and the assignee, shown in
//! the dispute's view to its parties; an arbitrator's evidence request answered by the party's
//! evidence, and another lapsing when the deadline timer fires.

use chrono::Duration;
use dispute_domain::Role;
use dispute_timer::{DeadlineTimer, Fired};
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

use super::timer::tracked_all;

const ARBITRATOR: &str = "arb-7";

async fn message(app: &TestApp, id: &str, role: Role, sub: &str, body: Value) -> Answer {
    app.command(id, "messages", role, sub, body).await
}

async fn ask(app: &TestApp, id: &str, party: &str, what: &str) -> Answer {
    app.command(
        id,
        "evidence-requests",
        Role::Arbitrator,
        ARBITRATOR,
        json!({ "party": party, "what": what }),
    )
    .await
}

/// The dispute as `role:sub` once its view reflects `sequence`.
async fn view(app: &TestApp, id: &str, role: Role, sub: &str, sequence: u64) -> Value {
    app.view_at(id, role, sub, sequence).await
}

/// (author role, author id, text, evidence items) of each message of a view.
fn messages(view: &Value) -> Vec<(String, String, String, usize)> {
    view["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["author_role"].as_str().unwrap().to_string(),
                m["author_id"].as_str().unwrap().to_string(),
                m["text"].as_str().unwrap().to_string(),
                m["evidence"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

/// (party, what, state) of each evidence request of a view.
fn requests(view: &Value) -> Vec<(String, String, String)> {
    view["evidence_requests"]
        .as_array()
        .expect("evidence_requests")
        .iter()
        .map(|r| {
            (
                r["party"].as_str().unwrap().to_string(),
                r["what"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn actions(view: &Value) -> Vec<&str> {
    view["actions"].as_array().expect("actions").iter().map(|a| a.as_str().unwrap()).collect()
}

fn owned(rows: &[(&str, &str, &str, usize)]) -> Vec<(String, String, String, usize)> {
    rows.iter().map(|(r, a, t, n)| (r.to_string(), a.to_string(), t.to_string(), *n)).collect()
}

#[tokio::test]
async fn parties_talk_and_the_arbitrator_asks_for_evidence() {
    let app = TestApp::postgres().await;
    let timer = DeadlineTimer::new(app.store.clone());
    let id = "talk-1";
    app.register(&order(id)).await.assert_ok();
    // No dispute yet, no conversation.
    message(&app, id, Role::Buyer, BUYER, json!({ "text": "hello" }))
        .await
        .assert_problem(409, "invalid_transition");

    app.request_refund(id, "refund_only", "quality_issue", 5_000).await.assert_ok();
    message(&app, id, Role::Buyer, BUYER, json!({ "text": "The seam split on the first wash." }))
        .await
        .assert_ok();
    message(&app, id, Role::Merchant, MERCHANT, json!({ "text": "Was it washed cold?" })).await.assert_ok();
    app.merchant_reject(id).await.assert_ok();
    // After the rejection, evidence before escalating, on a message.
    let answer = message(
        &app,
        id,
        Role::Buyer,
        BUYER,
        json!({ "text": "Cold, see the label.", "evidence": [evidence("photo")] }),
    )
    .await;
    answer.assert_ok();
    assert_eq!(answer.status_text(), "rejected");
    // Not another buyer, not an arbitrator before assignment; not too long.
    message(&app, id, Role::Buyer, "buyer-9", json!({ "text": "me too" }))
        .await
        .assert_problem(404, "not_found");
    message(&app, id, Role::Buyer, BUYER, json!({ "text": "x".repeat(2001) }))
        .await
        .assert_problem(422, "text_too_long");
    app.escalate(id).await.assert_ok();
    message(&app, id, Role::Arbitrator, ARBITRATOR, json!({ "text": "Looking." }))
        .await
        .assert_problem(403, "forbidden");
    app.assign(id, ARBITRATOR).await.assert_ok();
    message(&app, id, Role::Arbitrator, ARBITRATOR, json!({ "text": "I am looking at it." }))
        .await
        .assert_ok();

    // A request to the merchant, answered by evidence after the evidence window closed.
    app.advance(Duration::hours(80));
    let asked = ask(&app, id, "merchant", "The washing instructions you ship.").await;
    asked.assert_ok();
    ask(&app, id, "buyer", "More photos.").await.assert_problem(422, "evidence_request_open");
    let due = app.now() + Duration::hours(72);
    let merchant_view = view(&app, id, Role::Merchant, MERCHANT, asked.sequence()).await;
    assert_eq!(
        merchant_view["deadlines"]["evidence_request_due"],
        json!(dispute_domain::rfc3339::format(&due))
    );
    assert!(actions(&merchant_view).contains(&"evidence"), "{merchant_view}");
    let buyer_view = view(&app, id, Role::Buyer, BUYER, asked.sequence()).await;
    assert!(!actions(&buyer_view).contains(&"evidence"), "the evidence window is closed for the buyer");
    app.command(id, "evidence", Role::Buyer, BUYER, json!({ "evidence": [evidence("video")] }))
        .await
        .assert_problem(422, "evidence_window_closed");
    let answered = app
        .command(id, "evidence", Role::Merchant, MERCHANT, json!({ "evidence": [evidence("receipt")] }))
        .await;
    answered.assert_ok();

    // A request to the buyer, left unanswered: the timer lapses it at its deadline, not before.
    let asked = ask(&app, id, "buyer", "A photo of the label.").await;
    asked.assert_ok();
    let buyer_view = view(&app, id, Role::Buyer, BUYER, asked.sequence()).await;
    assert_eq!(
        buyer_view["act_by"],
        json!(dispute_domain::rfc3339::format(&(app.now() + Duration::hours(72)))),
        "{buyer_view}"
    );
    assert!(actions(&buyer_view).contains(&"evidence"));
    app.advance(Duration::hours(72) - Duration::seconds(1));
    tracked_all(&app, &timer).await;
    assert_eq!(timer.fire_due().await.unwrap(), Fired::default(), "not due one second early");
    app.advance(Duration::seconds(1));
    tracked_all(&app, &timer).await;
    assert_eq!(timer.fire_due().await.unwrap(), Fired { fired: 1, ..Fired::default() });

    // Everyone on the dispute sees the same conversation; the arbitrator sees the lapse.
    let (dispute, sequence) = app.store.load(id).await.unwrap();
    assert_eq!(dispute.status(), dispute_domain::Status::UnderReview);
    let want = owned(&[
        ("buyer", BUYER, "The seam split on the first wash.", 0),
        ("merchant", MERCHANT, "Was it washed cold?", 0),
        ("buyer", BUYER, "Cold, see the label.", 1),
        ("arbitrator", ARBITRATOR, "I am looking at it.", 0),
    ]);
    let want_requests = vec![
        ("merchant".to_string(), "The washing instructions you ship.".to_string(), "answered".to_string()),
        ("buyer".to_string(), "A photo of the label.".to_string(), "lapsed".to_string()),
    ];
    for (role, sub) in [
        (Role::Buyer, BUYER),
        (Role::Merchant, MERCHANT),
        (Role::Arbitrator, ARBITRATOR),
        (Role::Auditor, "compliance-1"),
    ] {
        let seen = view(&app, id, role, sub, sequence).await;
        assert_eq!(messages(&seen), want, "{sub}");
        assert_eq!(requests(&seen), want_requests, "{sub}");
        assert!(seen["deadlines"]["evidence_request_due"].is_null(), "{seen}");
    }
    // Another party of another order does not see it at all.
    let token = app.token(Role::Merchant, "merchant-9");
    let other = app.send(Method::GET, &format!("/v1/disputes/{id}"), Some(&token), None, &[]).await;
    assert_eq!(other.status, 404);

    let arbitrator = view(&app, id, Role::Arbitrator, ARBITRATOR, sequence).await;
    assert!(actions(&arbitrator).contains(&"evidence-requests"), "{arbitrator}");
    // The lapse was the timer's, as the system role.
    let stored = app.store.stream_events(id, sequence, sequence).await.unwrap();
    assert_eq!(stored[0].event_type, "EvidenceRequestLapsed");
    assert_eq!(stored[0].metadata["actor_id"], json!("timer"));
}

#[tokio::test]
async fn a_merchant_asked_for_evidence_finds_the_dispute_by_its_deadline() {
    let app = TestApp::postgres().await;
    for id in ["talk-a", "talk-b"] {
        app.register(&order(id)).await.assert_ok();
        app.request_refund(id, "refund_only", "quality_issue", 5_000).await.assert_ok();
        app.merchant_reject(id).await.assert_ok();
        app.escalate(id).await.assert_ok();
        app.assign(id, ARBITRATOR).await.assert_ok();
    }
    // Nothing for the merchant on either: by order id. Asked on talk-b: talk-b first.
    let asked = ask(&app, "talk-b", "merchant", "The waybill.").await;
    asked.assert_ok();
    view(&app, "talk-b", Role::Merchant, MERCHANT, asked.sequence()).await;
    let token = app.token(Role::Merchant, MERCHANT);
    let list =
        app.send(Method::GET, &format!("/v1/merchants/{MERCHANT}/disputes"), Some(&token), None, &[]).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let ids: Vec<&str> =
        list.body["disputes"].as_array().unwrap().iter().map(|d| d["dispute_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["talk-b", "talk-a"]);
}

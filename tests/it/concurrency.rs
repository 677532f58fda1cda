//! Concurrent commands on one dispute: one wins, the others are told to reload (409), the
//! stream stays contiguous; commands on different disputes do not wait for each other. Each
//! runs on PostgreSQL and on the embedded store, whose appends that queue while a commit
//! flushes are committed together.

use std::sync::Arc;

use dispute_domain::Role;
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The stored sequences of `order`'s stream, in order.
async fn stored_sequences(app: &TestApp, order: &str) -> Vec<u64> {
    let stream = app.store.whole_stream(order).await.expect("the events are readable");
    stream.iter().map(|event| event.sequence).collect()
}

/// The stream is 1, 2, …, n with n its last sequence.
async fn assert_contiguous(app: &TestApp, order: &str, last: u64) {
    let sequences = stored_sequences(app, order).await;
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(sequences, expected, "the stream of {order} is contiguous up to {last}");
    assert_eq!(app.store.load(order).await.expect("the stream loads").1, last);
}

/// One request: path, caller's role and subject, body, extra headers.
type Request = (String, Role, String, Value, Vec<(String, String)>);

/// Runs every request at once and returns the answers.
async fn all_at_once(app: &Arc<TestApp>, requests: Vec<Request>) -> Vec<Answer> {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (path, role, sub, body, headers) in requests {
        let app = app.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let token = app.token(role, &sub);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            barrier.wait().await;
            app.send(Method::POST, &path, Some(&token), Some(&body), &headers).await
        });
    }
    tasks.join_all().await
}

/// Exactly one answer is 200; every other is a 409 with one of `codes`; none is a 500.
fn one_winner<'a>(answers: &'a [Answer], codes: &[&str]) -> &'a Answer {
    for answer in answers {
        assert_ne!(answer.status, 500, "a race never fails the service: {}", answer.body);
        if answer.status != 200 {
            answer.assert_problem(409, answer.code());
            assert!(codes.contains(&answer.code()), "a loser is told to reload: {}", answer.body);
        }
    }
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one wins: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    winners[0]
}

async fn awaiting_merchant(app: &TestApp, id: &str) {
    app.register(&order(id)).await.assert_ok();
    let requested = app.request_refund(id, "refund_only", "quality_issue", 6_000).await;
    assert_eq!(requested.assert_ok().sequence(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_merchant_accepts_at_once_one_wins() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let app = Arc::new(app);
        awaiting_merchant(&app, "o-1").await;
        let requests = (0..16)
            .map(|_| {
                (
                    "/v1/disputes/o-1/merchant-accept".to_string(),
                    Role::Merchant,
                    MERCHANT.to_string(),
                    json!({}),
                    vec![],
                )
            })
            .collect();
        let answers = all_at_once(&app, requests).await;
        assert_eq!(answers.len(), 16);
        let winner = one_winner(&answers, &["concurrent_modification", "invalid_transition"]);
        assert_eq!((winner.sequence(), winner.status_text()), (3, "refund_pending"));
        assert_contiguous(&app, "o-1", 3).await;
        assert_eq!(app.refund_paid("o-1", 6_000).await.assert_ok().sequence(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_conflicting_merchant_answers_at_once_one_wins() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let app = Arc::new(app);
        awaiting_merchant(&app, "o-1").await;
        let requests = (0..16)
            .map(|i| {
                let (command, body) = match i % 3 {
                    0 => ("merchant-accept", json!({ "note": "sorry" })),
                    1 => ("merchant-reject", json!({ "reason_code": "item_used", "note": "worn" })),
                    _ => ("merchant-offer", json!({ "amount": cny(1_000 + i), "note": "some back" })),
                };
                (format!("/v1/disputes/o-1/{command}"), Role::Merchant, MERCHANT.to_string(), body, vec![])
            })
            .collect();
        let answers = all_at_once(&app, requests).await;
        let winner = one_winner(&answers, &["concurrent_modification", "invalid_transition"]);
        assert_eq!(winner.sequence(), 3);
        assert!(
            ["refund_pending", "rejected", "offer_pending"].contains(&winner.status_text()),
            "the winner's answer: {}",
            winner.body
        );
        let (dispute, _) = app.store.load("o-1").await.expect("the stream loads");
        assert_eq!(dispute.status().as_str(), winner.status_text(), "the winner's command is the one stored");
        assert_contiguous(&app, "o-1", 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_evidence_submissions_with_the_same_if_match_one_wins() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let app = Arc::new(app);
        awaiting_merchant(&app, "o-1").await;
        let requests = (0..16)
        .map(|i| {
            let (role, sub) = if i % 2 == 0 { (Role::Buyer, BUYER) } else { (Role::Merchant, MERCHANT) };
            let body = json!({ "evidence": [{ "kind": "photo", "uri": format!("https://e.example/{i}.jpg"), "sha256": "b".repeat(64) }] });
            let headers = vec![("if-match".to_string(), "2".to_string())];
            ("/v1/disputes/o-1/evidence".to_string(), role, sub.to_string(), body, headers)
        })
        .collect();
        let answers = all_at_once(&app, requests).await;
        let winner = one_winner(&answers, &["concurrent_modification"]);
        assert_eq!((winner.sequence(), winner.status_text()), (3, "awaiting_merchant"));
        assert_eq!(answers.iter().filter(|a| a.code() == "concurrent_modification").count(), 15);
        assert_contiguous(&app, "o-1", 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_evidence_submissions_without_if_match_never_fail_the_service() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let app = Arc::new(app);
        awaiting_merchant(&app, "o-1").await;
        let requests = (0..16)
        .map(|i| {
            let body = json!({ "evidence": [{ "kind": "photo", "uri": format!("https://e.example/{i}.jpg"), "sha256": "c".repeat(64) }] });
            ("/v1/disputes/o-1/evidence".to_string(), Role::Merchant, MERCHANT.to_string(), body, vec![])
        })
        .collect();
        let answers = all_at_once(&app, requests).await;
        let mut accepted: Vec<u64> = Vec::new();
        for answer in &answers {
            match answer.status {
                200 => accepted.push(answer.sequence()),
                _ => {
                    answer.assert_problem(409, "concurrent_modification");
                }
            }
        }
        assert!(!accepted.is_empty(), "at least one submission is accepted");
        accepted.sort_unstable();
        let expected: Vec<u64> = (3..3 + accepted.len() as u64).collect();
        assert_eq!(accepted, expected, "each accepted submission has a sequence of its own");
        assert_contiguous(&app, "o-1", 2 + accepted.len() as u64).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_on_sixteen_orders_at_once_all_succeed() {
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let app = Arc::new(app);
        let ids: Vec<String> = (0..16).map(|i| format!("o-{i}")).collect();
        let mut registrations = tokio::task::JoinSet::new();
        for id in &ids {
            let app = app.clone();
            let id = id.clone();
            registrations.spawn(async move { app.register(&order(&id)).await });
        }
        for answer in registrations.join_all().await {
            assert_eq!(answer.assert_ok().sequence(), 1);
        }
        let requests = ids
        .iter()
        .map(|id| {
            let body = json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(6_000), "description": "torn" });
            (format!("/v1/disputes/{id}/request"), Role::Buyer, BUYER.to_string(), body, vec![])
        })
        .collect();
        let answers = all_at_once(&app, requests).await;
        let mut disputes: Vec<String> = Vec::new();
        for answer in &answers {
            assert_eq!((answer.assert_ok().sequence(), answer.status_text()), (2, "awaiting_merchant"));
            disputes.push(answer.body["dispute_id"].as_str().expect("a dispute id").to_string());
        }
        disputes.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(disputes, expected, "one answer per order");
        for id in &ids {
            assert_contiguous(&app, id, 2).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_accepts_racing_on_eight_orders_commit_each_winner_with_its_answer_and_nothing_of_the_losers() {
    // On the embedded store winners and losers queue into the same commits: a loser's refused
    // events take none of the others' rows back, and leave no answer of their own.
    for app in [TestApp::postgres().await, TestApp::sqlite().await] {
        let app = Arc::new(app);
        let ids: Vec<String> = (0..8).map(|i| format!("o-{i}")).collect();
        for id in &ids {
            awaiting_merchant(&app, id).await;
        }
        let request = |id: &str, n: usize| {
            let key = vec![("idempotency-key".to_string(), format!("{id}-{n}"))];
            (
                format!("/v1/disputes/{id}/merchant-accept"),
                Role::Merchant,
                MERCHANT.to_string(),
                json!({}),
                key,
            )
        };
        let requests = ids.iter().flat_map(|id| [request(id, 0), request(id, 1)]).collect();
        let answers = all_at_once(&app, requests).await;
        for answer in &answers {
            if answer.status != 200 {
                answer.assert_problem(409, answer.code());
                assert!(
                    ["concurrent_modification", "invalid_transition"].contains(&answer.code()),
                    "{}",
                    answer.body
                );
            }
        }
        assert_eq!(answers.iter().filter(|a| a.status == 200).count(), ids.len(), "one winner per order");
        for id in &ids {
            assert_contiguous(&app, id, 3).await;
            let mut again = Vec::new();
            for n in 0..2 {
                let (path, role, sub, body, key) = request(id, n);
                let token = app.token(role, &sub);
                again.push(
                    app.send(
                        Method::POST,
                        &path,
                        Some(&token),
                        Some(&body),
                        &[("idempotency-key", &key[0].1)],
                    )
                    .await,
                );
            }
            let won: Vec<&Answer> = again.iter().filter(|a| a.status == 200).collect();
            assert_eq!(won.len(), 1, "the winner's key replays its answer; the loser's does not win: {id}");
            assert_eq!(won[0].headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
            assert_eq!((won[0].sequence(), won[0].status_text()), (3, "refund_pending"));
            assert_contiguous(&app, id, 3).await;
        }
    }
}

//! The main lifecycle on the embedded SQLite store, with restarts on the same files.

use disputes_tests::*;

use crate::lifecycle::{accept_offer, assert_answer, partial};

#[tokio::test]
async fn reject_escalate_judge_refund_paid_across_a_restart() {
    let app = TestApp::sqlite().await;
    assert_answer(&app.register(&order("e-1")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("e-1", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_reject("e-1").await, "rejected", 1, 0, 3);
    assert_answer(&app.escalate("e-1").await, "escalated", 1, 0, 4);

    let app = app.restart().await;
    // The escalation is remembered: no second one, and the sequence goes on.
    app.escalate("e-1").await.assert_problem(409, "invalid_transition");
    assert_answer(&app.assign("e-1", "arb-1").await, "under_review", 1, 0, 5);
    assert_answer(&app.judge("e-1", "arb-1", partial(3_000)).await, "refund_pending", 1, 0, 6);
    app.refund_paid("e-1", 6_000).await.assert_problem(422, "amount_mismatch");
    assert_answer(&app.refund_paid("e-1", 3_000).await, "refunded", 1, 3_000, 7);

    let app = app.restart().await;
    assert_answer(&app.register(&order("e-1")).await, "refunded", 1, 3_000, 7);
    // A round that reached a ruling is the last one.
    app.request_refund("e-1", "refund_only", "quality_issue", 1_000)
        .await
        .assert_problem(409, "invalid_transition");
}

#[tokio::test]
async fn a_second_round_after_a_partial_refund_across_a_restart() {
    let app = TestApp::sqlite().await;
    assert_answer(&app.register(&order("e-2")).await, "open", 0, 0, 1);
    assert_answer(
        &app.request_refund("e-2", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        1,
        0,
        2,
    );
    assert_answer(&app.merchant_offer("e-2", 4_000).await, "offer_pending", 1, 0, 3);
    assert_answer(&accept_offer(&app, "e-2").await, "refund_pending", 1, 0, 4);
    assert_answer(&app.refund_paid("e-2", 4_000).await, "refunded", 1, 4_000, 5);

    let app = app.restart().await;
    // What was refunded before the restart still counts.
    app.request_refund("e-2", "refund_only", "quality_issue", 6_001)
        .await
        .assert_problem(422, "amount_exceeds_refundable");
    assert_answer(
        &app.request_refund("e-2", "refund_only", "quality_issue", 6_000).await,
        "awaiting_merchant",
        2,
        4_000,
        6,
    );
    assert_answer(&app.merchant_reject("e-2").await, "rejected", 2, 4_000, 7);
    assert_answer(&app.escalate("e-2").await, "escalated", 2, 4_000, 8);

    let app = app.restart().await;
    assert_answer(&app.assign("e-2", "arb-1").await, "under_review", 2, 4_000, 9);
    app.judge("e-2", "arb-1", partial(6_001)).await.assert_problem(422, "amount_exceeds_refundable");
    assert_answer(&app.judge("e-2", "arb-1", partial(5_000)).await, "refund_pending", 2, 4_000, 10);
    assert_answer(&app.refund_paid("e-2", 5_000).await, "refunded", 2, 9_000, 11);
    app.request_refund("e-2", "refund_only", "quality_issue", 1_000)
        .await
        .assert_problem(409, "invalid_transition");
}

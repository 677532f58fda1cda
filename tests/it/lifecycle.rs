//! Each path of a dispute's life, driven over HTTP as the parties would.

use dispute_domain::Role;
use disputes_tests::*;
use serde_json::json;

#[tokio::test]
async fn reject_escalate_judge_partial_then_refund_paid() {
    let app = TestApp::postgres().await;
    app.register(&order("o-1")).await.assert_ok();
    let requested = app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await;
    assert_eq!((requested.assert_ok().status_text(), requested.sequence()), ("awaiting_merchant", 2));
    assert_eq!(app.merchant_reject("o-1").await.assert_ok().status_text(), "rejected");
    assert_eq!(app.escalate("o-1").await.assert_ok().status_text(), "escalated");
    assert_eq!(app.assign("o-1", "arb-1").await.assert_ok().status_text(), "under_review");
    let ruled = app
        .judge(
            "o-1",
            "arb-1",
            json!({ "outcome": "refund_partial", "amount": cny(3_000), "return_required": false, "rationale": "both at fault" }),
        )
        .await;
    assert_eq!(ruled.assert_ok().status_text(), "refund_pending");
    let paid = app.refund_paid("o-1", 3_000).await;
    paid.assert_ok();
    assert_eq!(paid.status_text(), "refunded");
    assert_eq!(paid.body["refunded_total"], cny(3_000));
    assert_eq!(paid.body["round"], 1);
    assert_eq!(paid.sequence(), 7);
    // The other arbitrator's ruling role and the buyer's role are checked on the way.
    app.command("o-1", "refund-paid", Role::Buyer, BUYER, json!({})).await.assert_problem(403, "forbidden");
}

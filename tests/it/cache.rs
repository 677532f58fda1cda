//! The heads a store caches may fall behind the stream when another instance appends to it.
//! Two stores on one database stand for two instances: each command through the stale one must
//! be decided as the stream as stored dictates, never refused as a conflict it did not have,
//! never appended on the stale head.

use std::sync::Arc;
use std::time::Duration;

use dispute_domain::{
    Action, Actor, DisputeCommand, DisputeError, DisputeServices, ManualClock, Policy, Role,
};
use dispute_store::{
    Claim, ClaimTimes, CommandMetadata, ExecuteError, Held, KeyedRequest, Outcome, Store, StoreConfig,
    StoredResponse, chain,
};
use disputes_tests::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `action`'s payload as the API would parse it from `body`.
fn payload<T: DeserializeOwned>(body: Value) -> T {
    serde_json::from_value(body).expect("a valid command body")
}

fn evidence_from(kind: &str) -> Action {
    Action::SubmitEvidence(payload(json!({ "evidence": [evidence(kind)] })))
}

fn merchant_accept() -> Action {
    Action::MerchantAccept(payload(json!({})))
}

fn merchant_reject() -> Action {
    Action::MerchantReject(payload(json!({ "reason_code": "item_used", "note": "worn" })))
}

async fn run(
    store: &Store,
    order: &str,
    (role, sub): (Role, &str),
    action: Action,
    if_match: Option<u64>,
) -> Result<Outcome, ExecuteError> {
    let command = DisputeCommand::new(Actor::new(role, sub), action);
    store.execute(order, command, if_match, &CommandMetadata::default()).await
}

const BUYER_1: (Role, &str) = (Role::Buyer, BUYER);
const MERCHANT_1: (Role, &str) = (Role::Merchant, MERCHANT);

#[track_caller]
fn accepted(result: Result<Outcome, ExecuteError>) -> (u64, String) {
    let outcome = result.unwrap_or_else(|e| panic!("the command is accepted, not {e:?}"));
    (outcome.sequence, outcome.status.as_str().to_string())
}

/// The stream as stored: its chain is unbroken, each event linked to the one before it.
async fn assert_chained(store: &Store, order: &str, last: u64) {
    let events = store.whole_stream(order).await.expect("the stream reads");
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=last).collect::<Vec<_>>(), "{order} is contiguous");
    assert_eq!(chain::verify_stream(events.iter().map(|e| e.hashed())), vec![], "{order}'s chain verifies");
    let mut previous = chain::GENESIS;
    for event in &events {
        assert_eq!(event.prevhash(), Some(previous), "{order}#{} links to the event before", event.sequence);
        previous = event.hash().expect("a chained event has a hash");
    }
}

/// `a` and `b` are two instances on one database; every head `a` caches goes stale.
async fn a_stale_head_is_never_a_conflict_nor_a_base(a: &Store, b: &Store) {
    // An append on a stale head: the primary key refuses it and the command runs on the stream.
    execute(a, "o-1", Role::System, "order-service", registration("o-1")).await;
    assert_eq!(execute(a, "o-1", Role::Buyer, BUYER, refund_request(6_000)).await, 2);
    assert_eq!(accepted(run(b, "o-1", BUYER_1, evidence_from("photo"), None).await).0, 3);
    assert_eq!(
        accepted(run(a, "o-1", MERCHANT_1, evidence_from("receipt"), None).await),
        (4, "awaiting_merchant".to_string())
    );
    assert_chained(a, "o-1", 4).await;

    // `If-Match` with the stream's true sequence, which the stale head does not have.
    assert_eq!(accepted(run(b, "o-1", BUYER_1, evidence_from("video"), None).await).0, 5);
    assert_eq!(accepted(run(a, "o-1", MERCHANT_1, evidence_from("shipping"), Some(5)).await).0, 6);

    // A command the stale head refuses and the stream accepts.
    assert_eq!(accepted(run(b, "o-1", MERCHANT_1, merchant_accept(), None).await).0, 7);
    let paid = Action::RecordRefundPaid(payload(json!({
        "amount": cny(6_000), "channel": "alipay", "payment_ref": "pay-1", "paid_at": epoch(),
    })));
    assert_eq!(
        accepted(run(a, "o-1", (Role::System, "payments"), paid, None).await),
        (8, "refunded".to_string())
    );
    assert_chained(a, "o-1", 8).await;
    // `If-Match` with a sequence the stream has moved past is a conflict still.
    let stale_if_match = run(a, "o-1", MERCHANT_1, evidence_from("other"), Some(7)).await;
    assert!(matches!(stale_if_match, Err(ExecuteError::Conflict)), "{stale_if_match:?}");

    // A command the stale head accepts and the stream refuses.
    execute(a, "o-2", Role::System, "order-service", registration("o-2")).await;
    assert_eq!(execute(a, "o-2", Role::Buyer, BUYER, refund_request(6_000)).await, 2);
    assert_eq!(accepted(run(b, "o-2", MERCHANT_1, merchant_reject(), None).await).0, 3);
    let late = run(a, "o-2", MERCHANT_1, merchant_accept(), None).await;
    assert!(
        matches!(late, Err(ExecuteError::Refused(DisputeError::InvalidTransition { .. }))),
        "refused as the stream dictates: {late:?}"
    );
    // Refused again on the head it now holds; then a valid command on that same head.
    let again = run(a, "o-2", MERCHANT_1, merchant_accept(), None).await;
    assert!(matches!(again, Err(ExecuteError::Refused(DisputeError::InvalidTransition { .. }))), "{again:?}");
    let escalate = Action::Escalate(payload(json!({ "note": "please look" })));
    let escalated = accepted(run(a, "o-2", BUYER_1, escalate, None).await);
    let (stored, sequence) = b.load("o-2").await.expect("the stream loads");
    assert_eq!(escalated, (sequence, stored.status().as_str().to_string()), "the answer is the stream's");
    assert_eq!(sequence, 4);
    assert_chained(b, "o-2", 4).await;

    // A command that changes nothing answers with the stream's state, not the stale head's.
    execute(a, "o-3", Role::System, "order-service", registration("o-3")).await;
    assert_eq!(execute(b, "o-3", Role::Buyer, BUYER, refund_request(6_000)).await, 2);
    let registered_again = run(a, "o-3", (Role::System, "order-service"), registration("o-3"), None).await;
    assert_eq!(accepted(registered_again), (2, "awaiting_merchant".to_string()));
    assert_chained(a, "o-3", 2).await;

    // A registration with no head cached is tried on the empty stream: another instance's
    // registration refuses that append, and the stream decides (same facts: unchanged; other
    // facts: refused), never a conflict.
    execute(b, "o-4", Role::System, "order-service", registration("o-4")).await;
    let registered_again = run(a, "o-4", (Role::System, "order-service"), registration("o-4"), None).await;
    assert_eq!(accepted(registered_again), (1, "open".to_string()));
    assert_chained(a, "o-4", 1).await;
    execute(a, "o-5", Role::System, "order-service", registration("o-5")).await;
    let mut other_facts = registration("o-5");
    let Action::RegisterOrder(facts) = &mut other_facts else { unreachable!("a registration") };
    facts.category = "other".to_string();
    let refused = run(b, "o-5", (Role::System, "order-service"), other_facts, None).await;
    assert!(matches!(refused, Err(ExecuteError::Refused(_))), "{refused:?}");
    assert_chained(a, "o-5", 1).await;
}

#[tokio::test]
async fn a_stale_cached_head_on_postgres_is_decided_again_on_the_stream() {
    let db = TestDatabase::create().await;
    let clock = Arc::new(ManualClock::new(epoch()));
    let a = open_store_on(&db.url, clock.clone()).await;
    let b = open_store_on(&db.url, clock).await;
    a_stale_head_is_never_a_conflict_nor_a_base(&a, &b).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_stale_cached_head_on_sqlite_is_decided_again_on_the_stream() {
    let dir = tempdir::TempDir::new();
    let clock = Arc::new(ManualClock::new(epoch()));
    let open = || async {
        let services = DisputeServices::new(clock.clone(), Arc::new(Policy::builtin()));
        Store::open(&StoreConfig::Sqlite { path: tempdir::join(&dir, "disputes.db") }, services)
            .await
            .expect("the store opens")
    };
    let a = open().await;
    let b = open().await;
    a_stale_head_is_never_a_conflict_nor_a_base(&a, &b).await;
    a.close().await;
    b.close().await;
}

/// A take-over reads the log, not the cache: whether the earlier request committed through
/// another instance (this one's head is behind its events) or through this one (its head
/// already holds them), it is found and not run again. The earlier requests commit their events
/// without their answers, as a process of an earlier version left them when it was killed
/// between its two commits.
#[tokio::test]
async fn a_take_over_finds_the_earlier_request_in_the_log_whatever_the_cached_head() {
    let db = TestDatabase::create().await;
    let clock = Arc::new(ManualClock::new(epoch()));
    let a = open_store_on(&db.url, clock.clone()).await;
    let b = open_store_on(&db.url, clock.clone()).await;
    execute(&a, "o-1", Role::System, "order-service", registration("o-1")).await;
    assert_eq!(execute(&a, "o-1", Role::Buyer, BUYER, refund_request(6_000)).await, 2);
    let command = DisputeCommand::new(Actor::new(Role::Buyer, BUYER), evidence_from("photo"));
    async fn claim(store: &Store, key: &str) -> Claim {
        let times = ClaimTimes { wait: Duration::ZERO, takeover_after: Duration::from_secs(30) };
        store.claim_idempotency("buyer", key, "photo", times).await.expect("the claim is read")
    }
    for (key, earlier, sequence) in [("ev-1", &b, 3), ("ev-2", &a, 4)] {
        let keyed =
            CommandMetadata { correlation_id: key.to_string(), idempotency_key: Some(key.to_string()) };
        assert!(matches!(claim(earlier, key).await, Claim::Held(Held { resumed_since: None, .. })));
        let first =
            earlier.execute("o-1", command.clone(), None, &keyed).await.expect("the first request commits");
        assert_eq!(first.sequence, sequence);
        clock.advance(chrono::Duration::seconds(31));
        let Claim::Held(held) = claim(&a, key).await else { panic!("an unanswered claim is taken over") };
        assert!(held.resumed_since.is_some());
        let answer = |_: &Outcome| StoredResponse { status: 200, body: String::new() };
        let request = KeyedRequest { subject: "buyer", key, fingerprint: "photo", answer: &answer };
        let resumed = a
            .execute_claimed("o-1", &command, None, &keyed, &request, &held)
            .await
            .expect("the take-over runs");
        assert_eq!(
            resumed,
            dispute_store::Executed::Before(first),
            "{key} is found in the log, not run again"
        );
    }
    assert_chained(&a, "o-1", 4).await;
    a.close().await;
    b.close().await;
}

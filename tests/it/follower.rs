//! Following the log in commit order: a transaction that took its id first but commits after a
//! later one is delivered before it, and a read while an older transaction is open skips
//! nothing. Checked on the follower itself, on the relay, and across a crash of the service.

use std::time::Duration;

use dispute_bus::{NatsBus, message_id};
use dispute_store::Follower;
use disputes_tests::*;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

/// Inserts an order's first event on `conn`, inside whatever transaction is open there.
async fn insert_event(conn: &mut PgConnection, order_id: &str) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('dispute', $1, 1, 'OrderRegistered', '1', $2, '{}')",
    )
    .bind(order_id)
    .bind(json!({ "OrderRegistered": { "facts": order(order_id) } }))
    .execute(conn)
    .await
    .expect("the event inserts");
}

/// Two transactions out of order: A takes its transaction id first; B, later, inserts its
/// event (so B's position is the smaller) and stays open; A inserts and commits. Returns B's
/// connection, its transaction still open, once A has committed.
async fn a_commits_while_b_is_open(db: &TestDatabase) -> PgConnection {
    let mut a = PgConnection::connect(&db.url).await.expect("PostgreSQL reachable");
    let mut b = PgConnection::connect(&db.url).await.expect("PostgreSQL reachable");
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut a).await.unwrap();
    sqlx::query("BEGIN").execute(&mut b).await.unwrap();
    insert_event(&mut b, "b").await;
    insert_event(&mut a, "a").await;
    sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    b
}

/// Checks the scenario's premise: A's transaction id is the smaller, B's position is.
async fn a_is_first_by_xid_and_b_by_position(db: &TestDatabase) {
    let mut conn = PgConnection::connect(&db.url).await.expect("PostgreSQL reachable");
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT aggregate_id, xid::text::bigint, position FROM events WHERE aggregate_id IN ('a', 'b') \
         ORDER BY aggregate_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the log reads");
    let [(_, a_xid, a_position), (_, b_xid, b_position)] = rows[..] else { panic!("rows {rows:?}") };
    assert!(a_xid < b_xid, "A took its transaction id first");
    assert!(b_position < a_position, "B inserted first");
}

#[tokio::test]
async fn the_follower_delivers_each_event_once_in_commit_order_even_while_an_older_one_is_open() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    // One follower runs throughout; another is stepped by hand.
    let running = Recording::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (store, stop, mut running) = (store.clone(), stop.clone(), running.clone());
        async move { Follower::new(store, "running").run(&mut running, "test follower", &stop).await }
    });
    let mut stepped = Recording::default();
    let stepper = Follower::new(store.clone(), "stepped");

    let mut b = a_commits_while_b_is_open(&db).await;
    // A's event is read while B is open (once no older transaction on the server holds it
    // back); B's cannot be yet, and must not be skipped later.
    eventually("the running follower delivers A's event", || running.seen() == ["a:1"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stepped.seen().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the stepped follower reads A's event within 20 s");
        stepper.catch_up(&mut stepped).await.expect("the log reads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stepped.seen(), ["a:1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running.seen(), ["a:1"], "B's event is not delivered while B is open");

    sqlx::query("COMMIT").execute(&mut b).await.unwrap();
    a_is_first_by_xid_and_b_by_position(&db).await;
    eventually("the running follower delivers B's event", || running.seen().len() >= 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stepped.seen().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the stepped follower reads B's event within 20 s");
        stepper.catch_up(&mut stepped).await.expect("the log reads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running.seen(), ["a:1", "b:1"], "each event once, A's before B's");
    assert_eq!(stepped.seen(), ["a:1", "b:1"], "each event once, A's before B's");
    assert_eq!(stepper.catch_up(&mut stepped).await.expect("the log reads"), 0);

    // A follower starting after both commits reads them in the same order.
    let mut late = Recording::default();
    let from_start = Follower::new(store.clone(), "late");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while late.seen().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "a new follower reads both events within 20 s");
        from_start.catch_up(&mut late).await.expect("the log reads");
    }
    assert_eq!(late.seen(), ["a:1", "b:1"]);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the follower stops").unwrap();
}

/// Every publish on a stream's subjects, as message ids in arrival order: a core NATS
/// subscription sees a second publish of an id even though JetStream drops it.
#[tokio::test]
async fn the_relay_publishes_each_event_once_in_commit_order_even_while_an_older_one_is_open() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let (urls, stream) = (nats_url(), unique_stream());
    let deliveries = Deliveries::subscribe(&urls, &stream).await;
    let bus = NatsBus::connect(&urls, &stream).await.expect("NATS client");
    let relay = RunningRelay::on(store.clone(), bus);

    let mut b = a_commits_while_b_is_open(&db).await;
    eventually("the relay publishes A's event", || deliveries.seen() == ["a:1"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliveries.seen(), ["a:1"], "B's event is not published while B is open");
    sqlx::query("COMMIT").execute(&mut b).await.unwrap();
    a_is_first_by_xid_and_b_by_position(&db).await;
    assert_eq!(deliveries.settled(2).await, ["a:1", "b:1"], "each event published once, A's before B's");

    relay.stop().await;
    delete_stream(&urls, &stream).await;
}

/// Every event of the log as a message id, in commit order: by transaction, then position.
async fn commit_order(db: &TestDatabase) -> Vec<String> {
    let mut conn = PgConnection::connect(&db.url).await.expect("PostgreSQL reachable");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM events ORDER BY xid, position")
            .fetch_all(&mut conn)
            .await
            .expect("the log reads");
    rows.into_iter().map(|(order, sequence)| message_id(&order, sequence as u64)).collect()
}

#[tokio::test]
async fn a_service_killed_with_events_unpublished_publishes_each_once_after_a_restart() {
    let db = TestDatabase::create().await;
    // Commands are committed through a store of the test's own: the service's relay reads
    // the log whoever wrote it.
    let store = open_store(&db).await;
    let mut nats = PrivateNats::new();
    nats.start().await;
    let stream = unique_stream();
    let nats_url = nats.url();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("NATS_URL", nats_url.as_str()),
        ("DISPUTES_STREAM", stream.as_str()),
        ("DISPUTES_JWT_SECRET", SECRET),
    ];
    let deliveries = Deliveries::subscribe(&nats_url, &stream).await;
    let cwd = tempdir::TempDir::new();
    let serve = || {
        let mut service = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
        service.listening();
        service
    };
    let mut service = serve();
    for id in ["k-1", "k-2"] {
        register(&store, id).await;
    }
    assert_eq!(deliveries.settled(2).await, ["k-1:1", "k-2:1"]);

    // NATS goes away; commands go on, and their events stay unpublished.
    nats.stop();
    for id in ["k-3", "k-4", "k-5"] {
        register(&store, id).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.child.kill().expect("SIGKILL");
    service.wait();

    // NATS returns, the subscriber with it; then a new service catches up from the checkpoint.
    nats.start().await;
    eventually("the subscriber reconnects", || {
        deliveries.client.connection_state() == async_nats::connection::State::Connected
    })
    .await;
    deliveries.client.flush().await.expect("the subscription reaches the server");
    let _service = serve();
    let log = commit_order(&db).await;
    assert_eq!(log.len(), 5);
    assert_eq!(deliveries.settled(log.len()).await, log, "every event published once, in commit order");
}

async fn register(store: &dispute_store::Store, id: &str) {
    execute(store, id, dispute_domain::Role::System, "orders", registration(id)).await;
}

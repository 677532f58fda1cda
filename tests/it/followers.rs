//! The followers of one process share their reads of the log, and nothing else: a read is
//! shared only when it includes every commit that could have woken the follower, a follower is
//! never handed the same read twice, a failing consumer holds back no other, and each follower
//! saves its own checkpoint when it catches up or stops.

use std::time::Duration;

use dispute_domain::Role;
use dispute_store::{Batch, Consumer, Cursor, Follower, Store, StoreError};
use disputes_tests::*;
use tokio_util::sync::CancellationToken;

/// A consumer whose every batch fails.
struct Failing;

impl Consumer for Failing {
    type Error = StoreError;

    async fn apply(&mut self, _: &Batch) -> Result<(), StoreError> {
        Err(StoreError::Query(sqlx::Error::Protocol("this consumer always fails".into())))
    }
}

async fn register(store: &Store, id: &str) {
    execute(store, id, Role::System, "orders", registration(id)).await;
}

/// Steps `follower` until `recording` holds `count` events. The log is read below the oldest
/// transaction running anywhere on the server, so one pass may stop short while other
/// databases are busy.
async fn caught_up(follower: &Follower, recording: &mut Recording, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while recording.seen().len() < count {
        assert!(tokio::time::Instant::now() < deadline, "the follower reads {count} events within 20 s");
        follower.catch_up(recording).await.expect("the log reads");
    }
}

#[tokio::test]
async fn followers_at_one_cursor_share_a_read_unless_this_process_committed_since() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    register(&store, "s-1").await;
    let (a, b) = (Follower::new(store.clone(), "a"), Follower::new(store.clone(), "b"));
    let (mut first, mut second) = (Recording::default(), Recording::default());
    caught_up(&a, &mut first, 1).await;

    // Nothing was committed since a's last read, which b asks for too: b takes it.
    let reads = store.log_reads();
    b.catch_up(&mut second).await.expect("the log reads");
    assert_eq!(second.seen(), ["s-1:1"]);
    assert_eq!(store.log_reads(), reads, "b took a's read");

    // a finds nothing more; then this process commits. b asks where a just read, but a's read
    // began before the commit: b reads afresh, and finds the new event.
    a.catch_up(&mut first).await.expect("the log reads");
    register(&store, "s-2").await;
    let reads = store.log_reads();
    b.catch_up(&mut second).await.expect("the log reads");
    assert!(store.log_reads() > reads, "a read older than the last commit is not shared");
    caught_up(&b, &mut second, 2).await;
    assert_eq!(second.seen(), ["s-1:1", "s-2:1"]);
    caught_up(&a, &mut first, 2).await;
    assert_eq!(first.seen(), ["s-1:1", "s-2:1"]);
}

#[tokio::test]
async fn a_follower_looking_again_reads_afresh_rather_than_take_the_read_it_had() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    register(&store, "p-1").await;
    let follower = Follower::new(store.clone(), "polling");
    let mut recording = Recording::default();
    caught_up(&follower, &mut recording, 1).await;
    // A poll looks for other instances' commits: it must reach the database.
    for _ in 0..3 {
        let reads = store.log_reads();
        follower.catch_up(&mut recording).await.expect("the log reads");
        assert_eq!(store.log_reads(), reads + 1);
    }
    assert_eq!(recording.seen(), ["p-1:1"]);
}

#[tokio::test]
async fn a_failing_consumer_holds_back_no_other_follower_and_saves_no_progress() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let stop = CancellationToken::new();
    let failing = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move { Follower::new(store, "failing").run(&mut Failing, "failing follower", &stop).await }
    });
    let recording = Recording::default();
    let running = tokio::spawn({
        let (store, stop, mut recording) = (store.clone(), stop.clone(), recording.clone());
        async move { Follower::new(store, "running").run(&mut recording, "test follower", &stop).await }
    });
    for id in ["f-1", "f-2", "f-3"] {
        register(&store, id).await;
    }
    eventually("the working follower reads every event", || recording.seen().len() == 3).await;
    assert_eq!(recording.seen(), ["f-1:1", "f-2:1", "f-3:1"]);

    stop.cancel();
    for task in [failing, running] {
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the follower stops").unwrap();
    }
    assert_eq!(store.checkpoint("failing").await.unwrap(), Cursor::default());
    let last = store.last_cursor().await.unwrap().expect("events in the log");
    assert_eq!(store.checkpoint("running").await.unwrap(), last);
}

#[tokio::test]
async fn a_follower_saves_its_checkpoint_when_it_stops_and_when_it_catches_up() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let stop = CancellationToken::new();
    let recording = Recording::default();
    let task = tokio::spawn({
        let (store, stop, mut recording) = (store.clone(), stop.clone(), recording.clone());
        async move { Follower::new(store, "stopped").run(&mut recording, "test follower", &stop).await }
    });
    for id in ["c-1", "c-2"] {
        register(&store, id).await;
    }
    eventually("the follower reads both events", || recording.seen().len() == 2).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("the follower stops").unwrap();
    let last = store.last_cursor().await.unwrap().expect("events in the log");
    assert_eq!(store.checkpoint("stopped").await.unwrap(), last, "saved when stopped");

    // A new follower on the same checkpoint starts after both, and saves as it catches up.
    register(&store, "c-3").await;
    let mut after = Recording::default();
    let resumed = Follower::new(store.clone(), "stopped");
    caught_up(&resumed, &mut after, 1).await;
    assert_eq!(after.seen(), ["c-3:1"]);
    let last = store.last_cursor().await.unwrap().expect("events in the log");
    assert_eq!(store.checkpoint("stopped").await.unwrap(), last, "saved when caught up");
}

//! The followers of one process share their reads of the log, and nothing else: a read is
//! shared only when it includes every commit that could have woken the follower, a follower is
//! never handed the same read twice, a follower behind takes the last reads one ahead made, a
//! failing consumer holds back no other, and each follower saves its own checkpoint when it
//! catches up or stops.

use std::time::Duration;

use dispute_domain::Role;
use dispute_store::{BATCH, Batch, Consumer, Cursor, Follower, KEPT, Store, StoreError};
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
async fn a_follower_behind_takes_the_reads_a_follower_ahead_made_while_the_tail_keeps_them() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    // Two full reads and a short one.
    let orders = (2 * BATCH as u64 + 100) / dispute_audit::EVENTS_PER_ORDER;
    let events = dispute_audit::load_synthetic(&store, orders, |_, _| {}).await.expect("the log loads");
    let (ahead, behind) = (Follower::new(store.clone(), "ahead"), Follower::new(store.clone(), "behind"));
    let (mut first, mut second) = (Recording::default(), Recording::default());
    let before = store.log_reads();
    caught_up(&ahead, &mut first, events as usize).await;
    let read_ahead = store.log_reads() - before;
    assert!(read_ahead >= 3, "ahead read the log in {read_ahead} reads");

    // behind asks for each of ahead's reads in turn: the tail has kept the last ones, so
    // behind reads only those it no longer keeps (none, unless the log's end was polled for).
    let before = store.log_reads();
    caught_up(&behind, &mut second, events as usize).await;
    assert_eq!(second.seen(), first.seen());
    let read_behind = store.log_reads() - before;
    assert!(
        read_behind <= read_ahead.saturating_sub(KEPT as u64),
        "behind read {read_behind} times of ahead's {read_ahead}"
    );
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

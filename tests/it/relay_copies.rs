//! Batches projected in their own process, the relay's and the commands' own: a view is
//! visible without JetStream's delivery, and JetStream delivering the same events afterwards
//! changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use dispute_bus::{NatsBus, Relay};
use dispute_domain::Role;
use dispute_store::Store;
use dispute_views::{Views, run_nats};
use disputes_tests::*;
use tokio_util::sync::CancellationToken;

/// The view's sequence and the timeline's sequences of `order`, as the views show them now.
async fn shown(views: &Views, order: &str) -> Option<(u64, Vec<u64>)> {
    let view = views.dispute(order).await.expect("the view reads")?;
    let timeline = views.timeline(order).await.expect("the timeline reads");
    Some((view.sequence, timeline.iter().map(|entry| entry.sequence).collect()))
}

async fn eventually_shown(views: &Views, order: &str, want: (u64, Vec<u64>)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = shown(views, order).await;
        if got.as_ref() == Some(&want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{order}: shown {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the durable consumer `views` has acknowledged `count` messages of `stream`.
async fn consumer_acked(urls: &str, stream: &str, count: u64) {
    let js = jetstream::new(async_nats::connect(urls).await.expect("NATS reachable"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let acked = match js.get_stream(stream).await {
            Ok(stream) => match stream.consumer_info("views").await {
                Ok(info) if info.num_ack_pending == 0 => info.ack_floor.stream_sequence,
                _ => 0,
            },
            Err(_) => 0,
        };
        if acked >= count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the consumer acknowledged {acked} of {count}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `stream` and its durable consumer `views`, filtering on a subject no event has:
/// JetStream delivers the projector nothing. Returns the stream.
async fn stream_delivering_nothing(bus: &NatsBus, urls: &str, stream: &str) -> jetstream::stream::Stream {
    bus.ensure_stream().await.expect("the stream is created");
    let js = jetstream::new(async_nats::connect(urls).await.expect("NATS reachable"));
    let nothing = pull::Config {
        durable_name: Some("views".to_string()),
        filter_subject: bus.subject("no-such-order"),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let events = js.get_stream(stream).await.expect("the stream");
    events.create_consumer(nothing).await.expect("the consumer is created");
    events
}

#[tokio::test]
async fn the_relays_batches_are_projected_in_process_and_jetstream_delivering_them_again_changes_nothing() {
    let db = TestDatabase::create().await;
    let store: Arc<Store> = open_store(&db).await;
    let (urls, stream) = (nats_url(), unique_stream());
    let bus = NatsBus::connect(&urls, &stream).await.expect("NATS client");
    // The durable consumer exists already, delivering the projector nothing.
    let events = stream_delivering_nothing(&bus, &urls, &stream).await;

    let stop = CancellationToken::new();
    let (copies, copied) = tokio::sync::mpsc::channel(8);
    let relay = tokio::spawn(Relay::new(store.clone(), bus.clone()).with_copies(copies).run(stop.clone()));
    let here = tokio::spawn(run_nats(store.clone(), bus.clone(), vec![copied], stop.clone()));
    execute(&store, "l-1", Role::System, "orders", registration("l-1")).await;
    execute(&store, "l-1", Role::Buyer, BUYER, refund_request(1_000)).await;
    let views = Views::new(store.clone());
    eventually_shown(&views, "l-1", (2, vec![1, 2])).await;

    // Now JetStream delivers every event, to a projector that does not know them projected
    // (another instance's): applied again, they change nothing.
    events.delete_consumer("views").await.expect("the consumer is deleted");
    let elsewhere = tokio::spawn(run_nats(store.clone(), bus, Vec::new(), stop.clone()));
    consumer_acked(&urls, &stream, 2).await;
    assert_eq!(shown(&views, "l-1").await, Some((2, vec![1, 2])));

    // Later events reach the views as well, with both feeds running.
    let accept = dispute_domain::Action::MerchantAccept(Default::default());
    let last = execute(&store, "l-1", Role::Merchant, MERCHANT, accept).await;
    let whole = (last, (1..=last).collect::<Vec<u64>>());
    eventually_shown(&views, "l-1", whole.clone()).await;
    consumer_acked(&urls, &stream, last).await;
    assert_eq!(shown(&views, "l-1").await, Some(whole));

    stop.cancel();
    for task in [relay, here, elsewhere] {
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the task stops").unwrap();
    }
    delete_stream(&urls, &stream).await;
}

#[tokio::test]
async fn a_commands_events_are_projected_in_its_own_process_without_the_relay_and_earlier_events_are_read_from_the_log()
 {
    let db = TestDatabase::create().await;
    // Two instances on one database: `elsewhere` commits the first events, `here` the last.
    let elsewhere: Arc<Store> = open_store(&db).await;
    let here: Arc<Store> = open_store(&db).await;
    let (urls, stream) = (nats_url(), unique_stream());
    let bus = NatsBus::connect(&urls, &stream).await.expect("NATS client");
    // No relay runs, and the durable consumer delivers nothing: nothing reaches the
    // projector but what `here` hands it.
    stream_delivering_nothing(&bus, &urls, &stream).await;

    let stop = CancellationToken::new();
    let (commits, committed) = tokio::sync::mpsc::channel(8);
    here.hand_commits_to(commits);
    let projector = tokio::spawn(run_nats(here.clone(), bus, vec![committed], stop.clone()));
    let views = Views::new(here.clone());

    execute(&here, "h-1", Role::System, "orders", registration("h-1")).await;
    execute(&here, "h-1", Role::Buyer, BUYER, refund_request(1_000)).await;
    eventually_shown(&views, "h-1", (2, vec![1, 2])).await;

    // The order's first events were committed by the other instance, unseen here.
    execute(&elsewhere, "h-2", Role::System, "orders", registration("h-2")).await;
    execute(&elsewhere, "h-2", Role::Buyer, BUYER, refund_request(1_000)).await;
    let accept = dispute_domain::Action::MerchantAccept(Default::default());
    let last = execute(&here, "h-2", Role::Merchant, MERCHANT, accept).await;
    eventually_shown(&views, "h-2", (last, (1..=last).collect())).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), projector).await.expect("the projector stops").unwrap();
    delete_stream(&urls, &stream).await;
}

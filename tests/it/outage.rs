//! The database lost for a while, through a proxy the test cuts (`tests/proxy.rs`): while it
//! is away commands are answered 503 and nothing is written; once it is back the relay and the
//! projector go on from where they were, and every event committed before and after is
//! published once and reaches every view.

use std::time::Duration;

use async_nats::jetstream;
use dispute_domain::Role;
use disputes_tests::*;

/// What JetStream holds of `stream` once it holds `count` messages (or the wait ran out):
/// the messages, and what the durable consumer `views` acknowledged with none pending.
async fn published(urls: &str, stream: &str, count: u64) -> (u64, u64) {
    let js = jetstream::new(async_nats::connect(urls).await.expect("NATS reachable"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut events = js.get_stream(stream).await.expect("the stream exists");
        let messages = events.info().await.expect("the stream's info").state.messages;
        let acked = match events.consumer_info("views").await {
            Ok(info) if info.num_ack_pending == 0 => info.ack_floor.stream_sequence,
            _ => 0,
        };
        if (messages >= count && acked >= count) || tokio::time::Instant::now() >= deadline {
            return (messages, acked);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn after_the_database_comes_back_every_committed_event_is_published_once_and_projected() {
    let (urls, stream) = (nats_url(), unique_stream());
    let bus = Some(disputes::BusConfig { urls: urls.clone(), stream: stream.clone() });
    let (app, proxy) = TestApp::postgres_through_proxy(Setup { bus, ..Setup::default() }).await;
    for id in ["out-1", "out-2", "out-3"] {
        app.register(&order(id)).await.assert_ok();
        app.request_refund(id, "refund_only", "quality_issue", 1_000).await.assert_ok();
    }

    proxy.cut();
    app.merchant_accept("out-1").await.assert_problem(503, "not_ready");
    // Long enough for the relay to find its lease's connection gone (it looks every second)
    // and for the followers and the projector to fail a read or a write.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.heal();

    let accepted = past_lost_connections(|| app.merchant_accept("out-1")).await;
    assert_eq!(accepted.assert_ok().sequence(), 3, "{}", accepted.body);
    app.merchant_accept("out-2").await.assert_ok();
    app.register(&order("out-4")).await.assert_ok();
    app.request_refund("out-4", "refund_only", "quality_issue", 1_000).await.assert_ok();

    let mut events = 0;
    for (id, last) in [("out-1", 3), ("out-2", 3), ("out-3", 2), ("out-4", 2)] {
        let (_, sequence) = app.store.load(id).await.expect("the stream loads");
        assert_eq!(sequence, last, "{id}: each command took effect once");
        events += last;
        let view = app.view_at(id, Role::Buyer, BUYER, last).await;
        assert_eq!(view["sequence"], last, "{id}: {view}");
        let timeline = app.view_at(&format!("{id}/timeline"), Role::Buyer, BUYER, last).await;
        let sequences: Vec<u64> = timeline["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["sequence"].as_u64())
            .collect();
        assert_eq!(sequences, (1..=last).collect::<Vec<_>>(), "{id}: {timeline}");
    }
    assert_eq!(app.store.count_events().await.expect("the log counts"), events);
    // Published once each (a batch the relay published again is dropped by its message ids),
    // and every message taken by the projector's consumer.
    assert_eq!(published(&urls, &stream, events).await, (events, events));
    delete_stream(&urls, &stream).await;
}

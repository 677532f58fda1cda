//! The deadline timer of an instance whose relay waits for the lease another instance holds:
//! tracking follows the log all the same.

use std::time::Duration;

use async_nats::jetstream;
use dispute_bus::{NatsBus, Relay, lease_key};
use dispute_domain::Role;
use dispute_timer::DeadlineTimer;
use disputes_tests::*;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn an_instance_whose_relay_waits_for_the_lease_still_tracks_deadlines() {
    let db = TestDatabase::create().await;
    let (holder, waiting) = (open_store(&db).await, open_store(&db).await);
    let (urls, stream) = (nats_url(), unique_stream());
    let _lease =
        holder.try_lease(lease_key(&stream)).await.expect("the lease reads").expect("the lease is free");

    let stop = CancellationToken::new();
    let bus = NatsBus::connect(&urls, &stream).await.expect("NATS client");
    let relay = tokio::spawn(Relay::new(waiting.clone(), bus).run(stop.clone()));
    let timer = DeadlineTimer::new(waiting.clone());
    let timing = tokio::spawn(timer.clone().run(stop.clone()));

    execute(&waiting, "w-1", Role::System, "orders", registration("w-1")).await;
    execute(&waiting, "w-1", Role::Buyer, BUYER, refund_request(1_000)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while timer.next_due_ms().await.expect("the deadlines read").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the merchant's deadline is tracked within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The relay did not publish: it never held the lease, so it never made the stream.
    let js = jetstream::new(async_nats::connect(&urls).await.expect("NATS reachable"));
    assert!(js.get_stream(&stream).await.is_err(), "nothing was published without the lease");
    stop.cancel();
    for task in [relay, timing] {
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the task stops").unwrap();
    }
}

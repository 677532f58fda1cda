//! `disputes-bench --audit N`: loads N synthetic chained events into an empty store, then
//! times `audit verify` and a replay of every stream over them. With `--json`, the last stdout
//! line holds the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dispute_store::Store;
use disputes::progress::Progress;

pub async fn run(store: &Arc<Store>, events: u64, json: bool) -> anyhow::Result<()> {
    let orders = events.div_ceil(dispute_audit::EVENTS_PER_ORDER);
    let started = Instant::now();
    let mut bar = Progress::new("loading");
    let loaded = dispute_audit::load_synthetic(store, orders, |done, total| bar.show(done, total)).await?;
    bar.finish();
    eprintln!("loaded {loaded} events ({orders} orders) in {:.1?}", started.elapsed());

    let started = Instant::now();
    let report = dispute_audit::verify(store, None, None, |_, _| {}).await?;
    let verify_time = started.elapsed();
    if !report.breaks.is_empty() {
        anyhow::bail!("the synthetic log does not verify: {}", report.breaks[0]);
    }

    let started = Instant::now();
    let mut replayed = 0u64;
    let mut failure = None;
    dispute_audit::for_each_stream(
        store,
        |_, _| {},
        |stream| match dispute_audit::replay(stream, None) {
            Ok(Some(r)) if r.state.status() == dispute_domain::Status::Refunded => replayed += 1,
            Ok(_) => failure = Some(format!("{} did not replay to refunded", stream[0].order_id)),
            Err(e) => failure = Some(e.to_string()),
        },
    )
    .await?;
    let replay_time = started.elapsed();
    if let Some(failure) = failure {
        anyhow::bail!(failure);
    }
    let rate = |d: Duration| report.events as f64 / d.as_secs_f64();
    println!(
        "verify: {} events in {} streams in {:.2?}: {:.0} events/s",
        report.events,
        report.streams,
        verify_time,
        rate(verify_time)
    );
    println!(
        "replay: {} events in {replayed} streams in {:.2?}: {:.0} events/s",
        report.events,
        replay_time,
        rate(replay_time)
    );
    if json {
        let figures = serde_json::json!({
            "events": report.events,
            "streams": report.streams,
            "verify_s": (verify_time.as_secs_f64() * 100.0).round() / 100.0,
            "verify_events_per_s": rate(verify_time).round(),
            "replay_s": (replay_time.as_secs_f64() * 100.0).round() / 100.0,
            "replay_events_per_s": rate(replay_time).round(),
        });
        println!("{figures}");
    }
    Ok(())
}

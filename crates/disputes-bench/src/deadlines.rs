//! `disputes-bench --deadlines N`: how late the deadline timer fires with N deadlines pending.
//!
//! N orders are registered and refunds requested straight through the store (no HTTP), with a
//! merchant deadline of [`WINDOW`] so that all N are pending at once; the timer runs in this
//! process exactly as `serve` runs it. Lateness is the `MerchantResponseMissed` event's
//! recorded time minus the request's `merchant_response_due`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use dispute_domain::command::RequestRefund;
use dispute_domain::*;
use dispute_store::{CommandMetadata, Store};
use dispute_timer::DeadlineTimer;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::lifecycles::percentile;
use disputes::config::Settings;

/// The merchant deadline of every request: long enough for all of them to be pending at once.
const WINDOW: &str = "30s";
/// Requests sent at once while loading.
const LOADERS: usize = 32;

pub async fn run(settings: Settings, count: usize, json_line: bool) -> anyhow::Result<()> {
    let policy = Policy::from_toml(&format!("[default]\nmerchant_response = \"{WINDOW}\"\n"))?;
    let services = DisputeServices::new(Arc::new(SystemClock), Arc::new(policy));
    let store = Store::open(&settings.store(), services).await?;
    let stop = CancellationToken::new();
    let timer = tokio::spawn(DeadlineTimer::new(store.clone()).run(stop.clone()));

    let run = format!("{:x}", Utc::now().timestamp_millis());
    let ids: Arc<Vec<String>> = Arc::new((0..count).map(|i| format!("deadline-{run}-{i}")).collect());
    let loaded = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = (0..LOADERS)
        .map(|_| {
            let (store, ids, next) = (store.clone(), ids.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { return Ok::<_, anyhow::Error>(()) };
                    request(&store, id).await?;
                }
            })
        })
        .collect();
    for loader in loaders {
        loader.await??;
    }
    let load_seconds = loaded.elapsed().as_secs_f64();
    eprintln!("{count} requests sent in {load_seconds:.1}s; waiting for their deadlines ({WINDOW})");

    let prefix = format!("deadline-{run}-");
    let limit = Instant::now() + Duration::from_secs(120);
    let mut reported = -1;
    loop {
        let fired = fired_count(&store, &prefix).await?;
        if fired != reported {
            eprint!("\r{fired}/{count} deadlines fired   ");
            reported = fired;
        }
        if fired >= count as i64 {
            break;
        }
        if Instant::now() > limit {
            anyhow::bail!("only {fired} of {count} deadlines fired within two minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!();
    stop.cancel();
    let _ = timer.await;

    let mut lateness_us = Vec::with_capacity(count);
    let mut first_due: Option<DateTime<Utc>> = None;
    let mut last_due: Option<DateTime<Utc>> = None;
    for id in ids.iter() {
        let events = store.stream_events(id, 2, 3).await?;
        let [requested, missed] = events.as_slice() else {
            anyhow::bail!("{id}: expected a request and a missed deadline, got {} events", events.len());
        };
        let due = instant(&requested.payload["RefundRequested"]["merchant_response_due"])?;
        let fired = missed.typed_metadata().with_context(|| id.to_string())?.time;
        first_due = first_due.min(Some(due)).or(Some(due));
        last_due = last_due.max(Some(due));
        lateness_us.push((fired - due).num_microseconds().unwrap_or(i64::MAX).max(0) as u64);
    }
    store.close().await;
    lateness_us.sort_unstable();
    let ms = |q: f64| percentile(&lateness_us, q).map(|us| (us as f64 / 10.0).round() / 100.0);
    let spread = match (first_due, last_due) {
        (Some(first), Some(last)) => (last - first).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    let figures = json!({
        "deadlines": count,
        "due_spread_s": spread,
        "late_p50_ms": ms(0.50),
        "late_p99_ms": ms(0.99),
        "late_max_ms": ms(1.0),
        "load_s": (load_seconds * 10.0).round() / 10.0,
    });
    eprintln!(
        "{count} deadlines due over {spread:.1}s fired late by p50 {} ms, p99 {} ms, max {} ms",
        figures["late_p50_ms"], figures["late_p99_ms"], figures["late_max_ms"]
    );
    if json_line {
        println!("{figures}");
    }
    Ok(())
}

async fn request(store: &Store, id: &str) -> anyhow::Result<()> {
    let now = Utc::now();
    let facts = OrderFacts {
        order_id: id.to_string(),
        buyer_id: "bench-buyer".to_string(),
        merchant_id: "bench-merchant".to_string(),
        paid_amount: Money::new(10_000, "CNY".to_string()),
        paid_at: now - chrono::Duration::days(3),
        category: "books".to_string(),
        payment_channel: PaymentChannel::Alipay,
        shipped_at: Some(now - chrono::Duration::days(2)),
        delivered_at: Some(now - chrono::Duration::days(1)),
    };
    let metadata = CommandMetadata { correlation_id: format!("bench:{id}"), idempotency_key: None };
    let send = |actor: Actor, action: Action| {
        let metadata = &metadata;
        async move {
            store
                .execute(id, DisputeCommand { actor, action }, None, metadata)
                .await
                .map(|_| ())
                .with_context(|| id.to_string())
        }
    };
    send(Actor::new(Role::System, "bench"), Action::RegisterOrder(facts)).await?;
    send(
        Actor::new(Role::Buyer, "bench-buyer"),
        Action::RequestRefund(RequestRefund {
            kind: RefundKind::RefundOnly,
            reason: RefundReason::QualityIssue,
            amount: Money::new(5_000, "CNY".to_string()),
            description: "the cover is torn".to_string(),
            evidence: Vec::new(),
        }),
    )
    .await
}

async fn fired_count(store: &Store, prefix: &str) -> anyhow::Result<i64> {
    let fired = store.count_events_of("MerchantResponseMissed", prefix).await?;
    Ok(fired as i64)
}

fn instant(value: &serde_json::Value) -> anyhow::Result<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| anyhow::anyhow!("not an instant: {value}"))
}

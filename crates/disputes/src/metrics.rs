//! The process's metrics recorder: the Prometheus exporter, installed once per process as the
//! `metrics` facade's global recorder, with the bucket bounds of every histogram. The crates
//! that measure record through the facade; `GET /metrics` renders through [`render`].
//!
//! A process has one global recorder, but starts the service several times (the tests, the
//! load generator): the first start installs it, later ones reuse its handle.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dispute_store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// The connection pool's connections, by state (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "disputes_db_pool_connections";
/// The most connections the pool opens.
pub const DB_POOL_MAX_CONNECTIONS: &str = "disputes_db_pool_max_connections";

/// The bucket bounds of the lags (commit → published, commit → projected): a millisecond to
/// ten minutes, an outage's catch-up included.
const LAG_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];

/// How often histogram samples that no scrape collected are folded into their buckets, so that
/// an unscraped process does not keep them all.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            (dispute_api::HTTP_REQUEST_DURATION_SECONDS, dispute_api::HTTP_DURATION_BUCKETS),
            (dispute_bus::RELAY_LAG_SECONDS, LAG_BUCKETS),
            (dispute_views::PROJECTION_LAG_SECONDS, LAG_BUCKETS),
            (dispute_timer::LATENESS_SECONDS, dispute_timer::LATENESS_BUCKETS),
        ];
        let builder = buckets.into_iter().fold(PrometheusBuilder::new(), |builder, (name, bounds)| {
            builder.set_buckets_for_metric(Matcher::Full(name.to_string()), bounds).expect("bounds are given")
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            // Whoever embeds the service installed a recorder of their own: it gets the records.
            tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
            return handle;
        }
        dispute_api::describe_metrics();
        dispute_bus::describe_metrics();
        dispute_views::describe_metrics();
        dispute_timer::describe_metrics();
        metrics::describe_gauge!(DB_POOL_CONNECTIONS, "Database pool connections, by state (in_use, idle).");
        metrics::describe_gauge!(DB_POOL_MAX_CONNECTIONS, "The most connections the database pool opens.");
        handle
    })
}

/// Installs the recorder (once per process) and returns what renders `GET /metrics` for the
/// service on `store`: the pool's gauges are read at each scrape.
pub fn render(store: Arc<Store>) -> dispute_api::RenderMetrics {
    let handle = handle();
    Arc::new(move || {
        let pool = store.pool_stats();
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(pool.in_use);
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(pool.idle);
        metrics::gauge!(DB_POOL_MAX_CONNECTIONS).set(pool.max);
        handle.render()
    })
}

/// Folds unscraped histogram samples into their buckets every [`UPKEEP`], until `stop`.
pub async fn upkeep(stop: CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP);
    loop {
        tokio::select! {
            _ = every.tick() => handle().run_upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}

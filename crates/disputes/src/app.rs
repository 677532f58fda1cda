//! The composition root: the one place that starts the service's parts from a configuration,
//! and stops them. `disputes serve`, the load generator and the tests all start the service
//! here; nothing else wires the parts together.
//!
//! One shutdown mechanism: a [`CancellationToken`] that every part watches, and a
//! [`TaskTracker`] that the stop waits on before the store is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dispute_api::{AppState, EdgeConfig, TokenKeys};
use dispute_bus::{BusError, NatsBus, Relay};
use dispute_domain::DisputeServices;
use dispute_store::{ClaimTimes, Store, StoreConfig, StoreError};
use dispute_timer::DeadlineTimer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long idempotency answers are kept (the contract promises at least 24 hours).
const IDEMPOTENCY_RETENTION: chrono::Duration = chrono::Duration::hours(48);

/// How many batches the relay may hand the in-process projector ahead of it (a batch that
/// finds no room waits a while for it, then is left to JetStream; see `Relay::with_copies`).
/// Few: each batch held holds up to 512 parsed events (64 held 80 MiB of a catch-up's
/// resident memory).
const COPIES: usize = 4;

/// How many commands' events this process may hand its projector ahead of it; more are left
/// to the relay and JetStream. Each is one command's few events.
const COMMITS: usize = 1024;

/// Everything the service needs to start.
pub struct Config {
    pub store: StoreConfig,
    /// The clock and the policy the rules run with.
    pub services: DisputeServices,
    /// JetStream; without it the projector reads the log in-process.
    pub bus: Option<BusConfig>,
    pub tokens: TokenKeys,
    pub idempotency: ClaimTimes,
    /// Request and header time limits of the HTTP edge.
    pub edge: EdgeConfig,
    /// Where the API listens (port 0: any free port).
    pub listen: SocketAddr,
    pub parts: Parts,
}

/// NATS servers (comma-separated URLs) and the JetStream stream.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub urls: String,
    pub stream: String,
}

/// Which background parts run next to the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Builds the views: from JetStream with a bus, from the log without one. With a bus, the
    /// relay that publishes the log runs too.
    pub projections: bool,
    /// Fires deadlines.
    pub timer: bool,
}

impl Parts {
    /// What `disputes serve` runs: everything.
    pub const ALL: Parts = Parts { projections: true, timer: true };
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot reach the event bus: {0}")]
    Bus(#[from] BusError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The service, started.
pub struct App {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: CancellationToken,
    tasks: TaskTracker,
    server: JoinHandle<std::io::Result<()>>,
}

impl App {
    /// Opens the store (applying migrations), connects the bus, starts the background parts
    /// and the API; returns once the API listens.
    pub async fn start(config: Config) -> Result<App, AppError> {
        let store = Store::open(&config.store, config.services).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Listen { addr: config.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| AppError::Listen { addr: config.listen, source })?;
        let bus = match &config.bus {
            Some(bus) => Some(NatsBus::connect(&bus.urls, &bus.stream).await?),
            None => None,
        };
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        if config.parts.projections {
            match bus {
                Some(bus) => {
                    // This process's commits and its relay's batches are projected here at
                    // once; JetStream feeds the projectors of every instance, this one's too.
                    let (commits, committed) = tokio::sync::mpsc::channel(COMMITS);
                    store.hand_commits_to(commits);
                    let (copies, copied) = tokio::sync::mpsc::channel(COPIES);
                    let relay = Relay::new(store.clone(), bus.clone()).with_copies(copies);
                    tasks.spawn(relay.run(stop.clone()));
                    let handed = vec![committed, copied];
                    tasks.spawn(dispute_views::run_nats(store.clone(), bus, handed, stop.clone()));
                }
                None => {
                    tasks.spawn(dispute_views::run_local(store.clone(), stop.clone()));
                }
            }
        }
        if config.parts.timer {
            tasks.spawn(DeadlineTimer::new(store.clone()).run(stop.clone()));
        }
        tasks.spawn(purge_idempotency_answers(store.clone(), stop.clone()));
        tasks.spawn(crate::metrics::upkeep(stop.clone()));
        let state = AppState::new(store.clone(), config.tokens)
            .with_idempotency(config.idempotency)
            .with_edge(config.edge)
            .with_metrics(crate::metrics::render(store.clone()));
        let server = tokio::spawn(dispute_api::serve(listener, state, stop.clone().cancelled_owned()));
        Ok(App { addr, store, stop, tasks, server })
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The token that stops the service when cancelled (e.g. from a signal handler).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the service is told to stop, then stops it: the API drains its requests,
    /// the background parts finish their batch, the store closes.
    pub async fn stopped(self) -> Result<(), AppError> {
        let served = self.server.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        // The server also ends on its own if it fails: everything else stops with it.
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.store.close().await;
        served.map_err(AppError::Serve)
    }

    /// Stops the service now and waits until it has stopped.
    pub async fn stop(self) -> Result<(), AppError> {
        self.stop.cancel();
        self.stopped().await
    }
}

/// Forgets idempotency answers once they are older than the retention, every hour.
async fn purge_idempotency_answers(store: Arc<Store>, stop: CancellationToken) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every_hour.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = store.purge_idempotency(IDEMPOTENCY_RETENTION).await {
            tracing::warn!(error = %e, "purging old idempotency answers failed");
        }
    }
}

//! Where commands become stored events: the cqrs-es event store over PostgreSQL (postgres-es)
//! or SQLite (sqlite-es), its migrations, the one writer of events ([`append`]), and the
//! idempotency records of the HTTP commands.
//!
//! Invariant: this crate knows no HTTP. It returns an [`Outcome`] or an [`ExecuteError`]; the
//! API crate decides what either looks like on the wire.
//! Invariant: events are only ever inserted; nothing here updates or deletes one.

mod append;
mod bulk;
mod cache;
pub mod chain;
pub mod deadlines;
mod execute;
mod follow;
mod idempotency;
mod lease;
mod log;
mod metadata;
mod parked;
pub mod projected;
mod views;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use dispute_domain::DisputeServices;
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use bulk::BulkStream;
pub use execute::{CommandMetadata, ExecuteError, Executed, KeyedRequest, Outcome, StoreFailure};
pub use follow::{BATCH, Backoff, Batch, Commits, Consumer, Follower, KEPT};
pub use idempotency::{Claim, ClaimTimes, Held, StoredResponse};
pub use lease::Lease;
pub use log::{Cursor, RawEvent, Scan, StoredEvent};
pub use metadata::EventMetadata;
pub use views::{
    Column, DISPUTES, DisputeRow, LockedView, MerchantRow, QueueFilter, QueueRow, SqlType, StatsRow,
    SummaryRow, TIMELINE, TimelineRow, ViewBatch, ViewShape, ViewTables, ViewWriter,
};

/// The database behind the store. Private: every statement lives in this crate.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Postgres(Postgres),
    Sqlite(Sqlite),
}

/// The PostgreSQL store's connections: the configured number, split between two pools.
#[derive(Debug, Clone)]
pub(crate) struct Postgres {
    /// Every statement but the inserts below. Each is planned for its tables as they are now
    /// (`plan_cache_mode = force_custom_plan`): a prepared statement's cached generic plan,
    /// made while a table was small, would keep scanning it whole as it grows until the next
    /// ANALYZE (never, with autovacuum off).
    pub(crate) pool: PgPool,
    /// The statements that insert without scanning anything: the events' appends under a new
    /// key or none ([`append`]) and the projector's batches that read no stored view
    /// ([`ViewWriter::write`]). No table's size can change their plans, so each
    /// connection plans them once (`force_generic_plan`) instead of at every execution.
    pub(crate) inserts: parked::Parked,
}

/// The embedded store's connections.
#[derive(Debug, Clone)]
pub(crate) struct Sqlite {
    /// Reads, and every write but the events'. Their commits are not flushed on their own
    /// (`synchronous = NORMAL`): the next events' commit flushes them.
    pub(crate) pool: SqlitePool,
    /// The events' commits, each flushed before it returns (`synchronous = FULL`).
    pub(crate) events: SqlitePool,
    /// This process's writers take turns here rather than at SQLite's write lock, whose busy
    /// handler polls with sleeps.
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
    /// The commands' appends waiting for the next turn, committed together ([`append`]).
    pub(crate) appends: append::Queue,
    /// The log's bulk reads: [`Store::events_after`], [`Store::scan_in_stream_order`].
    pub(crate) readers: Arc<log::Readers>,
}

/// Runs the same sqlx expression against whichever pool the backend holds.
macro_rules! on_pool {
    ($backend:expr, $pool:ident => $body:expr) => {
        match $backend {
            $crate::Backend::Postgres($crate::Postgres { pool: $pool, .. }) => $body,
            $crate::Backend::Sqlite($crate::Sqlite { pool: $pool, .. }) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Backend {
    /// Waits for this process's turn to write: SQLite's, held until dropped; none on
    /// PostgreSQL, where writers do not exclude each other.
    pub(crate) async fn turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self {
            Backend::Sqlite(sqlite) => Some(sqlite.turn.clone().lock_owned().await),
            Backend::Postgres(_) => None,
        }
    }
}

/// The cqrs-es repositories, which read a stream for a command. Commands do not go through
/// cqrs-es's `commit`, so that every event gets metadata of its own (its place in the hash
/// chain), and the events are written by [`append`], in one commit with the key's record.
enum EventStore {
    Postgres(PostgresEventRepository),
    Sqlite(SqliteEventRepository),
}

/// Where to keep the events.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A PostgreSQL URL (`postgres://…`).
    Postgres { url: String, max_connections: u32 },
    /// An SQLite file, created if missing: the embedded default.
    Sqlite { path: std::path::PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the event store: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply the schema migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("event store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("reading the SQLite log failed: {0}")]
    SqliteRead(#[from] rusqlite::Error),
}

impl StoreError {
    /// The database did not answer (see [`unavailable`]): nothing was wrong with the request,
    /// and the same request may succeed a little later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect(e) | StoreError::Query(e) => unavailable(e),
            StoreError::Migrate(_) | StoreError::DataDir { .. } | StoreError::SqliteRead(_) => false,
        }
    }
}

/// Whether `err` says the database did not answer rather than that a statement failed: the
/// connection was lost or refused (a restarted server, a terminated session), none came free
/// in time, the pool is closed, or the server is shutting down or starting up (SQLSTATE class
/// 08, and 57P01–57P03).
pub fn unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            true
        }
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// How many connections the pool holds: open ones in use or idle, and the most it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolStats {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        let size = pool.size();
        let idle = (pool.num_idle() as u32).min(size);
        PoolStats { in_use: size - idle, idle, max: pool.options().get_max_connections() }
    }

    /// A parked connection waits for a statement: idle, though its pool counts it in use.
    fn parked(parked: &parked::Parked) -> Self {
        let PoolStats { in_use, idle, max } = Self::of(parked.pool());
        let waiting = parked.parked().min(in_use);
        PoolStats { in_use: in_use - waiting, idle: idle + waiting, max }
    }
}

/// Locks `mutex`, also after a panic while it was held: every holder in this crate leaves what
/// it guards whole (an entry replaced or removed at once, a flag set or cleared).
pub(crate) fn unpoisoned<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most values SQLite binds to one statement: rows bound one value each go in statements
/// of at most this many values.
pub(crate) const SQLITE_BOUND_VALUES: usize = 32_766;

/// Runs `script` on an embedded store's connection: statements separated by `;` that begin a
/// transaction (`BEGIN IMMEDIATE; …`), sent to the connection's worker thread in one exchange
/// and run there one after the other, each taking its bound values in turn. A transaction begun
/// and ended statement by statement costs an exchange per statement, and on a busy machine each
/// waits for the worker thread, then for the task, to be scheduled again, all while this
/// process's writers' turn is held. On a failure the transaction is rolled back, so the
/// connection goes back to its pool with none open.
pub(crate) async fn sqlite_script<'q, O>(
    connection: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    script: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
) -> Result<Vec<O>, sqlx::Error>
where
    O: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
{
    let ran = script.fetch_all(&mut **connection).await;
    // A connection that cannot roll back (none is open, or it is broken) is closed when
    // dropped rather than given back in a state not known.
    if ran.is_err() && sqlx::query("ROLLBACK").execute(&mut **connection).await.is_err() {
        connection.close_on_drop();
    }
    ran
}

/// The command side's storage: executes commands against their order's stream.
pub struct Store {
    backend: Backend,
    events: EventStore,
    services: DisputeServices,
    /// The heads of recently used streams, so that a command need not read its stream again.
    heads: cache::Heads,
    /// Signalled after every commit, so the followers in this process wake at once.
    committed: follow::Commits,
    /// The followers' shared reads of the log.
    tail: follow::Tail,
    /// What the projector in this process committed, signalled after each of its commits.
    projected: projected::Projected,
    /// Where the events of each command this process commits are handed, if anywhere.
    handed: std::sync::OnceLock<tokio::sync::mpsc::Sender<follow::Batch>>,
}

impl Store {
    /// Opens the database, applies pending migrations and wires the cqrs-es event store.
    pub async fn open(config: &StoreConfig, services: DisputeServices) -> Result<Arc<Self>, StoreError> {
        let backend = match config {
            StoreConfig::Postgres { url, max_connections } => {
                let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
                let pool = |max: u32, plans: &str| {
                    PgPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(Duration::from_secs(10))
                        // No ping before each use: a round trip per statement. A broken
                        // connection fails its statement instead, and the caller retries.
                        .test_before_acquire(false)
                        .connect_with(options.clone().options([("plan_cache_mode", plans)]))
                };
                let inserts = (max_connections / 2).max(1);
                let inserts_pool = pool(inserts, "force_generic_plan").await.map_err(StoreError::Connect)?;
                let pool = pool(max_connections.saturating_sub(inserts).max(1), "force_custom_plan")
                    .await
                    .map_err(StoreError::Connect)?;
                sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(StoreError::Migrate)?;
                Backend::Postgres(Postgres { pool, inserts: parked::Parked::new(inserts_pool) })
            }
            StoreConfig::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_dir(dir)?;
                }
                let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                    .map_err(StoreError::Connect)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10));
                // In WAL mode `synchronous` is a connection's setting, not a transaction's: the
                // events get connections of their own (docs/ARCHITECTURE.md, "Concurrency and
                // idempotency"). No ping before each use: the connections are in this process.
                let events = SqlitePoolOptions::new()
                    .max_connections(2)
                    .test_before_acquire(false)
                    .connect_with(options.clone().synchronous(SqliteSynchronous::Full))
                    .await
                    .map_err(StoreError::Connect)?;
                sqlx::migrate!("./migrations/sqlite").run(&events).await.map_err(StoreError::Migrate)?;
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .connect_with(options.synchronous(SqliteSynchronous::Normal))
                    .await
                    .map_err(StoreError::Connect)?;
                Backend::Sqlite(Sqlite {
                    pool,
                    events,
                    turn: Arc::default(),
                    appends: Arc::default(),
                    readers: Arc::new(log::Readers::new(path.clone())),
                })
            }
        };
        let events = match &backend {
            Backend::Postgres(postgres) => {
                EventStore::Postgres(PostgresEventRepository::new(postgres.pool.clone()))
            }
            Backend::Sqlite(sqlite) => EventStore::Sqlite(SqliteEventRepository::new(sqlite.events.clone())),
        };
        Ok(Arc::new(Self {
            backend,
            events,
            services,
            heads: cache::Heads::new(cache::CAPACITY),
            committed: follow::Commits::default(),
            tail: follow::Tail::default(),
            projected: projected::Projected::default(),
            handed: std::sync::OnceLock::new(),
        }))
    }

    pub fn services(&self) -> &DisputeServices {
        &self.services
    }

    /// Now, by the service clock: the clock every event's `time` is taken on.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.services.clock.now()
    }

    /// The connection pools' occupancy now, summed over the store's pools, for the metrics.
    pub fn pool_stats(&self) -> PoolStats {
        let (pool, events) = match &self.backend {
            Backend::Postgres(Postgres { pool, inserts }) => {
                (PoolStats::of(pool), PoolStats::parked(inserts))
            }
            Backend::Sqlite(Sqlite { pool, events, .. }) => (PoolStats::of(pool), PoolStats::of(events)),
        };
        PoolStats {
            in_use: pool.in_use + events.in_use,
            idle: pool.idle + events.idle,
            max: pool.max + events.max,
        }
    }

    /// Completes after the next commit of this process.
    pub fn committed(&self) -> &follow::Commits {
        &self.committed
    }

    /// Hands the events of every command this process commits from now on to `to`, as the
    /// command commits them (their [`StoredEvent::cursor`] zero: they are not read from the
    /// log). Best effort, never waiting: a command whose events find the channel full hands
    /// nothing, so its reader must also follow the log (or the bus) for what it misses. Set
    /// once; later calls change nothing.
    pub fn hand_commits_to(&self, to: tokio::sync::mpsc::Sender<follow::Batch>) {
        let _ = self.handed.set(to);
    }

    /// What this process's projector committed: readers wait on it for a view to catch up.
    pub fn projected(&self) -> &projected::Projected {
        &self.projected
    }

    /// Checks that the database answers: the readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.backend, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.tail.close().await;
        match &self.backend {
            Backend::Postgres(Postgres { pool, inserts }) => tokio::join!(pool.close(), inserts.close()),
            Backend::Sqlite(Sqlite { pool, events, readers, .. }) => {
                readers.close();
                tokio::join!(pool.close(), events.close())
            }
        };
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use dispute_domain::{Policy, SystemClock};

    use super::*;

    #[tokio::test]
    async fn sqlite_flushes_the_events_commits_and_leaves_the_other_writes_to_them() {
        let dir = std::env::temp_dir().join(format!("disputes-store-sync-{}", std::process::id()));
        let services = DisputeServices::new(Arc::new(SystemClock), Arc::new(Policy::builtin()));
        let store = Store::open(&StoreConfig::Sqlite { path: dir.join("disputes.db") }, services)
            .await
            .expect("open the SQLite store");
        let Backend::Sqlite(sqlite) = &store.backend else { unreachable!("an SQLite store") };
        let synchronous = |pool: &SqlitePool| {
            let pool = pool.clone();
            async move { sqlx::query_scalar::<_, i64>("PRAGMA synchronous").fetch_one(&pool).await.unwrap() }
        };
        // 2 is FULL (every commit flushed), 1 is NORMAL (flushed by a later FULL commit).
        let (events, others) = (synchronous(&sqlite.events).await, synchronous(&sqlite.pool).await);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((events, others), (2, 1));
    }

    /// `.cargo/config.toml` builds SQLite without memory statistics, which would otherwise
    /// serialise every allocation of every connection on one mutex.
    #[tokio::test]
    async fn sqlite_is_built_without_memory_statistics() {
        let pool = SqlitePool::connect("sqlite::memory:").await.expect("an in-memory database");
        let options: Vec<String> =
            sqlx::query_scalar("PRAGMA compile_options").fetch_all(&pool).await.expect("the compile options");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "compile options: {options:?}");
    }
}

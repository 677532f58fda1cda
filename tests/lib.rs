//! The integration-test harness: the service in-process on port 0 against the real
//! PostgreSQL (a fresh database per test) or the embedded SQLite store, with a controllable
//! clock, plus helpers so tests read like the dispute story they check.
//!
//! `TEST_DATABASE_URL` names the PostgreSQL server (default: the local one, TLS off).

pub mod binary;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Duration, Utc};
use dispute_api::TokenKeys;
use dispute_domain::{Actor, DisputeServices, ManualClock, Policy, Role};
use dispute_store::{ClaimTimes, Store, StoreConfig};
use disputes::{App, Parts};
use serde_json::{Value, json};

pub use binary::*;

pub const SECRET: &str = "integration-test-secret-at-least-32-bytes";

/// The instant every test's clock starts at.
pub fn epoch() -> DateTime<Utc> {
    "2026-06-01T08:00:00Z".parse().expect("a valid instant")
}

pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_string())
}

/// A database created for one test and dropped when the test ends.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "disputes_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple().to_string().get(..8).expect("uuid is long enough")
        );
        let admin = admin_database_url();
        let mut conn = connect(&admin).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Self { url: with_database(&admin, &name), name }
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url}: {e}. Start it (scripts/test does) or set TEST_DATABASE_URL.")
    })
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: drop the database from a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut conn = connect(&admin_database_url()).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}

/// Where a test's events live.
pub enum Backing {
    Postgres(TestDatabase),
    Sqlite(tempdir::TempDir),
}

pub mod tempdir {
    //! A directory removed when dropped.
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("disputes-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Default for TempDir {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn join(dir: &TempDir, name: &str) -> PathBuf {
        dir.0.join(name)
    }
}

/// The service running in-process for one test.
pub struct TestApp {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub store: Arc<Store>,
    pub backing: Backing,
    setup: Setup,
    client: reqwest::Client,
    app: Option<App>,
}

/// What a [`TestApp`] runs with besides its store and clock; each part defaults to what
/// `disputes serve` uses, with the token secret [`SECRET`].
#[derive(Clone)]
pub struct Setup {
    pub policy: Arc<Policy>,
    pub idempotency: ClaimTimes,
    /// Must hold [`SECRET`] for [`TestApp::token`].
    pub tokens: TokenKeys,
    pub edge: dispute_api::EdgeConfig,
    /// JetStream: the relay publishes and the views are built from the stream, as with
    /// `disputes serve --nats-url`. `None`: the views follow the log.
    pub bus: Option<disputes::BusConfig>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            policy: Arc::new(Policy::builtin()),
            idempotency: ClaimTimes::default(),
            tokens: TokenKeys::new(SECRET),
            edge: Default::default(),
            bus: None,
        }
    }
}

/// An HTTP answer: status, headers and the JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The problem's stable code, for error answers.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn status_text(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    pub fn sequence(&self) -> u64 {
        self.body["sequence"].as_u64().unwrap_or_else(|| panic!("no sequence in {}", self.body))
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 200, "expected 200, got {} {}", self.status, self.body);
        self
    }

    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Self {
        assert_eq!((self.status, self.code()), (status, code), "unexpected answer: {}", self.body);
        let content_type = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(content_type, "application/problem+json", "problems are problem+json");
        self
    }
}

impl TestApp {
    /// The service on a fresh PostgreSQL database with the built-in policy.
    pub async fn postgres() -> Self {
        Self::postgres_with(Setup::default()).await
    }

    pub async fn postgres_with_policy(policy: Policy) -> Self {
        Self::postgres_with(Setup { policy: Arc::new(policy), ..Setup::default() }).await
    }

    /// The service on a fresh PostgreSQL database whose idempotency claims wait and lapse as
    /// `times` says (the lapse measured on the test's clock).
    pub async fn postgres_with_idempotency(times: ClaimTimes) -> Self {
        Self::postgres_with(Setup { idempotency: times, ..Setup::default() }).await
    }

    /// The service on a fresh PostgreSQL database checking tokens with `tokens` (which must
    /// hold [`SECRET`] for [`Self::token`]).
    pub async fn postgres_with_tokens(tokens: TokenKeys) -> Self {
        Self::postgres_with(Setup { tokens, ..Setup::default() }).await
    }

    pub async fn postgres_with(setup: Setup) -> Self {
        let db = TestDatabase::create().await;
        Self::start(Backing::Postgres(db), Arc::new(ManualClock::new(epoch())), setup).await
    }

    /// The service on a fresh PostgreSQL database reached through a [`proxy::Proxy`], which
    /// the test cuts and heals.
    pub async fn postgres_through_proxy(setup: Setup) -> (Self, proxy::Proxy) {
        let mut db = TestDatabase::create().await;
        let proxy = proxy::Proxy::start(&db.url).await;
        db.url = proxy.url().to_string();
        (Self::start(Backing::Postgres(db), Arc::new(ManualClock::new(epoch())), setup).await, proxy)
    }

    /// The service on the embedded SQLite store in a fresh directory.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(Setup::default()).await
    }

    pub async fn sqlite_with(setup: Setup) -> Self {
        let dir = tempdir::TempDir::new();
        Self::start(Backing::Sqlite(dir), Arc::new(ManualClock::new(epoch())), setup).await
    }

    fn store_config(backing: &Backing) -> StoreConfig {
        match backing {
            Backing::Postgres(db) => StoreConfig::Postgres { url: db.url.clone(), max_connections: 20 },
            Backing::Sqlite(dir) => StoreConfig::Sqlite { path: tempdir::join(dir, "disputes.db") },
        }
    }

    /// The API and the projections (no timer: timer tests step it by hand), started as
    /// `disputes serve` starts them, with the test's clock.
    async fn start(backing: Backing, clock: Arc<ManualClock>, setup: Setup) -> Self {
        let app = App::start(disputes::Config {
            store: Self::store_config(&backing),
            services: DisputeServices::new(clock.clone(), setup.policy.clone()),
            bus: setup.bus.clone(),
            tokens: setup.tokens.clone(),
            idempotency: setup.idempotency,
            edge: setup.edge.clone(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            parts: Parts { projections: true, timer: false },
        })
        .await
        .expect("the service starts");
        Self {
            addr: app.addr(),
            clock,
            store: app.store().clone(),
            backing,
            setup,
            client: reqwest::Client::new(),
            app: Some(app),
        }
    }

    /// Stops the server and closes the store, then starts both again on the same data.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let backing = std::mem::replace(&mut self.backing, Backing::Sqlite(tempdir::TempDir::new()));
        Self::start(backing, self.clock.clone(), self.setup.clone()).await
    }

    async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("the service stops cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, role: Role, sub: &str) -> String {
        self.setup.tokens.issue(&Actor::new(role, sub), Duration::hours(1))
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Sends a command with optional extra headers; `body` None sends no body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, headers, body }
    }

    /// The dispute `id` as `role:sub` once its view reflects `sequence` (`X-Min-Sequence`).
    pub async fn view_at(&self, id: &str, role: Role, sub: &str, sequence: u64) -> Value {
        let token = self.token(role, sub);
        let min = sequence.to_string();
        let path = format!("/v1/disputes/{id}");
        let answer =
            self.send(reqwest::Method::GET, &path, Some(&token), None, &[("X-Min-Sequence", &min)]).await;
        assert_eq!(answer.status, 200, "reading {id} at {sequence} as {sub}: {}", answer.body);
        answer.body
    }

    /// `POST /v1/disputes/{order}/{command}` as `role:sub`.
    pub async fn command(&self, order: &str, command: &str, role: Role, sub: &str, body: Value) -> Answer {
        let token = self.token(role, sub);
        self.send(
            reqwest::Method::POST,
            &format!("/v1/disputes/{order}/{command}"),
            Some(&token),
            Some(&body),
            &[],
        )
        .await
    }

    /// Registers an order as the platform's order service.
    pub async fn register(&self, order: &Value) -> Answer {
        let id = order["order_id"].as_str().expect("order_id");
        let token = self.token(Role::System, "order-service");
        self.send(reqwest::Method::PUT, &format!("/v1/orders/{id}"), Some(&token), Some(order), &[]).await
    }

    pub async fn delivered(&self, order: &str, at: DateTime<Utc>) -> Answer {
        let token = self.token(Role::System, "logistics");
        self.send(
            reqwest::Method::POST,
            &format!("/v1/orders/{order}/delivered"),
            Some(&token),
            Some(&json!({ "delivered_at": at })),
            &[],
        )
        .await
    }

    pub async fn shipped(&self, order: &str, at: DateTime<Utc>) -> Answer {
        let token = self.token(Role::System, "logistics");
        self.send(
            reqwest::Method::POST,
            &format!("/v1/orders/{order}/shipped"),
            Some(&token),
            Some(&json!({ "shipped_at": at })),
            &[],
        )
        .await
    }

    // The story, one helper per step, with the order's usual parties.

    pub async fn request_refund(&self, order: &str, kind: &str, reason: &str, amount: i64) -> Answer {
        self.command(
            order,
            "request",
            Role::Buyer,
            BUYER,
            json!({
                "kind": kind, "reason": reason, "amount": cny(amount),
                "description": "the item is not what I paid for",
                "evidence": [evidence("photo")],
            }),
        )
        .await
    }

    pub async fn merchant_accept(&self, order: &str) -> Answer {
        self.command(order, "merchant-accept", Role::Merchant, MERCHANT, json!({})).await
    }

    pub async fn merchant_reject(&self, order: &str) -> Answer {
        self.command(
            order,
            "merchant-reject",
            Role::Merchant,
            MERCHANT,
            json!({ "reason_code": "item_used", "note": "the tags were removed" }),
        )
        .await
    }

    pub async fn merchant_offer(&self, order: &str, amount: i64) -> Answer {
        self.command(
            order,
            "merchant-offer",
            Role::Merchant,
            MERCHANT,
            json!({ "amount": cny(amount), "note": "half back" }),
        )
        .await
    }

    pub async fn escalate(&self, order: &str) -> Answer {
        self.command(order, "escalate", Role::Buyer, BUYER, json!({ "note": "please look at the photos" }))
            .await
    }

    pub async fn assign(&self, order: &str, arbitrator: &str) -> Answer {
        self.command(order, "assign", Role::Arbitrator, arbitrator, json!({ "arbitrator_id": arbitrator }))
            .await
    }

    pub async fn judge(&self, order: &str, arbitrator: &str, ruling: Value) -> Answer {
        self.command(order, "judge", Role::Arbitrator, arbitrator, ruling).await
    }

    pub async fn refund_paid(&self, order: &str, amount: i64) -> Answer {
        self.command(
            order,
            "refund-paid",
            Role::System,
            "payments",
            json!({ "amount": cny(amount), "channel": "alipay", "payment_ref": format!("pay-{order}-{amount}"), "paid_at": self.now() }),
        )
        .await
    }

    pub fn now(&self) -> DateTime<Utc> {
        use dispute_domain::Clock;
        self.clock.now()
    }
}

/// A connection of the test's own to a test app's database, to read or alter tables directly.
pub enum DbConnection {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// Runs the same sqlx expression on whichever connection a [`DbConnection`] holds:
/// `on_db!(&mut app.db().await, c => sqlx::query("…").execute(c).await)`.
#[macro_export]
macro_rules! on_db {
    ($connection:expr, $c:ident => $body:expr) => {
        match $connection {
            $crate::DbConnection::Postgres($c) => $body,
            $crate::DbConnection::Sqlite($c) => $body,
        }
    };
}

impl TestApp {
    /// A new connection to this app's database (not from the service's pool).
    pub async fn db(&self) -> DbConnection {
        use sqlx::Connection;
        match &self.backing {
            Backing::Postgres(db) => DbConnection::Postgres(connect(&db.url).await),
            Backing::Sqlite(dir) => {
                let options =
                    sqlx::sqlite::SqliteConnectOptions::new().filename(tempdir::join(dir, "disputes.db"));
                DbConnection::Sqlite(
                    sqlx::SqliteConnection::connect_with(&options).await.expect("the test database opens"),
                )
            }
        }
    }

    /// Runs `statements` (`;`-separated) on this app's database over a connection of its own.
    pub async fn sql(&self, statements: &str) {
        on_db!(&mut self.db().await, c => sqlx::raw_sql(statements).execute(c).await.map(|_| ()))
            .unwrap_or_else(|e| panic!("{statements}: {e}"));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop_token().cancel();
        }
    }
}

/// The first answer of `request` that is not 503 `not_ready`, asked again after each that is:
/// once the database answers again, each connection the pool held from before dies with one
/// statement. Every answer before it must be that 503.
pub async fn past_lost_connections<F: std::future::Future<Output = Answer>>(
    request: impl Fn() -> F,
) -> Answer {
    for _ in 0..40 {
        let answer = request().await;
        if answer.status != 503 {
            return answer;
        }
        answer.assert_problem(503, "not_ready");
    }
    panic!("the service never recovered its connections");
}

pub const BUYER: &str = "buyer-1";
pub const MERCHANT: &str = "merchant-1";

pub fn cny(amount_minor: i64) -> Value {
    json!({ "amount_minor": amount_minor, "currency": "CNY" })
}

pub fn evidence(kind: &str) -> Value {
    json!({ "kind": kind, "uri": format!("https://evidence.example/{kind}.jpg"), "sha256": "a".repeat(64) })
}

/// An order of 100.00 CNY paid by Alipay, shipped and delivered a day before the test's epoch.
pub fn order(id: &str) -> Value {
    json!({
        "order_id": id,
        "buyer_id": BUYER,
        "merchant_id": MERCHANT,
        "paid_amount": cny(10_000),
        "paid_at": epoch() - Duration::days(3),
        "category": "books",
        "payment_channel": "alipay",
        "shipped_at": epoch() - Duration::days(2),
        "delivered_at": epoch() - Duration::days(1),
    })
}

/// The path of the built `disputes` binary, next to the test executable's directory.
pub fn disputes_binary() -> PathBuf {
    built_binary("disputes")
}

/// The path of the built `disputes-bench` binary (the load generators).
pub fn bench_binary() -> PathBuf {
    built_binary("disputes-bench")
}

fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --bins`; scripts/test does)",
        path.display()
    );
    path
}

/// The NATS server the tests use (`TEST_NATS_URL`, default the local one).
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// A JetStream stream name no other test uses.
pub fn unique_stream() -> String {
    format!("T{}", uuid::Uuid::new_v4().simple()).to_uppercase()
}

/// A store on `db` with a test clock and the built-in policy, without the HTTP service.
pub async fn open_store(db: &TestDatabase) -> Arc<Store> {
    open_store_on(&db.url, Arc::new(ManualClock::new(epoch()))).await
}

/// A store of its own (its own pool) on the PostgreSQL database at `url`, on `clock`, with the
/// built-in policy: another instance of the service, as far as the database can tell.
pub async fn open_store_on(url: &str, clock: Arc<ManualClock>) -> Arc<Store> {
    let services = DisputeServices::new(clock, Arc::new(Policy::builtin()));
    Store::open(&StoreConfig::Postgres { url: url.to_string(), max_connections: 8 }, services)
        .await
        .expect("store opens")
}

/// Executes `action` as `role:sub` on `order`'s stream straight through the store (no HTTP);
/// panics if the rules refuse it. Returns the stream's sequence after it.
pub async fn execute(
    store: &Store,
    order: &str,
    role: Role,
    sub: &str,
    action: dispute_domain::Action,
) -> u64 {
    let command = dispute_domain::DisputeCommand::new(Actor::new(role, sub), action);
    store
        .execute(order, command, None, &dispute_store::CommandMetadata::default())
        .await
        .unwrap_or_else(|e| panic!("{order}: the command is refused: {e}"))
        .sequence
}

/// Registering [`order`]`(id)`.
pub fn registration(id: &str) -> dispute_domain::Action {
    dispute_domain::Action::RegisterOrder(serde_json::from_value(order(id)).expect("order facts"))
}

/// A buyer's refund-only request for `amount` (no evidence).
pub fn refund_request(amount: i64) -> dispute_domain::Action {
    let body = json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(amount), "description": "torn" });
    dispute_domain::Action::RequestRefund(serde_json::from_value(body).expect("a request"))
}

/// Deletes a JetStream stream a test made (ignored when NATS or the stream is gone already).
pub async fn delete_stream(urls: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(urls).await {
        let _ = async_nats::jetstream::new(client).delete_stream(stream).await;
    }
}

/// A nats-server with JetStream on a free loopback port, its storage in a directory of its
/// own (kept across restarts), killed on drop.
pub struct PrivateNats {
    pub port: u16,
    dir: tempdir::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    pub fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, dir: tempdir::TempDir::new(), child: None }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn start(&mut self) {
        let spawn = |program: &str| {
            std::process::Command::new(program)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
                .arg(self.dir.path())
                .spawn()
        };
        let child = spawn("nats-server")
            .or_else(|_| spawn("/usr/sbin/nats-server"))
            .expect("nats-server is installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the private nats-server did not start");
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Default for PrivateNats {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `probe` every 20 ms until it holds, failing the test after 20 s.
pub async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !probe() {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every message published on a stream's subjects, as CloudEvent ids in the order they
/// arrived, counted by a core NATS subscription: a message published twice arrives twice,
/// even though JetStream's de-duplication stores it once.
pub struct Deliveries {
    ids: Arc<std::sync::Mutex<Vec<String>>>,
    pub client: async_nats::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Deliveries {
    /// Subscribes before anything is published.
    pub async fn subscribe(url: &str, stream: &str) -> Self {
        use futures_util::StreamExt;
        let client = async_nats::connect(url).await.expect("NATS reachable");
        let mut subscriber =
            client.subscribe(format!("{}.events.>", stream.to_lowercase())).await.expect("subscribed");
        client.flush().await.expect("the subscription reaches the server");
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let ids = ids.clone();
            async move {
                while let Some(message) = subscriber.next().await {
                    let event: dispute_bus::CloudEvent =
                        serde_json::from_slice(&message.payload).expect("a CloudEvent");
                    ids.lock().expect("deliveries").push(event.id);
                }
            }
        });
        Self { ids, client, task }
    }

    pub fn seen(&self) -> Vec<String> {
        self.ids.lock().expect("deliveries").clone()
    }

    /// Waits until `count` messages arrived, then a little longer for any repeated one.
    pub async fn settled(&self, count: usize) -> Vec<String> {
        eventually(&format!("{count} messages are published"), || self.seen().len() >= count).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        self.seen()
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A relay running in this process until [`RunningRelay::stop`].
pub struct RunningRelay {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    /// Starts a relay of `store`'s log to `stream` on the NATS servers `urls`.
    pub async fn start(store: Arc<Store>, urls: &str, stream: &str) -> Self {
        let bus = dispute_bus::NatsBus::connect(urls, stream).await.expect("NATS client");
        Self::on(store, bus)
    }

    /// Starts a relay on a bus the test already holds.
    pub fn on(store: Arc<Store>, bus: dispute_bus::NatsBus) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(dispute_bus::Relay::new(store, bus).run(stop.clone()));
        Self { stop, task }
    }

    /// Ends the relay's task without its shutdown path, as a crash would.
    pub async fn crash(self) {
        self.task.abort();
        assert!(self.task.await.expect_err("the task is aborted").is_cancelled());
    }

    /// Stops the relay and waits (up to 10 s) until it has.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
            .await
            .expect("relay stops")
            .expect("relay task");
    }
}

/// A log follower's consumer that records what it was handed, as message ids, in the order it
/// was handed them.
#[derive(Clone, Default)]
pub struct Recording(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Recording {
    pub fn seen(&self) -> Vec<String> {
        self.0.lock().expect("recording").clone()
    }
}

impl dispute_store::Consumer for Recording {
    type Error = dispute_store::StoreError;

    async fn apply(&mut self, batch: &dispute_store::Batch) -> Result<(), Self::Error> {
        let ids = batch.iter().map(|e| dispute_bus::message_id(&e.order_id, e.sequence));
        self.0.lock().expect("recording").extend(ids);
        Ok(())
    }
}

//! The relay to NATS JetStream: every committed event, once, in commit order, as a CloudEvent;
//! commands never wait for NATS.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use dispute_bus::{CloudEvent, NatsBus, Relay};
use dispute_domain::{Action, Actor, DisputeCommand, Role};
use dispute_store::{CommandMetadata, Store};
use disputes_tests::*;
use serde_json::json;
use tokio::sync::watch;

async fn register(store: &Store, id: &str) -> u64 {
    let facts = serde_json::from_value(order(id)).expect("order facts");
    let command = DisputeCommand::new(Actor::new(Role::System, "orders"), Action::RegisterOrder(facts));
    store.execute(id, command, None, &CommandMetadata::default()).await.expect("registered").sequence
}

async fn request(store: &Store, id: &str) -> u64 {
    let body = json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(1_000), "description": "torn" });
    let command = DisputeCommand::new(
        Actor::new(Role::Buyer, BUYER),
        Action::RequestRefund(serde_json::from_value(body).unwrap()),
    );
    store.execute(id, command, None, &CommandMetadata::default()).await.expect("requested").sequence
}

struct RunningRelay {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    async fn start(store: Arc<Store>, urls: &str, stream: &str) -> Self {
        let bus = NatsBus::connect(urls, stream).await.expect("NATS client");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(Relay::new(store, bus).run(stopped));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).expect("relay listening");
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("relay stops")
            .expect("relay task");
    }
}

/// Waits until the stream holds `count` messages (failing after 20 s), then reads them all.
async fn published(urls: &str, stream: &str, count: u64) -> Vec<CloudEvent> {
    let client = async_nats::connect(urls).await.expect("NATS reachable");
    let js = jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match js.get_stream(stream).await {
            Ok(stream) => break stream,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "the relay never created the stream: {e}")
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let messages = stream.info().await.expect("stream info").state.messages;
        if messages >= count {
            assert_eq!(messages, count, "no message is published twice");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {messages} of {count} events were published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = Vec::new();
    for seq in 1..=count {
        let message = stream.get_raw_message(seq).await.expect("stored message");
        events.push(serde_json::from_slice(&message.payload).expect("a CloudEvent"));
    }
    events
}

async fn delete_stream(urls: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(urls).await {
        let _ = jetstream::new(client).delete_stream(stream).await;
    }
}

#[tokio::test]
async fn every_committed_event_is_published_once_in_order_as_a_cloudevent() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let (urls, stream) = (nats_url(), unique_stream());
    let relay = RunningRelay::start(store.clone(), &urls, &stream).await;
    for id in ["o-1", "o-2"] {
        register(&store, id).await;
    }
    request(&store, "o-1").await;
    let events = published(&urls, &stream, 3).await;
    let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["o-1:1", "o-2:1", "o-1:2"]);
    let first = serde_json::to_value(&events[2]).unwrap();
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["type"], "disputes.RefundRequested.v1");
    assert_eq!(first["subject"], "o-1");
    assert_eq!(first["sequence"], 2);
    assert_eq!(first["actor"], format!("buyer:{BUYER}"));
    assert_eq!(first["datacontenttype"], "application/json");
    assert_eq!(first["data"]["amount"], cny(1_000));
    assert!(first["time"].as_str().is_some_and(|t| t.starts_with("2026-06-01T08:00:00")), "{first}");
    relay.stop().await;
    // A restarted relay resumes from its checkpoint: nothing is published twice.
    let relay = RunningRelay::start(store.clone(), &urls, &stream).await;
    request(&store, "o-2").await;
    let events = published(&urls, &stream, 4).await;
    assert_eq!(events[3].id, "o-2:2");
    relay.stop().await;
    delete_stream(&urls, &stream).await;
}

#[tokio::test]
async fn an_event_whose_transaction_commits_late_is_published_first_and_nothing_is_skipped() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let (urls, stream) = (nats_url(), unique_stream());
    register(&store, "early").await;
    // A transaction takes its id, then stays open while later ones commit.
    let mut late = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&db.url).await.unwrap()
    };
    sqlx::query("BEGIN").execute(&mut late).await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('dispute', 'late', 1, 'OrderRegistered', '1', $1, '{}')",
    )
    .bind(json!({ "OrderRegistered": { "facts": order("late") } }))
    .execute(&mut late)
    .await
    .unwrap();
    let relay = RunningRelay::start(store.clone(), &urls, &stream).await;
    register(&store, "after-1").await;
    register(&store, "after-2").await;
    let before_commit = published(&urls, &stream, 1).await;
    assert_eq!(before_commit[0].id, "early:1");
    // While the older transaction is open, the newer commits wait behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = jetstream::new(async_nats::connect(&urls).await.unwrap());
    assert_eq!(client.get_stream(&stream).await.unwrap().info().await.unwrap().state.messages, 1);
    sqlx::query("COMMIT").execute(&mut late).await.unwrap();
    let events = published(&urls, &stream, 4).await;
    let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["early:1", "late:1", "after-1:1", "after-2:1"]);
    relay.stop().await;
    delete_stream(&urls, &stream).await;
}

/// A nats-server of the test's own on a free loopback port, killed on drop.
struct PrivateNats {
    port: u16,
    dir: tempdir::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    fn new() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, dir: tempdir::TempDir::new(), child: None }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path())
            .spawn()
            .or_else(|_| {
                Command::new("/usr/sbin/nats-server")
                    .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
                    .arg(self.dir.path())
                    .spawn()
            })
            .expect("nats-server is installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the private nats-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn commands_succeed_while_nats_is_down_and_publishing_catches_up_when_it_returns() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let mut nats = PrivateNats::new();
    let stream = "OUTAGE";
    // NATS is down from the start: the service starts and accepts commands anyway.
    let relay = RunningRelay::start(store.clone(), &nats.url(), stream).await;
    for id in ["a", "b", "c"] {
        register(&store, id).await;
    }
    nats.start().await;
    assert_eq!(published(&nats.url(), stream, 3).await.len(), 3);
    // Down again in the middle of the day.
    nats.stop();
    assert_eq!(request(&store, "a").await, 2);
    assert_eq!(request(&store, "b").await, 2);
    nats.start().await;
    let events = published(&nats.url(), stream, 5).await;
    let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a:1", "b:1", "c:1", "a:2", "b:2"]);
    relay.stop().await;
}

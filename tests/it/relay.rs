//! The relay to NATS JetStream: every committed event, once, in commit order, as a CloudEvent;
//! commands never wait for NATS.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use dispute_bus::{CloudEvent, NatsBus, message_id};
use dispute_domain::{Action, Actor, DisputeCommand, ManualClock, Role};
use dispute_store::{CommandMetadata, Cursor, Outcome, Store};
use dispute_views::{Views, run_nats};
use disputes_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

async fn register(store: &Store, id: &str) -> u64 {
    execute(store, id, Role::System, "orders", registration(id)).await
}

async fn request(store: &Store, id: &str) -> u64 {
    execute(store, id, Role::Buyer, BUYER, refund_request(1_000)).await
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

#[tokio::test]
async fn every_committed_event_is_published_once_in_order_as_a_cloudevent() {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let (urls, stream) = (nats_url(), unique_stream());
    let deliveries = Deliveries::subscribe(&urls, &stream).await;
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
    // Counted as delivered, not as stored (JetStream would drop a repeated message id).
    assert_eq!(deliveries.settled(4).await, ["o-1:1", "o-2:1", "o-1:2", "o-2:2"], "each published once");
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
    let deliveries = Deliveries::subscribe(&urls, &stream).await;
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
    assert_eq!(deliveries.settled(4).await, ids, "each published once, as delivered");
    delete_stream(&urls, &stream).await;
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

// Catching up after an outage, and handing the lease over.

/// Polls `probe` every 50 ms until it answers `Ok`, failing with `what` and the last answer
/// after `within`.
async fn eventually<T>(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(tokio::time::Instant::now() < deadline, "{what} within {within:?}; last: {last}")
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Executes `action` as `role:sub` on the stream of `id`, recording the answer as what the
/// dispute's view must show in the end.
async fn run(
    store: &Store,
    expected: &mut BTreeMap<String, Outcome>,
    id: &str,
    role: Role,
    sub: &str,
    action: Action,
) -> u64 {
    let command = DisputeCommand::new(Actor::new(role, sub), action);
    let outcome = store
        .execute(id, command, None, &CommandMetadata::default())
        .await
        .unwrap_or_else(|e| panic!("{id}: the command fails: {e}"));
    let sequence = outcome.sequence;
    expected.insert(id.to_string(), outcome);
    sequence
}

/// A command's body from its JSON.
fn body<T: serde::de::DeserializeOwned>(json: Value) -> T {
    serde_json::from_value(json).expect("a well-formed command")
}

fn registration(id: &str) -> Action {
    Action::RegisterOrder(body(order(id)))
}

fn refund_request(amount: i64) -> Action {
    Action::RequestRefund(body(
        json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(amount), "description": "torn" }),
    ))
}

/// The disputes' state as the views show it, compared with the commands' answers: `Ok` when
/// every view, timeline and the merchant's figures match.
async fn views_match(views: &Views, expected: &BTreeMap<String, Outcome>) -> Result<(), String> {
    let mut behind = Vec::new();
    for (id, want) in expected {
        let view = views.dispute(id).await.map_err(|e| e.to_string())?;
        let Some(view) = view else {
            behind.push(format!("{id}: no view"));
            continue;
        };
        let got = (view.sequence, view.status, view.round, &view.refunded_total, view.close_reason);
        let wanted = (want.sequence, want.status, want.round, &want.refunded_total, want.close_reason);
        if got != wanted {
            behind.push(format!("{id}: view {got:?}, answer {wanted:?}"));
            continue;
        }
        let timeline: Vec<u64> =
            views.timeline(id).await.map_err(|e| e.to_string())?.iter().map(|entry| entry.sequence).collect();
        let whole: Vec<u64> = (1..=want.sequence).collect();
        if timeline != whole {
            behind.push(format!("{id}: timeline {timeline:?}"));
        }
    }
    if !behind.is_empty() {
        return Err(behind.join("; "));
    }
    let disputes: Vec<&Outcome> = expected.values().filter(|o| o.round > 0).collect();
    let summary = views.merchant_summary(MERCHANT).await.map_err(|e| e.to_string())?;
    let mut by_status = BTreeMap::new();
    for outcome in &disputes {
        *by_status.entry(outcome.status.as_str().to_string()).or_insert(0u64) += 1;
    }
    let refunded: i64 = disputes.iter().map(|o| o.refunded_total.amount_minor).sum();
    let got = (
        summary.orders,
        summary.disputes,
        &summary.by_status,
        summary.refunded.iter().map(|m| m.amount_minor).sum::<i64>(),
    );
    let wanted = (expected.len() as u64, disputes.len() as u64, &by_status, refunded);
    if got != wanted {
        return Err(format!(
            "merchant summary (orders, disputes, by status, refunded) {got:?}, expected {wanted:?}"
        ));
    }
    let listed = views.buyer_disputes(BUYER, chrono::Utc::now()).await.map_err(|e| e.to_string())?.len();
    if listed != disputes.len() {
        return Err(format!("the buyer's list holds {listed} disputes, expected {}", disputes.len()));
    }
    Ok(())
}

/// Every event in the log with its cursor, in the order the relay publishes them: by
/// transaction, then position. Read from the table itself: `Store::events_after` holds events
/// back while any older transaction is still running anywhere on the PostgreSQL server.
async fn log(db: &TestDatabase) -> Vec<(String, Cursor)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("PostgreSQL reachable");
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT aggregate_id, sequence, xid::text::bigint, position FROM events ORDER BY xid, position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the log reads");
    rows.into_iter()
        .map(|(order, sequence, xid, position)| {
            (message_id(&order, sequence as u64), Cursor { xid, position })
        })
        .collect()
}

async fn commit_order(db: &TestDatabase) -> Vec<String> {
    log(db).await.into_iter().map(|(id, _)| id).collect()
}

struct RunningProjector {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningProjector {
    async fn start(store: Arc<Store>, urls: &str, stream: &str) -> Self {
        let bus = NatsBus::connect(urls, stream).await.expect("NATS client");
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_nats(store, bus, Vec::new(), stop.clone()));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("projector stops")
            .expect("projector task");
    }
}

#[tokio::test]
async fn views_fed_by_nats_catch_up_on_every_command_run_while_nats_was_down() {
    views_catch_up_after_an_outage(Duration::ZERO).await;
}

#[tokio::test]
async fn views_catch_up_after_an_outage_longer_than_a_publish_waits_for_its_ack() {
    // JetStream answers a publish within 5 s or the relay gives up on the batch and retries
    // from its checkpoint; messages the client buffered meanwhile reach the server on reconnect.
    views_catch_up_after_an_outage(Duration::from_secs(6)).await;
}

/// Commands before, during and after a NATS outage lasting at least `hold` after the last
/// command run while it is down; the views built from the stream end up reflecting each once.
async fn views_catch_up_after_an_outage(hold: Duration) {
    let db = TestDatabase::create().await;
    let store = open_store(&db).await;
    let views = Views::new(store.clone());
    let mut nats = PrivateNats::new();
    nats.start().await;
    let stream = unique_stream();
    let relay = RunningRelay::start(store.clone(), &nats.url(), &stream).await;
    let projector = RunningProjector::start(store.clone(), &nats.url(), &stream).await;
    let mut expected = BTreeMap::new();
    let s = &store;

    // NATS up: five orders, four disputes in various states.
    for id in ["p-1", "p-2", "p-3", "p-4", "p-5"] {
        run(s, &mut expected, id, Role::System, "orders", registration(id)).await;
    }
    for (id, amount) in [("p-1", 1_000), ("p-2", 2_000), ("p-3", 3_000), ("p-5", 500)] {
        run(s, &mut expected, id, Role::Buyer, BUYER, refund_request(amount)).await;
    }
    let accept = Action::MerchantAccept(body(json!({})));
    run(s, &mut expected, "p-1", Role::Merchant, MERCHANT, accept).await;
    let reject = json!({ "reason_code": "item_used", "note": "worn" });
    run(s, &mut expected, "p-2", Role::Merchant, MERCHANT, Action::MerchantReject(body(reject))).await;
    eventually("the views reflect the commands run while NATS is up", Duration::from_secs(20), async || {
        views_match(&views, &expected).await
    })
    .await;

    // NATS down: every command still succeeds.
    nats.stop();
    let paid =
        json!({ "amount": cny(1_000), "channel": "alipay", "payment_ref": "pay-p-1", "paid_at": epoch() });
    run(s, &mut expected, "p-1", Role::System, "payments", Action::RecordRefundPaid(body(paid))).await;
    let escalate = json!({ "note": "look at the photos" });
    run(s, &mut expected, "p-2", Role::Buyer, BUYER, Action::Escalate(body(escalate))).await;
    let assign = json!({ "arbitrator_id": "arb-1" });
    run(s, &mut expected, "p-2", Role::Arbitrator, "arb-1", Action::Assign(body(assign))).await;
    let ruling = json!({ "outcome": "refund_full", "return_required": false, "rationale": "the photos show the tear" });
    run(s, &mut expected, "p-2", Role::Arbitrator, "arb-1", Action::Judge(body(ruling))).await;
    let offer = json!({ "amount": cny(1_500), "note": "half back" });
    run(s, &mut expected, "p-3", Role::Merchant, MERCHANT, Action::MerchantOffer(body(offer))).await;
    run(s, &mut expected, "p-3", Role::Buyer, BUYER, Action::AcceptOffer).await;
    run(s, &mut expected, "p-4", Role::Buyer, BUYER, refund_request(4_000)).await;
    let withdraw = json!({ "note": "found it" });
    run(s, &mut expected, "p-5", Role::Buyer, BUYER, Action::Withdraw(body(withdraw))).await;
    for id in ["p-6", "p-7"] {
        run(s, &mut expected, id, Role::System, "orders", registration(id)).await;
    }
    run(s, &mut expected, "p-6", Role::Buyer, BUYER, refund_request(2_500)).await;
    // The views are fed by NATS alone: nothing of the outage has reached them.
    assert!(views.dispute("p-6").await.expect("views read").is_none(), "p-6 was projected without NATS");
    assert_eq!(views.dispute("p-1").await.expect("views read").expect("p-1's view").sequence, 3);

    tokio::time::sleep(hold).await;
    assert!(views.dispute("p-6").await.expect("views read").is_none(), "p-6 was projected without NATS");

    // NATS back on the same port and store: the views catch up on every command, once.
    nats.start().await;
    eventually("the views reflect every command after NATS returns", Duration::from_secs(45), async || {
        views_match(&views, &expected).await
    })
    .await;
    let events = commit_order(&db).await;
    assert_eq!(events.len() as u64, expected.values().map(|o| o.sequence).sum::<u64>());
    let published = published(&nats.url(), &stream, events.len() as u64).await;
    let ids: Vec<String> = published.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, events, "the stream holds every event once, in commit order");
    projector.stop().await;
    relay.stop().await;
}

/// A store on `db` whose sessions carry `application_name`, so that the lease holder is known.
async fn named_store(db: &TestDatabase, application_name: &str) -> Arc<Store> {
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}application_name={application_name}", db.url);
    open_store_on(&url, Arc::new(ManualClock::new(epoch()))).await
}

/// The `application_name` of every session of this database holding the relay's lease.
async fn lease_holders(pool: &sqlx::PgPool, stream: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid = ($1 >> 32)::oid AND l.objid = ($1 & 4294967295)::oid",
    )
    .bind(dispute_bus::lease_key(stream))
    .fetch_all(pool)
    .await
    .expect("pg_locks reads")
}

async fn the_lease_is_held_by(pool: &sqlx::PgPool, stream: &str, holder: &str) {
    eventually(&format!("{holder} holds the relay's lease"), Duration::from_secs(15), async || {
        let holders = lease_holders(pool, stream).await;
        if holders == [holder] { Ok(()) } else { Err(format!("holders {holders:?}")) }
    })
    .await;
}

/// A plain NATS subscriber speaking the protocol itself: it sees every message published on
/// its subject, including those JetStream drops as duplicates of a message id it has stored.
struct Watcher {
    ids: Arc<std::sync::Mutex<Vec<String>>>,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    pongs: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn subscribe(port: u16, subject: &str) -> Self {
        let (read, mut write) =
            TcpStream::connect(("127.0.0.1", port)).await.expect("NATS reachable").into_split();
        let mut reader = BufReader::new(read);
        let mut info = String::new();
        reader.read_line(&mut info).await.expect("the server greets");
        assert!(info.starts_with("INFO"), "unexpected greeting {info:?}");
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}}\r\nSUB {subject} 1\r\n"
        );
        write.write_all(hello.as_bytes()).await.expect("subscribe");
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Arc::new(tokio::sync::Mutex::new(write));
        let (pong, pongs) = watch::channel(0u64);
        let task = tokio::spawn(Self::read(reader, ids.clone(), writer.clone(), pong));
        let mut watcher = Self { ids, writer, pongs, task };
        watcher.sync().await;
        watcher
    }

    async fn read(
        mut reader: BufReader<OwnedReadHalf>,
        ids: Arc<std::sync::Mutex<Vec<String>>>,
        writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
        pong: watch::Sender<u64>,
    ) {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("PING") => writer.lock().await.write_all(b"PONG\r\n").await.expect("answer PING"),
                Some("PONG") => pong.send_modify(|n| *n += 1),
                Some(verb @ ("MSG" | "HMSG")) => {
                    let number = |back: usize| words[words.len() - back].parse::<usize>().expect("a length");
                    let (headers, total) =
                        if verb == "HMSG" { (number(2), number(1)) } else { (0, number(1)) };
                    let mut message = vec![0; total + 2];
                    reader.read_exact(&mut message).await.expect("the message");
                    let event: CloudEvent =
                        serde_json::from_slice(&message[headers..total]).expect("a CloudEvent");
                    ids.lock().expect("ids").push(event.id);
                }
                _ => {}
            }
        }
    }

    /// Returns once the server has sent everything it routed to this subscriber before now.
    async fn sync(&mut self) {
        let before = *self.pongs.borrow();
        self.writer.lock().await.write_all(b"PING\r\n").await.expect("PING");
        tokio::time::timeout(Duration::from_secs(10), self.pongs.wait_for(|n| *n > before))
            .await
            .expect("the server answers PING")
            .expect("the watcher is reading");
    }

    /// The message ids of every publish seen so far, in arrival order.
    async fn seen(&mut self) -> Vec<String> {
        self.sync().await;
        self.ids.lock().expect("ids").clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the stream holds the whole log, and checks that every event was published
/// exactly once, in commit order: in the stream, and on the wire, where a second publish of a
/// message id would show even though JetStream drops it.
async fn published_once_in_commit_order(
    db: &TestDatabase,
    nats: &PrivateNats,
    stream: &str,
    watcher: &mut Watcher,
) {
    let events = commit_order(db).await;
    let stored: Vec<String> =
        published(&nats.url(), stream, events.len() as u64).await.into_iter().map(|e| e.id).collect();
    assert_eq!(stored, events, "the stream holds every event once, in commit order");
    assert_eq!(watcher.seen().await, events, "every event was published once, in commit order");
}

#[tokio::test]
async fn two_relays_share_one_lease_and_hand_over_without_losing_or_repeating_an_event() {
    let db = TestDatabase::create().await;
    let store_a = named_store(&db, "relay-a").await;
    let store_b = named_store(&db, "relay-b").await;
    let locks = sqlx::PgPool::connect(&db.url).await.expect("PostgreSQL reachable");
    let mut nats = PrivateNats::new();
    nats.start().await;
    let stream = unique_stream();
    let mut watcher = Watcher::subscribe(nats.port, &format!("{}.events.>", stream.to_lowercase())).await;

    let relay_a = RunningRelay::start(store_a.clone(), &nats.url(), &stream).await;
    for id in ["h-1", "h-2", "h-3"] {
        register(&store_a, id).await;
    }
    published_once_in_commit_order(&db, &nats, &stream, &mut watcher).await;
    the_lease_is_held_by(&locks, &stream, "relay-a").await;

    // A second relay waits for the lease: what either store commits is published by the first.
    let relay_b = RunningRelay::start(store_b.clone(), &nats.url(), &stream).await;
    register(&store_b, "h-4").await;
    request(&store_b, "h-1").await;
    request(&store_a, "h-2").await;
    published_once_in_commit_order(&db, &nats, &stream, &mut watcher).await;
    assert_eq!(lease_holders(&locks, &stream).await, ["relay-a"]);

    // The first stops: the second takes over from the shared checkpoint.
    relay_a.stop().await;
    the_lease_is_held_by(&locks, &stream, "relay-b").await;
    request(&store_a, "h-3").await;
    register(&store_a, "h-5").await;
    request(&store_b, "h-4").await;
    published_once_in_commit_order(&db, &nats, &stream, &mut watcher).await;

    // The second crashes while a relay waits on the other side: the lease goes with its
    // connection and the waiting relay takes over.
    let relay_a = RunningRelay::start(store_a.clone(), &nats.url(), &stream).await;
    let (_, last) = log(&db).await.pop().expect("events in the log");
    let checkpoint = dispute_bus::checkpoint_name(&stream);
    eventually("the relay saves its checkpoint", Duration::from_secs(20), async || {
        let saved = store_b.checkpoint(&checkpoint).await.map_err(|e| e.to_string())?;
        if saved == last { Ok(()) } else { Err(format!("checkpoint {saved:?}, last event {last:?}")) }
    })
    .await;
    assert_eq!(lease_holders(&locks, &stream).await, ["relay-b"]);
    relay_b.crash().await;
    the_lease_is_held_by(&locks, &stream, "relay-a").await;
    request(&store_b, "h-5").await;
    register(&store_b, "h-6").await;
    published_once_in_commit_order(&db, &nats, &stream, &mut watcher).await;
    relay_a.stop().await;
    assert_eq!(commit_order(&db).await.len(), 11);
}

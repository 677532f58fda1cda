//! `disputes-bench`: a load generator that drives whole dispute lifecycles over HTTP at a
//! given concurrency and reports command rate, command latency and projection lag
//! (command answered → visible in the dispute's view). Every command carries an
//! `Idempotency-Key` of its own unless `--no-idempotency-key`.
//!
//! Each lifecycle driven at once has one HTTP/1.1 connection of its own, kept open, and sends
//! its requests on it one after another: the load generator shares the machine with what it
//! measures, so it does no more per request than a client must.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use clap::Args;
use dispute_api::TokenKeys;
use dispute_domain::{Actor, Role, parse_duration};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use disputes::App;
use disputes::config::Settings;

#[derive(Debug, Args)]
pub struct BenchOptions {
    /// A running service to load (its DISPUTES_JWT_SECRET must be this one's). Without it,
    /// the service is started in this process on the configured store and bus.
    #[arg(long)]
    target: Option<String>,
    /// How long to run, e.g. `20s`.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: chrono::Duration,
    /// Lifecycles driven at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Hold the load to this many commands per second in all (spread evenly over the
    /// lifecycles), instead of as fast as the service answers.
    #[arg(long, value_name = "COMMANDS_PER_S")]
    rate: Option<f64>,
    /// Measure projection lag after every Nth lifecycle (0: never).
    #[arg(long, default_value_t = 1)]
    lag_every: u64,
    /// Send commands without an `Idempotency-Key`. By default every command carries a fresh
    /// one, as a payment client's do, so the service keeps an idempotency record per command.
    #[arg(long)]
    no_idempotency_key: bool,
    /// End with one JSON line of figures on stdout.
    #[arg(long)]
    json: bool,
    /// Instead of a run: insert N synthetic settled disputes (four chained events each)
    /// straight into the configured store, which must hold no events, then exit. For
    /// measuring the service over a large store (`scripts/bench --memory`).
    #[arg(long, value_name = "N", conflicts_with_all = ["target", "deadlines", "audit"])]
    preload: Option<u64>,
    /// Instead of lifecycles over HTTP: N disputes whose merchant deadlines are all pending at
    /// once, and how late the deadline timer fires them.
    #[arg(long, value_name = "N", conflicts_with_all = ["target", "audit"])]
    deadlines: Option<usize>,
    /// Instead of a run: load N synthetic chained events (four per order) into the configured
    /// store, which must hold no events, then time `audit verify` and a replay of every stream.
    #[arg(long, value_name = "N", conflicts_with = "target")]
    audit: Option<u64>,
}

/// What a command's answer says that the load needs.
#[derive(serde::Deserialize)]
struct Answered {
    sequence: u64,
}

#[derive(Default)]
struct Samples {
    /// Command latencies, microseconds.
    commands: Vec<u64>,
    /// Projection lags, microseconds.
    lags: Vec<u64>,
    errors: u64,
}

struct Load {
    /// The service's address (`host:port`).
    authority: String,
    system: String,
    buyer: String,
    merchant: String,
    arbitrator: String,
    run: String,
    /// Whether each command carries an `Idempotency-Key` of its own.
    idempotency_keys: bool,
    done: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(settings: Settings, options: BenchOptions) -> anyhow::Result<()> {
    if let Some(orders) = options.preload {
        return preload(settings, orders).await;
    }
    if let Some(count) = options.deadlines {
        return crate::deadlines::run(settings, count, options.json).await;
    }
    if let Some(events) = options.audit {
        let store = settings.open_store().await?;
        let result = crate::audit::run(&store, events, options.json).await;
        store.close().await;
        return result;
    }
    // Bad flags are refused before the service starts on the store.
    let duration = options.duration.to_std()?;
    if options.rate.is_some_and(|rate| !(rate > 0.0 && rate.is_finite())) {
        anyhow::bail!("--rate must be a positive number of commands per second");
    }
    // Against a running service, sign with the secret it uses; never make one up.
    let secret = match options.target {
        Some(_) => settings.minting_secret()?,
        None => settings.jwt_secret()?,
    };
    let (authority, app) = match &options.target {
        Some(target) => (authority(target)?, None),
        None => {
            let config = settings.app_config("127.0.0.1:0".parse().expect("an address"))?;
            let app = App::start(config).await?;
            (app.addr().to_string(), Some(app))
        }
    };
    let keys = TokenKeys::new(&secret);
    let token = |role, sub: &str| keys.issue(&Actor::new(role, sub), chrono::Duration::hours(2));
    let load = Arc::new(Load {
        authority,
        system: token(Role::System, "bench"),
        buyer: token(Role::Buyer, "bench-buyer"),
        merchant: token(Role::Merchant, "bench-merchant"),
        arbitrator: token(Role::Arbitrator, "bench-arbitrator"),
        run: format!("{:x}", Utc::now().timestamp_millis()),
        idempotency_keys: !options.no_idempotency_key,
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let started = Instant::now();
    let until = started + duration;
    // Each lifecycle sends its commands on a schedule of its own; together they make the rate.
    let interval = options.rate.map(|rate| Duration::from_secs_f64(options.concurrency as f64 / rate));
    let workers: Vec<_> = (0..options.concurrency)
        .map(|worker| {
            let pace = interval.map(|every| Pace::new(started, every, worker, options.concurrency));
            tokio::spawn(drive(load.clone(), worker, until, options.lag_every, pace))
        })
        .collect();
    let progress = tokio::spawn(report_progress(load.clone(), started, duration));
    let mut samples = Samples::default();
    for worker in workers {
        let s = worker.await?;
        samples.commands.extend(s.commands);
        samples.lags.extend(s.lags);
        samples.errors += s.errors;
    }
    progress.abort();
    eprintln!();
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(app) = app {
        app.stop().await?;
    }
    samples.commands.sort_unstable();
    samples.lags.sort_unstable();
    let ms = |v: &[u64], q: f64| percentile(v, q).map(|us| (us as f64 / 1000.0 * 100.0).round() / 100.0);
    let figures = json!({
        "commands_per_s": (samples.commands.len() as f64 / elapsed).round(),
        "command_p50_ms": ms(&samples.commands, 0.50),
        "command_p99_ms": ms(&samples.commands, 0.99),
        "command_p999_ms": ms(&samples.commands, 0.999),
        "lag_p50_ms": ms(&samples.lags, 0.50),
        "lag_p99_ms": ms(&samples.lags, 0.99),
        "errors": samples.errors,
        "commands": samples.commands.len(),
        "lag_samples": samples.lags.len(),
        "concurrency": options.concurrency,
        "rate": options.rate,
        "idempotency_keys": load.idempotency_keys,
        "seconds": (elapsed * 10.0).round() / 10.0,
    });
    eprintln!(
        "{} commands in {:.1}s: {} commands/s; command p50 {} ms, p99 {} ms, p999 {} ms; lag p50 {} ms, p99 {} ms; {} errors",
        samples.commands.len(),
        elapsed,
        figures["commands_per_s"],
        figures["command_p50_ms"],
        figures["command_p99_ms"],
        figures["command_p999_ms"],
        figures["lag_p50_ms"],
        figures["lag_p99_ms"],
        samples.errors
    );
    if options.json {
        println!("{figures}");
    }
    Ok(())
}

/// `--preload N`: the synthetic lifecycles of the audit benchmark, without the audit.
async fn preload(settings: Settings, orders: u64) -> anyhow::Result<()> {
    let store = settings.open_store().await?;
    let started = Instant::now();
    let mut shown = started;
    let events = dispute_audit::load_synthetic(&store, orders, |done, total| {
        if shown.elapsed() >= Duration::from_secs(1) || done == total {
            shown = Instant::now();
            eprint!("\rpreload: {done}/{total} events");
        }
    })
    .await?;
    store.close().await;
    eprintln!("\rpreloaded {orders} disputes ({events} events) in {:.1?}", started.elapsed());
    Ok(())
}

pub(crate) fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

async fn report_progress(load: Arc<Load>, started: Instant, duration: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        let done = load.done.load(Ordering::Relaxed);
        eprint!(
            "\r{:>4.0}s / {:.0}s  {} commands  {:.0}/s  {} errors   ",
            elapsed,
            duration.as_secs_f64(),
            done,
            done as f64 / elapsed,
            load.failed.load(Ordering::Relaxed)
        );
    }
}

/// When a worker held to a rate sends its next command: every `every`, its first slot offset
/// from the other workers' so that the commands spread evenly. A worker that falls behind
/// sends at once; its latency then counts from the send, not from the missed slot.
struct Pace {
    next: Instant,
    every: Duration,
}

impl Pace {
    fn new(started: Instant, every: Duration, worker: usize, workers: usize) -> Self {
        Self { next: started + every.mul_f64(worker as f64 / workers as f64), every }
    }

    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next.into()).await;
        self.next += self.every;
    }
}

/// One worker: whole lifecycles, one after another, until `until`.
async fn drive(
    load: Arc<Load>,
    worker: usize,
    until: Instant,
    lag_every: u64,
    mut pace: Option<Pace>,
) -> Samples {
    let mut samples = Samples::default();
    let mut connection = Connection { authority: &load.authority, sender: None };
    let mut n = 0u64;
    while Instant::now() < until {
        let id = format!("bench-{}-{worker}-{n}", load.run);
        match lifecycle(&load, &mut connection, &id, n, &mut samples, pace.as_mut()).await {
            Ok(sequence) if lag_every > 0 && n.is_multiple_of(lag_every) => {
                let started = Instant::now();
                let request = connection
                    .request(Method::GET, &format!("/v1/disputes/{id}"), &load.buyer)
                    .header("X-Min-Sequence", sequence.to_string());
                let seen =
                    connection.send(request, Bytes::new()).await.map(|(status, _)| status.is_success());
                match seen {
                    Ok(true) => samples.lags.push(started.elapsed().as_micros() as u64),
                    _ => samples.errors += 1,
                }
            }
            Ok(_) => {}
            Err(e) => {
                samples.errors += 1;
                load.failed.fetch_add(1, Ordering::Relaxed);
                if samples.errors <= 3 {
                    eprintln!("\nbench: {id}: {e}");
                }
            }
        }
        n += 1;
    }
    samples
}

/// Register, request, then one of three paths to a paid refund. Returns the last sequence.
async fn lifecycle(
    load: &Load,
    connection: &mut Connection<'_>,
    id: &str,
    n: u64,
    samples: &mut Samples,
    mut pace: Option<&mut Pace>,
) -> Result<u64, String> {
    let now = Utc::now();
    let amount = |minor: i64| json!({ "amount_minor": minor, "currency": "CNY" });
    let order = json!({
        "order_id": id, "buyer_id": "bench-buyer", "merchant_id": "bench-merchant",
        "paid_amount": amount(10_000), "paid_at": now - chrono::Duration::days(3),
        "category": "books", "payment_channel": "alipay",
        "shipped_at": now - chrono::Duration::days(2), "delivered_at": now - chrono::Duration::days(1),
    });
    let evidence =
        json!([{ "kind": "photo", "uri": "https://evidence.example/1.jpg", "sha256": "ab".repeat(32) }]);
    let mut steps: Vec<(Method, &str, &str, Value)> = vec![
        (Method::PUT, "", &load.system, order),
        (
            Method::POST,
            "request",
            &load.buyer,
            json!({
                "kind": "refund_only", "reason": "quality_issue", "amount": amount(6_000),
                "description": "the seams came apart", "evidence": evidence,
            }),
        ),
    ];
    let paid = |minor: i64| json!({ "amount": amount(minor), "channel": "alipay", "payment_ref": format!("pay-{id}") });
    match n % 3 {
        0 => {
            steps.push((Method::POST, "merchant-accept", &load.merchant, json!({})));
            steps.push((Method::POST, "refund-paid", &load.system, paid(6_000)));
        }
        1 => {
            steps.push((
                Method::POST,
                "merchant-offer",
                &load.merchant,
                json!({ "amount": amount(3_000), "note": "half" }),
            ));
            steps.push((Method::POST, "accept-offer", &load.buyer, json!({})));
            steps.push((Method::POST, "refund-paid", &load.system, paid(3_000)));
        }
        _ => {
            steps.push((
                Method::POST,
                "merchant-reject",
                &load.merchant,
                json!({ "reason_code": "item_used", "note": "worn" }),
            ));
            steps.push((Method::POST, "escalate", &load.buyer, json!({ "note": "please review" })));
            steps.push((
                Method::POST,
                "assign",
                &load.arbitrator,
                json!({ "arbitrator_id": "bench-arbitrator" }),
            ));
            steps.push((Method::POST, "judge", &load.arbitrator, json!({
                "outcome": "refund_partial", "amount": amount(4_000), "return_required": false, "rationale": "shared fault",
            })));
            steps.push((Method::POST, "refund-paid", &load.system, paid(4_000)));
        }
    }
    let mut sequence = 0;
    for (step, (method, command, token, mut body)) in steps.into_iter().enumerate() {
        // A payment is dated after its approval, which the steps before it made.
        if command == "refund-paid" {
            body["paid_at"] = json!(Utc::now());
        }
        let path = if command.is_empty() {
            format!("/v1/orders/{id}")
        } else {
            format!("/v1/disputes/{id}/{command}")
        };
        if let Some(pace) = pace.as_deref_mut() {
            pace.wait().await;
        }
        let mut request = connection.request(method, &path, token).header(CONTENT_TYPE, "application/json");
        if load.idempotency_keys {
            // The order id is unique per run, so this is unique per command.
            request = request.header("Idempotency-Key", format!("{id}-{step}"));
        }
        let body = serde_json::to_vec(&body).map_err(|e| format!("{command}: {e}"))?;
        let started = Instant::now();
        let (status, answer) =
            connection.send(request, Bytes::from(body)).await.map_err(|e| format!("{command}: {e}"))?;
        samples.commands.push(started.elapsed().as_micros() as u64);
        load.done.fetch_add(1, Ordering::Relaxed);
        if !status.is_success() {
            return Err(format!("{command}: {status} {}", String::from_utf8_lossy(&answer)));
        }
        // Only the sequence is read: the load generator shares the machine with the service.
        sequence =
            serde_json::from_slice::<Answered>(&answer).map_err(|e| format!("{command}: {e}"))?.sequence;
    }
    Ok(sequence)
}

/// The `host:port` of a `--target` URL: plain `http://`, as the load generator speaks.
fn authority(target: &str) -> anyhow::Result<String> {
    let uri: Uri = target.parse()?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) if matches!(uri.path(), "" | "/") => Ok(authority.to_string()),
        _ => anyhow::bail!("--target must be an http:// address with no path, e.g. http://127.0.0.1:8080"),
    }
}

/// A worker's HTTP/1.1 connection to the service, opened at its first request and again after
/// a failure.
struct Connection<'a> {
    authority: &'a str,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection<'_> {
    /// A request to `path` with `token` as its bearer token.
    fn request(&self, method: Method, path: &str, token: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"))
    }

    /// Sends `request` with `body` and reads the whole answer.
    async fn send(
        &mut self,
        request: hyper::http::request::Builder,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let answered = self.exchange(request).await;
        if answered.is_err() {
            // A connection that failed is not used again.
            self.sender = None;
        }
        answered
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(open(self.authority).await?),
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    }
}

async fn open(authority: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("{authority}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "load connection ended");
        }
    });
    Ok(sender)
}

//! `GET /metrics`: after one dispute's whole life (with a replayed key, a refusal, a stale
//! `If-Match`, the relay and the JetStream-fed views, a deadline fired and one dropped as
//! stale), every metric the service exports has moved; the Grafana dashboard and the
//! documentation's table name exactly what it exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use chrono::Duration;
use dispute_domain::Role;
use dispute_timer::{DeadlineTimer, Fired};
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::timer::tracked_all;

/// One sample of the text exposition format: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: the samples, and each family's type from its `# TYPE` line.
#[derive(Debug, Default)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut scrape = Scrape::default();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.split_whitespace().collect();
                if let ["TYPE", name, kind] = words[..] {
                    scrape.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            scrape.samples.push(parse_sample(line).unwrap_or_else(|| panic!("not a sample line: {line}")));
        }
        scrape
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the matching samples' values (0 when none match).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    /// Every sample name (a histogram's `_bucket`, `_sum` and `_count` included).
    fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }
}

/// `name{a="x",b="y"} 1.5` or `name 1.5`; label values may hold escaped `\"`, `\\`, `\n`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut consumed = None;
        loop {
            // A label name up to `=`, or the closing brace.
            let (start, c) = *chars.peek()?;
            if c == '}' {
                consumed = Some(start + 1);
                break;
            }
            if c == ',' {
                chars.next();
                continue;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].to_string();
            while chars.peek()?.0 <= eq {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
            if consumed.is_some() {
                break;
            }
        }
        rest = &inner[consumed?..];
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

#[test]
fn the_parser_reads_labels_values_and_escapes() {
    let sample = parse_sample(r#"a_total{route="/v1/x/{id}",note="say \"hi\", \\ ok"} 3"#).expect("a sample");
    assert_eq!(sample.name, "a_total");
    assert_eq!(sample.labels["route"], "/v1/x/{id}");
    assert_eq!(sample.labels["note"], r#"say "hi", \ ok"#);
    assert_eq!(sample.value, 3.0);
    let bare = parse_sample("b_seconds_bucket{le=\"+Inf\"} 1.5e3").expect("a sample");
    assert_eq!((bare.labels["le"].as_str(), bare.value), ("+Inf", 1500.0));
    assert_eq!(parse_sample("c 0.25").expect("a sample").value, 0.25);
    assert!(parse_sample("d{x=\"unterminated} 1").is_none());
}

/// Whether this test has the process's recorder to itself (nextest runs each test in a process
/// of its own; `cargo test` runs them side by side, and they all count into one recorder).
fn alone() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test")
}

/// `have` is what this test caused (`want`) when it runs alone, at least that otherwise.
#[track_caller]
fn counted(have: f64, want: f64, what: &str) {
    if alone() {
        assert_eq!(have, want, "{what}");
    } else {
        assert!(have >= want, "{what}: {have} < {want}");
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let response = reqwest::get(app.url("/metrics")).await.expect("the service answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    Scrape::parse(&response.text().await.expect("a body"))
}

/// Scrapes until `probe` holds, failing after 20 s.
async fn scrape_until(app: &TestApp, what: &str, probe: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let scraped = scrape(app).await;
        if probe(&scraped) {
            return scraped;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// Every metric name a PromQL expression of the dashboard reads.
fn dashboard_metric_names(dashboard: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, exprs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "query", Value::String(expr)) => exprs.push(expr.clone()),
                        _ => walk(value, exprs),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, exprs)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has PromQL expressions");
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("disputes_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

/// The metric names of the documentation's table (`docs/operations.md`, section "Metrics").
fn documented_metric_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let text = std::fs::read_to_string(path).expect("docs/operations.md reads");
    let section = text.split("\n## Metrics").nth(1).expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `disputes_"))
        .map(|rest| format!("disputes_{}", &rest[..rest.find('`').expect("a closing backtick")]))
        .collect()
}

#[tokio::test]
async fn every_metric_moves_through_a_lifecycle_and_the_dashboard_reads_only_exported_ones() {
    let stream = unique_stream();
    let app = TestApp::postgres_with(Setup {
        bus: Some(disputes::BusConfig { urls: nats_url(), stream: stream.clone() }),
        ..Setup::default()
    })
    .await;
    let timer = DeadlineTimer::new(app.store.clone());

    // One whole life, the escalation sent twice with one key.
    app.register(&order("m-1")).await.assert_ok();
    app.request_refund("m-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    app.merchant_reject("m-1").await.assert_ok();
    let buyer = app.token(Role::Buyer, BUYER);
    let escalation = json!({ "note": "please look at the photos" });
    for _ in 0..2 {
        let answer = app
            .send(
                Method::POST,
                "/v1/disputes/m-1/escalate",
                Some(&buyer),
                Some(&escalation),
                &[("idempotency-key", "escalate-m-1")],
            )
            .await;
        assert_eq!(answer.assert_ok().status_text(), "escalated");
    }
    app.assign("m-1", "arb-1").await.assert_ok();
    let ruling = json!({ "outcome": "refund_partial", "amount": cny(3_000), "return_required": false, "rationale": "both at fault" });
    app.judge("m-1", "arb-1", ruling).await.assert_ok();
    assert_eq!(app.refund_paid("m-1", 3_000).await.assert_ok().status_text(), "refunded");
    // A refusal by the rules, and a stale `If-Match`.
    let refused = app.merchant_reject("m-1").await;
    assert!(refused.status >= 400, "a refunded dispute is not rejected: {:?}", refused.body);
    let refusal_code = refused.code().to_string();
    let merchant = app.token(Role::Merchant, MERCHANT);
    let evidence_body = json!({ "evidence": [evidence("receipt")] });
    app.send(
        Method::POST,
        "/v1/disputes/m-1/evidence",
        Some(&merchant),
        Some(&evidence_body),
        &[("if-match", "1")],
    )
    .await
    .assert_problem(409, "concurrent_modification");
    app.send(Method::GET, "/nowhere", None, None, &[]).await.assert_problem(404, "not_found");

    // Two merchant deadlines: one answered between tracking and firing (stale), one missed.
    for id in ["m-2", "m-3"] {
        app.register(&order(id)).await.assert_ok();
        app.request_refund(id, "refund_only", "quality_issue", 5_000).await.assert_ok();
    }
    tracked_all(&app, &timer).await;
    app.merchant_reject("m-2").await.assert_ok();
    app.advance(Duration::hours(48) + Duration::minutes(1));
    assert_eq!(timer.fire_due().await.expect("firing runs"), Fired { fired: 1, stale: 1, retried: 0 });
    tracked_all(&app, &timer).await;
    timer.next_due_ms().await.expect("the next deadline reads");

    // Every event reaches JetStream and both views.
    let mut events = 0;
    for id in ["m-1", "m-2", "m-3"] {
        events += app.store.stream_events(id, 1, u64::MAX >> 1).await.expect("the stream reads").len();
    }
    let events = events as f64;
    // A scrape counts in the next one, so at least two are made.
    let scraped = scrape_until(&app, "every event is published and projected, and a scrape counted", |s| {
        s.sum("disputes_http_requests_total", &[("route", "/metrics"), ("status", "200")]) >= 1.0
            && s.sum("disputes_relay_lag_seconds_count", &[]) >= events
            && s.sum("disputes_projection_lag_seconds_count", &[("view", "disputes")]) >= events
            && s.sum("disputes_projection_lag_seconds_count", &[("view", "timeline")]) >= events
    })
    .await;

    // HTTP: by route template and status, never by path.
    let escalate = [("route", "/v1/disputes/{id}/escalate"), ("status", "200")];
    assert!(scraped.sum("disputes_http_requests_total", &escalate) >= 2.0);
    assert!(scraped.sum("disputes_http_request_duration_seconds_count", &escalate) >= 2.0);
    assert!(scraped.has("disputes_http_request_duration_seconds_bucket", &[("le", "0.001")]));
    assert!(
        scraped.sum("disputes_http_requests_total", &[("route", "/v1/orders/{id}"), ("status", "200")])
            >= 3.0
    );
    assert!(scraped.sum("disputes_http_requests_total", &[("route", "-"), ("status", "404")]) >= 1.0);
    assert!(scraped.sum("disputes_http_requests_total", &[("route", "/metrics"), ("status", "200")]) >= 1.0);
    assert!(
        scraped.samples.iter().all(|s| s.labels.get("route").is_none_or(|r| !r.contains("m-1"))),
        "no series names a path"
    );

    // Commands by outcome, and the replay.
    let accepted =
        |command| scraped.sum("disputes_commands_total", &[("command", command), ("outcome", "accepted")]);
    for command in
        ["register_order", "request", "merchant_reject", "escalate", "assign", "judge", "refund_paid"]
    {
        assert!(accepted(command) >= 1.0, "{command} accepted");
    }
    counted(accepted("escalate"), 1.0, "the replay is not a second acceptance");
    counted(scraped.sum("disputes_idempotent_replays_total", &[("command", "escalate")]), 1.0, "replays");
    let refused = [("command", "merchant_reject"), ("outcome", "refused"), ("code", refusal_code.as_str())];
    counted(scraped.sum("disputes_commands_total", &refused), 1.0, "refusals");
    let conflict = [("command", "evidence"), ("outcome", "conflict")];
    counted(scraped.sum("disputes_commands_total", &conflict), 1.0, "conflicts");

    // The lags.
    assert!(scraped.has("disputes_relay_lag_seconds_bucket", &[("le", "600")]));
    assert!(scraped.has("disputes_projection_lag_seconds_sum", &[("view", "timeline")]));

    // The timer: one fired a minute late, one stale, deadlines still running.
    counted(scraped.sum("disputes_timer_fired_total", &[("deadline", "merchant_response")]), 1.0, "fired");
    counted(scraped.sum("disputes_timer_stale_total", &[("deadline", "merchant_response")]), 1.0, "stale");
    counted(scraped.sum("disputes_timer_lateness_seconds_count", &[]), 1.0, "lateness samples");
    counted(scraped.sum("disputes_timer_lateness_seconds_sum", &[]), 60.0, "a minute late");
    assert!(scraped.sum("disputes_timer_pending_deadlines", &[]) >= 1.0);

    // The pool, as the harness configured it.
    assert!(scraped.has("disputes_db_pool_connections", &[("state", "in_use")]));
    assert!(scraped.has("disputes_db_pool_connections", &[("state", "idle")]));
    // Another test's service may have set the gauges last when tests share the process.
    if alone() {
        assert_eq!(scraped.sum("disputes_db_pool_max_connections", &[]), 20.0);
    }
    assert!(scraped.has("disputes_db_pool_max_connections", &[]));

    // Every family has a type; the documentation lists exactly these.
    let families: BTreeSet<String> = scraped.types.keys().cloned().collect();
    assert_eq!(documented_metric_names(), families, "docs/operations.md's table is what /metrics exports");
    for sample in &scraped.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| sample.name.strip_suffix(suffix).filter(|base| families.contains(*base)))
            .unwrap_or(&sample.name);
        assert!(families.contains(family), "{} has a # TYPE line", sample.name);
    }

    // The dashboard reads only what is exported, and every family.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/disputes.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard reads"))
        .expect("valid JSON");
    let read = dashboard_metric_names(&dashboard);
    let exported = scraped.names();
    for name in &read {
        assert!(
            exported.contains(name.as_str()),
            "the dashboard reads {name}, which /metrics does not export"
        );
    }
    for family in &families {
        assert!(read.iter().any(|name| name.starts_with(family.as_str())), "the dashboard shows {family}");
    }

    delete_stream(&nats_url(), &stream).await;
}

//! The built `disputes` binary, run as an operator would: configuration from the environment,
//! the address read from stdout, SIGTERM to stop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration as StdDuration;

use chrono::Utc;
use disputes_tests::tempdir::TempDir;
use disputes_tests::*;
use serde_json::{Value, json};

const SECRET_B: &str = "another-secret-of-at-least-thirty-two-bytes";

#[tokio::test]
async fn embedded_default_serves_stops_on_sigterm_and_keeps_its_state() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    let env = [("DISPUTES_DATA_DIR", data_dir)];
    let client = reqwest::Client::new();

    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    assert_ne!(addr.port(), 0, "the real port is printed");
    let system = token(cwd.path(), &env, "system", "x");
    let buyer = token(cwd.path(), &env, "buyer", BUYER);
    assert!(data.path().join("jwt-secret").is_file(), "the secret is generated into the data dir");

    let (status, body) = register(&client, addr, &system, &recent_order("bb-1")).await;
    assert_eq!(
        (status, body["sequence"].as_u64(), body["status"].as_str()),
        (200, Some(1), Some("open")),
        "{body}"
    );
    let (status, body) = post(&client, addr, &buyer, "bb-1", "request", request_body()).await;
    assert_eq!(
        (status, body["sequence"].as_u64(), body["status"].as_str()),
        (200, Some(2), Some("awaiting_merchant")),
        "{body}"
    );
    // A token signed with another secret is refused.
    let (status, body) =
        register(&client, addr, &other_secret_token(cwd.path()), &recent_order("bb-2")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");

    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());
    assert!(!cwd.path().join("data").exists(), "nothing is kept outside DISPUTES_DATA_DIR");

    // Again on the same data: the state and the secret survived.
    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    let merchant = token(cwd.path(), &env, "merchant", MERCHANT);
    let (status, body) = post(
        &client,
        addr,
        &merchant,
        "bb-1",
        "merchant-reject",
        json!({ "reason_code": "damaged_by_buyer", "note": "the photo shows coffee stains" }),
    )
    .await;
    assert_eq!(
        (status, body["sequence"].as_u64(), body["status"].as_str(), body["round"].as_u64()),
        (200, Some(3), Some("rejected"), Some(1)),
        "{body}"
    );
    // The buyer's token from before the restart is still good, and the rules see the request.
    let (status, body) = post(&client, addr, &buyer, "bb-1", "request", request_body()).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("invalid_transition")), "{body}");
    let (status, body) =
        post(&client, addr, &buyer, "bb-1", "escalate", json!({ "note": "look at the photo" })).await;
    assert_eq!(
        (status, body["sequence"].as_u64(), body["status"].as_str()),
        (200, Some(4), Some("escalated")),
        "{body}"
    );

    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());
}

fn other_secret_token(cwd: &Path) -> String {
    token(cwd, &[("DISPUTES_JWT_SECRET", SECRET_B)], "system", "x")
}

#[test]
fn token_with_no_secret_anywhere_refuses_names_where_it_looked_and_creates_nothing() {
    let cwd = TempDir::new();
    let output = disputes(cwd.path(), &[], &["token", "--role", "system", "--sub", "x"])
        .stdin(Stdio::null())
        .output()
        .expect("disputes token runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "no token without a secret; stderr:\n{stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout: {:?}", String::from_utf8_lossy(&output.stdout));
    for place in ["data/jwt-secret", "DISPUTES_JWT_SECRET", "--jwt-secret", "jwt_secret"] {
        assert!(stderr.contains(place), "stderr names {place}: {stderr}");
    }
    let created: Vec<_> = std::fs::read_dir(cwd.path()).expect("the directory reads").collect();
    assert!(created.is_empty(), "nothing is created: {created:?}");
}

#[tokio::test]
async fn a_broken_policy_file_stops_the_start_with_its_name_and_the_problem() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");

    let cases = [
        ("syntax.toml", "[default\nrequest_window = \"7d\"\n", "TOML"),
        ("value.toml", "[default]\nrequest_window = \"a week\"\n", "request_window"),
        ("twice.toml", "[category.Toys]\nmax_rounds = 1\n[category.toys]\nmax_rounds = 2\n", "same category"),
    ];
    for (name, text, problem) in cases {
        let path = tempdir::join(&cwd, name);
        std::fs::write(&path, text).expect("write the policy file");
        let policy = path.to_str().expect("a UTF-8 path");
        let env = [("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_POLICY", policy)];
        let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
        let exit = server.wait();
        let stderr = server.stderr();
        let stdout = server.rest_of_stdout();
        assert!(!exit.success(), "{name}: a broken policy must stop the start; stdout: {stdout:?}");
        assert!(stderr.contains(policy), "{name}: stderr names the policy file: {stderr}");
        assert!(stderr.contains(problem), "{name}: stderr names the problem ({problem}): {stderr}");
        assert!(
            !stdout.iter().any(|line| line.contains("listening on")),
            "{name}: it never listened: {stdout:?}"
        );
    }

    // A policy file that is not there is named too.
    let missing = tempdir::join(&cwd, "missing.toml");
    let missing = missing.to_str().expect("a UTF-8 path");
    let env = [("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_POLICY", missing)];
    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let exit = server.wait();
    let stderr = server.stderr();
    assert!(!exit.success(), "a missing policy must stop the start");
    assert!(stderr.contains(missing), "stderr names the missing policy file: {stderr}");
}

#[tokio::test]
async fn postgres_needs_a_configured_secret_and_then_serves() {
    let db = TestDatabase::create().await;
    let cwd = TempDir::new();
    let data = TempDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");

    let env = [("DATABASE_URL", db.url.as_str()), ("DISPUTES_DATA_DIR", data_dir)];
    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let exit = server.wait();
    let stderr = server.stderr();
    assert!(!exit.success(), "no secret with DATABASE_URL must stop the start");
    assert!(stderr.contains("DISPUTES_JWT_SECRET"), "stderr names DISPUTES_JWT_SECRET: {stderr}");
    assert!(!data.path().join("jwt-secret").exists(), "no secret is generated with DATABASE_URL");

    // `disputes token` refuses the same way.
    let output = disputes(cwd.path(), &env, &["token", "--role", "system", "--sub", "x"])
        .stdin(Stdio::null())
        .output()
        .expect("disputes token runs");
    assert!(!output.status.success(), "no token without a secret with DATABASE_URL");
    assert!(output.stdout.is_empty(), "nothing on stdout: {:?}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DISPUTES_JWT_SECRET"));

    let env =
        [("DATABASE_URL", db.url.as_str()), ("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_JWT_SECRET", SECRET)];
    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    let client = reqwest::Client::new();
    let ready = client.get(format!("http://{addr}/readyz")).send().await.expect("the server answers");
    assert_eq!(ready.status().as_u16(), 200);

    // It writes to that database.
    let system = token(cwd.path(), &env, "system", "x");
    let (status, body) = register(&client, addr, &system, &recent_order("pg-1")).await;
    assert_eq!(
        (status, body["sequence"].as_u64(), body["status"].as_str()),
        (200, Some(1), Some("open")),
        "{body}"
    );
    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());

    let store = open_store(&db).await;
    let (dispute, sequence) = store.load("pg-1").await.expect("the stream loads");
    store.close().await;
    assert_eq!((sequence, dispute.status().as_str()), (1, "open"), "the order is in that database");
}

#[tokio::test]
async fn token_prints_one_line_that_the_server_accepts() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    let env = [("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_JWT_SECRET", SECRET)];

    let stdout = token_output(cwd.path(), &env, "system", "order-service");
    assert!(stdout.ends_with('\n'), "the line ends: {stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    let line = stdout.trim_end_matches('\n');
    assert!(!line.is_empty() && !line.contains(char::is_whitespace), "one bare token: {stdout:?}");
    assert_eq!(line.split('.').count(), 3, "a JWT has three parts: {line}");
    assert!(
        !data.path().join("jwt-secret").exists(),
        "a configured secret is not replaced by a generated one"
    );

    let with_ttl = disputes(cwd.path(), &env, &["token", "--role", "buyer", "--sub", BUYER, "--ttl", "1h"])
        .stdin(Stdio::null())
        .output()
        .expect("disputes token runs");
    assert!(with_ttl.status.success());
    assert_eq!(String::from_utf8_lossy(&with_ttl.stdout).lines().count(), 1);

    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    let client = reqwest::Client::new();
    let (status, body) = register(&client, addr, line, &recent_order("tk-1")).await;
    assert_eq!((status, body["sequence"].as_u64()), (200, Some(1)), "{body}");
    let buyer = String::from_utf8(with_ttl.stdout).expect("UTF-8").trim_end().to_string();
    let (status, body) = post(&client, addr, &buyer, "tk-1", "request", request_body()).await;
    assert_eq!((status, body["sequence"].as_u64()), (200, Some(2)), "{body}");
    // A token of another secret is not.
    let (status, body) =
        register(&client, addr, &other_secret_token(cwd.path()), &recent_order("tk-2")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");

    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());
}

#[tokio::test]
async fn after_sigkill_right_after_commits_every_acknowledged_command_reaches_the_views() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let stream = format!("KILL{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let nats = nats_url();
    let env = service_env(&db, &nats, &stream);
    let system = token(dir.path(), &env, "system", "orders");
    let buyer = token(dir.path(), &env, "buyer", BUYER);
    let client = reqwest::Client::new();

    let mut server = Process::spawn(disputes(dir.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let id = format!("k-{n}");
        assert_eq!(register(&client, addr, &system, &recent_order(&id)).await.0, 200);
        let (status, body) = post(&client, addr, &buyer, &id, "request", request_body()).await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push((id, body["sequence"].as_u64().expect("a sequence")));
    }
    // No time for the relay or the projector to catch up: kill at once.
    server.child.kill().expect("SIGKILL");
    server.wait();

    let mut server = Process::spawn(disputes(dir.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    for (id, sequence) in &acknowledged {
        let response = client
            .get(format!("http://{addr}/v1/disputes/{id}"))
            .bearer_auth(&buyer)
            .header("X-Min-Sequence", sequence.to_string())
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200, "{id} did not reach the views");
        let view: Value = response.json().await.expect("JSON");
        assert_eq!(
            (view["status"].as_str(), view["sequence"].as_u64()),
            (Some("awaiting_merchant"), Some(*sequence))
        );
    }
    assert!(server.terminate().success());
    delete_stream(&nats, &stream).await;
}

/// A policy whose deadlines pass in seconds, written to `dir`; returns its path.
fn quick_policy(dir: &TempDir) -> String {
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[default]\nmerchant_response = \"2s\"\nescalation_window = \"3s\"\n")
        .expect("the policy file is written");
    path.to_str().expect("a UTF-8 path").to_string()
}

#[tokio::test]
async fn deadlines_fire_in_the_running_binary_and_after_a_restart() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let policy = quick_policy(&cwd);
    let env =
        [("DISPUTES_DATA_DIR", data.path().to_str().expect("a UTF-8 path")), ("DISPUTES_POLICY", &policy)];
    let client = reqwest::Client::new();

    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    // `serve` generated the secret `token` signs with.
    let system = token(cwd.path(), &env, "system", "x");
    let buyer = token(cwd.path(), &env, "buyer", BUYER);
    register(&client, addr, &system, &recent_order("tm-1")).await;
    let (status, body) = post(&client, addr, &buyer, "tm-1", "request", request_body()).await;
    assert_eq!(status, 200, "{body}");
    // The merchant's 2 s pass: the buyer may escalate; 3 s later the window closes.
    let rejected = until_status(&client, addr, &buyer, "tm-1", "rejected", StdDuration::from_secs(10)).await;
    assert_eq!(rejected["actions"], json!(["evidence", "escalate", "withdraw", "messages"]), "{rejected}");
    let closed = until_status(&client, addr, &buyer, "tm-1", "closed", StdDuration::from_secs(10)).await;
    assert_eq!(closed["close_reason"], "rejection_accepted", "{closed}");

    // A request whose deadline passes while the service is down.
    register(&client, addr, &system, &recent_order("tm-2")).await;
    let (status, body) = post(&client, addr, &buyer, "tm-2", "request", request_body()).await;
    assert_eq!(status, 200, "{body}");
    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());
    std::thread::sleep(StdDuration::from_secs(3));

    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let addr = server.listening();
    until_status(&client, addr, &buyer, "tm-2", "rejected", StdDuration::from_secs(5)).await;
    let (status, timeline) =
        call(&client, reqwest::Method::GET, format!("http://{addr}/v1/disputes/tm-2/timeline"), &buyer, None)
            .await;
    assert_eq!(status, 200, "{timeline}");
    let missed = &timeline["events"][2];
    assert_eq!(
        (&missed["event_type"], &missed["actor_role"], &missed["actor_id"]),
        (&json!("MerchantResponseMissed"), &json!("system"), &json!("timer"))
    );
    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());
}

#[tokio::test]
async fn two_instances_on_one_database_and_one_nats_give_each_deadline_one_effect() {
    let db = TestDatabase::create().await;
    let cwd = TempDir::new();
    let policy = quick_policy(&cwd);
    let stream = unique_stream();
    let nats = nats_url();
    let env = [service_env(&db, &nats, &stream).as_slice(), &[("DISPUTES_POLICY", policy.as_str())]].concat();
    let client = reqwest::Client::new();
    let system = token(cwd.path(), &env, "system", "x");
    let buyer = token(cwd.path(), &env, "buyer", BUYER);
    let mut servers = [
        Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"])),
        Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"])),
    ];
    let addrs = [servers[0].listening(), servers[1].listening()];
    let ids: Vec<String> = (0..12).map(|i| format!("two-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let addr = addrs[i % 2];
        register(&client, addr, &system, &recent_order(id)).await;
        let (status, body) = post(&client, addr, &buyer, id, "request", request_body()).await;
        assert_eq!(status, 200, "{body}");
    }
    for (i, id) in ids.iter().enumerate() {
        until_status(&client, addrs[(i + 1) % 2], &buyer, id, "closed", StdDuration::from_secs(20)).await;
    }
    for id in &ids {
        let (status, timeline) = call(
            &client,
            reqwest::Method::GET,
            format!("http://{}/v1/disputes/{id}/timeline", addrs[0]),
            &buyer,
            None,
        )
        .await;
        assert_eq!(status, 200, "{timeline}");
        let types: Vec<&str> = timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["OrderRegistered", "RefundRequested", "MerchantResponseMissed", "EscalationWindowClosed"],
            "{id}: one effect per deadline"
        );
    }
    for server in &mut servers {
        let exit = server.terminate();
        assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());
    }
    delete_stream(&nats, &stream).await;
}

/// The figures `disputes-bench --json` promises on its last stdout line.
const BENCH_KEYS: [&str; 7] = [
    "commands_per_s",
    "command_p50_ms",
    "command_p99_ms",
    "command_p999_ms",
    "lag_p50_ms",
    "lag_p99_ms",
    "errors",
];

/// Runs `disputes-bench ARGS --json` and returns its last stdout line, parsed.
fn bench_figures(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Value {
    let output = disputes_bench(cwd, env, &[&["--json"], args].concat())
        .stdin(Stdio::null())
        .output()
        .expect("disputes-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "disputes-bench failed: {}\n{stderr}", output.status);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no stdout; stderr:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the last line is not JSON ({e}): {last}"))
}

fn assert_clean_figures(figures: &Value) {
    for key in BENCH_KEYS {
        assert!(figures[key].is_number(), "{key} is a number in {figures}");
    }
    assert_eq!(figures["errors"], 0, "{figures}");
    assert!(figures["commands"].as_u64().unwrap_or_default() >= 2, "whole lifecycles ran: {figures}");
}

#[tokio::test]
async fn bench_prints_every_figure_on_the_embedded_default_without_errors() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let env = [("DISPUTES_DATA_DIR", data.path().to_str().expect("a UTF-8 path"))];
    let figures = bench_figures(cwd.path(), &env, &["--duration", "2s", "--concurrency", "4"]);
    assert_clean_figures(&figures);
}

#[tokio::test]
async fn bench_prints_every_figure_on_postgres_and_nats_without_errors_also_held_to_a_rate() {
    let db = TestDatabase::create().await;
    let cwd = TempDir::new();
    let stream = unique_stream();
    let nats = nats_url();
    let env = service_env(&db, &nats, &stream);
    let figures = bench_figures(cwd.path(), &env, &["--duration", "2s", "--concurrency", "4"]);
    assert_clean_figures(&figures);
    let held = bench_figures(cwd.path(), &env, &["--duration", "2s", "--concurrency", "4", "--rate", "40"]);
    assert_clean_figures(&held);
    assert_eq!(held["rate"], 40.0, "{held}");
    delete_stream(&nats, &stream).await;
}

#[tokio::test]
async fn bench_loads_a_running_service_at_its_address_and_refuses_an_address_it_cannot_speak_to() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    let env = [("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_JWT_SECRET", SECRET)];
    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let target = format!("http://{}", server.listening());
    let figures =
        bench_figures(cwd.path(), &env, &["--target", &target, "--duration", "2s", "--concurrency", "4"]);
    assert_clean_figures(&figures);
    let exit = server.terminate();
    assert!(exit.success(), "a clean stop exits 0, got {exit}; stderr:\n{}", server.stderr());

    for target in ["https://127.0.0.1:1", "http://127.0.0.1:1/v1", "127.0.0.1:1"] {
        let output = disputes_bench(cwd.path(), &env, &["--target", target, "--duration", "1s"])
            .stdin(Stdio::null())
            .output()
            .expect("disputes-bench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{target} is refused");
        assert!(stderr.contains("--target must be an http:// address"), "{target}: {stderr}");
    }
}

#[tokio::test]
async fn bench_refuses_a_rate_that_is_not_positive() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let env = [("DISPUTES_DATA_DIR", data.path().to_str().expect("a UTF-8 path"))];
    for rate in ["0", "-5"] {
        let flag = format!("--rate={rate}");
        let output = disputes_bench(cwd.path(), &env, &["--duration", "1s", &flag])
            .stdin(Stdio::null())
            .output()
            .expect("disputes-bench runs");
        assert!(!output.status.success(), "--rate {rate} is refused");
        assert!(output.stdout.is_empty(), "no figures for --rate {rate}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--rate"), "the error names --rate");
        let written: Vec<_> = std::fs::read_dir(data.path()).expect("the data dir").collect();
        assert!(written.is_empty(), "nothing written for --rate {rate}: {written:?}");
    }
}

#[tokio::test]
async fn bench_preload_fills_an_empty_store_with_settled_disputes_that_verify_and_refuses_a_second_time() {
    let db = TestDatabase::create().await;
    let cwd = TempDir::new();
    let env = [("DATABASE_URL", db.url.as_str()), ("DISPUTES_JWT_SECRET", SECRET)];
    let run = |args: &[&str]| {
        disputes(cwd.path(), &env, args).stdin(Stdio::null()).output().expect("disputes runs")
    };
    let preload = || {
        disputes_bench(cwd.path(), &env, &["--preload", "25"])
            .stdin(Stdio::null())
            .output()
            .expect("disputes-bench runs")
    };
    let output = preload();
    assert!(output.status.success(), "preload: {}", String::from_utf8_lossy(&output.stderr));
    let output = run(&["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "verify: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("intact: 100 events in 25 streams"), "{stdout}");

    let output = preload();
    assert!(!output.status.success(), "a store with events is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty store"));
    let output = run(&["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("intact: 100 events in 25 streams"),
        "nothing added"
    );
}

#[tokio::test]
async fn bench_audit_loads_a_synthetic_log_and_times_verify_and_replay_over_it() {
    let db = TestDatabase::create().await;
    let cwd = TempDir::new();
    let env = [("DATABASE_URL", db.url.as_str()), ("DISPUTES_JWT_SECRET", SECRET)];
    let output = disputes_bench(cwd.path(), &env, &["--audit", "40"])
        .stdin(Stdio::null())
        .output()
        .expect("disputes-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("verify: 40 events in 10 streams"), "{stdout}");
    assert!(stdout.contains("replay: 40 events in 10 streams"), "{stdout}");
}

#[tokio::test]
async fn the_service_binary_has_no_load_generator() {
    let cwd = TempDir::new();
    let output = disputes(cwd.path(), &[], &["bench", "--duration", "1s"])
        .stdin(Stdio::null())
        .output()
        .expect("disputes runs");
    assert!(!output.status.success(), "`disputes bench` is not a command of the service binary");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unrecognized subcommand 'bench'"));
}

/// One keyed command of the crash test's script, sent with the same key and body until it has
/// a definite answer.
struct KeyedStep {
    key: String,
    method: reqwest::Method,
    path: String,
    token: String,
    body: Value,
}

/// The definite answer a keyed step got in the end, and how many attempts had no definite one.
struct Settled {
    status: u16,
    body: Value,
    unknown: usize,
}

/// Sends `step` until the answer is definite: no connection (the service is down or was
/// killed mid-request), a 5xx, or a 409 `concurrent_modification` (the key's claim is still
/// held) leave the outcome unknown and are retried with the same key and body. Each attempt
/// has a correlation id of its own, so the log shows which attempt an event came from.
async fn settle(
    client: &reqwest::Client,
    addr: &tokio::sync::watch::Receiver<SocketAddr>,
    step: &KeyedStep,
) -> Settled {
    for attempt in 1.. {
        let url = format!("http://{}{}", *addr.borrow(), step.path);
        let sent = client
            .request(step.method.clone(), url)
            .bearer_auth(&step.token)
            .header("idempotency-key", &step.key)
            .header("x-correlation-id", format!("{}#{attempt}", step.key))
            .json(&step.body)
            .timeout(StdDuration::from_secs(20))
            .send()
            .await;
        let mut pause = StdDuration::from_millis(100);
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            let retry_after =
                response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
            if let Ok(bytes) = response.bytes().await {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let held = status == 409 && body["code"] == "concurrent_modification";
                if status < 500 && !held {
                    return Settled { status, body, unknown: attempt - 1 };
                }
                if let Some(seconds) = retry_after {
                    pause = StdDuration::from_secs(seconds);
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
    unreachable!("the attempts never end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_keyed_load_leaves_every_key_one_effect_and_its_true_answer() {
    const ORDERS: usize = 48;
    const WORKERS: usize = 8;
    const KILLS: usize = 3;
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let stream = unique_stream();
    let nats = nats_url();
    let env = [
        service_env(&db, &nats, &stream).as_slice(),
        &[("DISPUTES_IDEMPOTENCY_TAKEOVER", "2s"), ("DISPUTES_IDEMPOTENCY_WAIT", "1s")],
    ]
    .concat();
    let tokens = [
        token(dir.path(), &env, "system", "orders"),
        token(dir.path(), &env, "buyer", BUYER),
        token(dir.path(), &env, "merchant", MERCHANT),
        token(dir.path(), &env, "system", "payments"),
    ];
    let [system, buyer, merchant, payments] = &tokens;
    // Each order's script: every step valid in turn, so every step must end accepted.
    let mut scripts: Vec<Vec<KeyedStep>> = Vec::new();
    for n in 0..ORDERS {
        let id = format!("crash-{n}");
        let step = |name: &str, token: &str, path: String, body: Value| KeyedStep {
            key: format!("{id}-{name}"),
            method: if name == "register" { reqwest::Method::PUT } else { reqwest::Method::POST },
            path,
            token: token.to_string(),
            body,
        };
        let command = |name: &str| format!("/v1/disputes/{id}/{name}");
        let evidence_of = |kind: &str| json!({ "evidence": [evidence(kind)] });
        // A payment is dated after its approval and at most five minutes ahead of the clock;
        // a retry repeats its body exactly, so the date is fixed now, four minutes ahead.
        let paid_at = Utc::now() + chrono::Duration::minutes(4);
        scripts.push(vec![
            step("register", system, format!("/v1/orders/{id}"), recent_order(&id)),
            step("request", buyer, command("request"), request_body()),
            step("evidence-1", buyer, command("evidence"), evidence_of("video")),
            step("evidence-2", merchant, command("evidence"), evidence_of("receipt")),
            step("evidence-3", buyer, command("evidence"), evidence_of("shipping")),
            step("accept", merchant, command("merchant-accept"), json!({})),
            step(
                "paid",
                payments,
                command("refund-paid"),
                json!({ "amount": cny(6_000), "channel": "alipay", "payment_ref": format!("ali-{id}"), "paid_at": paid_at }),
            ),
        ]);
    }

    let spawn = || Process::spawn(disputes(dir.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    let mut server = spawn();
    let (addr_tx, addr_rx) = tokio::sync::watch::channel(server.listening());
    let queue = std::sync::Arc::new(std::sync::Mutex::new(scripts));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (queue, addr) = (queue.clone(), addr_rx.clone());
        workers.spawn(async move {
            let client = reqwest::Client::new();
            let mut settled = Vec::new();
            loop {
                let Some(script) = queue.lock().expect("the queue").pop() else { return settled };
                for step in script {
                    let answer = settle(&client, &addr, &step).await;
                    settled.push((step, answer));
                }
            }
        });
    }
    // Each kill comes once a further share of the scripts has been taken up, so that each lands
    // while the workers are mid-script, however fast the machine runs them.
    for kill in 1..=KILLS {
        let left = ORDERS - ORDERS * kill / (KILLS + 1);
        while queue.lock().expect("the queue").len() > left {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        server.child.kill().expect("SIGKILL");
        tokio::task::block_in_place(|| server.wait());
        server = spawn();
        addr_tx.send(tokio::task::block_in_place(|| server.listening())).expect("the workers listen");
    }
    let settled: Vec<(KeyedStep, Settled)> = workers.join_all().await.into_iter().flatten().collect();
    assert_eq!(settled.len(), ORDERS * 7);

    // What the log says each key did: the attempts its events came from, and its last sequence.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("the test database answers");
    let effects: Vec<(String, Vec<String>, i64)> = sqlx::query_as(
        "SELECT metadata->>'idempotency_key', array_agg(DISTINCT metadata->>'correlation_id'), max(sequence) \
         FROM events GROUP BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the events are read");
    let effects: std::collections::HashMap<String, (Vec<String>, i64)> =
        effects.into_iter().map(|(key, attempts, last)| (key, (attempts, last))).collect();
    let mut unknown = 0;
    for (step, answer) in &settled {
        unknown += answer.unknown;
        let Some((attempts, last)) = effects.get(&step.key) else {
            panic!("{}: no event in the log, answered {} {}", step.key, answer.status, answer.body)
        };
        assert_eq!(attempts.len(), 1, "{}: took effect more than once, from attempts {attempts:?}", step.key);
        assert_eq!(
            answer.status, 200,
            "{}: committed (by attempt {attempts:?}) but answered {} {}",
            step.key, answer.status, answer.body
        );
        assert_eq!(
            answer.body["sequence"],
            json!(last),
            "{}: answered another state: {}",
            step.key,
            answer.body
        );
    }
    assert!(unknown > 0, "no attempt had an unknown outcome: the kills tested nothing");
    eprintln!("{} keyed commands, {KILLS} kills, {unknown} attempts with an unknown outcome", settled.len());

    assert!(server.terminate().success());
    delete_stream(&nats, &stream).await;
}

#[tokio::test]
async fn the_config_file_takes_every_setting_and_serve_logs_what_it_runs_on() {
    let db = TestDatabase::create().await;
    let cwd = TempDir::new();
    let data = TempDir::new();
    let stream = unique_stream();
    let port = free_port();
    let policy = quick_policy(&cwd);
    let file = cwd.path().join("disputes.toml");
    std::fs::write(
        &file,
        format!(
            "database_url = {url:?}\ndatabase_max_connections = 4\nnats_url = {nats:?}\nstream = {stream:?}\n\
             data_dir = {data:?}\njwt_secret = {SECRET:?}\npolicy = {policy:?}\naddr = \"127.0.0.1:{port}\"\n\
             idempotency_wait = \"2s\"\nidempotency_takeover = \"5s\"\nlog_format = \"json\"\n",
            url = db.url,
            nats = nats_url(),
            data = data.path().to_str().expect("a UTF-8 path"),
        ),
    )
    .expect("the config file is written");
    let config = file.to_str().expect("a UTF-8 path");
    let mut server = Process::spawn(disputes(cwd.path(), &[], &["--config", config, "serve"]));
    let addr = server.listening();
    assert_eq!(addr.port(), port, "addr comes from the file");
    let system = token(cwd.path(), &[("DISPUTES_CONFIG", config)], "system", "orders");
    let (status, body) = register(&reqwest::Client::new(), addr, &system, &recent_order("cf-1")).await;
    assert_eq!(status, 200, "the secret comes from the file: {body}");
    let exit = server.terminate();
    let stderr = server.stderr();
    assert!(exit.success(), "{exit}; stderr:\n{stderr}");

    // JSON logs: every line one object; the start names the store, the bus, the stream and the policy.
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let setup = lines
        .iter()
        .find_map(|line| line["fields"]["setup"].as_str())
        .unwrap_or_else(|| panic!("no start line naming the setup in:\n{stderr}"));
    for part in ["PostgreSQL", &db.name, &stream, &policy] {
        assert!(setup.contains(part), "{part:?} missing from {setup:?}");
    }
    assert!(!setup.contains("postgres@"), "no credentials in the log: {setup}");
    delete_stream(&nats_url(), &stream).await;
}

#[tokio::test]
async fn text_logs_into_a_pipe_carry_no_colours_and_a_misspelt_config_key_is_refused() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let env = [("DISPUTES_DATA_DIR", data.path().to_str().expect("a UTF-8 path"))];
    let mut server = Process::spawn(disputes(cwd.path(), &env, &["serve", "--addr", "127.0.0.1:0"]));
    server.listening();
    assert!(server.terminate().success());
    let stderr = server.stderr();
    assert!(stderr.contains("starting"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes when stderr is not a terminal:\n{stderr:?}");

    let file = cwd.path().join("bad.toml");
    std::fs::write(&file, "adress = \"127.0.0.1:1\"\n").expect("written");
    let output = disputes(cwd.path(), &env, &["--config", file.to_str().expect("UTF-8"), "serve"])
        .stdin(Stdio::null())
        .output()
        .expect("disputes runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an unknown key stops the start");
    assert!(stderr.contains("bad.toml") && stderr.contains("adress"), "{stderr}");
}

/// `disputes ARGS` in `cwd` with `env`, expected to stop at once; its stderr.
fn refused_start(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let output = disputes(cwd, env, args).stdin(Stdio::null()).output().expect("disputes runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} with {env:?} must not start:\n{stderr}");
    stderr
}

#[tokio::test]
async fn the_rate_limit_comes_from_flags_environment_or_config_file_and_nonsense_is_refused() {
    let cwd = TempDir::new();
    let data = TempDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path");
    let client = reqwest::Client::new();
    let file = cwd.path().join("limits.toml");
    let config = file.to_str().expect("a UTF-8 path");
    let serve = ["--config", config, "serve", "--addr", "127.0.0.1:0"];

    // The environment's rate wins over the file's, the flag's burst over the file's: two
    // requests at once, then one an hour.
    std::fs::write(&file, "rate_limit = \"1000/s\"\nrate_limit_burst = 1\n").expect("written");
    let env = [("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_RATE_LIMIT", "1/h")];
    let mut server =
        Process::spawn(disputes(cwd.path(), &env, &[&serve[..], &["--rate-limit-burst", "2"]].concat()));
    let addr = server.listening();
    let system = token(cwd.path(), &env, "system", "orders");
    for id in ["rl-1", "rl-2"] {
        let (status, body) = register(&client, addr, &system, &recent_order(id)).await;
        assert_eq!(status, 200, "within the burst: {body}");
    }
    let (status, body) = register(&client, addr, &system, &recent_order("rl-3")).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(server.terminate().success());

    // The file alone.
    std::fs::write(&file, "rate_limit = \"1/h\"\nrate_limit_burst = 1\n").expect("written");
    let env = [("DISPUTES_DATA_DIR", data_dir)];
    let mut server = Process::spawn(disputes(cwd.path(), &env, &serve));
    let addr = server.listening();
    let (status, body) = register(&client, addr, &system, &recent_order("rl-4")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = register(&client, addr, &system, &recent_order("rl-5")).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(server.terminate().success());

    // Nonsense stops the start with a message naming the setting.
    let env = [("DISPUTES_DATA_DIR", data_dir), ("DISPUTES_RATE_LIMIT", "0/s")];
    let stderr = refused_start(cwd.path(), &env, &["serve"]);
    assert!(stderr.contains("rate-limit") && stderr.contains("0/s"), "{stderr}");
    let env = [("DISPUTES_DATA_DIR", data_dir)];
    let stderr =
        refused_start(cwd.path(), &env, &["serve", "--rate-limit", "5/s", "--rate-limit-burst", "0"]);
    assert!(stderr.contains("rate-limit-burst") && stderr.contains("at least 1"), "{stderr}");
    let stderr = refused_start(cwd.path(), &env, &["serve", "--rate-limit-burst", "3"]);
    assert!(stderr.contains("without DISPUTES_RATE_LIMIT"), "{stderr}");
    std::fs::write(&file, "rate_limit = \"-1/s\"\n").expect("written");
    let stderr = refused_start(cwd.path(), &env, &["--config", config, "serve"]);
    assert!(stderr.contains("limits.toml") && stderr.contains("rate_limit"), "{stderr}");
    std::fs::write(&file, "rate_limit = \"5/s\"\nrate_limit_burst = -2\n").expect("written");
    let stderr = refused_start(cwd.path(), &env, &["--config", config, "serve"]);
    assert!(stderr.contains("limits.toml") && stderr.contains("rate_limit_burst"), "{stderr}");
}

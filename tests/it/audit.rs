//! Audits: replay as of an instant, the hash chain against tampering (including a removed
//! last event, caught against JetStream and against a saved heads file), view drift, the
//! auditor-only routes, and the recipes of docs/audit.md.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use dispute_audit::{BreakKind, HeadsRecord};
use dispute_bus::NatsBus;
use dispute_domain::Role;
use dispute_store::Store;
use disputes_tests::*;
use serde_json::{Value, json};

/// A dispute taken through reject → escalate → assign → judge → refund paid, the clock moving
/// an hour before each step. Returns `(instant, status, sequence)` after every step.
async fn judged_and_paid(app: &TestApp, id: &str) -> Vec<(chrono::DateTime<chrono::Utc>, String, u64)> {
    let mut moments = Vec::new();
    let mut step = |answer: &Answer, app: &TestApp| {
        answer.assert_ok();
        moments.push((app.now(), answer.status_text().to_string(), answer.sequence()));
    };
    app.advance(Duration::hours(1));
    let registered = app.register(&order(id)).await;
    step(&registered, app);
    app.advance(Duration::hours(1));
    step(&app.request_refund(id, "refund_only", "quality_issue", 4_000).await, app);
    app.advance(Duration::hours(1));
    step(&app.merchant_reject(id).await, app);
    app.advance(Duration::hours(1));
    step(&app.escalate(id).await, app);
    app.advance(Duration::hours(1));
    step(&app.assign(id, "arb-1").await, app);
    app.advance(Duration::hours(1));
    let ruling =
        json!({ "outcome": "refund_full", "return_required": false, "rationale": "the photos show it" });
    step(&app.judge(id, "arb-1", ruling).await, app);
    app.advance(Duration::hours(1));
    step(&app.refund_paid(id, 4_000).await, app);
    moments
}

/// A dispute of four events: registered, requested, accepted, refund paid.
async fn refunded(app: &TestApp, id: &str) {
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 2_500).await.assert_ok();
    app.merchant_accept(id).await.assert_ok();
    app.refund_paid(id, 2_500).await.assert_ok();
}

async fn audit_get(app: &TestApp, path: &str, role: Role) -> Answer {
    let token = app.token(role, "someone");
    app.send(reqwest::Method::GET, path, Some(&token), None, &[]).await
}

/// Every break of the whole log as `(order, sequence, kind)`.
async fn breaks(store: &Arc<Store>, record: Option<&HeadsRecord>) -> Vec<(String, u64, BreakKind)> {
    let report = dispute_audit::verify(store, None, record, |_, _| {}).await.expect("verify runs");
    report.breaks.into_iter().map(|b| (b.order_id, b.sequence, b.kind)).collect()
}

fn database_url(app: &TestApp) -> String {
    match &app.backing {
        Backing::Postgres(db) => db.url.clone(),
        Backing::Sqlite(_) => panic!("a PostgreSQL test"),
    }
}

/// `disputes audit ARGS` against `env`; returns (exit code, stdout, stderr).
fn run_audit(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let cwd = tempdir::TempDir::new();
    let output = disputes(cwd.path(), &[env, &[("RUST_LOG", "warn")]].concat(), &[&["audit"], args].concat())
        .output()
        .expect("disputes runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test]
async fn replay_as_of_each_event_time_gives_the_status_of_that_moment() {
    let app = TestApp::postgres().await;
    let moments = judged_and_paid(&app, "o-asof").await;
    assert_eq!(moments.len(), 7);
    let as_of = |instant: chrono::DateTime<chrono::Utc>| {
        format!("/v1/audit/disputes/o-asof?as_of={}", instant.to_rfc3339().replace('+', "%2B"))
    };
    for (i, (instant, status, sequence)) in moments.iter().enumerate() {
        let answer = audit_get(&app, &as_of(*instant), Role::Auditor).await;
        answer.assert_ok();
        assert_eq!(
            (answer.status_text(), answer.sequence()),
            (status.as_str(), *sequence),
            "as of {instant}"
        );
        // Half an hour earlier (the clock moved an hour between steps): the moment before.
        let before = audit_get(&app, &as_of(*instant - Duration::minutes(30)), Role::Auditor).await;
        match i.checked_sub(1).map(|j| &moments[j]) {
            None => {
                before.assert_problem(404, "not_found");
            }
            Some((_, previous, previous_sequence)) => {
                assert_eq!(
                    (before.status_text(), before.sequence()),
                    (previous.as_str(), *previous_sequence)
                );
            }
        }
    }
    let statuses: Vec<&str> = moments.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(
        statuses,
        ["open", "awaiting_merchant", "rejected", "escalated", "under_review", "refund_pending", "refunded"]
    );
    let latest = audit_get(&app, "/v1/audit/disputes/o-asof", Role::Auditor).await;
    latest.assert_ok();
    assert_eq!(latest.status_text(), "refunded");
    assert_eq!(latest.body["refunded_total"], cny(4_000));
}

#[tokio::test]
async fn the_events_route_serves_each_event_with_its_hash_and_link() {
    let app = TestApp::sqlite().await;
    refunded(&app, "o-ev").await;
    let answer = audit_get(&app, "/v1/audit/disputes/o-ev/events", Role::Auditor).await;
    answer.assert_ok();
    assert_eq!(answer.body["chain"]["intact"], json!(true));
    let events = answer.body["events"].as_array().expect("events");
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["prevhash"], json!("0".repeat(64)));
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prevhash"], pair[0]["hash"], "each event links to the one before");
    }
    for event in events {
        assert_eq!(event["metadata"]["hash"], event["hash"]);
        assert_eq!(event["hash"].as_str().map(str::len), Some(64));
    }
    audit_get(&app, "/v1/audit/disputes/nobody/events", Role::Auditor).await.assert_problem(404, "not_found");
}

#[tokio::test]
async fn only_auditors_reach_the_audit_routes_and_auditors_never_write() {
    let app = TestApp::postgres().await;
    refunded(&app, "o-roles").await;
    for path in ["/v1/audit/disputes/o-roles", "/v1/audit/disputes/o-roles/events"] {
        for role in [Role::Buyer, Role::Merchant, Role::Arbitrator, Role::System] {
            audit_get(&app, path, role).await.assert_problem(403, "forbidden");
        }
        app.send(reqwest::Method::GET, path, None, None, &[]).await.assert_problem(401, "unauthenticated");
        audit_get(&app, path, Role::Auditor).await.assert_ok();
    }
    audit_get(&app, "/v1/audit/disputes/o-roles?as_of=yesterday", Role::Auditor)
        .await
        .assert_problem(400, "malformed_request");
    let write = app.command("o-roles", "withdraw", Role::Auditor, "auditor-1", json!({})).await;
    write.assert_problem(403, "forbidden");
    let events = audit_get(&app, "/v1/audit/disputes/o-roles/events", Role::Auditor).await;
    assert_eq!(events.body["events"].as_array().map(Vec::len), Some(4), "the refused write wrote nothing");
}

#[tokio::test]
async fn verify_passes_on_an_honest_log_and_names_each_tampered_stream_and_sequence() {
    let app = TestApp::postgres().await;
    for id in ["o-payload", "o-meta", "o-middle", "o-swap", "o-last", "o-honest"] {
        refunded(&app, id).await;
    }
    let store = &app.store;
    let honest = dispute_audit::verify(store, None, None, |_, _| {}).await.expect("verify runs");
    assert_eq!((honest.streams, honest.events, honest.breaks.len()), (6, 24, 0));
    let record = HeadsRecord::parse(&HeadsRecord::render(&honest.heads)).expect("heads file parses");

    let url = database_url(&app);
    let env = [("DATABASE_URL", url.as_str())];
    let (code, stdout, _) = run_audit(&env, &["verify"]);
    assert_eq!(code, 0, "an honest log verifies: {stdout}");
    assert!(stdout.contains("intact: 24 events in 6 streams"), "{stdout}");

    app.sql(
        "UPDATE events SET payload = jsonb_set(payload, '{RefundRequested,amount,amount_minor}', '9999') \
                WHERE aggregate_id = 'o-payload' AND sequence = 2",
    )
    .await;
    app.sql(
        "UPDATE events SET metadata = jsonb_set(metadata, '{actor_id}', '\"merchant-2\"') \
                WHERE aggregate_id = 'o-meta' AND sequence = 3",
    )
    .await;
    app.sql("DELETE FROM events WHERE aggregate_id = 'o-middle' AND sequence = 2").await;
    app.sql("UPDATE events SET sequence = 100 WHERE aggregate_id = 'o-swap' AND sequence = 2").await;
    app.sql("UPDATE events SET sequence = 2 WHERE aggregate_id = 'o-swap' AND sequence = 3").await;
    app.sql("UPDATE events SET sequence = 3 WHERE aggregate_id = 'o-swap' AND sequence = 100").await;
    app.sql("DELETE FROM events WHERE aggregate_id = 'o-last' AND sequence = 4").await;

    let found = breaks(store, None).await;
    let expected = vec![
        ("o-meta".to_string(), 3, BreakKind::Altered),
        ("o-middle".to_string(), 3, BreakKind::Missing { from: 2 }),
        ("o-middle".to_string(), 3, BreakKind::Unlinked),
        ("o-payload".to_string(), 2, BreakKind::Altered),
        ("o-swap".to_string(), 2, BreakKind::Unlinked),
        ("o-swap".to_string(), 2, BreakKind::Altered),
        ("o-swap".to_string(), 3, BreakKind::Unlinked),
        ("o-swap".to_string(), 3, BreakKind::Altered),
        ("o-swap".to_string(), 4, BreakKind::Unlinked),
    ];
    assert_eq!(found, expected, "the chain alone cannot see o-last");

    // Against the heads saved while the log was honest, the removed last event shows too.
    let with_record = breaks(store, Some(&record)).await;
    assert!(with_record.contains(&("o-last".to_string(), 4, BreakKind::Truncated { recorded: 4 })));
    assert_eq!(with_record.len(), expected.len() + 1, "{with_record:?}");

    let one = dispute_audit::verify(store, Some("o-payload"), None, |_, _| {}).await.expect("verify one");
    assert_eq!(one.streams, 1);
    assert_eq!(one.breaks.len(), 1);

    let (code, stdout, _) = run_audit(&env, &["verify"]);
    assert_eq!(code, 1, "a broken log exits 1: {stdout}");
    for line in [
        "broken: o-payload sequence 2: content does not match its hash",
        "broken: o-meta sequence 3: content does not match its hash",
        "broken: o-middle sequence 3: sequences 2..2 are missing",
        "broken: o-swap sequence 2: prevhash is not the previous event's hash",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let (code, stdout, _) = run_audit(&env, &["verify", "--order", "o-honest"]);
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test]
async fn a_removed_last_event_is_detected_against_jetstream() {
    let app = TestApp::postgres().await;
    let (urls, stream) = (nats_url(), unique_stream());
    let bus = NatsBus::connect(&urls, &stream).await.expect("NATS client");
    let relay = RunningRelay::on(app.store.clone(), bus.clone());
    refunded(&app, "o-cut").await;
    refunded(&app, "o-whole").await;
    refunded(&app, "o-kept").await;

    // Wait (bounded) until the relay has published all twelve events.
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let report = dispute_audit::verify(&app.store, None, None, |_, _| {}).await.expect("verify");
        let check = dispute_audit::compare_with_published(&bus, &report.heads, true).await;
        if let Ok(check) = check
            && check.matching == 3
        {
            assert!(check.breaks.is_empty(), "{:?}", check.breaks);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the relay did not publish every event");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    relay.stop().await;

    app.sql("DELETE FROM events WHERE aggregate_id = 'o-cut' AND sequence = 4").await;
    app.sql("DELETE FROM events WHERE aggregate_id = 'o-whole'").await;
    let report = dispute_audit::verify(&app.store, None, None, |_, _| {}).await.expect("verify");
    assert!(report.breaks.is_empty(), "the shortened chains are valid on their own");
    let check = dispute_audit::compare_with_published(&bus, &report.heads, true).await.expect("compare");
    let found: Vec<_> =
        check.breaks.iter().map(|b| (b.order_id.as_str(), b.sequence, b.kind.clone())).collect();
    assert_eq!(
        found,
        vec![
            ("o-cut", 4, BreakKind::Truncated { recorded: 4 }),
            ("o-whole", 1, BreakKind::Truncated { recorded: 4 })
        ]
    );
    assert_eq!(check.matching, 1);

    let url = database_url(&app);
    let env =
        [("DATABASE_URL", url.as_str()), ("NATS_URL", urls.as_str()), ("DISPUTES_STREAM", stream.as_str())];
    let (code, stdout, stderr) = run_audit(&env, &["verify"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("broken: o-cut sequence 4: missing from the log"), "{stdout}");
    assert!(stdout.contains("broken: o-whole sequence 1: missing from the log"), "{stdout}");

    delete_stream(&urls, &stream).await;
}

#[tokio::test]
async fn a_removed_last_event_is_detected_against_saved_heads_on_the_embedded_store() {
    let app = TestApp::sqlite().await;
    refunded(&app, "o-a").await;
    refunded(&app, "o-b").await;
    let Backing::Sqlite(dir) = &app.backing else { unreachable!() };
    let data_dir = dir.path().to_str().expect("utf-8 path").to_string();
    let heads = tempdir::join(dir, "heads.jsonl");
    let heads = heads.to_str().expect("utf-8 path");
    let env = [("DISPUTES_DATA_DIR", data_dir.as_str())];
    let (code, stdout, stderr) = run_audit(&env, &["verify", "--save-heads", heads]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("heads saved to"), "{stdout}");
    assert!(stderr.contains("removed last events cannot be detected"), "{stderr}");

    app.sql("DELETE FROM events WHERE aggregate_id = 'o-b' AND sequence = 4").await;
    let (code, stdout, _) = run_audit(&env, &["verify"]);
    assert_eq!(code, 0, "the chain alone cannot see it: {stdout}");
    let (code, stdout, _) = run_audit(&env, &["verify", "--heads", heads]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "broken: o-b sequence 4: missing from the log (the stream ends at 3, sequence 4 is on record)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("o-a"), "{stdout}");
}

/// Waits (bounded) until the live views reflect every event of `ids` (four each).
async fn views_caught_up(app: &TestApp, ids: &[&str], sequence: u64) {
    let token = app.token(Role::Auditor, "audit");
    for id in ids {
        let path = format!("/v1/disputes/{id}");
        let seq = sequence.to_string();
        app.send(reqwest::Method::GET, &path, Some(&token), None, &[("X-Min-Sequence", &seq)])
            .await
            .assert_ok();
    }
}

async fn drift_on(app: TestApp) {
    refunded(&app, "o-d1").await;
    refunded(&app, "o-d2").await;
    views_caught_up(&app, &["o-d1", "o-d2"], 4).await;
    let rows = dispute_audit::drift(&app.store, |_, _| {}).await.expect("drift runs");
    assert_eq!(rows, vec![], "an honest system has no drift");

    app.sql("UPDATE view_disputes SET status = 'closed' WHERE order_id = 'o-d1'").await;
    let payload_update = match &app.backing {
        Backing::Postgres(_) => {
            "UPDATE events SET metadata = jsonb_set(metadata, '{actor_id}', '\"impostor\"') \
             WHERE aggregate_id = 'o-d2' AND sequence = 3"
        }
        Backing::Sqlite(_) => {
            "UPDATE events SET metadata = json_set(metadata, '$.actor_id', 'impostor') \
             WHERE aggregate_id = 'o-d2' AND sequence = 3"
        }
    };
    app.sql(payload_update).await;
    let rows = dispute_audit::drift(&app.store, |_, _| {}).await.expect("drift runs");
    let summary: Vec<(&str, &str, Vec<&str>)> = rows
        .iter()
        .map(|r| (r.view, r.key.as_str(), r.columns.iter().map(|c| c.0.as_str()).collect()))
        .collect();
    assert_eq!(summary, vec![("disputes", "o-d1", vec!["status"]), ("timeline", "o-d2:3", vec!["actor_id"])]);
    assert_eq!(rows[0].columns[0].1.as_deref(), Some("closed"));
    assert_eq!(rows[0].columns[0].2.as_deref(), Some("refunded"));
    assert_eq!(rows[1].columns[0].2.as_deref(), Some("impostor"));
}

#[tokio::test]
async fn drift_is_empty_when_honest_and_names_the_rows_after_a_view_or_an_event_is_altered_on_postgres() {
    drift_on(TestApp::postgres().await).await;
}

#[tokio::test]
async fn drift_is_empty_when_honest_and_names_the_rows_after_a_view_or_an_event_is_altered_on_sqlite() {
    drift_on(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn drift_and_export_from_the_command_line() {
    let app = TestApp::postgres().await;
    refunded(&app, "o-x").await;
    views_caught_up(&app, &["o-x"], 4).await;
    let url = database_url(&app);
    let env = [("DATABASE_URL", url.as_str())];
    let (code, stdout, stderr) = run_audit(&env, &["drift"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    app.sql("UPDATE view_disputes SET refunded_minor = 1 WHERE order_id = 'o-x'").await;
    let (code, stdout, _) = run_audit(&env, &["drift"]);
    assert_eq!(code, 1);
    assert_eq!(stdout.trim(), "disputes o-x: refunded_minor: live \"1\" rebuilt \"2500\";");

    let (code, stdout, stderr) = run_audit(&env, &["export", "o-x"]);
    assert_eq!(code, 0, "{stderr}");
    let record: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(record["dispute_id"], json!("o-x"));
    assert_eq!(record["chain"]["intact"], json!(true));
    assert_eq!(record["events"].as_array().map(Vec::len), Some(4));
    assert_eq!(record["state"]["status"], json!("refunded"));
    assert_eq!(record["views"]["dispute"]["status"], json!("refunded"));
    assert_eq!(record["views"]["timeline"].as_array().map(Vec::len), Some(4));

    let as_of = (epoch() + Duration::minutes(1)).to_rfc3339();
    let (code, stdout, stderr) = run_audit(&env, &["replay", "o-x", "--as-of", &as_of]);
    assert_eq!(code, 0, "{stderr}");
    let state: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(state["status"], json!("refunded"), "every command ran at the epoch");
    let (code, _, stderr) = run_audit(&env, &["replay", "o-x", "--as-of", "2020-01-01T00:00:00Z"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no events"), "{stderr}");
}

/// The body of the first ```FENCE block of `doc`.
fn doc_block(doc: &str, fence: &str) -> String {
    let start = doc.find(&format!("```{fence}\n")).unwrap_or_else(|| panic!("a ```{fence} block"));
    let body = &doc[start + fence.len() + 4..];
    body[..body.find("```").expect("a closed block")].to_string()
}

#[tokio::test]
async fn the_documented_python_recipe_recomputes_every_stored_hash() {
    let app = TestApp::postgres().await;
    app.register(&order("o-doc")).await.assert_ok();
    let description = "quote \" backslash \\ newline \n tab \t ctl \u{1} del \u{7f} é 𝄞 / <>";
    app.command(
        "o-doc",
        "request",
        Role::Buyer,
        BUYER,
        json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(1_000),
                "description": description, "evidence": [evidence("photo")] }),
    )
    .await
    .assert_ok();
    app.merchant_accept("o-doc").await.assert_ok();
    let answer = audit_get(&app, "/v1/audit/disputes/o-doc/events", Role::Auditor).await;
    answer.assert_ok();
    let events = answer.body["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1]["payload"]["RefundRequested"]["description"], json!(description));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit.md"))
        .expect("docs/audit.md");
    let dir = tempdir::TempDir::new();
    let script = tempdir::join(&dir, "recompute.py");
    let python = doc_block(&doc, "python");
    let main = "import sys\nprint(event_hash(json.load(open(sys.argv[1], encoding='utf-8'))))\n";
    std::fs::write(&script, format!("{python}\n{main}")).expect("write script");
    for event in &events {
        let file = tempdir::join(&dir, "event.json");
        std::fs::write(&file, serde_json::to_vec(event).expect("JSON")).expect("write event");
        let output = Command::new("python3").arg(&script).arg(&file).output().expect("python3 runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), event["hash"].as_str().expect("a hash"));
    }
}

#[tokio::test]
async fn the_documented_jq_recipe_recomputes_a_stored_hash_with_escapes() {
    let app = TestApp::sqlite().await;
    app.register(&order("o-jq")).await.assert_ok();
    let description = "quote \" backslash \\ newline \n tab \t ctl \u{1} é 𝄞 / <>";
    app.command(
        "o-jq",
        "request",
        Role::Buyer,
        BUYER,
        json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(1_000),
                "description": description, "evidence": [] }),
    )
    .await
    .assert_ok();
    let answer = audit_get(&app, "/v1/audit/disputes/o-jq/events", Role::Auditor).await;
    let event = answer.body["events"][1].clone();
    assert_eq!(event["payload"]["RefundRequested"]["description"], json!(description));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit.md"))
        .expect("docs/audit.md");
    let jq_line =
        doc_block(&doc, "sh").lines().find(|l| l.starts_with("jq ")).expect("the jq line").to_string();
    let dir = tempdir::TempDir::new();
    std::fs::write(tempdir::join(&dir, "event.json"), serde_json::to_vec(&event).expect("JSON"))
        .expect("write");
    let output =
        Command::new("sh").arg("-c").arg(&jq_line).current_dir(dir.path()).output().expect("sh runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).split_whitespace().next(), event["hash"].as_str());
}

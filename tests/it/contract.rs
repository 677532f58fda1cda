//! The published contract, judged by tools that share none of the service's code:
//! `/openapi.json` by openapi-spec-validator, the service's answers to generated requests by
//! schemathesis (once per role), and the router's routes against the document's operations.
//!
//! The Python tools are installed by `.ci/run` (pinned in `tests/requirements.txt`); a missing
//! tool fails the test, it never skips it.

use std::process::{Command, Output};
use std::time::Duration;

use dispute_api::EdgeConfig;
use dispute_domain::Role;
use disputes_tests::{BUYER, MERCHANT, Setup, TestApp, order};
use reqwest::Method;

/// The checks every schemathesis run applies; each failure fails the test.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      negative_data_rejection,ignored_auth";

/// Examples per operation and phase; `SCHEMATHESIS_MAX_EXAMPLES` raises it for a long run.
const MAX_EXAMPLES: &str = "12";

/// Runs a tool off the test's runtime (the service under test answers on it), failing loudly
/// when the tool is not installed.
async fn run(program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("the tool's thread");
    output.unwrap_or_else(|e| {
        panic!(
            "cannot run {program} ({e}): install the test tools with `pip install -r tests/requirements.txt`"
        )
    })
}

fn text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The service with a short `X-Min-Sequence` wait (a generated sequence is mostly never
/// reached) and the dispute the document's examples name, so that generated requests also
/// reach existing data: order `o-1001`, a refund requested.
async fn service() -> TestApp {
    let edge = EdgeConfig { view_wait: Duration::from_millis(50), ..EdgeConfig::default() };
    let app = TestApp::postgres_with(Setup { edge, ..Setup::default() }).await;
    app.register(&order("o-1001")).await.assert_ok();
    app.request_refund("o-1001", "refund_only", "quality_issue", 5_000).await.assert_ok();
    app
}

#[tokio::test]
async fn openapi_spec_validator_accepts_the_document() {
    let app = service().await;
    let document = app.send(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(document.status, 200);
    let dir = disputes_tests::tempdir::TempDir::new();
    let path = disputes_tests::tempdir::join(&dir, "openapi.json");
    std::fs::write(&path, document.body.to_string()).expect("the document is written");
    let output = run("openapi-spec-validator", &[path.to_str().expect("a UTF-8 path")]).await;
    assert!(output.status.success(), "openapi-spec-validator refuses the document:\n{}", text(&output));
}

/// Every documented operation is served (a request without a token reaches the route's auth,
/// not the fallback), and no documented path takes a method the document does not list.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let app = service().await;
    let document = app.send(Method::GET, "/openapi.json", None, None, &[]).await.body;
    let paths = document["paths"].as_object().expect("paths");
    let methods = [Method::GET, Method::PUT, Method::POST, Method::PATCH, Method::DELETE];
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "o-1001");
        for method in &methods {
            let operation = &item[method.as_str().to_lowercase()];
            let answer = app.send(method.clone(), &concrete, None, None, &[]).await;
            if operation.is_null() {
                answer.assert_problem(405, "method_not_allowed");
                continue;
            }
            operations += 1;
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                answer.assert_problem(401, "unauthenticated");
            } else {
                assert!(answer.status < 400, "{method} {path} answers {}: {}", answer.status, answer.body);
            }
        }
    }
    let commands = dispute_api::ROUTES.len();
    assert!(operations >= commands + 13, "{operations} operations documented, {commands} of them commands");
    for route in dispute_api::ROUTES {
        let method = format!("{:?}", route.method).to_lowercase();
        assert!(paths[route.path][&method].is_object(), "{method} {} is documented", route.path);
    }
}

/// The service holds to its document for every role: no server error, only documented statuses,
/// content types and headers, bodies that match their schemas, every request outside the
/// schemas refused, and no route served without a token. Two runs: every `{id}` generated,
/// then every `{id}` the seeded dispute (`tests/schemathesis-seeded.toml`), so that commands
/// also meet its rules and change its state.
async fn schemathesis_as(role: Role, sub: &str) {
    let app = service().await;
    let token = app.token(role, sub);
    let seeded = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis-seeded.toml");
    for config in [None, Some(seeded)] {
        schemathesis_run(&app, &token, config).await;
    }
}

async fn schemathesis_run(app: &TestApp, token: &str, config: Option<&str>) {
    let examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_string());
    let authorization = format!("Authorization: Bearer {token}");
    let mut global = vec!["--no-color"];
    if let Some(config) = config {
        global.extend(["--config-file", config]);
    }
    let output = run(
        "schemathesis",
        &[
            global.as_slice(),
            &[
                "run",
                &app.url("/openapi.json"),
                "--checks",
                CHECKS,
                "--header",
                &authorization,
                "--max-examples",
                &examples,
                "--workers",
                "1",
                "--seed",
                "20261130",
            ],
        ]
        .concat(),
    )
    .await;
    let report = text(&output);
    assert!(output.status.success(), "schemathesis ({config:?}) found failures:\n{report}");
    eprintln!("{report}");
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_the_system() {
    schemathesis_as(Role::System, "order-service").await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_a_buyer() {
    schemathesis_as(Role::Buyer, BUYER).await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_a_merchant() {
    schemathesis_as(Role::Merchant, MERCHANT).await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_an_arbitrator() {
    schemathesis_as(Role::Arbitrator, "a-7").await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_as_an_auditor() {
    schemathesis_as(Role::Auditor, "auditor-1").await;
}

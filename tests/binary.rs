//! Running the built binaries as an operator would: configuration from the environment only,
//! the address read from stdout, SIGTERM or SIGKILL to stop; and plain HTTP calls to them.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::{SECRET, TestDatabase, bench_binary, cny, disputes_binary, evidence, order};

/// How long a process may take to start or stop before the test gives up on it.
pub const PATIENCE: StdDuration = StdDuration::from_secs(60);

/// The configuration of an instance on the test PostgreSQL and NATS, publishing to `stream`.
pub fn service_env<'a>(db: &'a TestDatabase, nats: &'a str, stream: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("DATABASE_URL", &db.url),
        ("NATS_URL", nats),
        ("DISPUTES_STREAM", stream),
        ("DISPUTES_JWT_SECRET", SECRET),
    ]
}

/// `disputes ARGS` with no configuration but `env`, run in `cwd`.
pub fn disputes(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    run_built(&disputes_binary(), cwd, env, args)
}

/// `disputes-bench ARGS` (the load generators), like [`disputes`].
pub fn disputes_bench(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    run_built(&bench_binary(), cwd, env, args)
}

fn run_built(binary: &Path, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command.env_clear().current_dir(cwd).args(args);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A started process, killed when dropped if still running; its stdout arrives line by line,
/// its stderr is collected.
pub struct Process {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Self {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the disputes binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self { child, lines, stderr: Some(stderr) }
    }

    /// Waits for the `listening on http://ADDR` line and returns ADDR.
    pub fn listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, addr)) = line.split_once("listening on http://") {
                        return addr
                            .trim()
                            .parse()
                            .unwrap_or_else(|e| panic!("not an address in {line:?}: {e}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("no `listening on` line within {PATIENCE:?}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait();
                    panic!("the server ended before listening ({status}); stderr:\n{}", self.stderr());
                }
            }
        }
    }

    /// Waits for the process to end.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("the process can be waited for") {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not end within {PATIENCE:?}");
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(sent.success(), "kill -TERM failed");
        self.wait()
    }

    /// Everything the process wrote to stderr; call once it has ended.
    pub fn stderr(&mut self) -> String {
        self.stderr.take().map(|reader| reader.join().expect("the stderr reader")).unwrap_or_default()
    }

    /// Everything it wrote to stdout that was not read yet; call once it has ended.
    pub fn rest_of_stdout(&mut self) -> Vec<String> {
        self.lines.iter().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `disputes token` and returns its stdout.
pub fn token_output(cwd: &Path, env: &[(&str, &str)], role: &str, sub: &str) -> String {
    let output = disputes(cwd, env, &["token", "--role", role, "--sub", sub])
        .stdin(Stdio::null())
        .output()
        .expect("disputes token runs");
    assert!(output.status.success(), "disputes token failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("the token is UTF-8")
}

pub fn token(cwd: &Path, env: &[(&str, &str)], role: &str, sub: &str) -> String {
    token_output(cwd, env, role, sub).trim_end().to_string()
}

/// An order like [`order`], delivered a day before the real time (the binary's clock).
pub fn recent_order(id: &str) -> Value {
    let now = Utc::now();
    let mut facts = order(id);
    facts["paid_at"] = json!(now - Duration::days(3));
    facts["shipped_at"] = json!(now - Duration::days(2));
    facts["delivered_at"] = json!(now - Duration::days(1));
    facts
}

/// Sends one request; returns the status and the JSON body (Null when none).
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("a body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub async fn register(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    facts: &Value,
) -> (u16, Value) {
    let id = facts["order_id"].as_str().expect("order_id");
    call(client, reqwest::Method::PUT, format!("http://{addr}/v1/orders/{id}"), token, Some(facts.clone()))
        .await
}

pub async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    id: &str,
    command: &str,
    body: Value,
) -> (u16, Value) {
    call(
        client,
        reqwest::Method::POST,
        format!("http://{addr}/v1/disputes/{id}/{command}"),
        token,
        Some(body),
    )
    .await
}

pub fn request_body() -> Value {
    json!({
        "kind": "refund_only", "reason": "quality_issue", "amount": cny(6_000),
        "description": "the cover is torn", "evidence": [evidence("photo")],
    })
}

/// Reads the dispute as `token`'s holder until its status is `expected`, at most `limit`.
pub async fn until_status(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    id: &str,
    expected: &str,
    limit: StdDuration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) =
            call(client, reqwest::Method::GET, format!("http://{addr}/v1/disputes/{id}"), token, None).await;
        if status == 200 && body["status"] == expected {
            return body;
        }
        assert!(Instant::now() < deadline, "{id} is not {expected} within {limit:?}: {status} {body}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0").local_addr().expect("an address").port()
}

//! The HTTP edge behind a load balancer: time limits on requests and on their headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dispute_api::{AppState, EdgeConfig, TokenKeys};
use dispute_domain::{Actor, DisputeServices, ManualClock, Policy, Role};
use dispute_store::{Store, StoreConfig};
use disputes_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Far above the one-second limits the edge runs with here: an answer or a close before it is
/// the limit at work, not the test's patience.
const BOUND: Duration = Duration::from_secs(10);

/// The API alone on the embedded store, with one-second request and header limits.
struct Edge {
    addr: SocketAddr,
    tokens: TokenKeys,
    stop: CancellationToken,
    _dir: tempdir::TempDir,
}

impl Edge {
    async fn start() -> Self {
        let dir = tempdir::TempDir::new();
        let services = DisputeServices::new(Arc::new(ManualClock::new(epoch())), Arc::new(Policy::builtin()));
        let store = Store::open(&StoreConfig::Sqlite { path: tempdir::join(&dir, "disputes.db") }, services)
            .await
            .expect("store opens");
        let tokens = TokenKeys::new(SECRET);
        let edge =
            EdgeConfig { request_timeout: Duration::from_secs(1), header_timeout: Duration::from_secs(1) };
        let state = AppState::new(store, tokens.clone()).with_edge(edge);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let stop = CancellationToken::new();
        tokio::spawn(dispute_api::serve(listener, state, stop.clone().cancelled_owned()));
        Self { addr, tokens, stop, _dir: dir }
    }

    fn token(&self) -> String {
        self.tokens.issue(&Actor::new(Role::System, "order-service"), chrono::Duration::hours(1))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Everything the server sends until it closes the connection (or the bound passes: panics).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut received))
        .await
        .expect("the server answers or closes before the bound")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_request_timeout() {
    let edge = Edge::start().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    let head = format!(
        "PUT /v1/orders/o-1 HTTP/1.1\r\nhost: disputes\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"order_id\":",
        edge.token()
    );
    stream.write_all(head.as_bytes()).await.expect("sends the headers and part of the body");

    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn half_a_request_line_is_disconnected() {
    let edge = Edge::start().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    stream.write_all(b"GET /healthz HT").await.expect("sends half a request line");

    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "no answer to an unfinished request: {answer}");
}

#[tokio::test]
async fn stalled_headers_are_disconnected() {
    let edge = Edge::start().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: disputes\r\n").await.expect("sends some headers");

    let answer = read_until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "no answer to unfinished headers: {answer}");
}

#[tokio::test]
async fn a_prompt_request_is_answered_within_the_limits() {
    let edge = Edge::start().await;
    let mut stream = TcpStream::connect(edge.addr).await.expect("connects");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: disputes\r\nconnection: close\r\n\r\n")
        .await
        .expect("sends a request");

    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

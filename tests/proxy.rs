//! A TCP proxy in front of PostgreSQL whose link a test can cut: a lost network or a restarted
//! server as the service sees it, without touching the server the other tests share.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct Proxy {
    /// The database URL, through the proxy.
    url: String,
    state: Arc<State>,
    accepting: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    cut: AtomicBool,
    /// Each accepted connection and its own to the server, copying both ways.
    links: std::sync::Mutex<JoinSet<()>>,
}

impl Proxy {
    /// A proxy to the server `url` names; [`Proxy::url`] is `url` through it.
    pub async fn start(url: &str) -> Self {
        let options = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
        let server = format!("{}:{}", options.get_host(), options.get_port());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port for the proxy");
        let addr: SocketAddr = listener.local_addr().expect("the proxy's address");
        let proxied = url.replacen(&server, &addr.to_string(), 1);
        assert_ne!(proxied, url, "the proxy needs a URL with `{server}` in it: {url}");
        let state = Arc::new(State::default());
        let accepting = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if state.cut.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let server = server.clone();
                    state.links.lock().expect("not poisoned").spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(&server).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            }
        });
        Self { url: proxied, state, accepting }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection through the proxy, and each new one as soon as it is accepted.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.links.lock().expect("not poisoned").abort_all();
    }

    /// Lets new connections through again.
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.state.links.lock().expect("not poisoned").abort_all();
    }
}

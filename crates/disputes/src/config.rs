//! Configuration: flags, then environment variables, then an optional TOML file (`--config`),
//! then defaults. Everything the service reads from outside is named here.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use dispute_api::{EdgeConfig, RateLimit, TokenKeys, parse_rate_limit};
use dispute_domain::{DisputeServices, Policy, SystemClock, parse_duration};
use dispute_store::{ClaimTimes, Store, StoreConfig};
use serde::Deserialize;

/// The PostgreSQL connections unless configured, split in two pools: 20 for the commands'
/// appends, 20 for every other statement (the reads of a command's stream, the views' reads,
/// the projector's transactions, the timer's claims). A request holds a connection only for
/// the statement it runs, so 32 requests at once do not queue for the pools before they queue
/// in the database. The log reader and the relay's lease keep connections of their own
/// besides. Two instances stay within PostgreSQL's default of 100 connections.
const DEFAULT_MAX_CONNECTIONS: u32 = 40;

/// Settings shared by every subcommand. Each can come from a flag, an environment variable or
/// the `--config` file (the key is the flag's name with `_`), in that order of precedence;
/// [`Settings::resolve`] merges the file in.
#[derive(Debug, Default, Args)]
pub struct Settings {
    /// A TOML file with any of the settings below, keyed by their flag's name with `_`
    /// (database_url, database_max_connections, nats_url, stream, data_dir, jwt_secret,
    /// jwt_public_key, jwks, policy, addr, idempotency_wait, idempotency_takeover, log_format,
    /// request_timeout, header_timeout, cors_origins, rate_limit, rate_limit_burst, view_wait).
    #[arg(long, env = "DISPUTES_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL event store (`postgres://…`). Unset: the embedded SQLite store in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL connections in the pool [default: 40].
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", global = true)]
    pub database_max_connections: Option<u32>,
    /// NATS server(s), comma-separated. Unset: the in-process bus.
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// The JetStream stream events are published to; subjects are
    /// `<lowercase name>.events.<order_id>` [default: DISPUTES].
    #[arg(long, env = "DISPUTES_STREAM", global = true)]
    pub stream: Option<String>,
    /// Where the embedded default keeps its files (SQLite database, generated token secret)
    /// [default: ./data].
    #[arg(long, env = "DISPUTES_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The token secret (HMAC key) for HS256 tokens. Embedded default: generated once into the
    /// data dir by `serve`, unless public keys are configured. Required with DATABASE_URL
    /// unless public keys are configured.
    #[arg(long, env = "DISPUTES_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A PEM public key (RSA or P-256) of the identity provider: RS256 or ES256 tokens it
    /// signed are accepted.
    #[arg(long, env = "DISPUTES_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS file of the identity provider: RS256 and ES256 tokens are checked with the key
    /// their `kid` names.
    #[arg(long, env = "DISPUTES_JWKS", global = true)]
    pub jwks: Option<PathBuf>,
    /// A policy file (TOML). Unset: the built-in defaults.
    #[arg(long, env = "DISPUTES_POLICY", global = true)]
    pub policy: Option<PathBuf>,
    /// The address `serve` listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "DISPUTES_ADDR", global = true)]
    pub addr: Option<SocketAddr>,
    /// How long a request waits for a concurrent request with the same Idempotency-Key before
    /// answering 409 with Retry-After, e.g. `10s` [default: 10s].
    #[arg(long, env = "DISPUTES_IDEMPOTENCY_WAIT", global = true, value_parser = parse_duration)]
    pub idempotency_wait: Option<chrono::Duration>,
    /// After how long a claim on an Idempotency-Key whose request never answered (its process
    /// died) is taken over by a retry, which first looks in the log for the command's events
    /// [default: 30s].
    #[arg(long, env = "DISPUTES_IDEMPOTENCY_TAKEOVER", global = true, value_parser = parse_duration)]
    pub idempotency_takeover: Option<chrono::Duration>,
    /// Log lines as `text` or `json` (one object per line) [default: text].
    #[arg(long, env = "DISPUTES_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    // The HTTP edge behind a load balancer.
    /// How long a request may take, its body included, before it is answered 408
    /// `request_timeout`, e.g. `30s` [default: 30s].
    #[arg(long, env = "DISPUTES_REQUEST_TIMEOUT", global = true, value_parser = parse_duration)]
    pub request_timeout: Option<chrono::Duration>,
    /// How long a client may take to send a request's headers before its connection is closed
    /// [default: 10s].
    #[arg(long, env = "DISPUTES_HEADER_TIMEOUT", global = true, value_parser = parse_duration)]
    pub header_timeout: Option<chrono::Duration>,
    /// Origins whose browser pages may call the API (CORS), comma-separated, e.g.
    /// `https://shop.example,https://admin.shop.example` [default: none, CORS off].
    #[arg(long, env = "DISPUTES_CORS_ORIGINS", global = true)]
    pub cors_origins: Option<String>,
    /// How many requests each caller (role and token subject) may make, as `N/s`, `N/min` or
    /// `N/h`; over it, 429 `rate_limited` with Retry-After [default: none, no limit].
    #[arg(long, env = "DISPUTES_RATE_LIMIT", global = true, value_parser = parse_rate_limit)]
    pub rate_limit: Option<RateLimit>,
    /// How many requests a caller that has been quiet may send at once [default: the N of
    /// the rate limit].
    #[arg(long, env = "DISPUTES_RATE_LIMIT_BURST", global = true, value_parser = parse_burst)]
    pub rate_limit_burst: Option<NonZeroU32>,
    /// How long a view read with `X-Min-Sequence` waits for the view to reach it before
    /// answering 409 `view_behind` [default: 5s].
    #[arg(long, env = "DISPUTES_VIEW_WAIT", global = true, value_parser = parse_duration)]
    pub view_wait: Option<chrono::Duration>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    nats_url: Option<String>,
    stream: Option<String>,
    data_dir: Option<PathBuf>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwks: Option<PathBuf>,
    policy: Option<PathBuf>,
    addr: Option<SocketAddr>,
    idempotency_wait: Option<String>,
    idempotency_takeover: Option<String>,
    log_format: Option<LogFormat>,
    // The HTTP edge.
    request_timeout: Option<String>,
    header_timeout: Option<String>,
    cors_origins: Option<String>,
    rate_limit: Option<String>,
    rate_limit_burst: Option<i64>,
    view_wait: Option<String>,
}

/// A fatal configuration problem, printed as is before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("policy file {path}: {source}")]
    Policy { path: String, source: dispute_domain::PolicyError },
    #[error(
        "DISPUTES_JWT_SECRET is required with DATABASE_URL (every instance must share it), \
         unless DISPUTES_JWT_PUBLIC_KEY or DISPUTES_JWKS is set"
    )]
    SecretRequired,
    #[error("DISPUTES_JWT_SECRET must be at least 32 bytes")]
    SecretTooShort,
    #[error("cannot keep the token secret in {path}: {source}")]
    SecretFile { path: String, source: std::io::Error },
    #[error(
        "no token secret: {path} does not exist (`disputes serve` on the embedded default \
         generates it) and none is configured (DISPUTES_JWT_SECRET, --jwt-secret, or jwt_secret \
         in the --config file)"
    )]
    NoSecret { path: String },
    #[error(
        "cannot mint tokens: only public keys are configured (DISPUTES_JWT_PUBLIC_KEY / \
         DISPUTES_JWKS), so tokens come from the identity provider; DISPUTES_JWT_SECRET also \
         accepts HS256 tokens this command can mint"
    )]
    CannotMint,
    #[error("token key file {path}: {message}")]
    Key { path: String, message: String },
    #[error("DISPUTES_CORS_ORIGINS: {0:?} is not an origin (scheme://host[:port], http or https)")]
    CorsOrigin(String),
    #[error("DISPUTES_RATE_LIMIT_BURST is set without DISPUTES_RATE_LIMIT: a burst needs a rate")]
    BurstWithoutRate,
    #[error(transparent)]
    Store(#[from] dispute_store::StoreError),
}

impl Settings {
    /// Fills what flags and environment left unset from the `--config` file.
    pub fn resolve(mut self) -> Result<Self, ConfigError> {
        let Some(path) = &self.config else { return Ok(self) };
        let text = read(path)?;
        let file: FileSettings = toml::from_str(&text)
            .map_err(|e| ConfigError::File { path: path.display().to_string(), message: e.to_string() })?;
        let duration = |key: &str, text: Option<String>| {
            text.map(|text| parse_duration(&text)).transpose().map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                message: format!("{key}: {e}"),
            })
        };
        self.idempotency_wait =
            self.idempotency_wait.or(duration("idempotency_wait", file.idempotency_wait)?);
        self.idempotency_takeover =
            self.idempotency_takeover.or(duration("idempotency_takeover", file.idempotency_takeover)?);
        self.database_url = self.database_url.or(file.database_url);
        self.database_max_connections = self.database_max_connections.or(file.database_max_connections);
        self.nats_url = self.nats_url.or(file.nats_url);
        self.stream = self.stream.or(file.stream);
        self.data_dir = self.data_dir.or(file.data_dir);
        self.jwt_secret = self.jwt_secret.or(file.jwt_secret);
        self.jwt_public_key = self.jwt_public_key.or(file.jwt_public_key);
        self.jwks = self.jwks.or(file.jwks);
        self.policy = self.policy.or(file.policy);
        self.addr = self.addr.or(file.addr);
        self.log_format = self.log_format.or(file.log_format);
        // The HTTP edge.
        self.request_timeout = self.request_timeout.or(duration("request_timeout", file.request_timeout)?);
        self.header_timeout = self.header_timeout.or(duration("header_timeout", file.header_timeout)?);
        self.cors_origins = self.cors_origins.or(file.cors_origins);
        self.view_wait = self.view_wait.or(duration("view_wait", file.view_wait)?);
        let invalid = |key: &str, message: String| ConfigError::File {
            path: path.display().to_string(),
            message: format!("{key}: {message}"),
        };
        let rate_limit = file.rate_limit.map(|text| parse_rate_limit(&text)).transpose();
        self.rate_limit = self.rate_limit.or(rate_limit.map_err(|e| invalid("rate_limit", e))?);
        let burst = file.rate_limit_burst.map(burst).transpose();
        self.rate_limit_burst = self.rate_limit_burst.or(burst.map_err(|e| invalid("rate_limit_burst", e))?);
        Ok(self)
    }

    /// The JetStream stream name.
    pub fn stream(&self) -> String {
        self.stream.clone().unwrap_or_else(|| "DISPUTES".to_string())
    }

    /// Where `serve` listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or_default()
    }

    /// One line naming what `serve` runs on: the store, the bus and stream, the policy.
    pub fn describe(&self) -> String {
        let store = match &self.database_url {
            // Credentials stay out of the logs.
            Some(url) => match (url.split_once("://"), url.rsplit_once('@')) {
                (Some((scheme, _)), Some((_, rest))) => format!("PostgreSQL {scheme}://…@{rest}"),
                _ => format!("PostgreSQL {url}"),
            },
            None => format!("SQLite in {}", self.data_dir().display()),
        };
        let bus = match &self.nats_url {
            Some(urls) => format!("NATS {urls}, stream {}", self.stream()),
            None => "in-process (views from the log)".to_string(),
        };
        let policy = match &self.policy {
            Some(path) => path.display().to_string(),
            None => "built-in".to_string(),
        };
        format!("store: {store}; bus: {bus}; policy: {policy}")
    }

    /// How long idempotency claims wait and last.
    pub fn idempotency(&self) -> ClaimTimes {
        let defaults = ClaimTimes::default();
        let std = |d: Option<chrono::Duration>, default| d.and_then(|d| d.to_std().ok()).unwrap_or(default);
        ClaimTimes {
            wait: std(self.idempotency_wait, defaults.wait),
            takeover_after: std(self.idempotency_takeover, defaults.takeover_after),
        }
    }

    /// The HTTP edge's time limits, CORS origins and rate limit.
    pub fn edge(&self) -> Result<EdgeConfig, ConfigError> {
        let defaults = EdgeConfig::default();
        let std = |d: Option<chrono::Duration>, default| d.and_then(|d| d.to_std().ok()).unwrap_or(default);
        let cors_origins = dispute_api::parse_cors_origins(self.cors_origins.as_deref().unwrap_or(""))
            .map_err(ConfigError::CorsOrigin)?;
        let rate_limit = match (self.rate_limit, self.rate_limit_burst) {
            (Some(limit), burst) => Some(burst.map_or(limit, |burst| limit.with_burst(burst))),
            (None, Some(_)) => return Err(ConfigError::BurstWithoutRate),
            (None, None) => None,
        };
        Ok(EdgeConfig {
            request_timeout: std(self.request_timeout, defaults.request_timeout),
            header_timeout: std(self.header_timeout, defaults.header_timeout),
            cors_origins,
            rate_limit,
            view_wait: std(self.view_wait, defaults.view_wait),
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./data"))
    }

    pub fn store(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                max_connections: self.database_max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            },
            None => StoreConfig::Sqlite { path: self.data_dir().join("disputes.db") },
        }
    }

    pub fn policy(&self) -> Result<Arc<Policy>, ConfigError> {
        let Some(path) = &self.policy else { return Ok(Arc::new(Policy::builtin())) };
        let text = read(path)?;
        let policy = Policy::from_toml(&text)
            .map_err(|source| ConfigError::Policy { path: path.display().to_string(), source })?;
        // A misspelt category silently gives the intended one the default rules.
        for (a, b) in policy.lookalike_categories() {
            tracing::warn!(policy = %path.display(), "policy categories {a:?} and {b:?} differ by a letter or two: a typo?");
        }
        Ok(Arc::new(policy))
    }

    /// What `App::start` needs to run the service on `listen` with every part, on the system
    /// clock.
    pub fn app_config(&self, listen: SocketAddr) -> Result<crate::Config, ConfigError> {
        Ok(crate::Config {
            store: self.store(),
            services: DisputeServices::new(Arc::new(SystemClock), self.policy()?),
            bus: self
                .nats_url
                .as_ref()
                .map(|urls| crate::BusConfig { urls: urls.clone(), stream: self.stream() }),
            tokens: self.token_keys()?,
            idempotency: self.idempotency(),
            edge: self.edge()?,
            listen,
            parts: crate::Parts::ALL,
        })
    }

    /// Opens the configured store with the configured policy and the system clock.
    pub async fn open_store(&self) -> Result<Arc<Store>, ConfigError> {
        let services = DisputeServices::new(Arc::new(SystemClock), self.policy()?);
        Ok(Store::open(&self.store(), services).await?)
    }

    /// The token secret: configured, or (embedded default only) generated once into the data dir.
    pub fn jwt_secret(&self) -> Result<String, ConfigError> {
        if let Some(secret) = self.configured_secret()? {
            return Ok(secret);
        }
        if self.database_url.is_some() {
            return Err(ConfigError::SecretRequired);
        }
        if let Some(secret) = self.stored_secret()? {
            return Ok(secret);
        }
        let dir = self.data_dir();
        let path = self.secret_path();
        let file_error = |source| ConfigError::SecretFile { path: path.display().to_string(), source };
        std::fs::create_dir_all(&dir).map_err(file_error)?;
        let secret: String = {
            use rand::Rng;
            let bytes: [u8; 32] = rand::rng().random();
            dispute_store::chain::hex(&bytes)
        };
        write_new_secret(&path, &secret).map_err(file_error)?;
        // Another process may have created it first: whatever is on disk wins.
        Ok(std::fs::read_to_string(&path).map_err(file_error)?.trim().to_string())
    }

    /// The keys `serve` checks tokens with: the identity provider's public keys when configured,
    /// and the secret when configured (or, with no public key, as [`Self::jwt_secret`] finds it).
    pub fn token_keys(&self) -> Result<TokenKeys, ConfigError> {
        let mut keys = match self.configured_secret()? {
            Some(secret) => TokenKeys::new(&secret),
            None if self.has_public_keys() => TokenKeys::public_only(),
            None => TokenKeys::new(&self.jwt_secret()?),
        };
        if let Some(path) = &self.jwt_public_key {
            keys = keys.with_public_key_pem(&read(path)?).map_err(key_error(path))?;
        }
        if let Some(path) = &self.jwks {
            keys = keys.with_jwks(&read(path)?).map_err(key_error(path))?;
        }
        Ok(keys)
    }

    /// The secret `disputes token` signs with: the one `serve` checks HS256 tokens with, never a
    /// new one (a made-up secret's tokens would be refused by the running service).
    pub fn minting_secret(&self) -> Result<String, ConfigError> {
        if let Some(secret) = self.configured_secret()? {
            return Ok(secret);
        }
        if self.has_public_keys() {
            return Err(ConfigError::CannotMint);
        }
        if self.database_url.is_some() {
            return Err(ConfigError::SecretRequired);
        }
        self.stored_secret()?
            .ok_or_else(|| ConfigError::NoSecret { path: self.secret_path().display().to_string() })
    }

    fn has_public_keys(&self) -> bool {
        self.jwt_public_key.is_some() || self.jwks.is_some()
    }

    fn configured_secret(&self) -> Result<Option<String>, ConfigError> {
        match &self.jwt_secret {
            Some(secret) if secret.len() < 32 => Err(ConfigError::SecretTooShort),
            secret => Ok(secret.clone()),
        }
    }

    fn secret_path(&self) -> PathBuf {
        self.data_dir().join("jwt-secret")
    }

    /// The secret generated into the data dir earlier, if there is one.
    fn stored_secret(&self) -> Result<Option<String>, ConfigError> {
        let path = self.secret_path();
        match std::fs::read_to_string(&path) {
            Ok(secret) => Ok(Some(secret.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::SecretFile { path: path.display().to_string(), source }),
        }
    }
}

fn write_new_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => file.write_all(secret.as_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A rate limit's burst: a whole number of requests, at least 1.
fn parse_burst(text: &str) -> Result<NonZeroU32, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a burst: a whole number of at least 1"))
        .and_then(burst)
}

fn burst(requests: i64) -> Result<NonZeroU32, String> {
    u32::try_from(requests)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("{requests} is not a burst: a whole number of at least 1"))
}

fn key_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> ConfigError {
    let path = path.display().to_string();
    move |e| ConfigError::Key { path, message: e.to_string() }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })
}

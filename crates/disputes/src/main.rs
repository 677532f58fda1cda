//! `disputes`: the refund-dispute service's one binary. Parses configuration, connects, and
//! hands over to the library crates; nothing here decides a rule or an HTTP answer.

/// mimalloc rather than the system's allocator: each request allocates and frees many small
/// buffers (bodies, JSON values, events), and glibc's malloc took a fifth of the process's CPU
/// under commands (`docs/BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use dispute_api::TokenKeys;
use dispute_domain::{Actor, Role, parse_duration};
use dispute_views::ViewName;
use disputes::App;
use disputes::config::Settings;

#[derive(Debug, Parser)]
#[command(name = "disputes", version, about = "Event-sourced refund-dispute arbitration service")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API, the projections and the deadline timer (on `--addr`). Applies
    /// pending schema migrations on start.
    Serve,
    /// Audit the log: verify hash chains, replay as of an instant, view drift, export.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Work on the views.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Print a signed HS256 bearer token (one line) made with the same secret as `serve`: the
    /// configured one, or the one `serve` generated into the data dir; never a new one.
    Token {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The subject: a buyer, merchant, arbitrator or service id.
        #[arg(long)]
        sub: String,
        /// How long the token is valid, e.g. `90s`, `24h`, `7d`.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: chrono::Duration,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Rebuild views from the log, aside, then swap them in (safe while the service runs).
    Rebuild {
        /// `disputes` or `timeline`; both when omitted.
        #[arg(long)]
        view: Option<String>,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| "one of buyer, merchant, arbitrator, system, auditor".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Audit commands exit 2 when the audit itself cannot run.
    let failure =
        if matches!(cli.command, Command::Audit { .. }) { ExitCode::from(2) } else { ExitCode::FAILURE };
    let settings = match cli.settings.resolve() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("disputes: {e}");
            return failure;
        }
    };
    // An audit reads the whole log in one statement: sqlx's slow-statement warning is noise there.
    let default_filter = match cli.command {
        Command::Audit { .. } => "info,sqlx=error",
        _ => "info,sqlx=warn",
    };
    disputes::logging::init(settings.log_format(), default_filter);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    if let Command::Audit { command } = cli.command {
        return runtime.block_on(audit::run(settings, command));
    }
    match runtime.block_on(run(settings, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("disputes: {error:#}");
            failure
        }
    }
}

async fn run(settings: Settings, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Token { role, sub, ttl } => {
            let secret = settings.minting_secret()?;
            println!("{}", TokenKeys::new(&secret).issue(&Actor::new(role, sub), ttl));
            Ok(())
        }
        Command::Serve => serve(settings).await,
        Command::Projections { command: ProjectionsCommand::Rebuild { view } } => {
            rebuild(settings, view).await
        }
        Command::Audit { .. } => unreachable!("audit commands run from main with their own exit codes"),
    }
}

/// Runs the service until SIGINT or SIGTERM.
async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(setup = %settings.describe(), "starting");
    let app = App::start(settings.app_config(settings.addr())?).await?;
    // The handlers are in place before the address is announced: a signal sent as soon as the
    // address is known stops the service cleanly.
    let signalled = shutdown_signal()?;
    let stop = app.stop_token();
    tokio::spawn(async move {
        signalled.await;
        stop.cancel();
    });
    println!("disputes listening on http://{}", app.addr());
    Ok(app.stopped().await?)
}

async fn rebuild(settings: Settings, view: Option<String>) -> anyhow::Result<()> {
    let views = match view.as_deref() {
        None => ViewName::ALL.to_vec(),
        Some(name) => vec![
            ViewName::parse(name)
                .with_context(|| format!("unknown view {name:?}: use disputes or timeline"))?,
        ],
    };
    let store = settings.open_store().await?;
    let started = std::time::Instant::now();
    let mut last_report = std::time::Instant::now();
    let replayed = dispute_views::rebuild(store.clone(), &views, |done, total| {
        if last_report.elapsed() >= std::time::Duration::from_millis(500) || done == total {
            let percent = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
            eprint!("\rrebuilding views: {done}/{total} events ({percent:.0}%)");
            last_report = std::time::Instant::now();
        }
    })
    .await
    .context("rebuild failed")?;
    eprintln!();
    println!("rebuilt {views:?} from {replayed} events in {:.1?}", started.elapsed());
    store.close().await;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future completes on the first signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

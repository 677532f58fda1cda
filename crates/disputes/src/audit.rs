//! `disputes audit …`: verify the hash chains, replay a dispute as of an instant, report view
//! drift, and export a dispute's record. Exit codes: 0 intact / no
//! drift, 1 broken / drift found, 2 the audit itself could not run.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use dispute_audit::HeadsRecord;
use dispute_bus::NatsBus;
use dispute_store::Store;

use disputes::config::Settings;
use disputes::progress::Progress;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every stream's hash chain (or one); exit 1 naming each broken stream and sequence.
    ///
    /// With NATS_URL, each stream's last event is also compared with its published copy, which
    /// catches removed last events. Without NATS, `--heads` does the same against a file saved
    /// by an earlier verify.
    Verify {
        /// Check only this order's stream.
        #[arg(long)]
        order: Option<String>,
        /// Compare each stream's head with this heads file (from `--save-heads`).
        #[arg(long)]
        heads: Option<PathBuf>,
        /// When the log is intact, write every stream's head to this file and print its SHA-256.
        #[arg(long)]
        save_heads: Option<PathBuf>,
    },
    /// Print the dispute's state (JSON) rebuilt from the log as of an instant.
    Replay {
        order_id: String,
        /// RFC 3339 instant; the latest state when omitted.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
    },
    /// Rebuild every view aside and print each row that differs from the live views; exit 1
    /// when any differ.
    Drift,
    /// Print the dispute's full record (events, hashes, state, views) as one JSON document.
    Export { order_id: String },
}

pub async fn run(settings: Settings, command: AuditCommand) -> ExitCode {
    match run_command(settings, command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("disputes audit: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_command(settings: Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let store = settings.open_store().await?;
    let result = match command {
        AuditCommand::Verify { order, heads, save_heads } => {
            verify(&settings, &store, order.as_deref(), heads, save_heads).await
        }
        AuditCommand::Replay { order_id, as_of } => {
            let events = store.whole_stream(&order_id).await?;
            match dispute_audit::replay(&events, as_of)? {
                Some(replayed) => {
                    print_json(&serde_json::json!(replayed.record()));
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(anyhow!("{order_id} has no events (as of that instant)")),
            }
        }
        AuditCommand::Drift => {
            let mut bar = Progress::new("rebuilding views aside");
            let rows = dispute_audit::drift(&store, |done, total| bar.show(done, total)).await?;
            bar.finish();
            let mut stdout = std::io::stdout().lock();
            for row in &rows {
                let _ = writeln!(stdout, "{row}");
            }
            if rows.is_empty() {
                eprintln!("no drift: the live views equal the views rebuilt from the log");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} rows differ", rows.len());
                Ok(ExitCode::from(1))
            }
        }
        AuditCommand::Export { order_id } => match dispute_audit::export(&store, &order_id).await {
            Ok(Some(record)) => {
                print_json(&record);
                Ok(ExitCode::SUCCESS)
            }
            Ok(None) => Err(anyhow!("{order_id} has no events")),
            Err(e) => Err(e.into()),
        },
    };
    store.close().await;
    result
}

async fn verify(
    settings: &Settings,
    store: &Arc<Store>,
    order: Option<&str>,
    heads: Option<PathBuf>,
    save_heads: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let record = match &heads {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(HeadsRecord::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let started = Instant::now();
    let mut bar = Progress::new("verifying");
    let mut report =
        dispute_audit::verify(store, order, record.as_ref(), |done, total| bar.show(done, total)).await?;
    bar.finish();
    let elapsed = started.elapsed();
    let mut compared = Vec::new();
    if let Some(path) = &heads {
        compared.push(format!("{} heads in {}", record.as_ref().map_or(0, HeadsRecord::len), path.display()));
    }
    if let Some(urls) = &settings.nats_url {
        let bus = NatsBus::connect(urls, &settings.stream()).await?;
        let check = dispute_audit::compare_with_published(&bus, &report.heads, order.is_none()).await?;
        compared.push(format!(
            "JetStream stream {}: {} heads match, {} not yet published",
            settings.stream(),
            check.matching,
            check.unpublished
        ));
        report.breaks.extend(check.breaks);
    }
    for problem in &report.breaks {
        println!("broken: {problem}");
    }
    eprintln!(
        "checked {} events in {} streams in {:.1?} ({:.0} events/s)",
        report.events,
        report.streams,
        elapsed,
        report.events as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    for line in &compared {
        eprintln!("compared with {line}");
    }
    if compared.is_empty() {
        eprintln!(
            "not compared with a published or saved copy: removed last events cannot be detected \
             (configure NATS_URL or pass --heads)"
        );
    }
    if !report.breaks.is_empty() {
        eprintln!("the log is broken: {} problems", report.breaks.len());
        return Ok(ExitCode::from(1));
    }
    println!("intact: {} events in {} streams", report.events, report.streams);
    if let Some(path) = save_heads {
        let text = HeadsRecord::render(&report.heads);
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        use sha2::Digest;
        let hex = dispute_store::chain::hex(&sha2::Sha256::digest(text.as_bytes()));
        println!("heads saved to {} (sha256 {hex})", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints to stdout, ignoring a closed pipe (`disputes audit export … | head`).
fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON serializes");
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

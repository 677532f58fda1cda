//! `disputes-bench`: the load generators, kept out of the service binary. It starts the
//! service through the same composition root as `disputes serve` (or loads a running one with
//! `--target`), and reads the same configuration (flags, environment, `--config`).

/// mimalloc rather than the system's allocator: each request allocates and frees many small
/// buffers (bodies, JSON values, events), and glibc's malloc took a fifth of the process's CPU
/// under commands (`docs/BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit;
mod deadlines;
mod lifecycles;

use std::process::ExitCode;

use clap::Parser;
use disputes::config::Settings;

#[derive(Debug, Parser)]
#[command(name = "disputes-bench", version, about = "Load generators for the disputes service")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    options: lifecycles::BenchOptions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.settings.resolve() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("disputes-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The service it starts in-process logs a line per request: noise here, and a cost.
    disputes::logging::init(settings.log_format(), "info,sqlx=error,dispute_api::edge=warn");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let result = runtime.block_on(lifecycles::run(settings, cli.options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("disputes-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

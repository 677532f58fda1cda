//! The disputes service as a library: its composition root ([`app::App`]) and its
//! configuration ([`config::Settings`]). The `disputes` binary, the load generator and the
//! tests start the service through it.

pub mod app;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod progress;

pub use app::{App, AppError, BusConfig, Config, Parts};

//! End-to-end tests of the disputes service over HTTP, against the real PostgreSQL and the
//! embedded SQLite store. One test binary; one module per theme.

mod audit;
mod auth;
mod black_box;
mod cache;
mod concurrency;
mod contract;
mod conversation;
mod deadlines;
mod edge;
mod embedded;
mod errors;
mod follower;
mod followers;
mod idempotency;
mod lifecycle;
mod metrics;
mod offers;
mod outage;
mod rebuild;
mod relay;
mod relay_copies;
mod timer;
mod timer_lease;
mod views;

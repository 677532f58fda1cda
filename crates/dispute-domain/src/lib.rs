//! The refund-dispute domain: the [`Dispute`] aggregate, its commands and events, the rules
//! and the [`Policy`] that parameterises them.
//!
//! Invariant: this crate does no I/O. It never depends on a database, HTTP, NATS or an async
//! runtime; what a rule needs (order facts, policy, the time) reaches it as data or through
//! [`Clock`].

mod aggregate;
mod clock;
pub mod command;
mod error;
mod event;
mod money;
mod policy;
pub mod rfc3339;
mod table;
mod timer;
mod vocabulary;

pub use aggregate::{Dispute, DisputeServices, PAYMENT_CLOCK_SKEW, expected_arrival};
pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{Action, Deadline, DisputeCommand, MAX_TEXT_CHARS};
pub use error::{DisputeError, RefusalKind};
pub use event::{DisputeEvent, EVENT_VERSION};
pub use money::Money;
pub use policy::{
    CategoryPolicy, OnMerchantTimeout, Policy, PolicyError, normalise_category, parse_duration,
};
pub use table::{ActionKind, COMMANDS, CommandSpec, Method, Scope};
pub use timer::{Timer, TimerChange};
pub use vocabulary::*;

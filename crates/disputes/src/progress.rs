//! Progress of a long run (a load, a verify, a rebuild) on stderr.

use std::io::Write as _;
use std::time::{Duration, Instant};

/// A progress line on stderr, redrawn with `\r` at most every 200 ms.
pub struct Progress {
    label: &'static str,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(label: &'static str) -> Self {
        Self { label, last: None }
    }

    pub fn show(&mut self, done: u64, total: u64) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) && done < total {
            return;
        }
        self.last = Some(Instant::now());
        let percent = (done * 100).checked_div(total).unwrap_or(100).min(100);
        let filled = (percent / 5) as usize;
        eprint!(
            "\r{}: [{}{}] {done}/{total} events ({percent}%)",
            self.label,
            "#".repeat(filled),
            " ".repeat(20 - filled)
        );
        let _ = std::io::stderr().flush();
    }

    pub fn finish(&self) {
        if self.last.is_some() {
            eprintln!();
        }
    }
}

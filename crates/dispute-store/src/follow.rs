//! Following the log: every reader that keeps up with the log from a checkpoint (the relay, the
//! in-process projector, the deadline timer's tracking) reads it here, with one batch size, one
//! way of waiting and one retry policy.
//!
//! A [`Follower`] reads a batch after its cursor, hands it to its [`Consumer`], saves the cursor
//! to its named checkpoint, and repeats until nothing is left; then it waits for this process's
//! next commit, the poll interval, or the stop. The cursor is a position in commit order
//! ([`Store::events_after`]), so a transaction that commits late is read late, never skipped.
//!
//! No notification from the database wakes it: a `NOTIFY` in the appending transaction would
//! serialise every commit in the cluster. Other instances' commits are found by polling, and
//! the poll adapts: a poll that finds events polls again after [`POLL_MIN`], one that finds
//! none waits twice as long, up to [`POLL`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Cursor, Store, StoreError, StoredEvent};

/// The most events read and applied at once.
pub const BATCH: i64 = 512;
/// How often a follower looks at the log when nothing wakes it and no other instance is
/// committing.
pub const POLL: Duration = Duration::from_millis(250);
/// How soon a follower looks again after a poll found events another instance committed.
pub const POLL_MIN: Duration = Duration::from_millis(5);

/// What a [`Follower`] hands the log to.
pub trait Consumer {
    type Error: std::fmt::Display + From<StoreError>;

    /// Applies one batch of events, in commit order. The follower saves its checkpoint only
    /// after this succeeds, so a batch may be applied again after a failure or a crash: applying
    /// must be idempotent.
    fn apply(&mut self, batch: &[StoredEvent]) -> impl Future<Output = Result<(), Self::Error>>;

    /// Called each time the follower has caught up, before it waits. An error ends the follow.
    fn idle(&mut self) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }
}

/// Reads the log in commit order from a checkpoint and hands it to a [`Consumer`].
pub struct Follower {
    store: Arc<Store>,
    /// The checkpoint the cursor is saved to; `None` for a read that saves nothing (a rebuild).
    checkpoint: Option<String>,
    /// Where the follower has read up to; `None` until loaded from the checkpoint. Held while a
    /// pass reads, so two passes of one follower never apply a batch side by side.
    cursor: Mutex<Option<Cursor>>,
}

impl Follower {
    /// Follows from the checkpoint `name`, and saves it after each batch.
    pub fn new(store: Arc<Store>, name: impl Into<String>) -> Self {
        Self { store, checkpoint: Some(name.into()), cursor: Mutex::new(None) }
    }

    /// Reads from `cursor` and saves no checkpoint.
    pub fn from_cursor(store: Arc<Store>, cursor: Cursor) -> Self {
        Self { store, checkpoint: None, cursor: Mutex::new(Some(cursor)) }
    }

    /// Where the follower has read up to (the checkpoint's until the first read).
    pub async fn cursor(&self) -> Result<Cursor, StoreError> {
        let mut cursor = self.cursor.lock().await;
        self.loaded(&mut cursor).await
    }

    /// Reads and applies batches until the log's end. Returns how many events were applied.
    pub async fn catch_up<C: Consumer>(&self, consumer: &mut C) -> Result<u64, C::Error> {
        self.read(consumer, None).await
    }

    /// Follows the log until `stop`, retrying after failures with a [`Backoff`]. Failures are
    /// logged as `what` interrupted, never fatal.
    pub async fn run<C: Consumer>(&self, consumer: &mut C, what: &str, stop: &CancellationToken) {
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            backoff.attempt();
            match self.follow(consumer, stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} interrupted; retrying");
                    if !backoff.wait(stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Follows the log until `stop` (`Ok`) or a failure (`Err`), from the saved checkpoint,
    /// woken by this process's commits and the adaptive poll. A stop is honoured between
    /// batches.
    pub async fn follow<C: Consumer>(
        &self,
        consumer: &mut C,
        stop: &CancellationToken,
    ) -> Result<(), C::Error> {
        // Another reader may have moved the checkpoint meanwhile (a relay that held the lease).
        if self.checkpoint.is_some() {
            *self.cursor.lock().await = None;
        }
        let mut poll = POLL;
        let mut polled = false;
        while !stop.is_cancelled() {
            // Listening before reading: a commit after the last read still wakes the wait.
            let committed = self.store.committed().notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            let read = self.read(consumer, Some(stop)).await?;
            if stop.is_cancelled() {
                break;
            }
            if polled {
                // Events found by polling were committed elsewhere: more are likely to follow.
                poll = if read > 0 { POLL_MIN } else { (poll * 2).min(POLL) };
            }
            consumer.idle().await?;
            polled = false;
            tokio::select! {
                _ = committed => {}
                _ = tokio::time::sleep(poll) => polled = true,
                _ = stop.cancelled() => break,
            }
        }
        Ok(())
    }

    /// Reads and applies batches until the log's end, or until `stop` between two batches.
    async fn read<C: Consumer>(
        &self,
        consumer: &mut C,
        stop: Option<&CancellationToken>,
    ) -> Result<u64, C::Error> {
        let mut cursor = self.cursor.lock().await;
        let mut after = self.loaded(&mut cursor).await?;
        let mut read = 0;
        while !stop.is_some_and(CancellationToken::is_cancelled) {
            let batch = self.store.events_after(after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            consumer.apply(&batch).await?;
            after = last.cursor;
            if let Some(name) = &self.checkpoint {
                self.store.save_checkpoint(name, after).await?;
            }
            *cursor = Some(after);
            read += batch.len() as u64;
        }
        Ok(read)
    }

    async fn loaded(&self, cursor: &mut Option<Cursor>) -> Result<Cursor, StoreError> {
        if let Some(cursor) = cursor {
            return Ok(*cursor);
        }
        let loaded = match &self.checkpoint {
            Some(name) => self.store.checkpoint(name).await?,
            None => Cursor::default(),
        };
        *cursor = Some(loaded);
        Ok(loaded)
    }
}

/// The pause before retrying a failed attempt: 100 ms, doubling up to 5 s; an attempt that ran
/// well for 30 s starts it afresh.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    started: Instant,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);
    const GOOD_RUN: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { next: Self::FIRST, started: Instant::now() }
    }

    /// Marks the start of an attempt.
    pub fn attempt(&mut self) {
        self.started = Instant::now();
    }

    /// Waits before the next attempt. Returns false if `stop` came first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        if self.started.elapsed() > Self::GOOD_RUN {
            self.next = Self::FIRST;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.next) => {}
            _ = stop.cancelled() => return false,
        }
        self.next = (self.next * 2).min(Self::MAX);
        true
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

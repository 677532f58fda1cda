//! Following the log: every reader that keeps up with the log from a checkpoint (the relay, the
//! in-process projector, the deadline timer's tracking) reads it here, with one batch size, one
//! way of waiting and one retry policy.
//!
//! A [`Follower`] reads a batch after its cursor, hands it to its [`Consumer`], and repeats
//! until nothing is left; then it waits for this process's next commit, the poll interval, or
//! the stop. The cursor is a position in commit order ([`Store::events_after`]), so a
//! transaction that commits late is read late, never skipped.
//!
//! The followers of one process that keep a checkpoint share their reads: the [`Tail`] keeps
//! the last [`KEPT`] reads of the log, and a follower asking for the events after the cursor
//! one of them began at takes that read instead of asking the database, unless this process
//! committed since the read began (a commit that woke it is never missed) or the follower was
//! handed that very read before (a poll always looks afresh). Followers at the head of the log
//! are woken by the same commit and ask for the same cursor: one read serves them all. While
//! catching up on a long log, a follower ahead of another keeps to its pace: before a read
//! that would drop a full read another follower is about to ask for, it waits up to [`PACE`]
//! for that follower to take it, so the log is read and parsed once, not once per follower; a
//! follower that stalls holds the others back by one such wait only, then falls out of the
//! kept reads and reads for itself. On PostgreSQL the reads go through one connection the tail
//! keeps, not a pool checkout each. A follower without a checkpoint (a rebuild, the drift
//! audit) always reads the log itself.
//!
//! A follower saves its cursor to its named checkpoint at most every [`CHECKPOINT_EVERY`] while
//! events keep coming, when a look at the log finds nothing new (at most every
//! [`CHECKPOINT_QUIET`]: the poll comes back to it), when it catches up on request, and when it
//! stops. After a crash the events since the last save are applied
//! again, which every consumer must bear anyway.
//!
//! No notification from the database wakes it: a `NOTIFY` in the appending transaction would
//! serialise every commit in the cluster. Other instances' commits are found by polling, and
//! the poll adapts: a poll that finds events polls again after [`POLL_MIN`], one that finds
//! none waits twice as long, up to [`POLL`]. A follower that need not keep up to the millisecond
//! (the timer's tracking, the relay) is paced ([`Follower::paced`]): a commit wakes it no sooner
//! than its pace after its last read, so that one read and one write take in the commits of
//! that time, and it polls no more often than its pace.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgConnection;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Backend, Cursor, Store, StoreError, StoredEvent};

/// The most events read and applied at once.
pub const BATCH: i64 = 512;
/// How often a follower looks at the log when nothing wakes it and no other instance is
/// committing.
pub const POLL: Duration = Duration::from_millis(250);
/// How soon a follower looks again after a poll found events another instance committed.
pub const POLL_MIN: Duration = Duration::from_millis(5);
/// The longest a follower that keeps reading events goes without saving its checkpoint.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The least time between two saves of a checkpoint at quiet moments: a trickle of commits
/// makes one after nearly every commit.
pub const CHECKPOINT_QUIET: Duration = Duration::from_millis(100);
/// How many of the last reads of the log the [`Tail`] keeps for the followers behind.
pub const KEPT: usize = 4;
/// The longest a follower catching up waits for another, behind it, to take a kept read.
pub const PACE: Duration = Duration::from_secs(1);

/// What a [`Follower`] hands the log to.
pub trait Consumer {
    type Error: std::fmt::Display + From<StoreError>;

    /// Applies one batch of events, in commit order (shared: a consumer may keep it without a
    /// copy). The follower saves its checkpoint only
    /// after this succeeds, and not after every batch, so a batch may be applied again after a
    /// failure or a crash: applying must be idempotent.
    fn apply(&mut self, batch: &Batch) -> impl Future<Output = Result<(), Self::Error>>;

    /// Called each time the follower has caught up, before it waits. An error ends the follow.
    fn idle(&mut self) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }
}

/// A batch of the log as a follower read it, in commit order.
pub type Batch = Arc<[StoredEvent]>;

/// This process's commit signal: wakes the followers, and counts commits so that the [`Tail`]
/// can tell whether a read began after a given commit.
#[derive(Debug, Default)]
pub struct Commits {
    wake: Notify,
    count: AtomicU64,
}

impl Commits {
    /// Signals a commit: called after every commit of this process.
    pub fn notify_waiters(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Completes after the next commit signalled.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// How many commits have been signalled.
    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

/// The log as this process's followers read it: the last reads, shared (see the module's
/// documentation), and the connection reads go through.
#[derive(Default)]
pub struct Tail {
    /// Held while reading, so that a follower asking for the read under way waits for it and
    /// takes it rather than reading the same events beside it.
    state: Mutex<TailState>,
    /// Reads that went to the database.
    reads: AtomicU64,
    /// Where each follower of the tail will ask next, by [`Follower::id`].
    next: std::sync::Mutex<HashMap<u64, Cursor>>,
    /// Signalled when a follower takes a read.
    taken: Notify,
    /// The followers made so far: the next one's id.
    followers: AtomicU64,
}

#[derive(Default)]
struct TailState {
    /// The last [`KEPT`] reads, oldest first.
    kept: VecDeque<Read>,
    /// PostgreSQL: a connection taken out of the pool for the reads (a pool checkout costs a
    /// round trip on its return); dropped after a failed read, opened again at the next.
    connection: Option<PgConnection>,
}

struct Read {
    /// The read's number: [`Tail::reads`] after it.
    number: u64,
    after: Cursor,
    /// [`Commits::count`] when the read began: every commit up to it is in the read.
    commits: u64,
    events: Batch,
}

impl Tail {
    /// Closes the reads' connection.
    pub(crate) async fn close(&self) {
        self.state.lock().await.connection = None;
    }

    /// Notes where `follower`, handed `events` after `after`, will ask next.
    fn handed(&self, follower: u64, after: Cursor, events: &Batch) {
        let next = events.last().map_or(after, |event| event.cursor);
        self.next.lock().expect("not poisoned").insert(follower, next);
        self.taken.notify_waiters();
    }

    /// Whether a new read would drop a full read that a follower other than `follower` is
    /// about to ask for.
    fn holds_back(&self, follower: u64, state: &TailState) -> bool {
        let Some(oldest) = state.kept.front() else { return false };
        if state.kept.len() < KEPT || (oldest.events.len() as i64) < BATCH {
            return false;
        }
        let next = self.next.lock().expect("not poisoned");
        next.iter().any(|(&other, &cursor)| other != follower && cursor == oldest.after)
    }
}

impl Store {
    /// Up to [`BATCH`] events after `after` in commit order for `follower`, from a read
    /// numbered above `newer_than` that began once this process had signalled `commits` commits
    /// or more: one the tail kept if it qualifies, else a new one (after waiting up to [`PACE`]
    /// for a follower behind to take the read it would drop). Returns the read's number too.
    async fn tail_after(
        &self,
        follower: u64,
        after: Cursor,
        commits: u64,
        newer_than: u64,
    ) -> Result<(u64, Batch), StoreError> {
        let paced = Instant::now() + PACE;
        let mut state = loop {
            let taken = self.tail.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            let state = self.tail.state.lock().await;
            // The newest first: an older read at the same cursor holds no more than it.
            let shared = state
                .kept
                .iter()
                .rev()
                .find(|r| r.after == after && r.commits >= commits && r.number > newer_than);
            if let Some(read) = shared {
                let (number, events) = (read.number, read.events.clone());
                drop(state);
                self.tail.handed(follower, after, &events);
                return Ok((number, events));
            }
            if Instant::now() >= paced || !self.tail.holds_back(follower, &state) {
                break state;
            }
            drop(state);
            let _ = tokio::time::timeout_at(paced, taken).await;
        };
        let commits = self.committed.count();
        let number = self.tail.reads.fetch_add(1, Ordering::Relaxed) + 1;
        let events: Batch = match &self.backend {
            Backend::Postgres(crate::Postgres { pool, .. }) => {
                let connection = match &mut state.connection {
                    Some(connection) => connection,
                    empty => empty.insert(pool.acquire().await?.detach()),
                };
                match crate::log::pg_events_after(connection, after, BATCH).await {
                    Ok(events) => events.into(),
                    Err(e) => {
                        state.connection = None;
                        return Err(e);
                    }
                }
            }
            Backend::Sqlite(_) => self.events_after(after, BATCH).await?.into(),
        };
        if state.kept.len() >= KEPT {
            state.kept.pop_front();
        }
        state.kept.push_back(Read { number, after, commits, events: events.clone() });
        drop(state);
        self.tail.handed(follower, after, &events);
        Ok((number, events))
    }

    /// How many times this process's followers have read the log from the database (reads
    /// they shared count once).
    pub fn log_reads(&self) -> u64 {
        self.tail.reads.load(Ordering::Relaxed)
    }
}

/// Reads the log in commit order from a checkpoint and hands it to a [`Consumer`].
pub struct Follower {
    store: Arc<Store>,
    /// Tells this follower apart among those of the store's [`Tail`].
    id: u64,
    /// The checkpoint the cursor is saved to; `None` for a read that saves nothing (a rebuild).
    checkpoint: Option<String>,
    /// Held while a pass reads, so two passes of one follower never apply a batch side by side.
    position: Mutex<Position>,
    /// The least time from one read to the next that a commit wakes; see [`Follower::paced`].
    pace: Duration,
}

/// Where a follower has read up to, and what of it is saved.
struct Position {
    /// `None` until loaded from the checkpoint.
    cursor: Option<Cursor>,
    /// The cursor last saved to (or loaded from) the checkpoint.
    saved: Option<Cursor>,
    saved_at: Instant,
    /// The number of the last read of the [`Tail`] this follower was handed.
    last_read: u64,
}

impl Position {
    fn unloaded() -> Self {
        Self { cursor: None, saved: None, saved_at: Instant::now(), last_read: 0 }
    }
}

impl Follower {
    /// Follows from the checkpoint `name`, and saves it as it goes.
    pub fn new(store: Arc<Store>, name: impl Into<String>) -> Self {
        let id = store.tail.followers.fetch_add(1, Ordering::Relaxed);
        let position = Mutex::new(Position::unloaded());
        Self { store, id, checkpoint: Some(name.into()), position, pace: Duration::ZERO }
    }

    /// Woken by a commit, reads no sooner than `pace` after its last read began: the commits of
    /// that time are read and applied together. Polls no more often either. For a follower whose
    /// consumer may lag the log by that much.
    pub fn paced(mut self, pace: Duration) -> Self {
        self.pace = pace;
        self
    }

    /// Reads from `cursor` and saves no checkpoint.
    pub fn from_cursor(store: Arc<Store>, cursor: Cursor) -> Self {
        let position = Position { cursor: Some(cursor), ..Position::unloaded() };
        let id = store.tail.followers.fetch_add(1, Ordering::Relaxed);
        Self { store, id, checkpoint: None, position: Mutex::new(position), pace: Duration::ZERO }
    }

    /// Where the follower has read up to (the checkpoint's until the first read).
    pub async fn cursor(&self) -> Result<Cursor, StoreError> {
        let mut position = self.position.lock().await;
        self.loaded(&mut position).await
    }

    /// Reads and applies batches until the log's end, and saves the checkpoint. Returns how
    /// many events were applied.
    pub async fn catch_up<C: Consumer>(&self, consumer: &mut C) -> Result<u64, C::Error> {
        let read = self.read(consumer, None, self.store.committed.count()).await?;
        self.save(&mut *self.position.lock().await).await?;
        Ok(read)
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
    /// batches, and saves the checkpoint.
    pub async fn follow<C: Consumer>(
        &self,
        consumer: &mut C,
        stop: &CancellationToken,
    ) -> Result<(), C::Error> {
        // Another reader may have moved the checkpoint meanwhile (a relay that held the lease).
        if self.checkpoint.is_some() {
            *self.position.lock().await = Position::unloaded();
        }
        let mut poll = POLL;
        let mut polled = false;
        while !stop.is_cancelled() {
            // Listening before reading: a commit after the last read still wakes the wait, and
            // the read includes every commit signalled before it.
            let committed = self.store.committed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            let began = Instant::now();
            let read = self.read(consumer, Some(stop), self.store.committed.count()).await?;
            if stop.is_cancelled() {
                break;
            }
            if polled {
                // Events found by polling were committed elsewhere: more are likely to follow.
                poll = if read > 0 { POLL_MIN.max(self.pace) } else { (poll * 2).min(POLL) };
            }
            if read == 0 {
                // A quiet moment: save what the last busy spell left unsaved.
                let mut position = self.position.lock().await;
                if position.saved_at.elapsed() >= CHECKPOINT_QUIET {
                    self.save(&mut position).await?;
                }
            }
            consumer.idle().await?;
            polled = false;
            tokio::select! {
                _ = committed => {}
                _ = tokio::time::sleep(poll) => polled = true,
                _ = stop.cancelled() => break,
            }
            if !polled && !self.pace.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep_until(began + self.pace) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
        self.save(&mut *self.position.lock().await).await?;
        Ok(())
    }

    /// Reads and applies batches until the log's end, or until `stop` between two batches,
    /// from reads that include the first `commits` commits of this process.
    async fn read<C: Consumer>(
        &self,
        consumer: &mut C,
        stop: Option<&CancellationToken>,
        commits: u64,
    ) -> Result<u64, C::Error> {
        let mut position = self.position.lock().await;
        let mut after = self.loaded(&mut position).await?;
        let mut read = 0;
        while !stop.is_some_and(CancellationToken::is_cancelled) {
            let batch: Batch = if self.checkpoint.is_some() {
                let (number, batch) =
                    self.store.tail_after(self.id, after, commits, position.last_read).await?;
                position.last_read = number;
                batch
            } else {
                // A follower that saves nothing (a rebuild, the drift audit) reads the log as it
                // is now: a shared read may predate a change made outside this process, which an
                // audit is there to see.
                self.store.events_after(after, BATCH).await?.into()
            };
            let Some(last) = batch.last() else { break };
            consumer.apply(&batch).await?;
            after = last.cursor;
            position.cursor = Some(after);
            read += batch.len() as u64;
            if position.saved_at.elapsed() >= CHECKPOINT_EVERY {
                self.save(&mut position).await?;
            }
            // A short batch held every event visible when it was read.
            if (batch.len() as i64) < BATCH {
                break;
            }
        }
        Ok(read)
    }

    /// Saves the cursor to the checkpoint if it moved since the last save.
    async fn save(&self, position: &mut Position) -> Result<(), StoreError> {
        let (Some(name), Some(cursor)) = (&self.checkpoint, position.cursor) else { return Ok(()) };
        if position.saved != Some(cursor) {
            self.store.save_checkpoint(name, cursor).await?;
            position.saved = Some(cursor);
        }
        position.saved_at = Instant::now();
        Ok(())
    }

    async fn loaded(&self, position: &mut Position) -> Result<Cursor, StoreError> {
        if let Some(cursor) = position.cursor {
            return Ok(cursor);
        }
        let loaded = match &self.checkpoint {
            Some(name) => self.store.checkpoint(name).await?,
            None => Cursor::default(),
        };
        *position = Position { cursor: Some(loaded), saved: Some(loaded), ..Position::unloaded() };
        Ok(loaded)
    }
}

impl Drop for Follower {
    /// A follower gone holds no other back.
    fn drop(&mut self) {
        self.store.tail.next.lock().expect("not poisoned").remove(&self.id);
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

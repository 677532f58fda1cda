//! Rebuilding the views from the log, aside, then swapping them in: readers never see a
//! half-built view, and the service may keep running.
//!
//! 1. Fresh `*_next` tables, shaped like the live ones, are filled from the whole log.
//! 2. One transaction replaces the live tables with them.
//! 3. The events committed meanwhile are applied again from where the build stopped; the
//!    projector skips what it has, so this only fills what the build had not seen.

use std::sync::Arc;

use dispute_store::{Batch, Consumer, Cursor, Follower, Store};

use crate::{Incoming, Projector, ViewError, ViewTables};

/// The views a rebuild can swap in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewName {
    Disputes,
    Timeline,
}

impl ViewName {
    pub const ALL: [ViewName; 2] = [ViewName::Disputes, ViewName::Timeline];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|view| view.as_str() == name)
    }

    /// The view's name, as `--view` and the metrics' `view` label say it.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewName::Disputes => "disputes",
            ViewName::Timeline => "timeline",
        }
    }

    fn tables(self, tables: &ViewTables) -> &str {
        match self {
            ViewName::Disputes => &tables.disputes,
            ViewName::Timeline => &tables.timeline,
        }
    }
}

/// Rebuilds `views` from the log; `progress(done, total)` is called as events are applied.
/// Returns the number of events replayed.
pub async fn rebuild(
    store: Arc<Store>,
    views: &[ViewName],
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ViewError> {
    let live = ViewTables::live();
    let next = ViewTables::next();
    let (done, cursor) = build_aside(&store, &next, &mut progress).await?;
    swap(&store, views, &live, &next).await?;
    // What committed during the build, applied to the tables now live.
    let mut live_projector = Projector::new(store.clone());
    replay(&store, &mut live_projector, cursor, |_| {}).await?;
    Ok(done)
}

/// Fills fresh `aside` tables, shaped like the live ones, from the whole log, leaving the
/// live views alone. Returns the events replayed and the cursor the build stopped at.
pub async fn build_aside(
    store: &Arc<Store>,
    aside: &ViewTables,
    mut progress: impl FnMut(u64, u64),
) -> Result<(u64, Cursor), ViewError> {
    store.create_aside_views(&ViewTables::live(), aside).await?;
    let total = store.count_events().await?;
    let mut projector = Projector::with_tables(store.clone(), aside);
    replay(store, &mut projector, Cursor::default(), |done| progress(done, total)).await
}

/// Drops tables made by [`build_aside`].
pub async fn drop_aside(store: &Store, aside: &ViewTables) -> Result<(), ViewError> {
    Ok(store.drop_view_tables(aside).await?)
}

/// Applies the log after `from` to `projector`'s tables, a batch per transaction like the
/// live projector. Returns the events applied and the cursor it stopped at.
async fn replay(
    store: &Arc<Store>,
    projector: &mut Projector,
    from: Cursor,
    progress: impl FnMut(u64),
) -> Result<(u64, Cursor), ViewError> {
    let follower = Follower::from_cursor(store.clone(), from);
    let mut replaying = Replaying { projector, done: 0, progress };
    let done = follower.catch_up(&mut replaying).await?;
    Ok((done, follower.cursor().await?))
}

/// A rebuild's projector, counting what it has applied.
struct Replaying<'a, F> {
    projector: &'a mut Projector,
    done: u64,
    progress: F,
}

impl<F: FnMut(u64)> Consumer for Replaying<'_, F> {
    type Error = ViewError;

    async fn apply(&mut self, batch: &Batch) -> Result<(), ViewError> {
        let incoming: Vec<Incoming> = batch.iter().map(Incoming::from).collect();
        self.projector.apply_batch(&incoming).await?;
        self.done += batch.len() as u64;
        (self.progress)(self.done);
        Ok(())
    }
}

/// Replaces the live tables of `views` with the rebuilt ones in one transaction.
async fn swap(
    store: &Store,
    views: &[ViewName],
    live: &ViewTables,
    next: &ViewTables,
) -> Result<(), ViewError> {
    let swaps: Vec<(&str, &str)> = views.iter().map(|view| (view.tables(live), view.tables(next))).collect();
    let discard: Vec<&str> =
        ViewName::ALL.iter().filter(|v| !views.contains(v)).map(|view| view.tables(next)).collect();
    Ok(store.swap_view_tables(&swaps, &discard).await?)
}

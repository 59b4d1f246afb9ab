//! Folding the task counters' appended changes (see migration `0005_queue_counts.sql`).
//!
//! Statements that insert, move or delete tasks append their net change per queue and state
//! to `queue_count_changes` instead of updating a shared counter row, so concurrent
//! transactions never wait on each other for one. Readers add the folded counts and the
//! pending changes up, so the counts are exact without folding; folding only keeps the pending
//! changes few, and with them the readers' work. Every replica runs a folder; the database lets
//! one fold at a time and the others skip their turn.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use super::error::{ctx, pool as pool_error};

/// How often pending counter changes are folded. A second's worth of changes is at most one
/// row per statement that moved tasks, a few thousand at full speed: cheap for readers to add.
pub(crate) const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// The background folder; stops when dropped.
pub(super) struct Folder {
    task: JoinHandle<()>,
}

impl Drop for Folder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Folder {
    /// Stop folding (the store is about to drop its schema).
    pub(super) fn stop(&self) {
        self.task.abort();
    }

    /// Start folding every [`FOLD_INTERVAL`], with connections from `pool`.
    pub(super) fn start(pool: Pool) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(FOLD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = fold(&pool).await {
                    // Readers add pending changes up themselves: a missed fold costs nothing but
                    // a few more rows for them to read until the next one.
                    tracing::warn!(%error, "could not fold the task counters");
                }
            }
        });
        Self { task }
    }
}

/// Fold the pending counter changes once; returns how many were folded (0 when another
/// replica was folding).
pub(crate) async fn fold(pool: &Pool) -> spillway_core::Result<i64> {
    let conn = pool.get().await.map_err(pool_error)?;
    let row = conn
        .query_one("SELECT queue_counts_fold()", &[])
        .await
        .map_err(ctx("could not fold the task counters"))?;
    row.try_get(0)
        .map_err(ctx("could not read how many counter changes were folded"))
}

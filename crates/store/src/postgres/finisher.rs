//! Marking jobs finished after the commit of their last task, coalesced.
//!
//! A job is marked finished (`jobs.finished_at`, `finished_state`) by a statement that must run
//! after the commit that moved its last task (see [`finish_jobs`]). Run inside every report,
//! that statement cost one-task jobs a fifth of their throughput. Here reports hand their jobs
//! to a background task that marks everything asked for since its last pass in one statement.
//! Reads that depend on the mark (lists by state, retention, the input cleaner) first mark
//! what this replica has pending; other replicas' marks arrive within [`FINISH_DELAY`]. Marks
//! lost with a replica are made by retention's catch-up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use spillway_core::{Result, Timestamp};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::error::pool as pool_error;
use super::queries::jobs::{JobsToFinish, finish_jobs};

/// How long a job waits to be marked finished, so the marks of many reports go together.
pub(crate) const FINISH_DELAY: Duration = Duration::from_millis(50);

/// Jobs asked for and not yet marked, with the latest time one of them was asked at.
#[derive(Default)]
struct Pending {
    jobs: Mutex<(JobsToFinish, Option<Timestamp>)>,
    signal: Notify,
}

/// The background marker; stops when dropped.
pub(super) struct Finisher {
    pool: Pool,
    pending: Arc<Pending>,
    task: JoinHandle<()>,
}

impl Drop for Finisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Finisher {
    /// Start the marker, which takes its connections from `pool`.
    pub(super) fn start(pool: Pool) -> Self {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(run(pool.clone(), pending.clone()));
        Self {
            pool,
            pending,
            task,
        }
    }

    /// Ask for `jobs` to be marked finished if they are, as of `now`; call it after the commit
    /// that moved their tasks.
    pub(super) fn send(&self, jobs: JobsToFinish, now: Timestamp) {
        if jobs.is_empty() {
            return;
        }
        let mut pending = self.pending.jobs.lock().unwrap_or_else(|p| p.into_inner());
        pending.0.extend(jobs);
        pending.1 = Some(pending.1.map_or(now, |at| at.max(now)));
        // A stored permit: a send racing with the task's take is never lost.
        self.pending.signal.notify_one();
    }

    /// Stop marking (the store is about to drop its schema).
    pub(super) fn stop(&self) {
        self.task.abort();
    }

    /// Mark what is pending now, before a read that depends on it.
    pub(super) async fn flush(&self) -> Result<()> {
        flush(&self.pool, &self.pending).await
    }
}

async fn run(pool: Pool, pending: Arc<Pending>) {
    loop {
        pending.signal.notified().await;
        tokio::time::sleep(FINISH_DELAY).await;
        if let Err(error) = flush(&pool, &pending).await {
            // Retention marks whatever is left unmarked.
            tracing::warn!(%error, "could not mark finished jobs");
        }
    }
}

async fn flush(pool: &Pool, pending: &Pending) -> Result<()> {
    let (jobs, at) = {
        let mut pending = pending.jobs.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *pending)
    };
    let Some(at) = at else { return Ok(()) };
    let conn = pool.get().await.map_err(pool_error)?;
    finish_jobs(&conn, &jobs, at).await
}

//! Sending wake-ups to other replicas: `NOTIFY spillway_work, '<tenant>/<queue>/<tasks>/<origin>'`
//! (see [`super::listen::payload`]), sent after the work's own commit, coalesced (the counts of
//! one queue added up), one notifying transaction at a time.
//!
//! A transaction that NOTIFYs holds PostgreSQL's global notify-queue lock from before its commit
//! until the commit is on disk. Notifying inside every submit therefore made all submits commit
//! one after another, each waiting for the previous one's WAL flush (no group commit). Here the
//! data commits notify nobody; a background task sends everything asked for since its last send
//! in one short transaction of its own. Wake-ups are hints: waiters also look again every
//! recheck interval, so a lost one (database briefly down, store dropped) only delays a lease.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::error::{ctx, pool as pool_error};
use super::listen::{CHANNEL, payload};
use crate::Leasable;

/// Wake-ups asked for and not yet sent, by (tenant, queue), and the signal that there are
/// some.
#[derive(Default)]
struct Pending {
    queues: Mutex<BTreeMap<(String, String), Leasable>>,
    signal: Notify,
}

/// The background sender; stops when dropped.
pub(super) struct Notifier {
    pending: Arc<Pending>,
    task: JoinHandle<()>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Notifier {
    /// Start the sender, which takes its connections from `pool`.
    /// Its notifications carry `origin`, so this store's own listener can skip them.
    pub(super) fn start(pool: Pool, origin: String) -> Self {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(run(pool, pending.clone(), origin));
        Self { pending, task }
    }

    /// Ask for a wake-up of every replica's waiters on `queues` (tenant, queue), `leasable`
    /// tasks each; call it after the commit that made their work leasable.
    pub(super) fn send<'a>(
        &self,
        queues: impl IntoIterator<Item = (&'a str, &'a str)>,
        leasable: Leasable,
    ) {
        let mut pending = self
            .pending
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        for (tenant, queue) in queues {
            any = true;
            pending
                .entry((tenant.to_string(), queue.to_string()))
                .and_modify(|l| *l = add(*l, leasable))
                .or_insert(leasable);
        }
        if any {
            // A stored permit: a send racing with the task's take is never lost.
            self.pending.signal.notify_one();
        }
    }
}

/// Two wake-ups of one queue as one.
fn add(a: Leasable, b: Leasable) -> Leasable {
    match (a, b) {
        (Leasable::Tasks(a), Leasable::Tasks(b)) => Leasable::Tasks(a.saturating_add(b)),
        _ => Leasable::All,
    }
}

async fn run(pool: Pool, pending: Arc<Pending>, origin: String) {
    loop {
        pending.signal.notified().await;
        let batch: Vec<String> = {
            let mut queues = pending.queues.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *queues)
                .into_iter()
                .map(|((tenant, queue), leasable)| payload(&tenant, &queue, leasable, &origin))
                .collect()
        };
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = send_batch(&pool, &batch).await {
            // Waiters look again on their own within the recheck interval.
            tracing::warn!(%error, queues = batch.len(), "could not send wake-ups to other replicas");
        }
    }
}

async fn send_batch(pool: &Pool, payloads: &[String]) -> spillway_core::Result<()> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    let tx = conn
        .transaction()
        .await
        .map_err(ctx("could not start sending wake-ups"))?;
    // This transaction writes no data, only the notifications, which PostgreSQL never keeps
    // across a crash anyway; waiting for its commit record to reach disk would put a WAL flush
    // next to every submit's own. Every data commit keeps the configured synchronous_commit.
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await
        .map_err(ctx("could not start sending wake-ups"))?;
    tx.execute(
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
        &[&CHANNEL, &payloads],
    )
    .await
    .map_err(ctx("could not send wake-ups"))?;
    tx.commit().await.map_err(ctx("could not send wake-ups"))?;
    Ok(())
}

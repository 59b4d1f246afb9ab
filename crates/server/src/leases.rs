//! A small in-memory ledger of leases handed out by this server, so reports can be labelled
//! with their queue, timed for the lease-duration histogram and released with the worker's
//! pool without a store round trip. Leases taken through another replica (or before a
//! restart) are simply not in it. It decides nothing: whether a report may touch a task (its
//! lease and its tenant) is the store's condition.
//!
//! It also remembers which queues lease and submit calls have found, so neither reads the
//! queue from the store on every call just to answer 404 for a missing one. Queues are never
//! deleted, so a queue once found exists for good.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use spillway_core::api::LeasedTask;
use spillway_core::{TaskId, Timestamp};

/// Entries kept before old ones (leases long expired) are dropped.
const LEDGER_MAX: usize = 100_000;
/// Queues remembered as existing; past this, further ones are looked up every time.
const KNOWN_QUEUES_MAX: usize = 10_000;
/// Age after which an entry is surely stale (no lease lasts longer than 24h).
const LEDGER_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(25);

/// What the server remembers about one lease.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeaseEntry {
    pub(crate) lease_token: String,
    pub(crate) tenant: String,
    pub(crate) leased_at: Timestamp,
    pub(crate) queue: String,
    pub(crate) job_id: String,
    pub(crate) pool: String,
}

/// Leases by task id.
#[derive(Debug, Default)]
pub(crate) struct LeaseLedger {
    entries: Mutex<HashMap<TaskId, LeaseEntry>>,
    /// (tenant, queue) pairs known to exist.
    queues: Mutex<HashSet<(String, String)>>,
}

impl LeaseLedger {
    pub(crate) fn record(&self, tasks: &[LeasedTask], tenant: &str, pool: &str, now: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() + tasks.len() > LEDGER_MAX {
            entries.retain(|_, e| now - e.leased_at < LEDGER_MAX_AGE);
        }
        for task in tasks {
            entries.insert(
                task.task_id,
                LeaseEntry {
                    lease_token: task.lease_token.clone(),
                    tenant: tenant.to_string(),
                    leased_at: now,
                    queue: task.queue.clone(),
                    job_id: task.job_id.clone(),
                    pool: pool.to_string(),
                },
            );
        }
    }

    /// The entry for this exact lease, if this server handed it out.
    pub(crate) fn get(&self, task: TaskId, token: &str) -> Option<LeaseEntry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&task)
            .filter(|e| e.lease_token == token)
            .cloned()
    }

    /// Forget a lease once it was reported.
    pub(crate) fn remove(&self, task: TaskId, token: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(&task).is_some_and(|e| e.lease_token == token) {
            entries.remove(&task);
        }
    }

    /// Whether queue `name` of `tenant` was found before.
    pub(crate) fn queue_known(&self, tenant: &str, name: &str) -> bool {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.contains(&(tenant.to_string(), name.to_string()))
    }

    /// Remember that queue `name` of `tenant` exists.
    pub(crate) fn queue_found(&self, tenant: &str, name: &str) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if queues.len() < KNOWN_QUEUES_MAX {
            queues.insert((tenant.to_string(), name.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_queues_are_known_per_tenant() {
        let ledger = LeaseLedger::default();
        assert!(!ledger.queue_known("acme", "render"));
        ledger.queue_found("acme", "render");
        assert!(ledger.queue_known("acme", "render"));
        assert!(!ledger.queue_known("other", "render"));
        assert!(!ledger.queue_known("acme", "encode"));
    }
}

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

/// Entries kept at most. Leases that were never reported here (their worker died, or reported
/// through another replica) stay until this fills; then the older half is dropped.
const LEDGER_MAX: usize = 100_000;
/// Queues remembered as existing; past this, further ones are looked up every time.
const KNOWN_QUEUES_MAX: usize = 10_000;

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
            // Dropping an entry costs only its report's labels and timings, never a decision,
            // so the oldest go, whatever their age: a bound that holds even while every
            // lease is young.
            let mut ages: Vec<Timestamp> = entries.values().map(|e| e.leased_at).collect();
            let half = ages.len() / 2;
            let (_, cut, _) = ages.select_nth_unstable(half);
            let cut = *cut;
            entries.retain(|_, e| e.leased_at > cut);
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

    /// A leased task of id `id`, its lease token `lease-<id>`.
    fn leased(id: TaskId) -> LeasedTask {
        static TEMPLATE: std::sync::LazyLock<LeasedTask> = std::sync::LazyLock::new(|| {
            serde_json::from_value(serde_json::json!({
            "task_id": 0,
            "job_id": "job",
            "index": 0,
            "queue": "default",
            "attempt": 1,
            "lease_token": "",
            "lease_expires_at": "2026-01-01T00:00:00Z",
            "spec": {"command": ["true"]},
            "payload": null,
            "has_inputs": false,
            }))
            .expect("a leased task")
        });
        LeasedTask {
            task_id: id,
            lease_token: format!("lease-{id}"),
            ..TEMPLATE.clone()
        }
    }

    #[test]
    fn a_full_ledger_drops_its_oldest_entries_even_when_all_are_young() {
        let ledger = LeaseLedger::default();
        let start = chrono::Utc::now();
        for n in 0..LEDGER_MAX as TaskId {
            let at = start + chrono::TimeDelta::milliseconds(n);
            ledger.record(&[leased(n)], "acme", "local", at);
        }
        let newest = LEDGER_MAX as TaskId;
        let at = start + chrono::TimeDelta::milliseconds(newest);
        ledger.record(&[leased(newest)], "acme", "local", at);
        let kept = ledger.entries.lock().expect("entries").len();
        assert!(kept <= LEDGER_MAX / 2 + 1, "{kept} entries kept");
        assert!(ledger.get(newest, &format!("lease-{newest}")).is_some());
        assert!(
            ledger
                .get(newest - 1, &format!("lease-{}", newest - 1))
                .is_some()
        );
        assert!(ledger.get(0, "lease-0").is_none(), "the oldest went");
    }

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

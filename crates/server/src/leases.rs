//! A small in-memory ledger of leases handed out by this server, so reports can be labelled
//! with their queue, timed for the lease-duration histogram and released with the worker's
//! pool without a store round trip. Leases taken through another replica (or before a
//! restart) are simply not in it. It decides nothing: whether a report may touch a task (its
//! lease and its tenant) is the store's condition.
//!
//! Entries are kept in the order their leases expire (heartbeats move them on). A lease that
//! was never reported here (its worker died, or reported through another replica) goes a
//! grace period after it expired: each record drops a few such entries, oldest expiry first,
//! so the work is proportional to what goes and nothing is scanned. At the hard cap the
//! entries that expire soonest go first, whatever their age.
//!
//! It also remembers which queues lease and submit calls have found, so neither reads the
//! queue from the store on every call just to answer 404 for a missing one. Queues are never
//! deleted, so a queue once found exists for good.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use chrono::TimeDelta;
use spillway_core::api::LeasedTask;
use spillway_core::{TaskId, Timestamp};

/// Entries kept at most: the hard cap.
const LEDGER_MAX: usize = 100_000;
/// How long an entry stays after its lease expired: a report may still be applied until the
/// lease reaper has run, and its labels and timings are worth keeping until then.
const EXPIRED_GRACE: TimeDelta = TimeDelta::minutes(10);
/// Expired entries dropped per record, besides one per lease recorded: more than are added,
/// so the expired never pile up, and a bounded amount of work under the lock.
const EXPIRED_PER_RECORD: usize = 16;
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
    /// When the entry may go: the lease's expiry plus [`EXPIRED_GRACE`].
    keep_until: Timestamp,
}

/// Entries by task id, and the same in the order they may go.
#[derive(Debug, Default)]
struct Entries {
    by_task: HashMap<TaskId, LeaseEntry>,
    by_expiry: BTreeSet<(Timestamp, TaskId)>,
}

impl Entries {
    fn insert(&mut self, task: TaskId, entry: LeaseEntry) {
        self.by_expiry.insert((entry.keep_until, task));
        if let Some(old) = self.by_task.insert(task, entry) {
            self.by_expiry.remove(&(old.keep_until, task));
        }
    }

    fn remove(&mut self, task: TaskId) {
        if let Some(old) = self.by_task.remove(&task) {
            self.by_expiry.remove(&(old.keep_until, task));
        }
    }

    /// Drop the entry that may go first, if it may go by `now` (any, for `None`).
    fn pop_expired(&mut self, now: Option<Timestamp>) -> bool {
        let Some(&(until, task)) = self.by_expiry.first() else {
            return false;
        };
        if now.is_some_and(|now| until > now) {
            return false;
        }
        self.by_expiry.pop_first();
        self.by_task.remove(&task);
        true
    }
}

/// Leases by task id.
#[derive(Debug)]
pub(crate) struct LeaseLedger {
    entries: Mutex<Entries>,
    /// Entries kept at most.
    cap: usize,
    /// (tenant, queue) pairs known to exist.
    queues: Mutex<HashSet<(String, String)>>,
}

impl Default for LeaseLedger {
    fn default() -> Self {
        Self::with_cap(LEDGER_MAX)
    }
}

impl LeaseLedger {
    /// A ledger of at most `cap` entries.
    fn with_cap(cap: usize) -> Self {
        Self {
            entries: Mutex::default(),
            cap: cap.max(1),
            queues: Mutex::default(),
        }
    }

    pub(crate) fn record(&self, tasks: &[LeasedTask], tenant: &str, pool: &str, now: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..EXPIRED_PER_RECORD + tasks.len() {
            if !entries.pop_expired(Some(now)) {
                break;
            }
        }
        for task in tasks {
            if entries.by_task.len() >= self.cap && !entries.by_task.contains_key(&task.task_id) {
                // Dropping an entry costs only its report's labels and timings, never a
                // decision, so the bound holds even while every lease is young.
                entries.pop_expired(None);
            }
            entries.insert(
                task.task_id,
                LeaseEntry {
                    lease_token: task.lease_token.clone(),
                    tenant: tenant.to_string(),
                    leased_at: now,
                    queue: task.queue.clone(),
                    job_id: task.job_id.clone(),
                    pool: pool.to_string(),
                    keep_until: task.lease_expires_at + EXPIRED_GRACE,
                },
            );
        }
    }

    /// A heartbeat extended this lease to `expires_at`: keep its entry until then.
    pub(crate) fn extended(&self, task: TaskId, token: &str, expires_at: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.by_task.get(&task) else {
            return;
        };
        let keep_until = expires_at + EXPIRED_GRACE;
        if entry.lease_token != token || entry.keep_until >= keep_until {
            return;
        }
        let entry = LeaseEntry {
            keep_until,
            ..entry.clone()
        };
        entries.insert(task, entry);
    }

    /// The entry for this exact lease, if this server handed it out.
    pub(crate) fn get(&self, task: TaskId, token: &str) -> Option<LeaseEntry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .by_task
            .get(&task)
            .filter(|e| e.lease_token == token)
            .cloned()
    }

    /// Forget a lease once it was reported.
    pub(crate) fn remove(&self, task: TaskId, token: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries
            .by_task
            .get(&task)
            .is_some_and(|e| e.lease_token == token)
        {
            entries.remove(task);
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

    /// A lease of task `id` taken at `at`, expiring `expires_in` later.
    fn lease(id: TaskId, at: Timestamp, expires_in: TimeDelta) -> LeasedTask {
        LeasedTask {
            lease_expires_at: at + expires_in,
            ..leased(id)
        }
    }

    fn len(ledger: &LeaseLedger) -> usize {
        let entries = ledger.entries.lock().expect("entries");
        assert_eq!(entries.by_task.len(), entries.by_expiry.len());
        entries.by_task.len()
    }

    fn held(ledger: &LeaseLedger, id: TaskId) -> bool {
        ledger.get(id, &format!("lease-{id}")).is_some()
    }

    #[test]
    fn expired_entries_go_long_before_the_ledger_is_full() {
        let ledger = LeaseLedger::default();
        let start = chrono::Utc::now();
        let minute = TimeDelta::minutes(1);
        for id in 0..100 {
            ledger.record(&[lease(id, start, minute)], "acme", "local", start);
        }
        ledger.record(&[lease(100, start, minute * 60)], "acme", "local", start);
        // The first hundred expired; the grace went by.
        let later = start + minute + EXPIRED_GRACE + TimeDelta::seconds(1);
        let mut id = 101;
        while (0..100).any(|id| held(&ledger, id)) {
            assert!(
                id < 120,
                "expired entries were not dropped as leases went on"
            );
            ledger.record(&[lease(id, later, minute)], "acme", "local", later);
            id += 1;
        }
        assert!(held(&ledger, 100), "an unexpired lease went");
        assert_eq!(len(&ledger), 1 + (id - 101) as usize);
    }

    #[test]
    fn an_expired_entry_stays_through_the_grace_period() {
        let ledger = LeaseLedger::default();
        let start = chrono::Utc::now();
        ledger.record(
            &[lease(1, start, TimeDelta::minutes(1))],
            "acme",
            "local",
            start,
        );
        let later = start + TimeDelta::minutes(1) + EXPIRED_GRACE - TimeDelta::seconds(1);
        ledger.record(
            &[lease(2, later, TimeDelta::minutes(1))],
            "acme",
            "local",
            later,
        );
        assert!(
            held(&ledger, 1),
            "a report may still come before the reaper runs"
        );
    }

    #[test]
    fn at_the_cap_the_lease_that_expires_soonest_goes_whatever_its_age() {
        let ledger = LeaseLedger::with_cap(4);
        let start = chrono::Utc::now();
        let minutes = TimeDelta::minutes;
        // Leased in this order, expiring in another.
        for (id, expires_in) in [(1, 30), (2, 5), (3, 20), (4, 10)] {
            ledger.record(
                &[lease(id, start, minutes(expires_in))],
                "acme",
                "local",
                start,
            );
        }
        ledger.record(&[lease(5, start, minutes(25))], "acme", "local", start);
        assert_eq!(len(&ledger), 4);
        assert!(!held(&ledger, 2), "the soonest to expire went");
        for id in [1, 3, 4, 5] {
            assert!(held(&ledger, id), "lease {id} went");
        }
        ledger.record(
            &[lease(6, start, minutes(40)), lease(7, start, minutes(40))],
            "acme",
            "local",
            start,
        );
        assert_eq!(len(&ledger), 4);
        assert!(!held(&ledger, 4) && !held(&ledger, 3));
    }

    #[test]
    fn a_heartbeat_keeps_an_entry_past_its_first_expiry() {
        let ledger = LeaseLedger::default();
        let start = chrono::Utc::now();
        let minute = TimeDelta::minutes(1);
        ledger.record(&[lease(1, start, minute)], "acme", "local", start);
        ledger.extended(1, "lease-1", start + minute * 60);
        ledger.extended(1, "another-lease", start + minute * 600);
        let later = start + minute * 30;
        ledger.record(&[lease(2, later, minute)], "acme", "local", later);
        assert!(held(&ledger, 1));
        let after = start + minute * 60 + EXPIRED_GRACE + minute;
        ledger.record(&[lease(3, after, minute)], "acme", "local", after);
        assert!(!held(&ledger, 1), "gone once its extended lease expired");
        assert_eq!(len(&ledger), 1);
    }

    #[test]
    fn a_reported_lease_is_forgotten_and_a_new_lease_of_its_task_replaces_it() {
        let ledger = LeaseLedger::default();
        let start = chrono::Utc::now();
        ledger.record(
            &[lease(1, start, TimeDelta::minutes(1))],
            "acme",
            "local",
            start,
        );
        let again = LeasedTask {
            lease_token: "second".into(),
            ..lease(1, start, TimeDelta::minutes(5))
        };
        ledger.record(&[again], "acme", "local", start);
        assert_eq!(len(&ledger), 1);
        assert!(!held(&ledger, 1));
        ledger.remove(1, "lease-1");
        assert!(
            ledger.get(1, "second").is_some(),
            "a stale token removes nothing"
        );
        ledger.remove(1, "second");
        assert_eq!(len(&ledger), 0);
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

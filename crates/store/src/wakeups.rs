//! In-process wake-ups for long-polling lease calls: one waiter per new task, not all at once.
//!
//! A lease call registers a [`Waiter`] on its queues *before* it tries to lease, and waits on
//! it only if the lease came back empty, so no signal falls between the failed lease and the
//! wait. A commit that makes `n` tasks of a queue leasable signals `n`: the oldest waiters are
//! woken until the tasks they ask for (their lease's `max_tasks`) cover `n`, so a waiter that
//! can lease `k` tasks counts for `k`. With 2,000 idle workers, one new task wakes one lease
//! call, not 2,000.
//!
//! A woken waiter that finds nothing (another call took the task) registers again and waits.
//! A wake-up must not be lost, though, when its waiter does not lease after it: the call
//! leaves (its lease found other tasks before the signal, its worker began draining, its
//! deadline passed, its client went away). A [`Waiter`] dropped without
//! [`Waiter::consume`] therefore passes its wake-up on to the next waiters of the queue.
//!
//! Waiters that lease only some of a queue's tasks (a burst pool's, which takes only
//! burstable jobs') cannot tell whether a signal is for them: every signal wakes them, as it
//! woke every waiter before. Observers that lease nothing (the autoscaler) take a
//! [`Wakeups::listener`], notified on every signal.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// How many tasks of a queue a commit made leasable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leasable {
    /// This many (an upper bound is fine: it wakes more waiters than needed, never fewer).
    Tasks(u64),
    /// Unknown (a paused queue resumed, a signal from a replica of an older version): every
    /// waiter is woken.
    All,
}

/// Which tasks a waiter's lease takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Any leasable task of its queues, up to this many at once.
    Any(u32),
    /// Only some of them (a burst pool takes only burstable jobs' tasks): woken by every
    /// signal.
    Some,
}

/// The waiters of every (tenant, queue), made on first use.
#[derive(Debug, Default)]
pub struct Wakeups {
    queues: Mutex<HashMap<(String, String), Arc<QueueWaiters>>>,
}

impl Wakeups {
    fn queue(&self, tenant: &str, queue: &str) -> Arc<QueueWaiters> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry((tenant.to_string(), queue.to_string()))
            .or_default()
            .clone()
    }

    fn existing(&self, tenant: &str, queue: &str) -> Option<Arc<QueueWaiters>> {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .get(&(tenant.to_string(), queue.to_string()))
            .cloned()
    }

    /// Register a waiter on `queues` of `tenant`, before looking for work: a signal from
    /// now on may wake it.
    pub fn waiter(&self, tenant: &str, queues: &[String], takes: Takes) -> Waiter {
        let slot = Arc::new(Slot::default());
        let registered = queues
            .iter()
            .map(|q| {
                let queue = self.queue(tenant, q);
                let id = queue.register(&slot, takes);
                (queue, id)
            })
            .collect();
        Waiter {
            slot,
            registered,
            consumed: false,
        }
    }

    /// The observers' signal for one queue: notified (`notify_waiters`) on every signal, for
    /// those that want to know work arrived but lease none of it.
    pub fn listener(&self, tenant: &str, queue: &str) -> Arc<Notify> {
        self.queue(tenant, queue).observers.clone()
    }

    /// `leasable` tasks of one queue became leasable in a committed write: wake as many
    /// waiters as take them.
    pub fn signal(&self, tenant: &str, queue: &str, leasable: Leasable) {
        if let Some(queue) = self.existing(tenant, queue) {
            queue.signal(leasable);
        }
    }
}

/// The waiters of one queue and its observers.
#[derive(Debug, Default)]
struct QueueWaiters {
    waiting: Mutex<Waiting>,
    observers: Arc<Notify>,
}

/// Registered waiters, oldest first (ids only grow).
#[derive(Debug, Default)]
struct Waiting {
    next_id: u64,
    /// Waiters that take any task, with how many each takes at once.
    takers: BTreeMap<u64, (u64, Arc<Slot>)>,
    /// Waiters that take only some tasks.
    choosers: BTreeMap<u64, Arc<Slot>>,
}

impl QueueWaiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, slot: &Arc<Slot>, takes: Takes) -> u64 {
        let mut waiting = self.lock();
        let id = waiting.next_id;
        waiting.next_id += 1;
        match takes {
            Takes::Any(max) => {
                waiting
                    .takers
                    .insert(id, (u64::from(max.max(1)), slot.clone()));
            }
            Takes::Some => {
                waiting.choosers.insert(id, slot.clone());
            }
        }
        id
    }

    fn unregister(&self, id: u64) {
        let mut waiting = self.lock();
        waiting.takers.remove(&id);
        waiting.choosers.remove(&id);
    }

    fn signal(self: &Arc<Self>, leasable: Leasable) {
        {
            let mut waiting = self.lock();
            for (_, slot) in std::mem::take(&mut waiting.choosers) {
                slot.wake(self, 0);
            }
            match leasable {
                Leasable::All => {
                    for (_, (_, slot)) in std::mem::take(&mut waiting.takers) {
                        // Every waiter is woken: none has a wake-up to pass on.
                        slot.wake(self, 0);
                    }
                }
                Leasable::Tasks(mut left) => {
                    while left > 0 {
                        let Some((_, (takes, slot))) = waiting.takers.pop_first() else {
                            break;
                        };
                        let share = takes.min(left);
                        // A waiter of several queues may have been woken by another one.
                        if slot.wake(self, share) {
                            left -= share;
                        }
                    }
                }
            }
        }
        self.observers.notify_waiters();
    }
}

/// One waiter's wake-up: which queue woke it and for how many tasks.
#[derive(Debug, Default)]
struct Slot {
    woken: Mutex<Option<(Arc<QueueWaiters>, u64)>>,
    notify: Notify,
}

impl Slot {
    /// Wake the waiter for `tasks` tasks of `queue`, unless it was woken before.
    fn wake(&self, queue: &Arc<QueueWaiters>, tasks: u64) -> bool {
        let mut woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        if woken.is_some() {
            return false;
        }
        *woken = Some((queue.clone(), tasks));
        // A stored permit: a wake-up before the waiter awaits is kept.
        self.notify.notify_one();
        true
    }
}

/// A lease call waiting for work on its queues; see the module's documentation.
#[derive(Debug)]
pub struct Waiter {
    slot: Arc<Slot>,
    registered: Vec<(Arc<QueueWaiters>, u64)>,
    consumed: bool,
}

impl Waiter {
    /// Wait until a signal wakes this waiter (at once if one did since it was registered).
    pub async fn woken(&self) {
        self.slot.notify.notified().await;
    }

    /// Whether a signal woke this waiter.
    pub fn is_woken(&self) -> bool {
        self.slot
            .woken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Drop the waiter once a lease *begun after its wake-up* has run: the wake-up is used.
    pub fn consume(mut self) {
        self.consumed = true;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Out of every list first: no signal can pick this waiter after this.
        for (queue, id) in &self.registered {
            queue.unregister(*id);
        }
        if self.consumed {
            return;
        }
        let woken = self
            .slot
            .woken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((queue, tasks)) = woken
            && tasks > 0
        {
            queue.signal(Leasable::Tasks(tasks));
        }
    }
}

/// The (tenant, queue) pairs whose waiters a write should wake once it has committed.
pub(crate) type Woken = std::collections::BTreeSet<(String, String)>;

/// What a release made leasable: at most one task per applied release (a release with a
/// delay makes its task due later, where the lease polls find it).
pub(crate) fn released(results: &[crate::Reported]) -> Leasable {
    let applied = results.iter().filter(|r| r.ok()).count();
    Leasable::Tasks(u64::try_from(applied).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T: &str = "acme";

    fn queues(names: &[&str]) -> Vec<String> {
        names.iter().map(|q| q.to_string()).collect()
    }

    fn woken(waiters: &[Waiter]) -> usize {
        waiters.iter().filter(|w| w.is_woken()).count()
    }

    #[test]
    fn a_signal_wakes_one_waiter_per_task_oldest_first() {
        let hub = Wakeups::default();
        let waiters: Vec<Waiter> = (0..10)
            .map(|_| hub.waiter(T, &queues(&["q"]), Takes::Any(1)))
            .collect();
        hub.signal(T, "q", Leasable::Tasks(1));
        assert_eq!(woken(&waiters), 1);
        assert!(waiters[0].is_woken(), "the oldest waiter goes first");
        hub.signal(T, "q", Leasable::Tasks(3));
        assert_eq!(woken(&waiters), 4);
        hub.signal(T, "other", Leasable::Tasks(3));
        hub.signal("other", "q", Leasable::Tasks(3));
        assert_eq!(woken(&waiters), 4, "other queues wake nobody here");
        hub.signal(T, "q", Leasable::All);
        assert_eq!(woken(&waiters), 10);
    }

    #[test]
    fn a_waiter_that_takes_k_tasks_counts_for_k() {
        let hub = Wakeups::default();
        let waiters: Vec<Waiter> = (0..4)
            .map(|_| hub.waiter(T, &queues(&["q"]), Takes::Any(3)))
            .collect();
        hub.signal(T, "q", Leasable::Tasks(5));
        assert_eq!(woken(&waiters), 2, "3 + 2 tasks");
    }

    #[test]
    fn waiters_that_take_only_some_tasks_wake_on_every_signal() {
        let hub = Wakeups::default();
        let picky: Vec<Waiter> = (0..3)
            .map(|_| hub.waiter(T, &queues(&["q"]), Takes::Some))
            .collect();
        let any = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        let later = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        hub.signal(T, "q", Leasable::Tasks(1));
        assert_eq!(woken(&picky), 3);
        assert!(any.is_woken());
        assert!(
            !later.is_woken(),
            "the picky ones do not count for the task"
        );
    }

    #[test]
    fn a_waiter_of_two_queues_is_woken_once() {
        let hub = Wakeups::default();
        let both = hub.waiter(T, &queues(&["a", "b"]), Takes::Any(1));
        let b = hub.waiter(T, &queues(&["b"]), Takes::Any(1));
        hub.signal(T, "a", Leasable::Tasks(1));
        hub.signal(T, "b", Leasable::Tasks(1));
        assert!(both.is_woken());
        assert!(b.is_woken(), "b's task went to b's other waiter");
    }

    #[test]
    fn a_wake_up_not_followed_by_a_lease_passes_on() {
        let hub = Wakeups::default();
        let first = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        let second = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        let third = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        hub.signal(T, "q", Leasable::Tasks(1));
        assert!(first.is_woken());
        drop(first);
        assert!(second.is_woken(), "the first left without leasing");
        second.consume();
        assert!(!third.is_woken(), "the second leased after its wake-up");
    }

    #[test]
    fn dropped_waiters_leave_the_lists() {
        let hub = Wakeups::default();
        for _ in 0..100 {
            drop(hub.waiter(T, &queues(&["q"]), Takes::Any(1)));
        }
        let queue = hub.queue(T, "q");
        assert!(queue.lock().takers.is_empty());
    }

    #[tokio::test]
    async fn a_signal_before_the_wait_is_kept() {
        let hub = Wakeups::default();
        let waiter = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        hub.signal(T, "q", Leasable::Tasks(1));
        tokio::time::timeout(Duration::from_secs(10), waiter.woken())
            .await
            .expect("the signal sent while looking wakes the wait");
    }

    #[tokio::test]
    async fn observers_hear_every_signal() {
        let hub = Wakeups::default();
        let _waiter = hub.waiter(T, &queues(&["q"]), Takes::Any(1));
        let observer = hub.listener(T, "q");
        let notified = observer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        hub.signal(T, "q", Leasable::Tasks(1));
        tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .expect("the observer is notified");
    }
}

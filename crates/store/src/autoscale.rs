//! What the autoscaler reads from the store: demand per queue and leadership.

use std::any::Any;

/// What one queue asks of the workers now, for the autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDemand {
    /// The queue's tenant.
    pub tenant: String,
    /// The queue.
    pub queue: String,
    /// Tasks leasable now (waiting, due, queue not paused, job not cancelled).
    pub waiting: u64,
    /// Of those, tasks of burstable jobs.
    pub waiting_burstable: u64,
    /// Tasks leased now.
    pub leased: u64,
    /// Mean run time in seconds of the last (up to) [`MEAN_DURATION_SAMPLE`] succeeded tasks
    /// (on SQLite a moving mean in which each success weighs as one of that many); `None`
    /// until one has succeeded.
    pub mean_duration_seconds: Option<f64>,
    /// Tasks created in the last [`ARRIVALS_WINDOW_SECONDS`] seconds.
    pub arrivals: u64,
}

/// How many of the latest succeeded tasks the mean run time is taken over.
pub const MEAN_DURATION_SAMPLE: u32 = 100;
/// The window arrivals are counted over.
pub const ARRIVALS_WINDOW_SECONDS: i64 = 60;

/// Tells whether a lease's guard still holds leadership.
type HeldCheck = Box<dyn Fn(&(dyn Any + Send + Sync)) -> bool + Send + Sync>;

/// Leadership among server replicas for one key, held while this value lives.
pub struct LeaderLease {
    guard: Box<dyn Any + Send + Sync>,
    held: HeldCheck,
}

impl std::fmt::Debug for LeaderLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLease")
            .field("held", &self.is_held())
            .finish()
    }
}

impl LeaderLease {
    /// A lease kept by `guard`; `held` tells whether the guard still holds it.
    pub fn new<G: Any + Send + Sync>(guard: G, held: fn(&G) -> bool) -> Self {
        Self {
            guard: Box::new(guard),
            held: Box::new(move |any| any.downcast_ref::<G>().is_some_and(held)),
        }
    }

    /// A lease that is always held (one process owns the database).
    pub fn always() -> Self {
        Self::new((), |_| true)
    }

    /// Whether leadership is still held; act as leader only while it is.
    pub fn is_held(&self) -> bool {
        (self.held)(self.guard.as_ref())
    }
}

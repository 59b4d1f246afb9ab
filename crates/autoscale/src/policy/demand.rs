//! From a queue's backlog and arrivals to slots: tasks that should be running at once.
//!
//! With `b` tasks waiting, mean task time `m` and drain target `T`, emptying the backlog within
//! `T` takes `b·m/T` slots, but never more than one per task: `min(b, b·m/T)`. New arrivals at
//! rate `λ` keep `λ·m` slots busy (Little's law). Tasks already running keep their workers (the
//! policy never drains a busy worker), so they are not counted again here.

use crate::config::PolicyConfig;
use crate::policy::QueueDemand;

/// Slots one queue needs, split by where they may run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slots {
    /// For tasks of jobs that are not burstable and for arrivals: tier-0 pools only.
    pub home: f64,
    /// For waiting tasks of burstable jobs: any pool serving the queue.
    pub any: f64,
    /// The mean task time used, in seconds.
    pub mean_seconds: f64,
    /// Whether the mean was measured (else assumed).
    pub measured: bool,
}

impl Slots {
    /// Both kinds together.
    pub fn total(&self) -> f64 {
        self.home + self.any
    }
}

/// The slots `queue` needs to drain within the drain target.
pub fn queue_slots(config: &PolicyConfig, queue: &QueueDemand) -> Slots {
    let target = config.drain_target.as_secs_f64().max(f64::MIN_POSITIVE);
    let (mean_seconds, measured) = match queue.mean_task_seconds {
        Some(m) if m.is_finite() && m > 0.0 => (m, true),
        _ => (config.assumed_task_duration.as_secs_f64(), false),
    };
    // Slots per waiting task: a task longer than the target needs a slot of its own.
    let per_task = (mean_seconds / target).min(1.0);
    let burstable = queue.waiting_burstable.min(queue.waiting);
    let fixed = queue.waiting - burstable;
    let arrivals = if queue.arrivals_per_second.is_finite() {
        queue.arrivals_per_second.max(0.0)
    } else {
        0.0
    };
    Slots {
        home: fixed as f64 * per_task + arrivals * mean_seconds,
        any: burstable as f64 * per_task,
        mean_seconds,
        measured,
    }
}

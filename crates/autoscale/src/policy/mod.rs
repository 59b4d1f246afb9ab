//! The scaling policy: pure functions from what is waiting and what is running to the size each
//! pool should have and the workers it should drain. No IO; time comes in as a value, and what
//! the policy must remember between passes (for the scale-in window) lives in a
//! [`PolicyMemory`] the caller keeps.
//!
//! One pass ([`plan`]):
//! 1. [`demand`]: each queue's waiting tasks and arrivals become *slots* (tasks running at
//!    once) needed to empty the backlog within the drain target, split into work any pool may
//!    take and work only tier-0 pools may take (tasks of jobs that are not burstable).
//! 2. [`allocate`]: slots are handed to pools tier by tier, cheaper pool first within a tier,
//!    each up to its maximum, so a burst tier gets work only when every tier below it is full.
//! 3. [`scale`]: each pool's target becomes a decision. Growing happens at once, in one step.
//!    Shrinking waits until the target has stayed below the current size for the scale-in
//!    window, then drains only idle workers (starting ones first), never a busy one.

pub mod allocate;
pub mod demand;
pub mod scale;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use spillway_core::Timestamp;

use crate::config::{PolicyConfig, PoolConfig};
use crate::provider::{InstanceId, InstanceState};

/// What one queue asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDemand {
    /// The queue's name.
    pub queue: String,
    /// Tasks waiting that could be leased now.
    pub waiting: u64,
    /// Of those, tasks of burstable jobs (which burst tiers may take).
    pub waiting_burstable: u64,
    /// Measured mean run time of its tasks in seconds; `None` until one has finished.
    pub mean_task_seconds: Option<f64>,
    /// Measured arrival rate of new tasks per second.
    pub arrivals_per_second: f64,
}

/// One instance of a pool as the policy needs to see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceView<'a> {
    /// The provider's id for it.
    pub id: &'a str,
    /// Where it is in its life.
    pub state: InstanceState,
    /// Leases its worker holds now.
    pub busy_slots: u32,
    /// Since when its worker has held no lease; `None` while busy or starting.
    pub idle_since: Option<Timestamp>,
}

/// One pool as the policy needs to see it.
#[derive(Debug, Clone)]
pub struct PoolView<'a> {
    /// The pool's configuration.
    pub config: &'a PoolConfig,
    /// Its instances (draining and down ones are ignored for its size).
    pub instances: Vec<InstanceView<'a>>,
    /// The provider reports quota or stock-out: the pool cannot grow now, so its work is
    /// handed on to the next pool as if it were at its maximum.
    pub short_of_capacity: bool,
}

impl PoolView<'_> {
    /// Instances starting or running.
    pub fn live(&self) -> u32 {
        self.instances.iter().filter(|i| i.state.is_live()).count() as u32
    }
}

/// Everything one pass looks at.
#[derive(Debug, Clone)]
pub struct PolicyInput<'a> {
    /// The caller's clock.
    pub now: Timestamp,
    /// Demand per queue.
    pub queues: &'a [QueueDemand],
    /// Every pool.
    pub pools: &'a [PoolView<'a>],
}

/// What the policy decided for one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the size.
    Hold,
    /// Grow to `desired` now.
    ScaleUp,
    /// Wants fewer workers but the scale-in window has not passed yet.
    WaitToScaleIn,
    /// Drain the named idle workers.
    ScaleIn,
}

/// The decision for one pool, with its reason in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolDecision {
    /// The pool's name.
    pub pool: String,
    /// Live instances (starting or running) now.
    pub current: u32,
    /// Live instances wanted once `drain` has left; within the pool's `[min, max]`.
    pub desired: u32,
    /// Idle instances to drain.
    pub drain: Vec<InstanceId>,
    /// What kind of change this is.
    pub action: Action,
    /// Why, e.g. "2 → 8: backlog 480, mean 1.2 s, drain target 60 s".
    pub reason: String,
}

/// What the policy remembers between passes, per pool. Start with `PolicyMemory::default()`.
#[derive(Debug, Clone, Default)]
pub struct PolicyMemory {
    pools: BTreeMap<String, PoolMemory>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PoolMemory {
    /// Since when the target has been below the current size without a break.
    pub(crate) below_since: Option<Timestamp>,
    /// Targets of the passes within the scale-in window, oldest first.
    pub(crate) recent: VecDeque<(Timestamp, u32)>,
}

/// One pass of the policy: a decision for every pool in `input.pools`, in the same order.
pub fn plan(
    config: &PolicyConfig,
    input: &PolicyInput<'_>,
    memory: &mut PolicyMemory,
) -> Vec<PoolDecision> {
    let demands: Vec<demand::Slots> = input
        .queues
        .iter()
        .map(|q| demand::queue_slots(config, q))
        .collect();
    let allocation = allocate::allocate(input.queues, &demands, input.pools);
    input
        .pools
        .iter()
        .zip(allocation)
        .map(|(pool, share)| {
            let mem = memory.pools.entry(pool.config.name.clone()).or_default();
            scale::decide(config, input, pool, &share, mem)
        })
        .collect()
}

/// Seconds as people read them: "1.2 s", "45 s", "2 h".
pub fn human_seconds(seconds: f64) -> String {
    if seconds >= 7200.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else if seconds >= 100.0 {
        format!("{seconds:.0} s")
    } else {
        let text = format!("{seconds:.1}");
        format!("{} s", text.strip_suffix(".0").unwrap_or(&text))
    }
}

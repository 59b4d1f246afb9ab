//! A discrete-event simulator of a workload against pools, to compare Spillway's policy (the
//! real [`crate::policy`] functions) with a KEDA-style one before running either for real.
//!
//! One queue is simulated; every pool serves it. Tasks of jobs that are not burstable run only
//! on tier-0 pools, as on a real server. Pools start at their minimum, already running; new
//! workers run after their pool's start-up time and may be preempted at a given rate.

pub(crate) mod controller;
mod engine;
pub mod svg;
#[cfg(test)]
mod tests;
pub mod workload;

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::config::{PolicyConfig, PoolConfig};
use controller::Controller;
pub use workload::{Arrivals, Durations, Workload};

/// The name of the one simulated queue; every pool serves it.
pub const SIM_QUEUE: &str = "default";
/// Default polling interval of the KEDA-style policy.
pub const DEFAULT_KEDA_POLLING: Duration = Duration::from_secs(30);
/// Default cooldown of the KEDA-style policy before it scales in.
pub const DEFAULT_KEDA_COOLDOWN: Duration = Duration::from_secs(300);
/// Default time to keep simulating after the last task, waiting for pools to scale in.
pub const DEFAULT_TAIL_LIMIT: Duration = Duration::from_secs(3600);

/// The KEDA-style policy's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct KedaConfig {
    /// How often it looks at the queue.
    pub polling: Duration,
    /// How long every recommendation must stay below the current size before it scales in.
    pub cooldown: Duration,
    /// Queue length one worker should take; default the pool's concurrency.
    pub target_per_worker: Option<u32>,
}

impl Default for KedaConfig {
    fn default() -> Self {
        Self {
            polling: DEFAULT_KEDA_POLLING,
            cooldown: DEFAULT_KEDA_COOLDOWN,
            target_per_worker: None,
        }
    }
}

/// Pools and policies of a run.
#[derive(Debug, Clone)]
pub struct SimSetup {
    /// The pools; each is made to serve [`SIM_QUEUE`].
    pub pools: Vec<PoolConfig>,
    /// Spillway's policy settings.
    pub policy: PolicyConfig,
    /// The KEDA-style policy's settings.
    pub keda: KedaConfig,
    /// Preemptions per worker-hour, for every pool (0 for none).
    pub preemption_per_hour: f64,
    /// Seed for preemptions.
    pub seed: u64,
    /// How long to keep simulating after the last task while pools scale in.
    pub tail_limit: Duration,
}

impl SimSetup {
    /// A setup with default policies, no preemption and every pool serving [`SIM_QUEUE`].
    pub fn new(mut pools: Vec<PoolConfig>) -> Self {
        for pool in &mut pools {
            pool.queues = vec![SIM_QUEUE.to_string()];
        }
        Self {
            pools,
            policy: PolicyConfig::default(),
            keda: KedaConfig::default(),
            preemption_per_hour: 0.0,
            seed: 0,
            tail_limit: DEFAULT_TAIL_LIMIT,
        }
    }
}

/// Which policy drives a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// [`crate::policy::plan`].
    Spillway,
    /// Queue length over a per-worker target, with a cooldown, killing busy workers.
    Keda,
}

/// The waiting tasks and workers at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub seconds: f64,
    /// Tasks waiting.
    pub waiting: u64,
    /// Workers starting, running or draining.
    pub workers: u32,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// `spillway` or `keda-style`.
    pub policy: &'static str,
    /// Tasks in the workload.
    pub tasks: u64,
    /// From the first arrival to the last task finished, in seconds.
    pub drain_seconds: f64,
    /// Median wait from arrival to first start, in seconds.
    pub wait_p50_seconds: f64,
    /// 95th percentile of that wait, in seconds.
    pub wait_p95_seconds: f64,
    /// Worker time paid for, from asking for a worker to it leaving.
    pub worker_hours: f64,
    /// Worker-hours times each pool's cost per hour.
    pub cost: f64,
    /// Task runs ended by a scale-in or preemption (each went back to the queue).
    pub interrupted_tasks: u64,
    /// Run time thrown away by those interruptions, in hours.
    pub lost_work_hours: f64,
    /// Workers asked for over the run, the initial ones included.
    pub workers_started: u64,
    /// Most workers at once.
    pub peak_workers: u32,
    /// Length of the simulation, tail included, in seconds.
    pub simulated_seconds: f64,
    /// Waiting tasks and workers at each policy pass.
    #[serde(skip)]
    pub timeline: Vec<Sample>,
}

/// Simulate `workload` under one policy.
pub fn simulate(workload: &Workload, setup: &SimSetup, policy: PolicyKind) -> SimReport {
    let mut controller = match policy {
        PolicyKind::Spillway => Controller::Spillway {
            config: setup.policy.clone(),
            memory: Default::default(),
            recent: VecDeque::new(),
            mean: None,
        },
        PolicyKind::Keda => Controller::Keda {
            config: setup.keda.clone(),
            recent: vec![VecDeque::new(); setup.pools.len()],
        },
    };
    engine::run(workload, setup, &mut controller)
}

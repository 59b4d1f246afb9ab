//! The two policies the simulator compares: Spillway's (the real [`crate::policy::plan`]) and a
//! KEDA-style one (desired = ⌈queue length / target per worker⌉, scale-in after a cooldown,
//! victims chosen without regard to what they run).

use std::collections::VecDeque;
use std::time::Duration;

use spillway_core::Timestamp;

use crate::config::PolicyConfig;
use crate::policy::{InstanceView, PolicyInput, PolicyMemory, PoolView, QueueDemand, plan};
use crate::provider::InstanceState;
use crate::sim::engine::{Sim, WorkerState};
use crate::sim::workload::MICROS;
use crate::sim::{KedaConfig, SIM_QUEUE};

/// A policy driving the simulated pools.
pub(crate) enum Controller {
    Spillway {
        config: PolicyConfig,
        memory: PolicyMemory,
        /// Per past tick within [`RATE_WINDOW`], oldest first: time, arrivals, tasks
        /// finished and their run time in seconds.
        recent: VecDeque<(u64, u64, u64, f64)>,
        /// The last measured mean task time, kept through windows without a finished task.
        mean: Option<f64>,
    },
    Keda {
        config: KedaConfig,
        /// Per pool, recent recommendations within the cooldown, oldest first.
        recent: Vec<VecDeque<(u64, u32)>>,
    },
}

/// The simulator's time origin: a fixed instant, so runs never read a clock.
pub(crate) fn origin() -> Timestamp {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

fn timestamp(micros: u64) -> Timestamp {
    origin() + chrono::Duration::microseconds(micros as i64)
}

impl Controller {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Controller::Spillway { .. } => "spillway",
            Controller::Keda { .. } => "keda-style",
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        match self {
            Controller::Spillway { config, .. } => config.interval,
            Controller::Keda { config, .. } => config.polling,
        }
    }

    pub(crate) fn tick(&mut self, sim: &mut Sim<'_>) {
        match self {
            Controller::Spillway {
                config,
                memory,
                recent,
                mean,
            } => spillway_tick(config, memory, recent, mean, sim),
            Controller::Keda { config, recent } => keda_tick(config, recent, sim),
        }
    }
}

/// The window over which the arrival rate and mean task time handed to the policy are
/// measured, as a server would measure them from recent submissions and completions.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(300);

fn spillway_tick(
    config: &PolicyConfig,
    memory: &mut PolicyMemory,
    recent: &mut VecDeque<(u64, u64, u64, f64)>,
    mean: &mut Option<f64>,
    sim: &mut Sim<'_>,
) {
    let window = (RATE_WINDOW.as_secs_f64() * MICROS) as u64;
    let (finished, run_seconds) = sim.finished_since_tick;
    recent.push_back((sim.now, sim.arrivals_since_tick, finished, run_seconds));
    while recent.front().is_some_and(|(t, ..)| t + window <= sim.now) {
        recent.pop_front();
    }
    let arrived: u64 = recent.iter().map(|r| r.1).sum();
    let finished: u64 = recent.iter().map(|r| r.2).sum();
    if finished > 0 {
        *mean = Some(recent.iter().map(|r| r.3).sum::<f64>() / finished as f64);
    }
    let queues = [QueueDemand {
        queue: SIM_QUEUE.to_string(),
        waiting: (sim.home_queue.len() + sim.any_queue.len()) as u64,
        waiting_burstable: sim.any_queue.len() as u64,
        mean_task_seconds: *mean,
        arrivals_per_second: arrived as f64 / RATE_WINDOW.as_secs_f64(),
    }];
    let now = timestamp(sim.now);
    let decisions = {
        let pools: Vec<PoolView<'_>> = sim
            .pools
            .iter()
            .zip(&sim.members)
            .map(|(config, members)| PoolView {
                config,
                instances: members
                    .iter()
                    .map(|&w| {
                        let worker = &sim.workers[w as usize];
                        let state = match worker.state {
                            WorkerState::Starting => InstanceState::Starting,
                            WorkerState::Running => InstanceState::Running,
                            WorkerState::Draining => InstanceState::Draining,
                            WorkerState::Gone => InstanceState::Down,
                        };
                        let idle = state == InstanceState::Running && worker.tasks.is_empty();
                        InstanceView {
                            id: &worker.id,
                            state,
                            busy_slots: worker.tasks.len() as u32,
                            idle_since: idle.then(|| timestamp(worker.idle_since)),
                        }
                    })
                    .collect(),
                short_of_capacity: false,
            })
            .collect();
        let input = PolicyInput {
            now,
            queues: &queues,
            pools: &pools,
        };
        plan(config, &input, memory)
    };
    for (p, decision) in decisions.iter().enumerate() {
        for id in &decision.drain {
            if let Some(worker) = id.strip_prefix('w').and_then(|n| n.parse::<u32>().ok()) {
                sim.drain_worker(worker);
            }
        }
        for _ in sim.live(p)..decision.desired {
            sim.start_worker(p);
        }
    }
}

fn keda_tick(config: &KedaConfig, recent: &mut [VecDeque<(u64, u32)>], sim: &mut Sim<'_>) {
    let length = (sim.home_queue.len() + sim.any_queue.len()) as u64 + sim.in_flight;
    let cooldown = (config.cooldown.as_secs_f64() * MICROS) as u64;
    for (p, window) in recent.iter_mut().enumerate() {
        let pool = &sim.pools[p];
        let per_worker = u64::from(config.target_per_worker.unwrap_or(pool.concurrency).max(1));
        let want = length
            .div_ceil(per_worker)
            .min(u64::from(pool.max))
            .max(u64::from(pool.min)) as u32;
        window.push_back((sim.now, want));
        while window.front().is_some_and(|(t, _)| *t + cooldown < sim.now) {
            window.pop_front();
        }
        // Scale in only to the highest recommendation within the cooldown.
        let stable = window.iter().map(|(_, w)| *w).max().unwrap_or(want);
        let live = sim.live(p);
        if want > live {
            for _ in live..want {
                sim.start_worker(p);
            }
        } else if stable < live {
            // Like a ReplicaSet: pods not yet ready go first, then the newest, busy or not.
            let mut victims: Vec<u32> = sim.members[p]
                .iter()
                .copied()
                .filter(|&w| {
                    matches!(
                        sim.workers[w as usize].state,
                        WorkerState::Starting | WorkerState::Running
                    )
                })
                .collect();
            victims.sort_by_key(|&w| {
                (
                    sim.workers[w as usize].state != WorkerState::Starting,
                    std::cmp::Reverse(w),
                )
            });
            for &w in victims.iter().take((live - stable) as usize) {
                sim.kill_worker(w);
            }
        }
    }
}

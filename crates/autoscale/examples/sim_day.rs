//! Time the simulator on a day of a million tasks on up to 10,000 workers, under both policies.
//!
//! `cargo run --release -p spillway-autoscale --example sim_day`

use std::time::{Duration, Instant};

use spillway_autoscale::config::{MEMORY_PROVIDER, PoolConfig};
use spillway_autoscale::sim::{
    Arrivals, Durations, PolicyKind, SIM_QUEUE, SimSetup, Workload, simulate,
};

fn main() {
    let mut pool = PoolConfig::new("home", MEMORY_PROVIDER, vec![SIM_QUEUE.to_string()]);
    (pool.max, pool.startup, pool.cost_per_hour) = (10_000, Duration::from_secs(60), 0.5);
    let setup = SimSetup::new(vec![pool]);
    let started = Instant::now();
    // 1,000,000 tasks over 24 h is 11.57 per second; a 10 minute mean keeps ~6,900 busy.
    let workload = Workload::generate(
        &Arrivals::Poisson {
            rate: 1_000_000.0 / 86_400.0,
            count: 1_000_000,
        },
        &Durations::LogNormal {
            mean: Duration::from_secs(600),
            sigma: 1.0,
        },
        1.0,
        1,
    );
    println!("workload sampled in {:.2?}", started.elapsed());
    for policy in [PolicyKind::Spillway, PolicyKind::Keda] {
        let started = Instant::now();
        let r = simulate(&workload, &setup, policy);
        println!(
            "{:<10} simulated in {:.2?}: drained in {:.0} s, p95 wait {:.1} s, {:.0} worker-hours, peak {}, interrupted {}",
            r.policy,
            started.elapsed(),
            r.drain_seconds,
            r.wait_p95_seconds,
            r.worker_hours,
            r.peak_workers,
            r.interrupted_tasks
        );
    }
}

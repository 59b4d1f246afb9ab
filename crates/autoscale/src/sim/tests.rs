//! The simulator on tiny workloads whose answers are known exactly.

use std::time::Duration;

use super::*;
use crate::config::MEMORY_PROVIDER;

fn pool(min: u32, max: u32, startup: u64) -> PoolConfig {
    let mut p = PoolConfig::new("home", MEMORY_PROVIDER, vec![SIM_QUEUE.into()]);
    (p.min, p.max, p.startup) = (min, max, Duration::from_secs(startup));
    p.cost_per_hour = 1.0;
    p
}

/// A setup whose policy assumes 1 s tasks before any has finished.
fn setup(pools: Vec<PoolConfig>) -> SimSetup {
    let mut setup = SimSetup::new(pools);
    setup.policy.assumed_task_duration = Duration::from_secs(1);
    setup
}

fn fixed(n: u64, seconds: u64) -> Workload {
    Workload::generate(
        &Arrivals::Batch(n),
        &Durations::Fixed(Duration::from_secs(seconds)),
        1.0,
        1,
    )
}

#[test]
fn ten_one_second_tasks_on_two_workers_drain_at_five_seconds() {
    let setup = SimSetup::new(vec![pool(2, 2, 0)]);
    for policy in [PolicyKind::Spillway, PolicyKind::Keda] {
        let r = simulate(&fixed(10, 1), &setup, policy);
        assert_eq!(r.drain_seconds, 5.0, "{policy:?}");
        assert_eq!(r.wait_p50_seconds, 2.0, "{policy:?}");
        assert_eq!(r.wait_p95_seconds, 4.0, "{policy:?}");
        assert_eq!(r.workers_started, 2, "{policy:?}");
        assert_eq!(r.interrupted_tasks, 0, "{policy:?}");
        // Two workers paid for until the first policy pass after the last task.
        let end = setup.policy.interval.max(setup.keda.polling).as_secs_f64();
        let want = if policy == PolicyKind::Spillway {
            10.0
        } else {
            end
        };
        assert!(
            (r.worker_hours - 2.0 * want / 3600.0).abs() < 1e-9,
            "{policy:?}: {r:?}"
        );
    }
}

#[test]
fn from_zero_one_task_waits_for_the_start_up() {
    let setup = setup(vec![pool(0, 5, 30)]);
    let r = simulate(&fixed(1, 1), &setup, PolicyKind::Spillway);
    assert_eq!(r.drain_seconds, 31.0);
    assert_eq!(r.wait_p95_seconds, 30.0);
    assert_eq!(r.workers_started, 1);
}

#[test]
fn spillway_sizes_a_batch_to_the_drain_target() {
    // 1200 tasks of 1 s, drain target 60 s: 1200·1/60 = 20 slots for the backlog, plus the
    // arrivals seen in the last 5 minutes, 1200/300 s × 1 s = 4 slots: 24 workers in one step,
    // running after 10 s of start-up, so 1200/24 = 50 s of work ends at 60 s.
    let setup = setup(vec![pool(0, 100, 10)]);
    let r = simulate(&fixed(1200, 1), &setup, PolicyKind::Spillway);
    assert_eq!(r.peak_workers, 24, "{r:?}");
    assert_eq!(r.workers_started, 24, "one step up, no second guess: {r:?}");
    assert_eq!(r.drain_seconds, 60.0, "{r:?}");
}

#[test]
fn keda_kills_busy_workers_on_scale_in_and_spillway_never_does() {
    // 90 short tasks and 10 long ones: once the short ones are done, both want 10 workers.
    let mut seconds = vec![1.0; 90];
    seconds.extend([900.0; 10]);
    let workload = Workload::generate(&Arrivals::Batch(100), &Durations::Trace(seconds), 1.0, 1);
    let setup = SimSetup::new(vec![pool(0, 100, 30)]);
    let keda = simulate(&workload, &setup, PolicyKind::Keda);
    let ours = simulate(&workload, &setup, PolicyKind::Spillway);
    assert!(keda.interrupted_tasks > 0, "{keda:?}");
    assert!(keda.lost_work_hours > 0.0, "{keda:?}");
    assert_eq!(ours.interrupted_tasks, 0, "{ours:?}");
    assert!(
        ours.drain_seconds < keda.drain_seconds,
        "{ours:?} vs {keda:?}"
    );
}

#[test]
fn non_burstable_work_stays_on_tier_zero() {
    let mut burst = pool(0, 50, 0);
    (burst.name, burst.tier) = ("burst".into(), 1);
    let setup = SimSetup::new(vec![pool(1, 2, 0), burst]);
    let workload = Workload::generate(
        &Arrivals::Batch(200),
        &Durations::Fixed(Duration::from_secs(5)),
        0.0,
        1,
    );
    let r = simulate(&workload, &setup, PolicyKind::Spillway);
    assert_eq!(
        r.workers_started, 2,
        "no burst worker for work that may not burst: {r:?}"
    );
    assert_eq!(r.drain_seconds, 500.0);

    let burstable = Workload::generate(
        &Arrivals::Batch(200),
        &Durations::Fixed(Duration::from_secs(5)),
        1.0,
        1,
    );
    let r = simulate(&burstable, &setup, PolicyKind::Spillway);
    assert!(r.workers_started > 2, "burstable work bursts: {r:?}");
    assert!(r.drain_seconds < 100.0, "{r:?}");
}

#[test]
fn preemption_requeues_tasks_and_every_task_still_finishes() {
    let mut setup = SimSetup::new(vec![pool(0, 20, 5)]);
    setup.preemption_per_hour = 30.0;
    let workload = Workload::generate(
        &Arrivals::Poisson {
            rate: 2.0,
            count: 2000,
        },
        &Durations::LogNormal {
            mean: Duration::from_secs(20),
            sigma: 0.5,
        },
        1.0,
        3,
    );
    let r = simulate(&workload, &setup, PolicyKind::Spillway);
    assert!(r.interrupted_tasks > 0, "{r:?}");
    assert!(r.drain_seconds > 0.0 && r.simulated_seconds >= r.drain_seconds);
    let again = simulate(&workload, &setup, PolicyKind::Spillway);
    assert_eq!(r, again, "same seed, same run");
}

#[test]
fn chart_has_a_line_per_policy_per_panel() {
    let setup = SimSetup::new(vec![pool(0, 10, 5)]);
    let runs: Vec<SimReport> = [PolicyKind::Spillway, PolicyKind::Keda]
        .into_iter()
        .map(|p| simulate(&fixed(300, 2), &setup, p))
        .collect();
    let svg = svg::chart("300 tasks <2 s>", &runs);
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 4);
    assert!(svg.contains("keda-style") && svg.contains("&lt;2 s&gt;"));
}

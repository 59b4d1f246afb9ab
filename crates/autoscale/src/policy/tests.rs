//! Table-driven tests of each rule, and seeded property loops over random situations.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spillway_core::Timestamp;

use super::*;
use crate::config::{MEMORY_PROVIDER, PolicyConfig, PoolConfig};
use crate::conformance::t0;

fn at(seconds: i64) -> Timestamp {
    t0() + chrono::Duration::seconds(seconds)
}

fn pool(name: &str, tier: u32, min: u32, max: u32, cost: f64) -> PoolConfig {
    let mut p = PoolConfig::new(name, MEMORY_PROVIDER, vec!["q".to_string()]);
    (p.tier, p.min, p.max, p.cost_per_hour) = (tier, min, max, cost);
    p.idle_timeout = Duration::from_secs(30);
    p
}

fn queue(waiting: u64, burstable: u64, mean: Option<f64>) -> QueueDemand {
    QueueDemand {
        queue: "q".to_string(),
        waiting,
        waiting_burstable: burstable,
        mean_task_seconds: mean,
        arrivals_per_second: 0.0,
    }
}

/// Ids for instances, made once so views can borrow them.
fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("i{i}")).collect()
}

/// `running` idle (since t0) running instances, then `busy` busy ones, then `starting`.
fn instances(ids: &[String], idle: usize, busy: usize, starting: usize) -> Vec<InstanceView<'_>> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate().take(idle + busy + starting) {
        let (state, busy_slots, idle_since) = if i < idle {
            (InstanceState::Running, 0, Some(t0()))
        } else if i < idle + busy {
            (InstanceState::Running, 1, None)
        } else {
            (InstanceState::Starting, 0, None)
        };
        out.push(InstanceView {
            id,
            state,
            busy_slots,
            idle_since,
        });
    }
    out
}

fn view<'a>(config: &'a PoolConfig, instances: Vec<InstanceView<'a>>) -> PoolView<'a> {
    PoolView {
        config,
        instances,
        short_of_capacity: false,
    }
}

fn one(
    config: &PolicyConfig,
    now: Timestamp,
    q: &[QueueDemand],
    pools: &[PoolView<'_>],
    mem: &mut PolicyMemory,
) -> Vec<PoolDecision> {
    plan(
        config,
        &PolicyInput {
            now,
            queues: q,
            pools,
        },
        mem,
    )
}

#[test]
fn scale_up_is_one_step_to_the_number_needed() {
    let config = PolicyConfig::default();
    let names = ids(10);
    // (waiting, mean, live idle, min, max) -> desired
    let cases = [
        (480, Some(1.2), 2, 0, 100, 10), // 480·1.2/60 = 9.6 → 10
        (480, Some(1.2), 0, 0, 5, 5),    // clamped to max
        (3, Some(600.0), 0, 0, 100, 3),  // long tasks: one slot each, not 30
        (0, Some(1.0), 0, 2, 10, 2),     // min kept
        (10, None, 0, 0, 100, 10),       // unknown mean: 60 s assumed, one slot each
        (1, Some(0.01), 0, 0, 100, 1),   // a sliver of work still needs one worker
    ];
    for (waiting, mean, live, min, max, want) in cases {
        let p = pool("home", 0, min, max, 1.0);
        let pools = [view(&p, instances(&names, live, 0, 0))];
        let d = &one(
            &config,
            t0(),
            &[queue(waiting, 0, mean)],
            &pools,
            &mut PolicyMemory::default(),
        )[0];
        assert_eq!(
            d.desired, want,
            "{waiting} waiting, mean {mean:?}: {}",
            d.reason
        );
        if want > live as u32 {
            assert_eq!(d.action, Action::ScaleUp, "{}", d.reason);
        }
    }
}

#[test]
fn reason_names_backlog_mean_and_target() {
    let config = PolicyConfig::default();
    let p = pool("home", 0, 0, 100, 1.0);
    let names = ids(2);
    let pools = [view(&p, instances(&names, 2, 0, 0))];
    let d = &one(
        &config,
        t0(),
        &[queue(480, 0, Some(1.2))],
        &pools,
        &mut PolicyMemory::default(),
    )[0];
    assert_eq!(
        d.reason,
        "2 → 10: backlog 480, mean 1.2 s, drain target 60 s"
    );
}

#[test]
fn workers_still_starting_count_and_are_named() {
    let config = PolicyConfig::default();
    let p = pool("home", 0, 0, 100, 1.0);
    let names = ids(10);
    let pools = [view(&p, instances(&names, 0, 0, 10))];
    let d = &one(
        &config,
        t0(),
        &[queue(480, 0, Some(1.2))],
        &pools,
        &mut PolicyMemory::default(),
    )[0];
    assert_eq!((d.action, d.desired), (Action::Hold, 10), "{}", d.reason);
    assert_eq!(
        d.reason,
        "10: backlog 480, mean 1.2 s, drain target 60 s; 10 starting"
    );
}

#[test]
fn arrivals_keep_slots_busy_by_littles_law() {
    let config = PolicyConfig::default();
    let p = pool("home", 0, 0, 100, 1.0);
    let pools = [view(&p, vec![])];
    let mut q = queue(0, 0, Some(2.0));
    q.arrivals_per_second = 5.0; // 5/s × 2 s = 10 slots
    let d = &one(&config, t0(), &[q], &pools, &mut PolicyMemory::default())[0];
    assert_eq!(d.desired, 10, "{}", d.reason);
    assert!(d.reason.contains("arrivals 5.00/s"), "{}", d.reason);
}

#[test]
fn concurrency_divides_slots() {
    let config = PolicyConfig::default();
    let mut p = pool("home", 0, 0, 100, 1.0);
    p.concurrency = 4;
    let pools = [view(&p, vec![])];
    let d = &one(
        &config,
        t0(),
        &[queue(10, 0, Some(60.0))],
        &pools,
        &mut PolicyMemory::default(),
    )[0];
    assert_eq!(d.desired, 3, "10 slots / 4 per worker: {}", d.reason);
}

#[test]
fn scale_in_waits_for_the_window_then_drains_idle_only() {
    let config = PolicyConfig {
        scale_in_window: Duration::from_secs(60),
        ..PolicyConfig::default()
    };
    let p = pool("home", 0, 0, 10, 1.0);
    let names = ids(6);
    let mut mem = PolicyMemory::default();
    let empty = [queue(0, 0, Some(1.0))];
    // 3 idle, 2 busy, 1 starting; nothing waiting.
    let pools = [view(&p, instances(&names, 3, 2, 1))];
    let steps = [
        (40, Action::WaitToScaleIn, 6, 0),
        (80, Action::WaitToScaleIn, 6, 0),
        (100, Action::ScaleIn, 2, 4), // window passed: starting + 3 idle go, 2 busy stay
    ];
    for (t, action, desired, drained) in steps {
        let d = &one(&config, at(t), &empty, &pools, &mut mem)[0];
        assert_eq!(
            (d.action, d.desired, d.drain.len()),
            (action, desired, drained),
            "t={t}: {}",
            d.reason
        );
    }
    let d = &one(
        &config,
        at(100),
        &empty,
        &pools,
        &mut PolicyMemory::default(),
    )[0];
    assert_eq!(
        d.action,
        Action::WaitToScaleIn,
        "fresh memory starts the window anew"
    );
    let d = &one(&config, at(100), &empty, &pools, &mut mem)[0];
    assert!(
        !d.drain.iter().any(|id| id == "i3" || id == "i4"),
        "busy drained: {:?}",
        d.drain
    );
    assert_eq!(
        d.drain.first().map(String::as_str),
        Some("i5"),
        "starting first: {:?}",
        d.drain
    );
}

#[test]
fn demand_within_the_window_blocks_scale_in() {
    let config = PolicyConfig::default();
    let p = pool("home", 0, 0, 10, 1.0);
    let names = ids(4);
    let pools = [view(&p, instances(&names, 4, 0, 0))];
    let mut mem = PolicyMemory::default();
    let busy_minute = [queue(180, 0, Some(1.0))]; // 3 slots
    let quiet = [queue(0, 0, Some(1.0))];
    one(&config, at(0), &quiet, &pools, &mut mem);
    one(&config, at(50), &busy_minute, &pools, &mut mem);
    let d = &one(&config, at(70), &quiet, &pools, &mut mem)[0];
    assert_eq!(
        (d.action, d.desired),
        (Action::ScaleIn, 3),
        "peak 3 within window: {}",
        d.reason
    );
    let d = &one(&config, at(130), &quiet, &pools, &mut mem)[0];
    assert_eq!((d.action, d.desired), (Action::ScaleIn, 0), "{}", d.reason);
}

#[test]
fn recently_idle_workers_are_kept_until_their_idle_timeout() {
    let config = PolicyConfig::default();
    let p = pool("home", 0, 0, 10, 1.0); // idle timeout 30 s
    let names = ids(2);
    let mut views = instances(&names, 2, 0, 0);
    views[1].idle_since = Some(at(90));
    let pools = [view(&p, views)];
    let mut mem = PolicyMemory::default();
    let quiet = [queue(0, 0, Some(1.0))];
    one(&config, at(0), &quiet, &pools, &mut mem);
    let d = &one(&config, at(100), &quiet, &pools, &mut mem)[0];
    assert_eq!(d.drain, vec!["i0".to_string()], "{}", d.reason);
    assert!(
        d.reason.contains("1 more kept until idle for 30 s"),
        "{}",
        d.reason
    );
}

#[test]
fn scale_to_zero_and_back() {
    let config = PolicyConfig::default();
    let p = pool("home", 0, 0, 10, 1.0);
    let names = ids(2);
    let mut mem = PolicyMemory::default();
    let quiet = [queue(0, 0, Some(1.0))];
    let pools = [view(&p, instances(&names, 2, 0, 0))];
    one(&config, at(0), &quiet, &pools, &mut mem);
    let d = &one(&config, at(61), &quiet, &pools, &mut mem)[0];
    assert_eq!((d.desired, d.drain.len()), (0, 2), "{}", d.reason);
    let empty_pool = [view(&p, vec![])];
    let d = &one(
        &config,
        at(70),
        &[queue(120, 0, Some(1.0))],
        &empty_pool,
        &mut mem,
    )[0];
    assert_eq!((d.action, d.desired), (Action::ScaleUp, 2), "{}", d.reason);
}

#[test]
fn burst_rules() {
    let config = PolicyConfig::default();
    let home = pool("home", 0, 0, 4, 1.0);
    let cheap = pool("cheap", 1, 0, 10, 2.0);
    let dear = pool("dear", 1, 0, 10, 3.0);
    let tier2 = pool("tier2", 2, 0, 10, 0.5);
    // (waiting, burstable) with mean 60 s (one slot per task) -> [home, cheap, dear, tier2]
    let cases = [
        (3, 3, [3, 0, 0, 0]),     // home has room
        (10, 0, [4, 0, 0, 0]),    // nothing burstable: home clamps, no burst
        (10, 10, [4, 6, 0, 0]),   // cheaper pool of tier 1 first
        (30, 30, [4, 10, 10, 6]), // tier 2 only once tier 1 is full, though cheaper
        (30, 5, [4, 5, 0, 0]),    // only the burstable part bursts
    ];
    for (waiting, burstable, want) in cases {
        let pools = [&home, &cheap, &dear, &tier2].map(|p| view(p, vec![]));
        let got: Vec<u32> = one(
            &config,
            t0(),
            &[queue(waiting, burstable, Some(60.0))],
            &pools,
            &mut PolicyMemory::default(),
        )
        .iter()
        .map(|d| d.desired)
        .collect();
        assert_eq!(got, want, "{waiting} waiting, {burstable} burstable");
    }
    let pools = [&home, &cheap].map(|p| view(p, vec![]));
    let d = one(
        &config,
        t0(),
        &[queue(10, 0, Some(60.0))],
        &pools,
        &mut PolicyMemory::default(),
    );
    assert!(d[0].reason.contains("clamped to max 4"), "{}", d[0].reason);
    let d = one(
        &config,
        t0(),
        &[queue(10, 10, Some(60.0))],
        &pools,
        &mut PolicyMemory::default(),
    );
    assert!(
        d[1].reason.contains("tiers below 1 are full"),
        "{}",
        d[1].reason
    );
}

#[test]
fn a_pool_short_of_capacity_hands_work_on() {
    let config = PolicyConfig::default();
    let home = pool("home", 0, 0, 10, 1.0);
    let burst = pool("burst", 1, 0, 10, 1.0);
    let names = ids(2);
    let mut short = view(&home, instances(&names, 0, 0, 2));
    short.short_of_capacity = true;
    let pools = [short, view(&burst, vec![])];
    let d = one(
        &config,
        t0(),
        &[queue(5, 5, Some(60.0))],
        &pools,
        &mut PolicyMemory::default(),
    );
    assert_eq!((d[0].desired, d[1].desired), (2, 3));
}

#[test]
fn burst_pools_go_to_zero_after_their_idle_timeout() {
    let config = PolicyConfig::default();
    let home = pool("home", 0, 1, 1, 1.0);
    let burst = pool("burst", 1, 0, 10, 1.0);
    let names = ids(3);
    let mut mem = PolicyMemory::default();
    let quiet = [queue(0, 0, Some(1.0))];
    let pools = [
        view(&home, instances(&names[..1], 1, 0, 0)),
        view(&burst, instances(&names[1..], 2, 0, 0)),
    ];
    one(&config, at(0), &quiet, &pools, &mut mem);
    let d = one(&config, at(61), &quiet, &pools, &mut mem);
    assert_eq!((d[0].desired, d[0].drain.len()), (1, 0), "home keeps min");
    assert_eq!((d[1].desired, d[1].drain.len()), (0, 2), "{}", d[1].reason);
}

/// A random situation: pools of random tiers and sizes with random instances, random queues.
struct World {
    pools: Vec<PoolConfig>,
    ids: Vec<String>,
    // per pool: (state, busy, idle seconds before now)
    layout: Vec<Vec<(InstanceState, u32, Option<i64>)>>,
    queues: Vec<QueueDemand>,
}

fn random_world(rng: &mut StdRng) -> World {
    let n_pools = rng.random_range(1..5);
    let mut pools = Vec::new();
    let mut layout = Vec::new();
    for i in 0..n_pools {
        let max = rng.random_range(1..20);
        let mut p = pool(
            &format!("p{i}"),
            if i == 0 { 0 } else { rng.random_range(0..3) },
            rng.random_range(0..=max),
            max,
            rng.random_range(0..5) as f64,
        );
        p.concurrency = rng.random_range(1..4);
        p.queues = if rng.random_bool(0.8) {
            vec!["q".into()]
        } else {
            vec!["q".into(), "r".into()]
        };
        let n = rng.random_range(0..25);
        let states = [
            InstanceState::Starting,
            InstanceState::Running,
            InstanceState::Running,
            InstanceState::Draining,
            InstanceState::Down,
        ];
        layout.push(
            (0..n)
                .map(|_| {
                    let state = states[rng.random_range(0..states.len())];
                    let busy = if state == InstanceState::Running && rng.random_bool(0.5) {
                        rng.random_range(1..=p.concurrency)
                    } else {
                        0
                    };
                    let idle = (state == InstanceState::Running && busy == 0)
                        .then(|| rng.random_range(0..300));
                    (state, busy, idle)
                })
                .collect(),
        );
        pools.push(p);
    }
    let queues = ["q", "r"]
        .iter()
        .map(|name| {
            let waiting = rng.random_range(0..5000);
            QueueDemand {
                queue: name.to_string(),
                waiting,
                waiting_burstable: rng.random_range(0..=waiting),
                mean_task_seconds: rng.random_bool(0.8).then(|| rng.random_range(0.01..1000.0)),
                arrivals_per_second: if rng.random_bool(0.5) {
                    rng.random_range(0.0..50.0)
                } else {
                    0.0
                },
            }
        })
        .collect();
    let total = layout.iter().map(Vec::len).sum();
    World {
        pools,
        ids: ids(total),
        layout,
        queues,
    }
}

fn views<'a>(w: &'a World, now: Timestamp) -> Vec<PoolView<'a>> {
    let mut next = 0;
    w.pools
        .iter()
        .zip(&w.layout)
        .map(|(p, layout)| {
            let instances = layout
                .iter()
                .map(|&(state, busy_slots, idle)| {
                    next += 1;
                    InstanceView {
                        id: &w.ids[next - 1],
                        state,
                        busy_slots,
                        idle_since: idle.map(|s| now - chrono::Duration::seconds(s)),
                    }
                })
                .collect();
            PoolView {
                config: p,
                instances,
                short_of_capacity: false,
            }
        })
        .collect()
}

/// Run `check` on decisions of several passes over many random worlds.
fn for_random_worlds(check: impl Fn(&World, &[PoolView<'_>], &[PoolDecision])) {
    let config = PolicyConfig::default();
    for seed in 0..500 {
        let mut rng = StdRng::seed_from_u64(seed);
        let world = random_world(&mut rng);
        let mut mem = PolicyMemory::default();
        for step in 0..4 {
            let now = at(step * 45);
            let pools = views(&world, now);
            let decisions = one(&config, now, &world.queues, &pools, &mut mem);
            check(&world, &pools, &decisions);
        }
    }
}

#[test]
fn property_desired_within_min_and_max() {
    for_random_worlds(|_, pools, decisions| {
        for (p, d) in pools.iter().zip(decisions) {
            assert!(
                d.desired >= p.config.min && d.desired <= p.config.max,
                "{d:?} for {:?}",
                p.config
            );
        }
    });
}

#[test]
fn property_busy_workers_are_never_drained() {
    for_random_worlds(|_, pools, decisions| {
        for (p, d) in pools.iter().zip(decisions) {
            for id in &d.drain {
                let i = p
                    .instances
                    .iter()
                    .find(|i| i.id == id)
                    .expect("drained id exists");
                assert_eq!(i.busy_slots, 0, "busy {id} drained: {}", d.reason);
                assert!(i.state.is_live(), "{id} is {:?}", i.state);
            }
        }
    });
}

#[test]
fn property_non_burstable_work_never_grows_a_burst_tier() {
    let config = PolicyConfig::default();
    for seed in 0..500 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut world = random_world(&mut rng);
        for q in &mut world.queues {
            q.waiting_burstable = 0;
        }
        let pools = views(&world, t0());
        for (p, d) in pools.iter().zip(one(
            &config,
            t0(),
            &world.queues,
            &pools,
            &mut PolicyMemory::default(),
        )) {
            if p.config.tier > 0 {
                assert!(
                    d.desired <= p.live().max(p.config.min),
                    "seed {seed}: {d:?}"
                );
                if p.live() >= p.config.min {
                    assert_ne!(d.action, Action::ScaleUp, "seed {seed}: {}", d.reason);
                }
            }
        }
    }
}

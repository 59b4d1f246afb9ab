//! From a pool's share of the slots to a decision: grow at once, or shrink after the scale-in
//! window by draining idle workers only.

use std::time::Duration;

use crate::config::PolicyConfig;
use crate::policy::allocate::Share;
use crate::policy::{
    Action, InstanceView, PolicyInput, PoolDecision, PoolMemory, PoolView, human_seconds,
};
use crate::provider::InstanceState;

/// A fraction of a worker this small is noise in the estimates (a smoothed arrival rate, a
/// mean), not a reason to start one more.
pub const SLOT_TOLERANCE: f64 = 0.1;

/// The decision for one pool.
pub(crate) fn decide(
    config: &PolicyConfig,
    input: &PolicyInput<'_>,
    pool: &PoolView<'_>,
    share: &Share,
    mem: &mut PoolMemory,
) -> PoolDecision {
    let c = pool.config;
    let now = input.now;
    let live = pool.live();
    let busy = pool
        .instances
        .iter()
        .filter(|i| i.state.is_live() && i.busy_slots > 0)
        .count() as u32;
    let needed = (share.slots / f64::from(c.concurrency) - 1e-9)
        .ceil()
        .max(0.0);
    // Saturating: a share can exceed u32 only with absurd inputs, and max clamps it anyway.
    let needed = if needed >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        needed as u32
    };
    let target = needed.max(busy).max(c.min).min(c.max);
    let words = demand_words(config, input, pool, share, needed, busy);

    let window = config.scale_in_window;
    mem.recent.push_back((now, target));
    while mem
        .recent
        .front()
        .is_some_and(|(at, _)| *at < now - chrono_duration(window))
    {
        mem.recent.pop_front();
    }
    let clamp = |n: u32| n.max(c.min).min(c.max);
    let decision = |desired: u32, drain, action, reason| PoolDecision {
        pool: c.name.clone(),
        current: live,
        desired,
        drain,
        action,
        reason,
    };

    if target >= live {
        mem.below_since = None;
        return if target > live {
            decision(
                target,
                vec![],
                Action::ScaleUp,
                format!("{live} → {target}: {words}"),
            )
        } else {
            decision(target, vec![], Action::Hold, format!("{live}: {words}"))
        };
    }

    let since = *mem.below_since.get_or_insert(now);
    let waited = (now - since).to_std().unwrap_or_default();
    if waited < window {
        return decision(
            clamp(live),
            vec![],
            Action::WaitToScaleIn,
            format!(
                "{live}, wants {target}: waiting for the scale-in window ({} of {}); {words}",
                human_seconds(waited.as_secs_f64()),
                human_seconds(window.as_secs_f64())
            ),
        );
    }
    // The most wanted within the window, so one quiet pass does not undo a busy minute.
    let goal = mem
        .recent
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(target)
        .max(target);
    if goal >= live {
        return decision(
            clamp(live),
            vec![],
            Action::Hold,
            format!("{live}: wanted {goal} within the scale-in window; {words}"),
        );
    }
    let excess = (live - goal) as usize;
    let victims = pick_idle(pool, now, excess);
    let kept = excess - victims.len();
    let desired = clamp(live - victims.len() as u32);
    let mut reason = if victims.is_empty() {
        format!(
            "{live}, wants {goal}: no worker idle for {}",
            human_seconds(c.idle_timeout.as_secs_f64())
        )
    } else {
        format!("{live} → {desired}: draining {} idle", victims.len())
    };
    if kept > 0 && !victims.is_empty() {
        reason.push_str(&format!(
            "; {kept} more kept until idle for {}",
            human_seconds(c.idle_timeout.as_secs_f64())
        ));
    }
    reason.push_str(&format!("; {words}"));
    let action = if victims.is_empty() {
        Action::Hold
    } else {
        Action::ScaleIn
    };
    decision(desired, victims, action, reason)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Up to `n` instances that hold no lease: starting ones first (newest first, nothing is lost
/// by cancelling them), then running ones idle for at least the pool's idle timeout, longest
/// idle first. Never a busy one.
fn pick_idle(pool: &PoolView<'_>, now: spillway_core::Timestamp, n: usize) -> Vec<String> {
    let idle_before = now - chrono_duration(pool.config.idle_timeout);
    let starting = pool
        .instances
        .iter()
        .rev()
        .filter(|i| i.state == InstanceState::Starting && i.busy_slots == 0);
    let mut idle: Vec<&InstanceView<'_>> = pool
        .instances
        .iter()
        .filter(|i| {
            i.state == InstanceState::Running
                && i.busy_slots == 0
                && i.idle_since.is_some_and(|t| t <= idle_before)
        })
        .collect();
    idle.sort_by_key(|i| i.idle_since);
    starting
        .chain(idle)
        .take(n)
        .map(|i| i.id.to_string())
        .collect()
}

/// The demand behind a pool's target in words: "backlog 480, mean 1.2 s, drain target 60 s".
fn demand_words(
    config: &PolicyConfig,
    input: &PolicyInput<'_>,
    pool: &PoolView<'_>,
    share: &Share,
    needed: u32,
    busy: u32,
) -> String {
    let c = pool.config;
    let mut parts: Vec<String> = share
        .parts
        .iter()
        .map(|&(qi, _)| {
            let q = &input.queues[qi];
            let backlog = if c.tier == 0 {
                q.waiting
            } else {
                q.waiting_burstable
            };
            let kind = if c.tier == 0 { "" } else { " burstable" };
            let mean = match q.mean_task_seconds {
                Some(m) if m > 0.0 => format!("mean {}", human_seconds(m)),
                _ => format!(
                    "mean {} assumed",
                    human_seconds(config.assumed_task_duration.as_secs_f64())
                ),
            };
            let arrivals = if c.tier == 0 && q.arrivals_per_second > 0.0 {
                format!(", arrivals {:.2}/s", q.arrivals_per_second)
            } else {
                String::new()
            };
            let name = if share.parts.len() > 1 {
                format!("{} ", q.queue)
            } else {
                String::new()
            };
            format!("{name}backlog {backlog}{kind}, {mean}{arrivals}")
        })
        .collect();
    if parts.is_empty() {
        parts.push("no backlog".to_string());
    }
    let mut words = format!(
        "{}, drain target {}",
        parts.join("; "),
        human_seconds(config.drain_target.as_secs_f64())
    );
    if c.tier > 0 && share.slots > 0.0 {
        words.push_str(&format!("; tiers below {} are full", c.tier));
    }
    if busy > needed && busy > c.min {
        words.push_str(&format!("; {busy} busy"));
    }
    let starting = pool
        .instances
        .iter()
        .filter(|i| i.state == InstanceState::Starting)
        .count();
    if starting > 0 {
        words.push_str(&format!("; {starting} starting"));
    }
    if needed > c.max || share.capped {
        words.push_str(&format!("; clamped to max {}", c.max));
    } else if c.min > needed.max(busy) {
        words.push_str(&format!("; min {}", c.min));
    }
    words
}

//! Handing slots to pools: tier by tier, cheaper pool first within a tier, each pool up to its
//! maximum (or its current size while its provider reports quota or stock-out).
//!
//! Work of jobs that are not burstable goes to tier-0 pools only. Burstable work fills tier 0
//! first, then tier 1, and so on: a burst tier gets slots only when every pool below it that
//! serves the queue is full.

use crate::policy::demand::Slots;
use crate::policy::{PoolView, QueueDemand};

/// Below this, a number of slots counts as zero (float noise).
const EPSILON: f64 = 1e-9;

/// The slots handed to one pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Share {
    /// Slots in all.
    pub slots: f64,
    /// Which queues (index into the input) gave how many.
    pub parts: Vec<(usize, f64)>,
    /// The pool is full while a queue it serves still wants more.
    pub capped: bool,
}

/// Slots one pool can take: its maximum (or current size when short of capacity) times its
/// concurrency.
fn capacity(pool: &PoolView<'_>) -> f64 {
    let c = pool.config;
    let workers = if pool.short_of_capacity {
        pool.live().min(c.max)
    } else {
        c.max
    };
    f64::from(workers) * f64::from(c.concurrency)
}

/// Shares for every pool, in the order of `pools`.
pub fn allocate(queues: &[QueueDemand], slots: &[Slots], pools: &[PoolView<'_>]) -> Vec<Share> {
    let mut shares = vec![Share::default(); pools.len()];
    let mut room: Vec<f64> = pools.iter().map(capacity).collect();
    let mut unmet = vec![0.0_f64; queues.len()];
    for (home_only, (qi, queue)) in [true, false]
        .into_iter()
        .flat_map(|h| queues.iter().enumerate().map(move |q| (h, q)))
    {
        let mut need = if home_only {
            slots[qi].home
        } else {
            slots[qi].any
        };
        let mut order: Vec<usize> = (0..pools.len())
            .filter(|&p| pools[p].config.serves(&queue.queue))
            .filter(|&p| !home_only || pools[p].config.tier == 0)
            .collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (pools[a].config, pools[b].config);
            (a.tier, a.cost_per_hour, &a.name)
                .partial_cmp(&(b.tier, b.cost_per_hour, &b.name))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for p in order {
            if need <= EPSILON {
                break;
            }
            let take = need.min(room[p]);
            if take > EPSILON {
                room[p] -= take;
                need -= take;
                shares[p].slots += take;
                match shares[p].parts.iter_mut().find(|(q, _)| *q == qi) {
                    Some((_, s)) => *s += take,
                    None => shares[p].parts.push((qi, take)),
                }
            }
        }
        unmet[qi] += need.max(0.0);
    }
    for (p, share) in shares.iter_mut().enumerate() {
        share.capped = room[p] <= EPSILON
            && queues
                .iter()
                .enumerate()
                .any(|(qi, q)| unmet[qi] > EPSILON && pools[p].config.serves(&q.queue));
    }
    shares
}

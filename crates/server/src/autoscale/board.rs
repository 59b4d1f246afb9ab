//! What the autoscaler last saw and decided per pool, shared with the routes and metrics; and
//! which worker token belongs to which locally started instance.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use spillway_autoscale::config::{PoolConfig, validate_pools};
use spillway_core::api::{PoolDecisionRecord, PoolStatus, PoolUpdate};
use spillway_core::{Error, Result};
use spillway_store::PoolBounds;

/// Decisions kept per pool.
pub const DECISIONS_KEPT: usize = 20;

/// Pools as configured (with `PATCH` changes) and their last status.
#[derive(Debug, Default)]
pub struct PoolBoard {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The pools as the config file gave them.
    configured: Vec<PoolConfig>,
    /// The pools with run-time bounds applied.
    pools: Vec<PoolConfig>,
    status: BTreeMap<String, PoolStatus>,
    decisions: BTreeMap<String, VecDeque<PoolDecisionRecord>>,
    /// Worker token id -> local instance id, filled when a local instance is started.
    tokens: HashMap<String, String>,
    /// Local instance id -> registered worker id, filled when its worker registers.
    instance_workers: HashMap<String, String>,
}

/// The pool named `name` of `pools`; not found with how to list them.
fn find<'a>(pools: &'a mut [PoolConfig], name: &str) -> Result<&'a mut PoolConfig> {
    pools.iter_mut().find(|p| p.name == name).ok_or_else(|| {
        Error::not_found(format!(
            "pool {name:?} not found: list the configured pools with GET /v1/pools"
        ))
    })
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Plain data that stays consistent across a panic; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PoolBoard {
    /// Start over with these pools.
    pub fn configure(&self, pools: Vec<PoolConfig>) {
        let mut inner = lock(&self.inner);
        inner.status = pools
            .iter()
            .map(|p| (p.name.clone(), empty_status(p)))
            .collect();
        inner.configured = pools.clone();
        inner.pools = pools;
    }

    /// The bounds `update` would give pool `name`: not found for an unknown pool, invalid
    /// when they break the pool's rules. Changes nothing.
    pub fn bounds_after(&self, name: &str, update: &PoolUpdate) -> Result<(u32, u32)> {
        let inner = lock(&self.inner);
        let mut pools = inner.pools.clone();
        let pool = find(&mut pools, name)?;
        if let Some(min) = update.min {
            pool.min = min;
        }
        if let Some(max) = update.max {
            pool.max = max;
        }
        let bounds = (pool.min, pool.max);
        validate_pools(&pools)?;
        Ok(bounds)
    }

    /// The bounds the config file gives pool `name`; not found for an unknown pool.
    pub fn configured_bounds(&self, name: &str) -> Result<(u32, u32)> {
        let mut configured = lock(&self.inner).configured.clone();
        let pool = find(&mut configured, name)?;
        Ok((pool.min, pool.max))
    }

    /// Apply the run-time bounds kept in the store over the configured ones: pools without
    /// kept bounds go back to their configured bounds, and kept bounds of pools no longer
    /// configured, or that no longer fit the pool's config, are left out (and logged).
    pub fn apply_kept_bounds(&self, kept: &[PoolBounds]) {
        let mut inner = lock(&self.inner);
        let mut pools = inner.configured.clone();
        for bounds in kept {
            let Some(index) = pools.iter().position(|p| p.name == bounds.pool) else {
                continue;
            };
            let mut trial = pools.clone();
            trial[index].min = bounds.min;
            trial[index].max = bounds.max;
            match validate_pools(&trial) {
                Ok(()) => pools = trial,
                Err(error) => tracing::warn!(
                    pool = %bounds.pool,
                    min = bounds.min,
                    max = bounds.max,
                    %error,
                    "kept pool bounds no longer fit the config; using the configured ones (`spillway pools set --reset` forgets them)"
                ),
            }
        }
        for pool in &pools {
            if let Some(status) = inner.status.get_mut(&pool.name) {
                status.min = pool.min;
                status.max = pool.max;
            }
        }
        inner.pools = pools;
    }

    /// The pools, with `PATCH` changes applied.
    pub fn pools(&self) -> Vec<PoolConfig> {
        lock(&self.inner).pools.clone()
    }

    /// Whether `pool` is a burst pool (tier above 0), whose workers take only burstable tasks.
    pub fn is_burst_pool(&self, pool: &str) -> bool {
        lock(&self.inner)
            .pools
            .iter()
            .any(|p| p.name == pool && p.tier > 0)
    }

    /// Change a pool's bounds; not found for an unknown pool, invalid for bad bounds.
    pub fn update(&self, name: &str, update: &PoolUpdate) -> Result<PoolStatus> {
        let mut inner = lock(&self.inner);
        let mut pools = inner.pools.clone();
        let pool = find(&mut pools, name)?;
        if let Some(min) = update.min {
            pool.min = min;
        }
        if let Some(max) = update.max {
            pool.max = max;
        }
        validate_pools(&pools)?;
        let config = pools
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| Error::internal(format!("pool {name:?} vanished while updating")))?;
        inner.pools = pools;
        let status = inner
            .status
            .entry(name.to_string())
            .or_insert_with(|| empty_status(&config));
        status.min = config.min;
        status.max = config.max;
        let mut status = status.clone();
        status.decisions = inner
            .decisions
            .get(name)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        Ok(status)
    }

    /// Every pool's status, in config order.
    pub fn statuses(&self) -> Vec<PoolStatus> {
        let inner = lock(&self.inner);
        inner
            .pools
            .iter()
            .map(|p| {
                let mut status = inner
                    .status
                    .get(&p.name)
                    .cloned()
                    .unwrap_or_else(|| empty_status(p));
                status.decisions = inner
                    .decisions
                    .get(&p.name)
                    .map(|d| d.iter().cloned().collect())
                    .unwrap_or_default();
                status
            })
            .collect()
    }

    /// Store what a pass saw of one pool (decisions are kept separately).
    pub fn set_status(&self, status: PoolStatus) {
        lock(&self.inner).status.insert(status.name.clone(), status);
    }

    /// Show what the leading replica kept of each pool (its last status and decisions), for a
    /// replica that does not lead, or one that has just taken the lead. Kept statuses of pools
    /// this replica does not have (same name and provider) are ignored.
    pub fn adopt(&self, kept: Vec<PoolStatus>) {
        let mut inner = lock(&self.inner);
        for mut status in kept {
            let configured = inner
                .pools
                .iter()
                .any(|p| p.name == status.name && p.provider.as_str() == status.provider);
            if !configured {
                continue;
            }
            let mut decisions: VecDeque<PoolDecisionRecord> =
                std::mem::take(&mut status.decisions).into();
            while decisions.len() > DECISIONS_KEPT {
                decisions.pop_front();
            }
            inner.decisions.insert(status.name.clone(), decisions);
            inner.status.insert(status.name.clone(), status);
        }
    }

    /// Replace a pool's problems with `problem`, keeping the rest of what was last seen of it.
    pub fn set_problem(&self, pool: &PoolConfig, problem: String) {
        lock(&self.inner)
            .status
            .entry(pool.name.clone())
            .or_insert_with(|| empty_status(pool))
            .problems = vec![problem];
    }

    /// Remember one change of a pool's size, keeping the last [`DECISIONS_KEPT`].
    pub fn record_decision(&self, pool: &str, record: PoolDecisionRecord) {
        let mut inner = lock(&self.inner);
        let kept = inner.decisions.entry(pool.to_string()).or_default();
        kept.push_back(record);
        while kept.len() > DECISIONS_KEPT {
            kept.pop_front();
        }
    }

    /// A local instance was started with this worker token.
    pub fn instance_token(&self, token_id: &str, instance: &str) {
        lock(&self.inner)
            .tokens
            .insert(token_id.to_string(), instance.to_string());
    }

    /// A local instance is gone: forget its token and worker.
    pub fn instance_gone(&self, instance: &str) {
        let mut inner = lock(&self.inner);
        inner.tokens.retain(|_, i| i != instance);
        inner.instance_workers.remove(instance);
    }

    /// A worker registered with `token_id`: if a local instance holds that token, it is
    /// that instance's worker.
    pub fn worker_registered(&self, token_id: &str, worker_id: &str) {
        let mut inner = lock(&self.inner);
        if let Some(instance) = inner.tokens.get(token_id).cloned() {
            inner
                .instance_workers
                .insert(instance, worker_id.to_string());
        }
    }

    /// The worker a local instance registered as, if it has.
    pub fn instance_worker(&self, instance: &str) -> Option<String> {
        lock(&self.inner).instance_workers.get(instance).cloned()
    }
}

/// A pool's status before the autoscaler has looked at it.
pub fn empty_status(pool: &PoolConfig) -> PoolStatus {
    PoolStatus {
        name: pool.name.clone(),
        provider: pool.provider.as_str().to_string(),
        tier: pool.tier,
        min: pool.min,
        max: pool.max,
        desired: pool.min,
        actual: 0,
        busy: 0,
        idle: 0,
        draining: 0,
        down: 0,
        problems: Vec::new(),
        decisions: Vec::new(),
    }
}

//! An in-memory [`PoolProvider`] for tests and demos: instances are records that move only when
//! a test says so, and quota or stock-out can be switched on to see them surface as status.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use spillway_core::{Error, Result, Timestamp};

use crate::provider::{
    Instance, InstanceId, InstanceState, PoolObservation, PoolObserve, PoolProblem,
    PoolProblemKind, PoolProvider, PoolResize,
};

/// The in-memory provider. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryProvider {
    pools: Mutex<BTreeMap<String, FakePool>>,
}

#[derive(Debug, Default)]
struct FakePool {
    desired: Option<u32>,
    instances: Vec<Instance>,
    next_id: u64,
    /// Most live instances the fake hands out (a quota); `None` for no limit.
    quota: Option<u32>,
    stock_out: bool,
    problems: Vec<PoolProblem>,
}

impl MemoryProvider {
    /// A provider with no pools yet; pools appear when first observed or resized.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, FakePool>> {
        // A panic while holding the lock leaves plain data that is still consistent enough for
        // a test double; keep going rather than poison every later call.
        self.pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Limit the pool to `quota` live instances (a quota); `None` lifts the limit.
    pub fn set_quota(&self, pool: &str, quota: Option<u32>) {
        self.lock().entry(pool.to_string()).or_default().quota = quota;
    }

    /// Make the provider start nothing more for the pool (a stock-out), or lift that.
    pub fn set_stock_out(&self, pool: &str, stock_out: bool) {
        self.lock().entry(pool.to_string()).or_default().stock_out = stock_out;
    }

    /// Every starting instance of the pool is now running; returns how many changed.
    pub fn start_all(&self, pool: &str) -> usize {
        self.move_where(pool, InstanceState::Starting, InstanceState::Running)
    }

    /// Every draining instance of the pool has exited; returns how many changed.
    pub fn exit_drained(&self, pool: &str) -> usize {
        self.move_where(pool, InstanceState::Draining, InstanceState::Down)
    }

    /// One instance is gone at once (preempted, crashed). Not found if it is unknown.
    pub fn preempt(&self, pool: &str, id: &str) -> Result<()> {
        let mut pools = self.lock();
        let instance = pools
            .get_mut(pool)
            .and_then(|p| p.instances.iter_mut().find(|i| i.id == id))
            .ok_or_else(|| {
                Error::not_found(format!("no instance {id:?} in memory pool {pool:?}"))
            })?;
        instance.state = InstanceState::Down;
        Ok(())
    }

    fn move_where(&self, pool: &str, from: InstanceState, to: InstanceState) -> usize {
        let mut pools = self.lock();
        let Some(pool) = pools.get_mut(pool) else {
            return 0;
        };
        let mut moved = 0;
        for instance in pool.instances.iter_mut().filter(|i| i.state == from) {
            instance.state = to;
            moved += 1;
        }
        moved
    }
}

fn observation(name: &str, pool: &FakePool) -> PoolObservation {
    PoolObservation {
        pool: name.to_string(),
        desired: pool.desired,
        instances: pool.instances.clone(),
        problems: pool.problems.clone(),
    }
}

fn set_problem(pool: &mut FakePool, kind: PoolProblemKind, message: String, now: Timestamp) {
    if !pool.problems.iter().any(|p| p.kind == kind) {
        pool.problems.push(PoolProblem {
            kind,
            message,
            since: now,
        });
    }
}

#[async_trait]
impl PoolProvider for MemoryProvider {
    fn provider_name(&self) -> &'static str {
        "memory"
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let mut pools = self.lock();
        let pool = pools.entry(params.pool.name.clone()).or_default();
        Ok(observation(&params.pool.name, pool))
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        let config = params.pool;
        config.check_size(params.desired)?;
        let mut pools = self.lock();
        let pool = pools.entry(config.name.clone()).or_default();
        pool.desired = Some(params.desired);
        // Unknown or already drained ids are ignored, so a repeated call is harmless.
        for instance in pool
            .instances
            .iter_mut()
            .filter(|i| i.state.is_live() && params.drain.contains(&i.id))
        {
            instance.state = InstanceState::Draining;
        }
        let live = pool.instances.iter().filter(|i| i.state.is_live()).count() as u32;
        let mut target = params.desired;
        pool.problems.clear();
        if let Some(quota) = pool.quota.filter(|q| *q < target) {
            target = quota;
            set_problem(
                pool,
                PoolProblemKind::Quota,
                format!("quota of {quota} instances reached"),
                params.now,
            );
        }
        if pool.stock_out && target > live {
            target = live;
            set_problem(
                pool,
                PoolProblemKind::StockOut,
                "no capacity of this shape".to_string(),
                params.now,
            );
        }
        for _ in live..target {
            pool.next_id += 1;
            let id: InstanceId = format!("{}-{}", config.name, pool.next_id);
            pool.instances.push(Instance {
                worker_id: Some(id.clone()),
                id,
                state: InstanceState::Starting,
                created_at: params.now,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    crate::pool_provider_conformance_tests!(|| async {
        let provider = std::sync::Arc::new(MemoryProvider::new());
        let fake = provider.clone();
        conformance::Harness {
            provider,
            settle: Box::new(move |pool: &str| {
                fake.start_all(pool);
                fake.exit_drained(pool);
            }),
            deadline: std::time::Duration::from_secs(5),
        }
    });

    #[tokio::test]
    async fn quota_and_stock_out_surface_as_status_not_errors() {
        let provider = MemoryProvider::new();
        let pool = conformance::test_pool("quota");
        let now = conformance::t0();
        provider.set_quota("quota", Some(2));
        let resize = |desired| PoolResize {
            pool: &pool,
            desired,
            drain: vec![],
            now,
        };
        provider
            .pool_resize(resize(5))
            .await
            .expect("quota is no error");
        let seen = provider
            .pool_observe(PoolObserve { pool: &pool, now })
            .await
            .expect("observe");
        assert_eq!(seen.live(), 2);
        assert_eq!(seen.problems[0].kind, PoolProblemKind::Quota);

        provider.set_quota("quota", None);
        provider.set_stock_out("quota", true);
        provider
            .pool_resize(resize(4))
            .await
            .expect("stock-out is no error");
        let seen = provider
            .pool_observe(PoolObserve { pool: &pool, now })
            .await
            .expect("observe");
        assert_eq!(seen.live(), 2, "nothing new starts during a stock-out");
        assert_eq!(seen.problems[0].kind, PoolProblemKind::StockOut);

        provider.set_stock_out("quota", false);
        provider.pool_resize(resize(4)).await.expect("resize");
        let seen = provider
            .pool_observe(PoolObserve { pool: &pool, now })
            .await
            .expect("observe");
        assert_eq!(seen.live(), 4);
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
    }
}

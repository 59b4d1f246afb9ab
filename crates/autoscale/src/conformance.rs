//! The conformance suite every [`PoolProvider`](crate::provider::PoolProvider) must pass.
//!
//! Each case is a `pub async fn` taking a fresh [`Harness`] and panicking when the provider
//! breaks the contract written on [`crate::provider`]. Instances move on their own in real
//! providers; the cases poll [`PoolProvider::pool_observe`] until a condition holds or the
//! harness deadline passes, calling [`Harness::settle`] before each look so that a fake can be
//! moved along. [`pool_provider_conformance_tests!`](crate::pool_provider_conformance_tests)
//! turns every case into a `#[tokio::test]`:
//!
//! ```ignore
//! spillway_autoscale::pool_provider_conformance_tests!(|| async { make_harness().await });
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use spillway_core::{ErrorKind, Timestamp};

use crate::config::{MEMORY_PROVIDER, PoolConfig};
use crate::provider::{
    DynPoolProvider, InstanceId, InstanceState, PoolObservation, PoolObserve, PoolResize,
};

/// Time between two looks while waiting for a provider.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a case needs: the provider and a way to let its instances move on.
pub struct Harness {
    /// The provider under test.
    pub provider: DynPoolProvider,
    /// Let the pool's instances move on: a fake starts its starting instances and retires its
    /// draining ones; a real provider does nothing here.
    pub settle: Box<dyn Fn(&str) + Send + Sync>,
    /// How long a case waits for a condition before it fails.
    pub deadline: Duration,
}

/// A fixed start time, so cases never read a clock for `now` (the simulator's origin).
pub fn t0() -> Timestamp {
    crate::sim::controller::origin()
}

/// A small pool for the cases: min 0, max 5, serving queue `default`.
pub fn test_pool(name: &str) -> PoolConfig {
    let mut pool = PoolConfig::new(name, MEMORY_PROVIDER, vec!["default".to_string()]);
    pool.max = 5;
    pool
}

impl Harness {
    async fn observe(&self, pool: &PoolConfig) -> PoolObservation {
        self.provider
            .pool_observe(PoolObserve { pool, now: t0() })
            .await
            .unwrap_or_else(|err| panic!("observe pool {:?}: {err}", pool.name))
    }

    async fn resize(&self, pool: &PoolConfig, desired: u32, drain: Vec<InstanceId>) {
        self.provider
            .pool_resize(PoolResize {
                pool,
                desired,
                drain,
                now: t0(),
            })
            .await
            .unwrap_or_else(|err| panic!("resize pool {:?} to {desired}: {err}", pool.name));
    }

    /// Look at the pool until `done` holds, failing after the deadline.
    async fn wait_until(
        &self,
        pool: &PoolConfig,
        what: &str,
        done: impl Fn(&PoolObservation) -> bool,
    ) -> PoolObservation {
        let started = Instant::now();
        loop {
            (self.settle)(&pool.name);
            let seen = self.observe(pool).await;
            if done(&seen) {
                return seen;
            }
            assert!(
                started.elapsed() < self.deadline,
                "pool {:?}: waited {:?} for {what}; last seen {seen:?}",
                pool.name,
                self.deadline
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn running(&self, pool: &PoolConfig, n: usize) -> PoolObservation {
        self.wait_until(pool, &format!("{n} running instances"), |seen| {
            seen.count(InstanceState::Running) == n && seen.live() == n
        })
        .await
    }
}

fn ids(seen: &PoolObservation, state: InstanceState) -> BTreeSet<InstanceId> {
    seen.instances
        .iter()
        .filter(|i| i.state == state)
        .map(|i| i.id.clone())
        .collect()
}

/// Growing a pool reports new instances at once (starting or running), which then run.
pub async fn resize_up_starts_instances(h: Harness) {
    let pool = test_pool("up");
    h.resize(&pool, 3, vec![]).await;
    let seen = h.observe(&pool).await;
    assert_eq!(
        seen.live(),
        3,
        "three live instances right after resize: {seen:?}"
    );
    h.running(&pool, 3).await;
}

/// Asking for the same size twice starts nothing new.
pub async fn resize_is_idempotent(h: Harness) {
    let pool = test_pool("same");
    h.resize(&pool, 2, vec![]).await;
    let first = h.running(&pool, 2).await;
    h.resize(&pool, 2, vec![]).await;
    let second = h.running(&pool, 2).await;
    assert_eq!(
        ids(&first, InstanceState::Running),
        ids(&second, InstanceState::Running)
    );
}

/// A smaller size without instances to drain stops nothing: victims are the caller's choice.
pub async fn resize_down_without_drain_stops_nothing(h: Harness) {
    let pool = test_pool("down");
    h.resize(&pool, 3, vec![]).await;
    let before = h.running(&pool, 3).await;
    h.resize(&pool, 1, vec![]).await;
    (h.settle)(&pool.name);
    let after = h.observe(&pool).await;
    assert_eq!(
        ids(&before, InstanceState::Running),
        ids(&after, InstanceState::Running),
        "no instance may stop unless named in drain"
    );
}

/// Draining stops exactly the instances named, and starts no replacement.
pub async fn drain_stops_only_the_named(h: Harness) {
    let pool = test_pool("drain");
    h.resize(&pool, 3, vec![]).await;
    let before = h.running(&pool, 3).await;
    let running = ids(&before, InstanceState::Running);
    let victim = running.iter().next().cloned().unwrap_or_default();
    h.resize(&pool, 2, vec![victim.clone()]).await;
    let after = h
        .wait_until(&pool, "the drained instance to leave", |seen| {
            !seen
                .instances
                .iter()
                .any(|i| i.id == victim && i.state != InstanceState::Down)
        })
        .await;
    let mut kept = running.clone();
    kept.remove(&victim);
    assert_eq!(ids(&after, InstanceState::Running), kept);
    assert_eq!(after.live(), 2, "{after:?}");
}

/// A pool goes to zero and comes back.
pub async fn scale_to_zero_and_back(h: Harness) {
    let pool = test_pool("zero");
    h.resize(&pool, 2, vec![]).await;
    let seen = h.running(&pool, 2).await;
    h.resize(
        &pool,
        0,
        ids(&seen, InstanceState::Running).into_iter().collect(),
    )
    .await;
    h.wait_until(&pool, "no live instance", |seen| seen.live() == 0)
        .await;
    h.resize(&pool, 2, vec![]).await;
    h.running(&pool, 2).await;
}

/// A size outside `[min, max]` is refused as invalid, naming the bounds.
pub async fn out_of_range_size_is_invalid(h: Harness) {
    let pool = test_pool("range");
    let err = h
        .provider
        .pool_resize(PoolResize {
            pool: &pool,
            desired: pool.max + 1,
            drain: vec![],
            now: t0(),
        })
        .await
        .expect_err("above max must fail");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("outside"), "{err}");
}

/// Turn every conformance case into a `#[tokio::test]`; `$make` is a closure returning a
/// future of a fresh [`Harness`].
#[macro_export]
macro_rules! pool_provider_conformance_tests {
    ($make:expr) => {
        $crate::pool_provider_conformance_tests!(@cases $make;
            resize_up_starts_instances,
            resize_is_idempotent,
            resize_down_without_drain_stops_nothing,
            drain_stops_only_the_named,
            scale_to_zero_and_back,
            out_of_range_size_is_invalid,
        );
    };
    (@cases $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let make = $make;
                $crate::conformance::$case(make().await).await;
            }
        )*
    };
}

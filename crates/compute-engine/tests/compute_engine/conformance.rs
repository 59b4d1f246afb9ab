//! The provider conformance suite, on a zonal and on a regional group of the fake. The
//! suite's pools are `memory` pools without a section; the harness points each at the group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::conformance::Harness;
use spillway_autoscale::provider::{PoolObservation, PoolObserve, PoolProvider, PoolResize};
use spillway_compute_engine::config::ComputeEnginePool;
use spillway_core::Result;

use crate::support::{Env, env, section};

/// The provider under test, with every pool rewritten to name the fake's group.
struct OnGroup {
    env: Env,
    section: ComputeEnginePool,
}

impl OnGroup {
    fn pool(&self, pool: &PoolConfig) -> PoolConfig {
        let mut pool = pool.clone();
        pool.provider = "compute_engine".to_string();
        pool.set_section(&self.section).expect("section");
        pool
    }
}

#[async_trait]
impl PoolProvider for OnGroup {
    fn provider_name(&self) -> &'static str {
        self.env.provider.provider_name()
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let pool = self.pool(params.pool);
        self.env
            .provider
            .pool_observe(PoolObserve {
                pool: &pool,
                ..params
            })
            .await
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        let pool = self.pool(params.pool);
        self.env
            .provider
            .pool_resize(PoolResize {
                pool: &pool,
                ..params
            })
            .await
    }
}

async fn harness(regional: bool) -> Harness {
    let env = env().await;
    let group = if regional {
        env.fake
            .add_regional_group("proj", "europe-west4", "workers")
    } else {
        env.fake
            .add_zonal_group("proj", "europe-west4-a", "workers")
    };
    let section = section(&env.fake, &group);
    let fake = env.fake.clone();
    Harness {
        provider: Arc::new(OnGroup { env, section }),
        settle: Box::new(move |_pool| fake.step()),
        deadline: Duration::from_secs(10),
    }
}

mod zonal {
    spillway_autoscale::pool_provider_conformance_tests!(|| async { super::harness(false).await });
}

mod regional {
    spillway_autoscale::pool_provider_conformance_tests!(|| async { super::harness(true).await });
}

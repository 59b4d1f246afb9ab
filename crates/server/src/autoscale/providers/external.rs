//! The `external` provider: someone else starts the workers (a Kubernetes HPA, a script, a
//! person). Spillway only records the size it wants, published on `/metrics` and
//! `GET /v1/pools`, and sees the pool's registered workers (of the pool's tenant) as its
//! instances.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use spillway_autoscale::provider::{
    Instance, InstanceState, PoolObservation, PoolObserve, PoolProvider, PoolResize,
};
use spillway_core::{ErrorKind, Result};
use spillway_store::DynStore;

use super::instance_state;
use spillway_store::WorkerList;

/// The provider name of external pools.
pub const PROVIDER: &str = "external";

/// Between a pool's name and a number in the id of a worker asked for but not registered.
pub const WANTED_INFIX: &str = "-wanted-";

/// Records desired sizes; observes registered workers.
pub struct ExternalProvider {
    store: DynStore,
    desired: Mutex<HashMap<String, u32>>,
}

impl ExternalProvider {
    /// A provider over the server's store.
    pub fn new(store: DynStore) -> Self {
        Self {
            store,
            desired: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl PoolProvider for ExternalProvider {
    fn provider_name(&self) -> &'static str {
        PROVIDER
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let name = &params.pool.name;
        // Only the pool's tenant's workers: another tenant's worker registered with the same
        // pool name is none of this pool's.
        let workers = self
            .store
            .worker_list(WorkerList {
                tenant: Some(params.pool.tenant().to_string()),
                now: params.now,
            })
            .await?;
        let instances = workers
            .iter()
            .filter(|w| &w.pool == name)
            .map(|w| Instance {
                id: w.id.clone(),
                state: instance_state(w),
                created_at: w.started_at,
                worker_id: Some(w.id.clone()),
            })
            // Exited workers are gone; down ones are reported as down.
            .filter(|i| {
                i.state != InstanceState::Down
                    || workers
                        .iter()
                        .any(|w| w.id == i.id && w.state == spillway_core::model::WorkerState::Down)
            })
            .collect();
        let desired = self
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        let mut instances: Vec<Instance> = instances;
        // Workers asked for but not registered yet show as starting, so the policy counts
        // them and does not ask again on every pass.
        let running = instances
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .count() as u32;
        for k in running..desired.unwrap_or(0) {
            instances.push(Instance {
                id: format!("{name}{WANTED_INFIX}{}", k + 1),
                state: InstanceState::Starting,
                created_at: params.now,
                worker_id: None,
            });
        }
        Ok(PoolObservation {
            pool: name.clone(),
            desired,
            instances,
            problems: Vec::new(),
        })
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        params.pool.check_size(params.desired)?;
        // The smaller size first: published after the drain, the old size would ask whoever
        // starts workers (KEDA, an HPA) to replace the draining one in between.
        self.desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(params.pool.name.clone(), params.desired);
        // Workers not registered yet are not drained: a smaller size already stops asking.
        for id in params.drain.iter().filter(|id| !id.contains(WANTED_INFIX)) {
            match self.store.worker_drain(id).await {
                // Already gone: nothing to drain, so a repeated call is harmless.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }
}

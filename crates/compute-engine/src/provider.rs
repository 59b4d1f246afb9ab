//! [`ComputeEngineProvider`]: pools whose workers are the instances of a Compute Engine
//! managed instance group, one group per pool (zonal or regional), resized through the
//! Compute API.
//!
//! - Observe: `listManagedInstances` gives the instances (the instance name is the id, and
//!   the hostname its worker registers with), the group's `targetSize` (less the drained
//!   instances it still holds) the desired size,
//!   `lastAttempt.errors` and the last resize operation's errors the problems.
//! - Grow: `resize` to the size wanted plus the drained instances still in the group, never
//!   below the current target (the group would then pick victims itself).
//! - Drain: the named instances' workers are told to drain through the store; once a worker
//!   has exited (or when none registered), its instance goes through `deleteInstances`, which
//!   also lowers the target size. Every pass finishes what an earlier one started. Which
//!   instances are draining is kept in memory; after a server restart, the first look at a
//!   pool takes running instances whose workers are draining as drained by Spillway.
//! - Lack of permission (HTTP 401/403, or a permission error in an operation) shows up as a
//!   [`PoolProblemKind::Permission`] problem so the other pools keep scaling; an unknown
//!   group is an invalid-config error; an API that stays unavailable is an unavailable error.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::ComputeEnginePool;
use async_trait::async_trait;
use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::provider::{
    Instance, PoolObservation, PoolObserve, PoolProblem, PoolProblemKind, PoolProvider, PoolResize,
};
use spillway_core::model::{Worker, WorkerState};
use spillway_core::{Error, ErrorKind, Result, Timestamp};
use spillway_store::DynStore;

use crate::api::{ManagedInstance, Operation, resource_name};
use crate::client::{ClientSettings, ComputeClient, DELETE_BATCH, GroupRef};
use crate::mapping::{
    instance_problems, instance_state, is_leaving, operation_problems, ready_to_delete,
    resize_target, worker_for,
};
use crate::token::{self, DynTokenSource};
use spillway_store::WorkerList;

/// Where tokens come from: one fixed source (tests), or Google credentials chosen per pool.
enum Tokens {
    Fixed(DynTokenSource),
    Google {
        default: DynTokenSource,
        by_key_file: Mutex<HashMap<PathBuf, DynTokenSource>>,
    },
}

/// What the provider remembers of one pool between calls.
#[derive(Default)]
struct PoolMemory {
    /// Instances whose workers were told to drain and that are not deleted yet.
    draining: BTreeSet<String>,
    /// Instances `deleteInstances` was accepted for.
    deleted: BTreeSet<String>,
    /// A resize operation not seen `DONE` yet.
    pending_resize: Option<String>,
    /// Problems the last resize operation reported.
    resize_problems: Vec<(PoolProblemKind, String)>,
    /// Since when each kind of problem holds.
    since: HashMap<PoolProblemKind, Timestamp>,
    /// When each instance was first seen (the API gives no creation time in the list).
    first_seen: HashMap<String, Timestamp>,
    /// The last observation, shown (with the problem) when the API refuses access.
    last_seen: Option<PoolObservation>,
}

/// Resizes Compute Engine managed instance groups.
pub struct ComputeEngineProvider {
    store: DynStore,
    http: reqwest::Client,
    tokens: Tokens,
    settings: ClientSettings,
    pools: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PoolMemory>>>>,
}

impl ComputeEngineProvider {
    /// The production provider: tokens from each pool's `credentials_file`, else
    /// `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server (found on first call).
    pub fn new(store: DynStore) -> Result<Self> {
        Self::build(
            store,
            Tokens::Google {
                default: Arc::new(token::application_default()),
                by_key_file: Mutex::new(HashMap::new()),
            },
            ClientSettings::default(),
        )
    }

    /// A provider whose every call uses `tokens` (such as a
    /// [`StaticToken`](crate::token::StaticToken) against the fake) and `settings`.
    pub fn with_tokens(
        store: DynStore,
        tokens: DynTokenSource,
        settings: ClientSettings,
    ) -> Result<Self> {
        Self::build(store, Tokens::Fixed(tokens), settings)
    }

    fn build(store: DynStore, tokens: Tokens, settings: ClientSettings) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("spillway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal("could not build the http client").with_source(e))?;
        Ok(Self {
            store,
            http,
            tokens,
            settings,
            pools: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, section: &ComputeEnginePool) -> ComputeClient {
        let tokens = match &self.tokens {
            Tokens::Fixed(tokens) => tokens.clone(),
            Tokens::Google {
                default,
                by_key_file,
            } => match &section.credentials_file {
                None => default.clone(),
                Some(path) => by_key_file
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(path.clone())
                    .or_insert_with(|| Arc::new(token::key_file(path.clone())))
                    .clone(),
            },
        };
        ComputeClient::new(
            self.http.clone(),
            section.endpoint(),
            tokens,
            self.settings.clone(),
        )
    }

    /// The registered workers of `pool`'s tenant, the only ones its instances may run: a
    /// worker of another tenant is never joined to an instance, drained or waited for.
    async fn tenant_workers(&self, pool: &PoolConfig, now: Timestamp) -> Result<Vec<Worker>> {
        self.store
            .worker_list(WorkerList {
                tenant: Some(pool.tenant().to_string()),
                now,
            })
            .await
    }

    fn memory(&self, pool: &str) -> Arc<tokio::sync::Mutex<PoolMemory>> {
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(pool.to_string())
            .or_default()
            .clone()
    }

    /// Delete the drained instances whose workers have gone; forget instances the group no
    /// longer lists.
    async fn finish_drains(
        &self,
        client: &ComputeClient,
        group: &GroupRef,
        pool: &PoolConfig,
        memory: &mut PoolMemory,
        instances: &[ManagedInstance],
        workers: &[Worker],
    ) -> Result<()> {
        let listed: BTreeSet<&str> = instances
            .iter()
            .map(|i| resource_name(&i.instance))
            .collect();
        memory.draining.retain(|n| listed.contains(n.as_str()));
        memory.deleted.retain(|n| listed.contains(n.as_str()));
        let ready: Vec<&ManagedInstance> = instances
            .iter()
            .filter(|i| {
                let name = resource_name(&i.instance);
                memory.draining.contains(name)
                    && !memory.deleted.contains(name)
                    && !is_leaving(i)
                    && ready_to_delete(worker_for(name, &pool.name, workers))
            })
            .collect();
        for batch in ready.chunks(DELETE_BATCH) {
            let urls: Vec<String> = batch.iter().map(|i| i.instance.clone()).collect();
            let operation = client.delete_instances(group, urls.clone()).await?;
            let operation = client.operation_wait(group, operation).await?;
            if operation.errors().is_empty() {
                for url in &urls {
                    let name = resource_name(url).to_string();
                    memory.draining.remove(&name);
                    memory.deleted.insert(name);
                }
                tracing::info!(pool = %pool.name, %group, instances = ?urls, "deleted drained instances");
            } else {
                // Kept as draining: the next pass tries again.
                tracing::warn!(pool = %pool.name, %group, errors = ?operation.errors(), "deleteInstances failed");
            }
        }
        Ok(())
    }

    /// Remember what a resize operation ended with (or that it is still running).
    fn record_resize(&self, group: &GroupRef, memory: &mut PoolMemory, operation: &Operation) {
        if operation.is_done() {
            memory.pending_resize = None;
            memory.resize_problems = operation_problems(&group.to_string(), operation.errors());
            if !memory.resize_problems.is_empty() {
                tracing::warn!(%group, errors = ?operation.errors(), "resize operation failed");
            }
        } else {
            memory.pending_resize = Some(operation.name.clone());
        }
    }

    async fn observe(
        &self,
        client: &ComputeClient,
        group: &GroupRef,
        pool: &PoolConfig,
        memory: &mut PoolMemory,
        now: Timestamp,
    ) -> Result<PoolObservation> {
        if let Some(name) = memory.pending_resize.clone() {
            let operation = client.operation_get(group, &name).await?;
            self.record_resize(group, memory, &operation);
        }
        let instances = client.managed_instances(group).await?;
        let workers = self.tenant_workers(pool, now).await?;
        if memory.last_seen.is_none() {
            adopt_drains(pool, memory, &instances, &workers);
        }
        self.finish_drains(client, group, pool, memory, &instances, &workers)
            .await?;
        let manager = client.group_get(group).await?;
        memory
            .first_seen
            .retain(|n, _| instances.iter().any(|i| resource_name(&i.instance) == n));
        let observed = instances
            .iter()
            .map(|i| {
                let name = resource_name(&i.instance).to_string();
                let worker = worker_for(&name, &pool.name, &workers);
                let draining = memory.draining.contains(&name)
                    || memory.deleted.contains(&name)
                    || worker.is_some_and(|w| w.state == WorkerState::Draining);
                Instance {
                    state: instance_state(i, draining),
                    created_at: *memory.first_seen.entry(name.clone()).or_insert(now),
                    worker_id: worker.map(|w| w.id.clone()),
                    id: name,
                }
            })
            .collect();
        let mut problems = memory.resize_problems.clone();
        for (kind, message) in instance_problems(&group.to_string(), &instances) {
            if !problems.iter().any(|(k, _)| *k == kind) {
                problems.push((kind, message));
            }
        }
        // The target still counts drained instances until they are deleted; the size asked
        // for does not.
        let held = held_by_drains(memory, &instances);
        Ok(PoolObservation {
            pool: pool.name.clone(),
            desired: Some(manager.target_size.saturating_sub(held)),
            instances: observed,
            problems: stamp(memory, problems, now),
        })
    }

    async fn resize(
        &self,
        client: &ComputeClient,
        group: &GroupRef,
        params: &PoolResize<'_>,
        memory: &mut PoolMemory,
    ) -> Result<()> {
        let pool = params.pool;
        let instances = client.managed_instances(group).await?;
        let workers = self.tenant_workers(pool, params.now).await?;
        for name in &params.drain {
            // Gone or already leaving: nothing to do, so a repeated call is harmless.
            let Some(instance) = instances
                .iter()
                .find(|i| resource_name(&i.instance) == name && !is_leaving(i))
            else {
                continue;
            };
            if memory.deleted.contains(name) {
                continue;
            }
            memory.draining.insert(name.clone());
            if let Some(worker) = worker_for(name, &pool.name, &workers)
                && worker.state == WorkerState::Active
            {
                match self.store.worker_drain(&worker.id).await {
                    // Forgotten meanwhile: nothing left to drain.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    other => other?,
                }
                tracing::info!(pool = %pool.name, instance = %resource_name(&instance.instance), worker = %worker.id, "draining worker");
            }
        }
        self.finish_drains(client, group, pool, memory, &instances, &workers)
            .await?;
        let manager = client.group_get(group).await?;
        let held = held_by_drains(memory, &instances);
        match resize_target(manager.target_size, params.desired, held) {
            Some(size) => {
                let operation = client.group_resize(group, size).await?;
                tracing::info!(pool = %pool.name, %group, from = manager.target_size, to = size, "resizing group");
                let operation = client.operation_wait(group, operation).await?;
                self.record_resize(group, memory, &operation);
            }
            // Big enough: an earlier failure to grow no longer keeps the pool short.
            None => memory.resize_problems.clear(),
        }
        Ok(())
    }
}

/// After a restart, take running instances whose workers of this pool are draining as drained
/// by Spillway, so they are deleted once their workers exit. (A preempted VM's worker drains
/// too, but its instance is stopping by then, not running.)
fn adopt_drains(
    pool: &PoolConfig,
    memory: &mut PoolMemory,
    instances: &[ManagedInstance],
    workers: &[Worker],
) {
    for instance in instances
        .iter()
        .filter(|i| i.current_action == "NONE" && i.instance_status.as_deref() == Some("RUNNING"))
    {
        let name = resource_name(&instance.instance);
        if worker_for(name, &pool.name, workers)
            .is_some_and(|w| w.pool == pool.name && w.state == WorkerState::Draining)
        {
            memory.draining.insert(name.to_string());
        }
    }
}

/// Drained instances still in the group's target size: told to drain, not deleted yet.
fn held_by_drains(memory: &PoolMemory, instances: &[ManagedInstance]) -> u32 {
    let held = instances
        .iter()
        .filter(|i| {
            let name = resource_name(&i.instance);
            memory.draining.contains(name) && !memory.deleted.contains(name) && !is_leaving(i)
        })
        .count();
    u32::try_from(held).unwrap_or(u32::MAX)
}

/// Problems with the time each kind has held since; kinds that went away are forgotten.
fn stamp(
    memory: &mut PoolMemory,
    problems: Vec<(PoolProblemKind, String)>,
    now: Timestamp,
) -> Vec<PoolProblem> {
    memory
        .since
        .retain(|kind, _| problems.iter().any(|(k, _)| k == kind));
    problems
        .into_iter()
        .map(|(kind, message)| PoolProblem {
            kind,
            message,
            since: *memory.since.entry(kind).or_insert(now),
        })
        .collect()
}

/// The pool's `compute_engine` section, checked, or why it cannot be used.
fn section(pool: &PoolConfig) -> Result<ComputeEnginePool> {
    let section = crate::config::section(pool)?;
    section.validate(&pool.name)?;
    Ok(section)
}

#[async_trait]
impl PoolProvider for ComputeEngineProvider {
    fn provider_name(&self) -> &'static str {
        crate::config::PROVIDER
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let pool = params.pool;
        let section = section(pool)?;
        let group = GroupRef::from_section(&section)?;
        let client = self.client(&section);
        let memory = self.memory(&pool.name);
        let mut memory = memory.lock().await;
        match self
            .observe(&client, &group, pool, &mut memory, params.now)
            .await
        {
            Ok(seen) => {
                memory.last_seen = Some(seen.clone());
                Ok(seen)
            }
            // Shown as the pool's status so that the other pools keep scaling.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                tracing::warn!(pool = %pool.name, %group, error = %e, "compute api refused access");
                let mut seen = memory.last_seen.clone().unwrap_or(PoolObservation {
                    pool: pool.name.clone(),
                    desired: None,
                    instances: Vec::new(),
                    problems: Vec::new(),
                });
                seen.problems = stamp(
                    &mut memory,
                    vec![(PoolProblemKind::Permission, e.message().to_string())],
                    params.now,
                );
                Ok(seen)
            }
            Err(e) => Err(e),
        }
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        let pool = params.pool;
        pool.check_size(params.desired)?;
        let section = section(pool)?;
        let group = GroupRef::from_section(&section)?;
        let client = self.client(&section);
        let memory = self.memory(&pool.name);
        let mut memory = memory.lock().await;
        match self.resize(&client, &group, &params, &mut memory).await {
            // Kept as a problem of the pool, like quota: the request stands, nothing grows.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                tracing::warn!(pool = %pool.name, %group, error = %e, "compute api refused the resize");
                memory.resize_problems =
                    vec![(PoolProblemKind::Permission, e.message().to_string())];
                Ok(())
            }
            other => other,
        }
    }
}

//! The `local` provider: each instance is a `spillway worker` child process of the server.
//!
//! Each instance gets its own worker token, so the worker that registers with it is known to
//! be that instance's (the register route reports token → worker to the [`PoolBoard`]). An
//! instance is starting until its worker registers, running while the worker is active, and
//! draining once asked: its worker is told to drain through the store and exits by itself
//! after its tasks; an instance whose worker has not registered yet is stopped at once.
//! Children that die while wanted are started again with backoff, on the next call. When the
//! provider is dropped (the server stops), every child is sent SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::provider::{
    Instance, InstanceState, PoolObservation, PoolObserve, PoolProblem, PoolProblemKind,
    PoolProvider, PoolResize,
};
use spillway_core::auth::Role;
use spillway_core::backoff::Backoff;
use spillway_core::model::WorkerState;
use spillway_core::{Error, ErrorKind, Result, Timestamp};
use spillway_store::{DynStore, TokenCreate};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::auth::{hash_secret, new_secret, new_token_id};
use crate::autoscale::{POOL_TENANT, PoolBoard};
use spillway_store::TokenRevoke;
use spillway_store::WorkerList;

/// The provider name of local pools.
pub const PROVIDER: &str = "local";

/// First wait before starting a child that died again.
pub const RESTART_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait before starting a child that died again.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Doubling from [`RESTART_BACKOFF_BASE`] up to [`RESTART_BACKOFF_MAX`], without jitter.
const RESTART_BACKOFF: Backoff = Backoff::new(RESTART_BACKOFF_BASE, RESTART_BACKOFF_MAX);
/// Restarts in a row after which the pool reports that its instances fail to start.
pub const RESTARTS_BEFORE_PROBLEM: u32 = 3;

/// How the local provider starts workers.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `spillway` binary (its `worker` subcommand is run).
    pub program: PathBuf,
    /// The server's own URL, given to workers as `SPILLWAY_SERVER`.
    pub server_url: String,
}

/// Starts workers as child processes.
pub struct LocalProvider {
    store: DynStore,
    board: Arc<PoolBoard>,
    config: LocalConfig,
    pools: Mutex<BTreeMap<String, LocalPool>>,
}

#[derive(Default)]
struct LocalPool {
    next_id: u64,
    desired: Option<u32>,
    instances: Vec<LocalInstance>,
    problems: Vec<PoolProblem>,
}

struct LocalInstance {
    id: String,
    created_at: Timestamp,
    token_id: String,
    secret: String,
    child: Option<Child>,
    draining: bool,
    restarts: u32,
    restart_at: Option<Instant>,
}

impl LocalProvider {
    /// A provider that reports instance tokens and workers through `board`.
    pub fn new(store: DynStore, board: Arc<PoolBoard>, config: LocalConfig) -> Self {
        Self {
            store,
            board,
            config,
            pools: Mutex::new(BTreeMap::new()),
        }
    }

    fn spawn_child(&self, pool: &PoolConfig, instance: &LocalInstance) -> Result<Child> {
        let mut cmd = Command::new(&self.config.program);
        cmd.arg("worker").arg("--pool").arg(&pool.name);
        for queue in &pool.queues {
            cmd.arg("--queue").arg(queue);
        }
        cmd.arg("--concurrency")
            .arg(pool.concurrency.to_string())
            .arg("--exit-with-parent")
            .env("SPILLWAY_SERVER", &self.config.server_url)
            .env("SPILLWAY_TOKEN", &instance.secret)
            .env("SPILLWAY_TENANT", POOL_TENANT)
            .env("SPILLWAY_INSTANCE_ID", &instance.id)
            .stdin(Stdio::null());
        cmd.spawn().map_err(|e| {
            Error::unavailable(format!(
                "could not start worker program {:?} for pool {:?}: check `worker_program` in the server config",
                self.config.program, pool.name
            ))
            .with_source(e)
        })
    }

    async fn new_instance(
        &self,
        pool: &PoolConfig,
        seq: u64,
        now: Timestamp,
    ) -> Result<LocalInstance> {
        let id = format!("{}-{seq}", pool.name);
        let secret = new_secret();
        let token = self
            .store
            .token_create(TokenCreate {
                id: new_token_id(),
                name: format!("autoscaler instance {id}"),
                tenant: Some(POOL_TENANT.to_string()),
                role: Role::Worker,
                secret_hash: hash_secret(&secret),
                now,
                expires_at: None,
                queues: None,
            })
            .await?;
        self.board.instance_token(&token.id, &id);
        Ok(LocalInstance {
            id,
            created_at: now,
            token_id: token.id,
            secret,
            child: None,
            draining: false,
            restarts: 0,
            restart_at: Some(Instant::now()),
        })
    }

    /// Reap exited children: drained ones leave, wanted ones are started again with backoff.
    async fn supervise(&self, config: &PoolConfig, pool: &mut LocalPool, now: Timestamp) {
        let mut gone = Vec::new();
        for instance in pool.instances.iter_mut() {
            let exited = match instance.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some(e.to_string()),
                None => None,
            };
            if let Some(status) = exited {
                instance.child = None;
                if instance.draining {
                    gone.push(instance.id.clone());
                    continue;
                }
                instance.restarts += 1;
                let backoff = RESTART_BACKOFF.ceiling(instance.restarts);
                tracing::warn!(pool = %config.name, instance = %instance.id, %status, restarts = instance.restarts, backoff = ?backoff, "local worker exited while wanted; starting it again");
                instance.restart_at = Some(Instant::now() + backoff);
                self.board.instance_gone(&instance.id);
                self.board.instance_token(&instance.token_id, &instance.id);
            }
            if instance.draining && instance.child.is_none() {
                gone.push(instance.id.clone());
                continue;
            }
            if instance.child.is_none()
                && instance.restart_at.is_some_and(|at| at <= Instant::now())
            {
                match self.spawn_child(config, instance) {
                    Ok(child) => {
                        instance.child = Some(child);
                        instance.restart_at = None;
                    }
                    Err(error) => {
                        tracing::warn!(pool = %config.name, instance = %instance.id, %error, "could not start a local worker");
                        instance.restarts += 1;
                        instance.restart_at = Some(Instant::now() + RESTART_BACKOFF_MAX);
                    }
                }
            }
        }
        for id in &gone {
            if let Some(at) = pool.instances.iter().position(|i| &i.id == id) {
                let instance = pool.instances.remove(at);
                self.board.instance_gone(&instance.id);
                if let Err(error) = self
                    .store
                    .token_revoke(TokenRevoke {
                        tenant: None,
                        id: instance.token_id.clone(),
                        now,
                    })
                    .await
                {
                    tracing::warn!(instance = %instance.id, %error, "could not revoke a local worker's token");
                }
            }
        }
        pool.problems
            .retain(|p| p.kind != PoolProblemKind::StartFailed);
        if let Some(worst) = pool
            .instances
            .iter()
            .filter(|i| i.restarts >= RESTARTS_BEFORE_PROBLEM)
            .max_by_key(|i| i.restarts)
        {
            pool.problems.push(PoolProblem {
                kind: PoolProblemKind::StartFailed,
                message: format!(
                    "local worker {} exited {} times: check that {:?} runs `worker` and can reach {}",
                    worst.id, worst.restarts, self.config.program, self.config.server_url
                ),
                since: now,
            });
        }
    }
}

impl Drop for LocalProvider {
    /// Ask every child to stop gracefully (SIGTERM): a worker hands its running tasks back
    /// as preempted within its grace period, so they run again elsewhere at once.
    fn drop(&mut self) {
        let pools = self.pools.get_mut();
        for instance in pools.values_mut().flat_map(|p| p.instances.iter_mut()) {
            terminate(instance);
        }
    }
}

fn terminate(instance: &mut LocalInstance) {
    let Some(pid) = instance.child.as_ref().and_then(Child::id) else {
        return;
    };
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if let Err(error) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!(instance = %instance.id, %error, "could not stop a local worker");
    }
}

#[async_trait]
impl PoolProvider for LocalProvider {
    fn provider_name(&self) -> &'static str {
        PROVIDER
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let config = params.pool;
        let workers = self
            .store
            .worker_list(WorkerList {
                tenant: Some(config.tenant().to_string()),
                now: params.now,
            })
            .await?;
        let mut pools = self.pools.lock().await;
        let pool = pools.entry(config.name.clone()).or_default();
        self.supervise(config, pool, params.now).await;
        let instances = pool
            .instances
            .iter()
            .map(|i| {
                let worker_id = self.board.instance_worker(&i.id);
                let worker = worker_id
                    .as_ref()
                    .and_then(|id| workers.iter().find(|w| &w.id == id));
                let state = match (i.draining, worker.map(|w| w.state)) {
                    (true, _) | (_, Some(WorkerState::Draining)) => InstanceState::Draining,
                    (false, Some(WorkerState::Active)) if i.child.is_some() => {
                        InstanceState::Running
                    }
                    _ => InstanceState::Starting,
                };
                Instance {
                    id: i.id.clone(),
                    state,
                    created_at: i.created_at,
                    worker_id,
                }
            })
            .collect();
        Ok(PoolObservation {
            pool: config.name.clone(),
            desired: pool.desired,
            instances,
            problems: pool.problems.clone(),
        })
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        let config = params.pool;
        config.check_size(params.desired)?;
        let mut pools = self.pools.lock().await;
        let pool = pools.entry(config.name.clone()).or_default();
        pool.desired = Some(params.desired);
        for instance in pool
            .instances
            .iter_mut()
            .filter(|i| !i.draining && params.drain.contains(&i.id))
        {
            instance.draining = true;
            match self.board.instance_worker(&instance.id) {
                Some(worker) => match self.store.worker_drain(&worker).await {
                    Ok(()) => {}
                    // The worker is gone already; its process is on its way out.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                },
                // Not registered yet: it holds no task, so stop it now.
                None => {
                    terminate(instance);
                }
            }
        }
        let live = pool.instances.iter().filter(|i| !i.draining).count() as u32;
        for _ in live..params.desired {
            pool.next_id += 1;
            let instance = self.new_instance(config, pool.next_id, params.now).await?;
            pool.instances.push(instance);
        }
        self.supervise(config, pool, params.now).await;
        Ok(())
    }
}

//! The autoscaler service: every interval, and about a second after a submit to a pool's
//! queue, the leader replica observes each pool, runs the policy and resizes the pools.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::policy::{
    self, InstanceView, PolicyInput, PolicyMemory, PoolView, QueueDemand,
};
use spillway_autoscale::provider::{
    DynPoolProvider, Instance, InstanceState, PoolObservation, PoolObserve, PoolProblem,
    PoolProblemKind, PoolResize,
};
use spillway_core::api::{PoolDecisionRecord, PoolStatus};
use spillway_core::model::{Worker, WorkerState};
use spillway_core::{Error, Result, Timestamp};
use spillway_store::{LeaderLease, PoolStatusSave, QueueDemand as StoreDemand};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::POOL_TENANT;
use crate::services::Service;
use crate::state::AppState;
use spillway_store::QueueDemandQuery;
use spillway_store::WorkerList;

/// Default time between passes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long after a submit the pass runs, so a burst of submits makes one pass; short enough
/// that a pool reacts to new work well within a second.
pub const DEFAULT_WAKE_DELAY: Duration = Duration::from_millis(250);
/// The leadership key replicas compete for: only the holder resizes pools.
pub const LEADER_KEY: i64 = 0x5350_4c57_4153_4331;
/// The `kind` label of `spillway_pool_problems` for a pool whose provider could not be asked
/// (observe or resize failed): not a problem the provider reports, so not a `PoolProblemKind`.
pub const PROVIDER_ERROR_KIND: &str = "provider_error";
/// Instances named in a never-registered problem's message; the rest are counted.
const NEVER_REGISTERED_NAMED: usize = 3;

/// How the autoscaler runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// Time from a submit to the pass it causes.
    pub wake_delay: Duration,
    /// The leadership key.
    pub leader_key: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            wake_delay: DEFAULT_WAKE_DELAY,
            leader_key: LEADER_KEY,
        }
    }
}

/// The autoscaler: its providers and what it remembers between passes.
pub struct Autoscaler {
    state: AppState,
    providers: HashMap<String, DynPoolProvider>,
    leader_key: i64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    memory: PolicyMemory,
    /// Worker id -> since when it has been seen holding no lease.
    idle_since: HashMap<String, Timestamp>,
    lease: Option<LeaderLease>,
    /// The statuses this replica last kept in the store as the leader.
    kept: Option<Vec<PoolStatus>>,
    /// (pool, instance) pairs already counted as never registered.
    never_registered: HashSet<(String, String)>,
}

impl Autoscaler {
    /// An autoscaler over `state`'s pools with one provider per kind used.
    pub fn new(
        state: AppState,
        providers: HashMap<String, DynPoolProvider>,
        leader_key: i64,
    ) -> Self {
        Self {
            state,
            providers,
            leader_key,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// An autoscaler over `state`'s pools with the providers the caller registered
    /// (`state.providers`), under the replicas' shared leader key.
    pub fn with_registered_providers(state: AppState) -> Self {
        let providers = state.providers.build(&state.provider_context());
        Self::new(state, providers, LEADER_KEY)
    }

    /// One pass: when leader, observe, plan and resize every pool and keep what it saw in
    /// the store; otherwise show what the leader kept. Returns how many pools were resized.
    pub async fn pass(&self) -> Result<u64> {
        let mut inner = self.inner.lock().await;
        // Every replica, leader or not, applies the bounds set at run time (kept in the
        // store), so they hold after a restart and wherever they were set.
        let kept = self.state.store.pool_bounds_list().await?;
        self.state.shared.pools.apply_kept_bounds(&kept);
        if !inner.lease.as_ref().is_some_and(LeaderLease::is_held) {
            inner.lease = self.state.store.leader_try(self.leader_key).await?;
            let leading = inner.lease.is_some();
            self.state.metrics.set_autoscaler_leader(leading);
            // A follower shows what the leader kept; a new leader goes on from it (its
            // decisions, and the pools' last sizes until its own pass has seen them).
            self.adopt_kept().await?;
            if !leading {
                // Problems are the leader's to report.
                self.state.metrics.set_pool_problems(&BTreeMap::new());
                return Ok(0);
            }
            inner.kept = None;
            tracing::info!(key = self.leader_key, "autoscaler is the leader");
        }
        let inner = &mut *inner;
        let state = &self.state;
        let now = state.clock.now();
        let pools = state.shared.pools.pools();
        let demand: Vec<QueueDemand> = state
            .store
            .queue_demand(QueueDemandQuery { now })
            .await?
            .into_iter()
            .filter(|d| d.tenant == POOL_TENANT)
            .map(policy_demand)
            .collect();
        let workers = state
            .store
            .worker_list(WorkerList {
                tenant: Some(POOL_TENANT.into()),
                now,
            })
            .await?;
        // A pool whose provider cannot be reached sits this pass out, its error on its status;
        // the others are still planned, so another region's pool can take the work.
        let mut observed = Vec::with_capacity(pools.len());
        let mut observations = Vec::with_capacity(pools.len());
        for pool in pools {
            let seen = match self.provider(&pool) {
                Ok(provider) => {
                    provider
                        .pool_observe(PoolObserve { pool: &pool, now })
                        .await
                }
                Err(err) => Err(err),
            };
            match seen {
                Ok(seen) => {
                    observed.push(pool);
                    observations.push(seen);
                }
                Err(err) => self.pool_failed(&pool, "observe", &err),
            }
        }
        let pools = observed;
        track_idle(&mut inner.idle_since, &workers, now);
        let views: Vec<PoolView<'_>> = pools
            .iter()
            .zip(&observations)
            .map(|(pool, seen)| pool_view(pool, seen, &workers, &inner.idle_since))
            .collect();
        let decisions = policy::plan(
            &state.config.autoscale,
            &PolicyInput {
                now,
                queues: &demand,
                pools: &views,
            },
            &mut inner.memory,
        );
        let mut resized = 0;
        let mut problem_kinds = BTreeMap::new();
        let mut unregistered = HashSet::new();
        for ((pool, seen), decision) in pools.iter().zip(&observations).zip(decisions) {
            let mut seen = seen.clone();
            if seen.desired != Some(decision.desired) || !decision.drain.is_empty() {
                let provider = self.provider(pool)?;
                let resize = PoolResize {
                    pool,
                    desired: decision.desired,
                    drain: decision.drain.clone(),
                    now,
                };
                if let Err(err) = provider.pool_resize(resize).await {
                    self.pool_failed(pool, "resize", &err);
                    continue;
                }
                resized += 1;
                // The status shows the pool as it is after the change.
                match provider.pool_observe(PoolObserve { pool, now }).await {
                    Ok(after) => seen = after,
                    Err(err) => {
                        self.pool_failed(pool, "observe", &err);
                        continue;
                    }
                }
            }
            if decision.desired != decision.current || !decision.drain.is_empty() {
                tracing::info!(pool = %pool.name, from = decision.current, to = decision.desired, drain = ?decision.drain, reason = %decision.reason, "pool resized");
                state.shared.pools.record_decision(
                    &pool.name,
                    PoolDecisionRecord {
                        at: now,
                        from: decision.current,
                        to: decision.desired,
                        reason: decision.reason.clone(),
                    },
                );
            }
            let late = never_registered(pool, &seen, &workers, now);
            let new = late
                .iter()
                .filter(|i| {
                    !inner
                        .never_registered
                        .contains(&(pool.name.clone(), i.id.clone()))
                })
                .count();
            state.metrics.never_registered(&pool.name, new as u64);
            unregistered.extend(late.iter().map(|i| (pool.name.clone(), i.id.clone())));
            if let Some(problem) = never_registered_problem(pool, &late) {
                seen.problems.push(problem);
            }
            problem_kinds.insert(
                pool.name.clone(),
                seen.problems.iter().map(|p| p.kind.as_str()).collect(),
            );
            let status = pool_status(pool, &seen, &workers, decision.desired);
            state.shared.pools.set_status(status);
        }
        // Instances that registered or went away are forgotten.
        inner.never_registered = unregistered;
        // A pool planned above has its provider's problems; any other failed to observe or
        // resize this pass.
        for pool in state.shared.pools.pools() {
            problem_kinds
                .entry(pool.name)
                .or_insert_with(|| vec![PROVIDER_ERROR_KIND]);
        }
        state.metrics.set_pool_problems(&problem_kinds);
        // Every pool, failed ones with what was last seen of them; kept for the other
        // replicas when it changed.
        let statuses = state.shared.pools.statuses();
        state.metrics.set_pools(&statuses);
        if inner.kept.as_ref() != Some(&statuses) {
            state
                .store
                .pool_status_save(PoolStatusSave {
                    statuses: statuses.clone(),
                    now,
                })
                .await?;
            inner.kept = Some(statuses);
        }
        Ok(resized)
    }

    /// Show what the leading replica last kept of the pools, here and on `/metrics`.
    async fn adopt_kept(&self) -> Result<()> {
        let kept = self.state.store.pool_status_list().await?;
        self.state.shared.pools.adopt(kept);
        self.state
            .metrics
            .set_pools(&self.state.shared.pools.statuses());
        Ok(())
    }

    /// Log a provider's failure and show it on the pool's status, keeping what was last seen.
    fn pool_failed(&self, pool: &PoolConfig, call: &str, err: &Error) {
        tracing::warn!(pool = %pool.name, provider = pool.provider.as_str(), error = %err, "pool {call} failed");
        self.state.shared.pools.set_problem(
            pool,
            format!(
                "the {} provider failed to {call} the pool: {}",
                pool.provider.as_str(),
                err.message()
            ),
        );
    }

    fn provider(&self, pool: &PoolConfig) -> Result<&DynPoolProvider> {
        self.providers.get(&pool.provider).ok_or_else(|| {
            Error::internal(format!(
                "no {} provider is running for pool {:?}",
                pool.provider.as_str(),
                pool.name
            ))
        })
    }
}

fn policy_demand(d: StoreDemand) -> QueueDemand {
    QueueDemand {
        queue: d.queue,
        waiting: d.waiting,
        waiting_burstable: d.waiting_burstable,
        mean_task_seconds: d.mean_duration_seconds,
        arrivals_per_second: d.arrivals as f64
            / spillway_store::autoscale::ARRIVALS_WINDOW_SECONDS as f64,
    }
}

/// Remember since when each active worker holds no lease; forget busy and gone ones.
fn track_idle(idle_since: &mut HashMap<String, Timestamp>, workers: &[Worker], now: Timestamp) {
    idle_since.retain(|id, _| {
        workers
            .iter()
            .any(|w| &w.id == id && w.state == WorkerState::Active && w.running == 0)
    });
    for w in workers
        .iter()
        .filter(|w| w.state == WorkerState::Active && w.running == 0)
    {
        idle_since.entry(w.id.clone()).or_insert(now);
    }
}

fn pool_view<'a>(
    pool: &'a PoolConfig,
    seen: &'a PoolObservation,
    workers: &[Worker],
    idle_since: &HashMap<String, Timestamp>,
) -> PoolView<'a> {
    let instances = seen
        .instances
        .iter()
        .map(|i| {
            let worker = i
                .worker_id
                .as_ref()
                .and_then(|id| workers.iter().find(|w| &w.id == id));
            InstanceView {
                id: &i.id,
                state: i.state,
                busy_slots: worker.map_or(0, |w| w.running),
                idle_since: match (i.state, worker) {
                    (InstanceState::Running, Some(w)) => idle_since.get(&w.id).copied(),
                    _ => None,
                },
            }
        })
        .collect();
    PoolView {
        config: pool,
        instances,
        short_of_capacity: seen
            .problems
            .iter()
            .any(|p| matches!(p.kind, PoolProblemKind::Quota | PoolProblemKind::StockOut)),
    }
}

/// The live instances of `pool` asked for at least its `startup` time ago whose worker has not
/// registered: none known, or one the server has no record of.
fn never_registered<'a>(
    pool: &PoolConfig,
    seen: &'a PoolObservation,
    workers: &[Worker],
    now: Timestamp,
) -> Vec<&'a Instance> {
    let startup = chrono::TimeDelta::from_std(pool.startup).unwrap_or(chrono::TimeDelta::MAX);
    seen.instances
        .iter()
        .filter(|i| i.state.is_live())
        .filter(|i| now.signed_duration_since(i.created_at) >= startup)
        .filter(|i| {
            !i.worker_id
                .as_ref()
                .is_some_and(|id| workers.iter().any(|w| &w.id == id))
        })
        .collect()
}

/// The problem that names instances whose worker never registered, since the first of them
/// was due.
fn never_registered_problem(pool: &PoolConfig, late: &[&Instance]) -> Option<PoolProblem> {
    let due = late.iter().map(|i| i.created_at).min()?;
    let startup = chrono::TimeDelta::from_std(pool.startup).unwrap_or(chrono::TimeDelta::MAX);
    let named: Vec<&str> = late
        .iter()
        .take(NEVER_REGISTERED_NAMED)
        .map(|i| i.id.as_str())
        .collect();
    let more = late.len().saturating_sub(NEVER_REGISTERED_NAMED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(PoolProblem {
        kind: PoolProblemKind::NeverRegistered,
        message: format!(
            "{} instance(s) started over {} ago have no registered worker ({}{more}): check that they run `spillway worker` with the server's URL and a valid worker token, or raise the pool's startup if they are only slow",
            late.len(),
            humantime::format_duration(pool.startup),
            named.join(", "),
        ),
        since: due.checked_add_signed(startup).unwrap_or(due),
    })
}

fn pool_status(
    pool: &PoolConfig,
    seen: &PoolObservation,
    workers: &[Worker],
    desired: u32,
) -> PoolStatus {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let active = workers
        .iter()
        .filter(|w| w.pool == pool.name && w.state == WorkerState::Active);
    let busy = count(active.clone().filter(|w| w.running > 0).count());
    let idle = count(active.filter(|w| w.running == 0).count());
    PoolStatus {
        desired,
        actual: count(seen.live()),
        busy,
        idle,
        draining: count(seen.count(InstanceState::Draining)),
        down: count(seen.count(InstanceState::Down)),
        problems: seen.problems.iter().map(|p| p.message.clone()).collect(),
        ..super::board::empty_status(pool)
    }
}

/// Start the autoscaler: a pass every interval, and `wake_delay` after work arrives on a
/// queue a pool serves.
pub fn spawn(autoscaler: Arc<Autoscaler>, config: Config, stop: CancellationToken) -> Service {
    let queues: Vec<String> = autoscaler
        .state
        .shared
        .pools
        .pools()
        .iter()
        .flat_map(|p| p.queues.clone())
        .collect();
    let wakeups: Vec<_> = queues
        .iter()
        .map(|q| autoscaler.state.store.wakeups().listener(POOL_TENANT, q))
        .collect();
    let runner = autoscaler.clone();
    let service = Service::spawn("autoscaler", config.interval, stop.clone(), move || {
        let runner = runner.clone();
        async move { runner.pass().await }
    });
    let kick = service.kicker();
    // The first pass runs at once, so pools reach their minimum without waiting an interval.
    kick.notify_one();
    if wakeups.is_empty() {
        return service;
    }
    tokio::spawn(async move {
        loop {
            let any = futures::future::select_all(wakeups.iter().map(|n| Box::pin(n.notified())));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = any => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(config.wake_delay) => kick.notify_one(),
            }
        }
    });
    service
}

//! The `kubernetes` pool provider.
//!
//! - **deployment** mode scales a Deployment of `spillway worker` through its `scale`
//!   subresource. Draining a pod gives it the lowest `controller.kubernetes.io/pod-deletion-cost`
//!   and lowers the replicas by the drained pods, so the ReplicaSet deletes exactly those: the
//!   pod gets SIGTERM, its worker finishes (or hands back as preempted) its tasks and exits.
//! - **work_queue** mode creates parallel `batch/v1` Jobs whose pods run
//!   `spillway worker --exit-when-idle`. A resize that needs more instances creates a Job with
//!   the deficit as parallelism; draining asks the pod's worker to drain through the store, so
//!   it exits 0 and its Job (work-queue semantics) replaces nothing. Finished Jobs are deleted.
//!
//! Instances are pods (id = pod name = the worker's hostname); pods asked for but not created
//! yet show as starting instances `<owner>-wanted-<n>`.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::config::KubernetesMode;
use crate::config::KubernetesPool;
use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::provider::{
    Instance, InstanceState, PoolObservation, PoolObserve, PoolProblem, PoolProblemKind,
    PoolProvider, PoolResize,
};
use spillway_core::model::Worker;
use spillway_core::{Error, ErrorKind, Result, Timestamp};
use spillway_store::DynStore;

use crate::client::{Cluster, connect};
use plan::QueueJob;
use spillway_store::WorkerList;

/// Label on work-queue Jobs and their pods naming the pool.
pub const POOL_LABEL: &str = "spillway.dev/pool";
/// The annotation the ReplicaSet controller reads to pick pods to remove on scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Deletion cost of a pod to drain: the lowest there is, so it goes before any other.
pub const DRAIN_DELETION_COST: i32 = i32::MIN;
/// Field manager named in writes, shown in `managedFields`.
pub const FIELD_MANAGER: &str = "spillway";
/// Tries of a read-decide-write when the object changed in between (409 Conflict).
const CONFLICT_TRIES: u32 = 5;
/// Name of the worker container in work-queue pods.
const CONTAINER: &str = "worker";

/// A failed API call: either a condition to report as a pool problem, or an error.
enum Failure {
    Problem(PoolProblemKind, String),
    Error(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Error(error)
    }
}

/// Read a kube error: 403 "exceeded quota" is a quota problem, other 401/403 a permission
/// problem; 404/409/400/422 become errors of the same kind; anything else (connection
/// refused, 5xx, timeouts) means the API is unavailable.
fn classify(error: kube::Error, what: &str) -> Failure {
    match &error {
        kube::Error::Api(status) => {
            let message = format!("{what}: {} ({})", status.message, status.reason);
            match status.code {
                403 if status.message.contains("exceeded quota") => {
                    Failure::Problem(PoolProblemKind::Quota, message)
                }
                401 | 403 => Failure::Problem(
                    PoolProblemKind::Permission,
                    format!(
                        "{message}: give the server's service account the RBAC rules listed in docs/kubernetes.md"
                    ),
                ),
                404 => Failure::Error(Error::not_found(message)),
                409 => Failure::Error(Error::conflict(message)),
                400 | 422 => Failure::Error(Error::invalid(message)),
                _ => Failure::Error(Error::unavailable(message)),
            }
        }
        kube::Error::SerdeError(_) => Failure::Error(Error::internal(format!(
            "unexpected answer from the kubernetes API while {what}: {error}"
        ))),
        _ => Failure::Error(Error::unavailable(format!(
            "kubernetes API unreachable while {what}: {error}"
        ))),
    }
}

fn fail(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Failure {
    let what = what.into();
    move |error| classify(error, &what)
}

/// A kubeconfig file and context; both `None` for the inferred configuration.
type ClusterKey = (Option<PathBuf>, Option<String>);

/// Where one pool lives: its API handles and names.
struct Target {
    namespace: String,
    pods: Api<Pod>,
    deployments: Api<Deployment>,
    jobs: Api<Job>,
}

/// Scales Kubernetes pools; one provider serves every `kubernetes` pool of the server.
pub struct KubernetesProvider {
    store: DynStore,
    /// One client for every pool (tests, or a caller that built its own).
    fixed: Option<Cluster>,
    /// Clients by (kubeconfig, context), made on first use.
    clusters: tokio::sync::Mutex<HashMap<ClusterKey, Cluster>>,
    /// Per pool: the size last asked for, for work-queue pools.
    desired: Mutex<HashMap<String, u32>>,
    /// Per pool: problems met by the last resize (a refused create), kept until one succeeds.
    sticky: Mutex<HashMap<String, Vec<(PoolProblemKind, String)>>>,
    /// Per pool and problem kind: when it was first seen, so `since` stays put.
    since: Mutex<HashMap<(String, PoolProblemKind), Timestamp>>,
}

impl KubernetesProvider {
    /// A provider whose clients come from each pool's `kubernetes` section: its `kubeconfig`
    /// and `context`, else `$KUBECONFIG` / `~/.kube/config` when present, else the in-cluster
    /// service account. Clients are made on first use, so this does no IO. `store` joins pods
    /// to registered workers (hostname = pod name) and drains work-queue workers.
    pub fn new(store: DynStore) -> Self {
        Self::build(store, None)
    }

    /// A provider that talks to one cluster through `client` for every pool, whose namespace
    /// defaults to `default_namespace` (tests, or a client built elsewhere).
    pub fn with_client(store: DynStore, client: kube::Client, default_namespace: &str) -> Self {
        Self::build(
            store,
            Some(Cluster {
                client,
                default_namespace: default_namespace.to_string(),
            }),
        )
    }

    fn build(store: DynStore, fixed: Option<Cluster>) -> Self {
        Self {
            store,
            fixed,
            clusters: tokio::sync::Mutex::new(HashMap::new()),
            desired: Mutex::new(HashMap::new()),
            sticky: Mutex::new(HashMap::new()),
            since: Mutex::new(HashMap::new()),
        }
    }

    async fn target(&self, pool: &PoolConfig, section: &KubernetesPool) -> Result<Target> {
        let cluster = match &self.fixed {
            Some(cluster) => cluster.clone(),
            None => {
                let key = (section.kubeconfig.clone(), section.context.clone());
                let mut clusters = self.clusters.lock().await;
                match clusters.get(&key) {
                    Some(cluster) => cluster.clone(),
                    None => {
                        let cluster =
                            connect(key.0.as_deref(), key.1.as_deref())
                                .await
                                .map_err(|e| {
                                    Error::new(
                                        e.kind(),
                                        format!("pool {:?}: {}", pool.name, e.message()),
                                    )
                                })?;
                        clusters.insert(key, cluster.clone());
                        cluster
                    }
                }
            }
        };
        let namespace = section
            .namespace
            .clone()
            .unwrap_or_else(|| cluster.default_namespace.clone());
        Ok(Target {
            pods: Api::namespaced(cluster.client.clone(), &namespace),
            deployments: Api::namespaced(cluster.client.clone(), &namespace),
            jobs: Api::namespaced(cluster.client, &namespace),
            namespace,
        })
    }

    fn section(pool: &PoolConfig) -> Result<KubernetesPool> {
        crate::config::section(pool)
    }

    /// Problems with first-seen times: those found now plus those left by the last resize.
    fn problems(
        &self,
        pool: &str,
        found: Vec<(PoolProblemKind, String)>,
        now: Timestamp,
    ) -> Vec<PoolProblem> {
        let mut all = found;
        if let Some(sticky) = lock(&self.sticky).get(pool) {
            all.extend(sticky.iter().cloned());
        }
        let merged = plan::merge_problems(all);
        let mut since = lock(&self.since);
        since.retain(|(p, kind), _| p != pool || merged.iter().any(|(k, _)| k == kind));
        merged
            .into_iter()
            .map(|(kind, message)| PoolProblem {
                kind,
                message,
                since: *since.entry((pool.to_string(), kind)).or_insert(now),
            })
            .collect()
    }

    fn set_sticky(&self, pool: &str, problems: Vec<(PoolProblemKind, String)>) {
        let mut sticky = lock(&self.sticky);
        if problems.is_empty() {
            sticky.remove(pool);
        } else {
            sticky.insert(pool.to_string(), problems);
        }
    }

    /// An observation that could not see the pool for lack of permission.
    fn refused(
        &self,
        pool: &PoolConfig,
        kind: PoolProblemKind,
        message: String,
        now: Timestamp,
    ) -> PoolObservation {
        PoolObservation {
            pool: pool.name.clone(),
            desired: lock(&self.desired).get(&pool.name).copied(),
            instances: Vec::new(),
            problems: self.problems(&pool.name, vec![(kind, message)], now),
        }
    }

    /// The workers of `pool`: of the pool's tenant and registered with its name (another
    /// tenant's worker with the same pool name is none of this pool's).
    async fn workers(&self, pool: &PoolConfig, now: Timestamp) -> Result<Vec<Worker>> {
        let workers = self
            .store
            .worker_list(WorkerList {
                tenant: Some(pool.tenant().to_string()),
                now,
            })
            .await?;
        Ok(workers
            .into_iter()
            .filter(|w| w.pool == pool.name)
            .collect())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold plain data; a panic elsewhere leaves them consistent.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn created_at(pod: &Pod, now: Timestamp) -> Timestamp {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now)
}

fn instances_of(pool: &str, pods: &[Pod], workers: &[Worker], now: Timestamp) -> Vec<Instance> {
    pods.iter()
        .map(|pod| {
            let name = pod_name(pod);
            let worker = plan::worker_of(workers, pool, &name);
            Instance {
                state: plan::instance_state(pod, worker),
                created_at: created_at(pod, now),
                worker_id: worker.map(|w| w.id.clone()),
                id: name,
            }
        })
        .collect()
}

fn wanted(owner: &str, count: u32, now: Timestamp) -> impl Iterator<Item = Instance> {
    plan::wanted_ids(owner, count)
        .into_iter()
        .map(move |id| Instance {
            id,
            state: InstanceState::Starting,
            created_at: now,
            worker_id: None,
        })
}

#[async_trait]
impl PoolProvider for KubernetesProvider {
    fn provider_name(&self) -> &'static str {
        crate::config::PROVIDER
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let pool = params.pool;
        let section = Self::section(pool)?;
        let target = self.target(pool, &section).await?;
        let observed = match section.mode {
            KubernetesMode::Deployment => {
                self.observe_deployment(pool, &section, &target, params.now)
                    .await
            }
            KubernetesMode::WorkQueue => self.observe_work_queue(pool, &target, params.now).await,
        };
        match observed {
            Ok(observation) => Ok(observation),
            Err(Failure::Problem(kind, message)) => {
                Ok(self.refused(pool, kind, message, params.now))
            }
            Err(Failure::Error(error)) => Err(error),
        }
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        let pool = params.pool;
        pool.check_size(params.desired)?;
        let section = Self::section(pool)?;
        let target = self.target(pool, &section).await?;
        let result = match section.mode {
            KubernetesMode::Deployment => self.resize_deployment(&params, &section, &target).await,
            KubernetesMode::WorkQueue => {
                lock(&self.desired).insert(pool.name.clone(), params.desired);
                self.resize_work_queue(&params, &section, &target).await
            }
        };
        match result {
            Ok(()) => {
                self.set_sticky(&pool.name, Vec::new());
                Ok(())
            }
            // The contract: a refusal by quota or permission is status, not an error.
            Err(Failure::Problem(kind, message)) => {
                tracing::warn!(pool = %pool.name, ?kind, %message, "kubernetes refused a resize");
                self.set_sticky(&pool.name, vec![(kind, message)]);
                Ok(())
            }
            Err(Failure::Error(error)) => Err(error),
        }
    }
}

impl KubernetesProvider {
    async fn deployment(
        &self,
        pool: &PoolConfig,
        section: &KubernetesPool,
        target: &Target,
    ) -> Result<Deployment, Failure> {
        let name = section
            .deployment
            .clone()
            .unwrap_or_else(|| pool.name.clone());
        let what = format!(
            "reading deployment {name} in namespace {}",
            target.namespace
        );
        match target
            .deployments
            .get_opt(&name)
            .await
            .map_err(fail(&what))?
        {
            Some(deployment) => Ok(deployment),
            None => Err(Failure::Error(Error::not_found(format!(
                "pool {:?}: deployment {name:?} not found in namespace {:?}: install the worker Deployment (deploy/helm/spillway) or set kubernetes.deployment",
                pool.name, target.namespace
            )))),
        }
    }

    async fn deployment_pods(
        &self,
        deployment: &Deployment,
        target: &Target,
    ) -> Result<Vec<Pod>, Failure> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| plan::selector_string(&s.selector))
            .ok_or_else(|| Error::invalid(format!("deployment {name:?} has no usable selector")))?;
        let pods = target
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(fail(format!("listing pods of deployment {name}")))?;
        Ok(pods.items)
    }

    async fn observe_deployment(
        &self,
        pool: &PoolConfig,
        section: &KubernetesPool,
        target: &Target,
        now: Timestamp,
    ) -> Result<PoolObservation, Failure> {
        let deployment = self.deployment(pool, section, target).await?;
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let pods = self.deployment_pods(&deployment, target).await?;
        let workers = self.workers(pool, now).await?;
        let replicas = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as u32;
        let mut instances = instances_of(&pool.name, &pods, &workers, now);
        // Pods the ReplicaSet is still to create: by the pods themselves, not by workers.
        let live_pods = pods.iter().filter(|p| plan::pod_state(p).is_live()).count() as u32;
        instances.extend(wanted(&name, replicas.saturating_sub(live_pods), now));
        let mut found: Vec<_> = pods.iter().filter_map(plan::pod_problem).collect();
        found.extend(plan::deployment_problem(&deployment));
        Ok(PoolObservation {
            pool: pool.name.clone(),
            desired: Some(replicas),
            instances,
            problems: self.problems(&pool.name, found, now),
        })
    }

    async fn resize_deployment(
        &self,
        params: &PoolResize<'_>,
        section: &KubernetesPool,
        target: &Target,
    ) -> Result<(), Failure> {
        let pool = params.pool;
        for attempt in 1..=CONFLICT_TRIES {
            let deployment = self.deployment(pool, section, target).await?;
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let pods = self.deployment_pods(&deployment, target).await?;
            let replicas = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                .max(0) as u32;
            let live: Vec<String> = pods
                .iter()
                .filter(|p| plan::pod_state(p).is_live())
                .map(pod_name)
                .collect();
            let plan = plan::deployment_plan(&name, params.desired, replicas, &live, &params.drain);
            // Mark first, so that whichever scale-down the ReplicaSet makes takes these pods.
            for pod in &plan.mark {
                let patch = json!({"metadata": {"annotations": {POD_DELETION_COST: DRAIN_DELETION_COST.to_string()}}});
                match target
                    .pods
                    .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(fail(format!("marking pod {pod} to drain")))
                {
                    Ok(_) => {}
                    // Gone already: nothing to drain.
                    Err(Failure::Error(e)) if e.kind() == ErrorKind::NotFound => {}
                    Err(other) => return Err(other),
                }
            }
            if plan.replicas != replicas {
                // The resourceVersion makes the write conditional on the deployment we read.
                let patch = json!({
                    "metadata": {"resourceVersion": deployment.metadata.resource_version},
                    "spec": {"replicas": plan.replicas},
                });
                match target
                    .deployments
                    .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(fail(format!(
                        "scaling deployment {name} to {}",
                        plan.replicas
                    ))) {
                    Ok(_) => {}
                    Err(Failure::Error(e)) if e.kind() == ErrorKind::Conflict => {
                        tracing::debug!(pool = %pool.name, attempt, "deployment changed while resizing; reading it again");
                        continue;
                    }
                    Err(other) => return Err(other),
                }
            }
            for pod in &plan.delete {
                self.delete_pod(target, pod).await?;
            }
            return Ok(());
        }
        Err(Failure::Error(Error::conflict(format!(
            "pool {:?}: the deployment kept changing while resizing ({CONFLICT_TRIES} tries); the next pass tries again",
            pool.name
        ))))
    }

    async fn delete_pod(&self, target: &Target, pod: &str) -> Result<(), Failure> {
        match target
            .pods
            .delete(pod, &DeleteParams::default())
            .await
            .map_err(fail(format!("deleting pod {pod}")))
        {
            Ok(_) => Ok(()),
            Err(Failure::Error(e)) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// The pool's Jobs and pods; Jobs that finished with all pods ended are deleted.
    async fn queue_state(
        &self,
        pool: &PoolConfig,
        target: &Target,
    ) -> Result<(Vec<Job>, Vec<Pod>), Failure> {
        let selector = format!("{POOL_LABEL}={}", pool.name);
        let jobs = target
            .jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(fail(format!("listing jobs of pool {}", pool.name)))?
            .items;
        let pods = target
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(fail(format!("listing pods of pool {}", pool.name)))?
            .items;
        let mut kept = Vec::new();
        for job in jobs {
            let name = job.metadata.name.clone().unwrap_or_default();
            let left = pods_of(&job, &pods).filter(|p| !plan::pod_ended(p)).count();
            if plan::job_done(&job, left) && job.metadata.deletion_timestamp.is_none() {
                match target
                    .jobs
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map_err(fail(format!("deleting finished job {name}")))
                {
                    Ok(_) => {}
                    Err(Failure::Error(e)) if e.kind() == ErrorKind::NotFound => {}
                    Err(other) => return Err(other),
                }
            }
            kept.push(job);
        }
        Ok((kept, pods))
    }

    async fn observe_work_queue(
        &self,
        pool: &PoolConfig,
        target: &Target,
        now: Timestamp,
    ) -> Result<PoolObservation, Failure> {
        let (jobs, pods) = self.queue_state(pool, target).await?;
        let workers = self.workers(pool, now).await?;
        let mut instances = instances_of(&pool.name, &pods, &workers, now);
        let mut found: Vec<_> = pods.iter().filter_map(plan::pod_problem).collect();
        for job in &jobs {
            let queue_job = queue_job(job, &pods);
            instances.extend(wanted(&queue_job.name, queue_job.pending(), now));
            found.extend(plan::job_problem(job));
        }
        Ok(PoolObservation {
            pool: pool.name.clone(),
            desired: lock(&self.desired).get(&pool.name).copied(),
            instances,
            problems: self.problems(&pool.name, found, now),
        })
    }

    async fn resize_work_queue(
        &self,
        params: &PoolResize<'_>,
        section: &KubernetesPool,
        target: &Target,
    ) -> Result<(), Failure> {
        let pool = params.pool;
        let (jobs, pods) = self.queue_state(pool, target).await?;
        let workers = self.workers(pool, params.now).await?;
        let mut live = 0;
        let mut named_live = 0;
        // Each Job's parallelism as lowered so far in this call: two unregistered pods of one
        // Job must take it down by two, not set the listed value minus one twice (which would
        // leave a slot the Job controller fills with a new pod).
        let mut lowered: HashMap<String, i32> = HashMap::new();
        for pod in &pods {
            let name = pod_name(pod);
            let worker = plan::worker_of(&workers, &pool.name, &name);
            if !plan::instance_state(pod, worker).is_live() {
                continue;
            }
            live += 1;
            if !params.drain.contains(&name) {
                continue;
            }
            named_live += 1;
            match worker {
                // Its worker finishes its tasks and exits 0; the Job starts no replacement.
                Some(worker) => match self.store.worker_drain(&worker.id).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                },
                // Not registered yet, so it holds no task: stop it, one fewer in its Job.
                None => {
                    if let Some(job) = jobs
                        .iter()
                        .find(|j| pods_of(j, std::slice::from_ref(pod)).next().is_some())
                    {
                        let job_name = job.metadata.name.clone().unwrap_or_default();
                        let listed = job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1);
                        let parallelism = lowered.entry(job_name.clone()).or_insert(listed);
                        *parallelism = (*parallelism - 1).max(0);
                        self.set_parallelism(target, &job_name, *parallelism as u32)
                            .await?;
                    }
                    self.delete_pod(target, &name).await?;
                }
            }
        }
        // The plan sees each Job as the loop above left it: lowered by one per pod deleted.
        let queue_jobs: Vec<QueueJob> = jobs
            .iter()
            .map(|j| {
                let mut job = queue_job(j, &pods);
                if let Some(&parallelism) = lowered.get(&job.name) {
                    let deleted = job.parallelism.saturating_sub(parallelism.max(0) as u32);
                    job.parallelism = parallelism.max(0) as u32;
                    job.active = job.active.saturating_sub(deleted);
                }
                job
            })
            .collect();
        let plan = plan::queue_plan(params.desired, &queue_jobs, live, named_live, &params.drain);
        for (job, parallelism) in &plan.lower {
            self.set_parallelism(target, job, *parallelism).await?;
        }
        if let Some(parallelism) = plan.new_job {
            let job = job_manifest(pool, section, &target.namespace, parallelism);
            let job: Job = serde_json::from_value(job)
                .map_err(|e| Error::internal(format!("job manifest does not parse: {e}")))?;
            target
                .jobs
                .create(&PostParams::default(), &job)
                .await
                .map_err(fail(format!(
                    "creating a job of {parallelism} workers for pool {} in namespace {}",
                    pool.name, target.namespace
                )))?;
        }
        Ok(())
    }

    async fn set_parallelism(
        &self,
        target: &Target,
        job: &str,
        parallelism: u32,
    ) -> Result<(), Failure> {
        let patch = json!({"spec": {"parallelism": parallelism}});
        match target
            .jobs
            .patch(job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(fail(format!("lowering the parallelism of job {job}")))
        {
            Ok(_) => Ok(()),
            Err(Failure::Error(e)) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(other) => Err(other),
        }
    }
}

/// Pods owned by a Job (by its uid in their owner references).
fn pods_of<'a>(job: &'a Job, pods: &'a [Pod]) -> impl Iterator<Item = &'a Pod> {
    let uid = job.metadata.uid.clone();
    pods.iter().filter(move |p| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| Some(&r.uid) == uid.as_ref())
    })
}

fn queue_job(job: &Job, pods: &[Pod]) -> QueueJob {
    let name = job.metadata.name.clone().unwrap_or_default();
    let owned: Vec<&Pod> = pods_of(job, pods).collect();
    let active = owned
        .iter()
        .filter(|p| !plan::pod_ended(p) && p.metadata.deletion_timestamp.is_none())
        .count() as u32;
    let succeeded = owned
        .iter()
        .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"));
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                matches!(
                    c.type_.as_str(),
                    "Complete" | "Failed" | "FailureTarget" | "SuccessCriteriaMet"
                ) && c.status == "True"
            })
        });
    QueueJob {
        name,
        parallelism: job
            .spec
            .as_ref()
            .and_then(|s| s.parallelism)
            .unwrap_or(1)
            .max(0) as u32,
        active,
        closed: succeeded || finished || job.metadata.deletion_timestamp.is_some(),
    }
}

/// The Job a work-queue pool starts: `parallelism` pods of `spillway worker --exit-when-idle`
/// serving the pool's queues, with the server URL and a token from a Secret.
pub fn job_manifest(
    pool: &PoolConfig,
    section: &KubernetesPool,
    namespace: &str,
    parallelism: u32,
) -> Value {
    let mut labels: BTreeMap<String, String> = section.labels.clone();
    labels.insert(POOL_LABEL.to_string(), pool.name.clone());
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "spillway".to_string(),
    );
    let mut args = vec![
        "worker".to_string(),
        "--exit-when-idle".to_string(),
        "--pool".to_string(),
        pool.name.clone(),
        "--concurrency".to_string(),
        pool.concurrency.to_string(),
    ];
    for queue in &pool.queues {
        args.push("--queue".to_string());
        args.push(queue.clone());
    }
    let mut requests = json!({
        "cpu": plan::cpu_quantity(pool.resources.cpu),
        "memory": format!("{}Mi", pool.resources.memory_mb),
    });
    let mut limits = json!({});
    if pool.resources.gpu > 0 {
        requests["nvidia.com/gpu"] = json!(pool.resources.gpu.to_string());
        limits["nvidia.com/gpu"] = json!(pool.resources.gpu.to_string());
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": CONTAINER,
            "image": section.image,
            // The image's entrypoint is `spillway` (behind tini in the project's Dockerfile).
            "args": args,
            "env": [
                {"name": "SPILLWAY_SERVER", "value": section.server_url},
                {"name": "SPILLWAY_TOKEN", "valueFrom": {"secretKeyRef": {
                    "name": section.token_secret,
                    "key": section.token_key(),
                }}},
            ],
            "resources": {"requests": requests, "limits": limits},
        }],
    });
    if let Some(account) = &section.service_account {
        pod_spec["serviceAccountName"] = json!(account);
    }
    if !section.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(section.node_selector);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": format!("{}-", plan::object_name(&pool.name)),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": {
            "parallelism": parallelism,
            // A worker that exits non-zero is retried this often in the Job's life.
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec,
            },
        },
    })
}

impl std::fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesProvider").finish_non_exhaustive()
    }
}

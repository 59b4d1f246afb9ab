//! Job-per-task mode: a worker [`Executor`] that runs each leased task as one `batch/v1` Job.
//!
//! The worker leases, heartbeats, retries, cancels and dead-letters tasks exactly as with
//! local processes; only the command runs elsewhere. For each attempt [`KubernetesJobExecutor`]
//! creates a Job named `<prefix>-<task id>-<attempt>` (so a retried create finds its own Job
//! instead of making a second), watches it until it is `Complete` or `Failed`, reads the tail
//! of its pod's log, maps the status to an outcome ([`outcome::finished`]) and deletes the Job
//! (unless asked to keep it). Cancelling the task deletes the Job and its pod.
//!
//! The pod gets the task's environment without the worker's own folders
//! ([`spec::WORKER_LOCAL_ENV`]), and the payload as the file `SPILLWAY_PAYLOAD` names
//! ([`spec::PAYLOAD_PATH`]), projected from a pod annotation by the downward API, so no
//! ConfigMap or Secret is needed.

pub mod outcome;
pub mod spec;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use spillway_core::backoff::{Backoff, Retries};
use spillway_core::model::LOG_TAIL_BYTES;
use spillway_core::{Error, Result};
use spillway_executor::{ExecOutcome, ExecRequest, Executor, ExitKind, LogTail};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::outcome::Ending;
use self::spec::{CONTAINER_NAME, JobTemplate, TaskIdentity};

/// Default Job name prefix.
pub const DEFAULT_NAME_PREFIX: &str = "spillway";
/// Default time Kubernetes keeps a finished Job before removing it itself
/// (`ttlSecondsAfterFinished`), a safety net for Jobs whose worker died.
pub const DEFAULT_TTL_AFTER_FINISHED: Duration = Duration::from_secs(3600);
/// Default time a pod may stay pending (unschedulable, pulling its image) before the attempt
/// is given up as not run.
pub const DEFAULT_PENDING_LIMIT: Duration = Duration::from_secs(600);
/// Default interval between looks at a pending pod while the Job is watched.
pub const DEFAULT_POD_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long the API server may keep failing before the attempt is given up.
pub const DEFAULT_API_RETRY_FOR: Duration = Duration::from_secs(60);
/// Lines of the pod's log asked for; the last [`LOG_TAIL_BYTES`] of them are kept.
pub const LOG_TAIL_LINES: i64 = 2000;
/// The server ends a watch after this many seconds; the executor then resumes it from the
/// last resourceVersion seen.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// Pauses between retries of a failing API call: doubling from 100ms, at most 5s.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How long each API call made while stopping a task may take.
const STOP_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a create waits for a Job of the same name that is being deleted to go.
const DELETING_WAIT: Duration = Duration::from_secs(60);

/// How the executor shapes and watches Jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobExecutorConfig {
    /// The namespace Jobs go to; `None` uses the client's (the kubeconfig context's, or the
    /// pod's own in-cluster).
    pub namespace: Option<String>,
    /// The image of tasks that name none (`spillway submit --image`).
    pub default_image: Option<String>,
    /// The service account task pods run as; without one, no API token is mounted in them.
    pub service_account: Option<String>,
    /// Leave finished Jobs for inspection instead of deleting them (Kubernetes still removes
    /// them after `ttl_after_finished`).
    pub keep_jobs: bool,
    /// Job names are `<name_prefix>-<task id>-<attempt>`.
    pub name_prefix: String,
    /// `ttlSecondsAfterFinished` of every Job.
    pub ttl_after_finished: Duration,
    /// How long a pod may stay pending before the attempt ends as not run.
    pub pending_limit: Duration,
    /// How often a pending pod is looked at while the Job is watched.
    pub pod_check_interval: Duration,
    /// How long API errors are retried before the attempt is given up.
    pub api_retry_for: Duration,
}

impl Default for JobExecutorConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            default_image: None,
            service_account: None,
            keep_jobs: false,
            name_prefix: DEFAULT_NAME_PREFIX.to_string(),
            ttl_after_finished: DEFAULT_TTL_AFTER_FINISHED,
            pending_limit: DEFAULT_PENDING_LIMIT,
            pod_check_interval: DEFAULT_POD_CHECK_INTERVAL,
            api_retry_for: DEFAULT_API_RETRY_FOR,
        }
    }
}

impl JobExecutorConfig {
    /// Check the settings; the error names the setting and what to use instead.
    pub fn validate(&self) -> Result<()> {
        spec::validate_name_prefix(&self.name_prefix)?;
        if self.pod_check_interval.is_zero() {
            return Err(Error::invalid(
                "the pod check interval must be above zero, e.g. 5s",
            ));
        }
        Ok(())
    }
}

/// Where the Kubernetes credentials come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterAccess {
    /// A kubeconfig file; `None` infers the config the way `kubectl` does (see
    /// [`crate::client::load_config`]).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    pub context: Option<String>,
}

/// Runs each task as a Kubernetes Job; see the [module docs](self).
#[derive(Clone)]
pub struct KubernetesJobExecutor {
    client: kube::Client,
    namespace: String,
    config: JobExecutorConfig,
}

impl std::fmt::Debug for KubernetesJobExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesJobExecutor")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubernetesJobExecutor {
    /// An executor creating Jobs through `client`.
    pub fn new(client: kube::Client, config: JobExecutorConfig) -> Result<Self> {
        config.validate()?;
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok(Self {
            client,
            namespace,
            config,
        })
    }

    /// An executor for the cluster `access` reaches (see [`crate::client::load_config`]).
    pub async fn connect(access: &ClusterAccess, config: JobExecutorConfig) -> Result<Self> {
        let cluster =
            crate::client::connect(access.kubeconfig.as_deref(), access.context.as_deref()).await?;
        Self::new(cluster.client, config)
    }

    /// The namespace Jobs are created in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Create the attempt's Job, or adopt the one an earlier try of this attempt made.
    async fn create(&self, job: &Job, identity: &TaskIdentity) -> Result<()> {
        let name = job.metadata.name.clone().unwrap_or_default();
        let deadline = Instant::now() + DELETING_WAIT;
        let mut delay = RETRY_BACKOFF.retries();
        loop {
            let existing = match self.jobs().create(&PostParams::default(), job).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => self.jobs().get_opt(&name).await,
                Err(e) => return Err(api_error(&format!("could not create Job {name}"), e)),
            };
            match existing {
                // Gone between the 409 and the get: create again.
                Ok(None) => {}
                Ok(Some(found)) if !identity.owns(&found) => {
                    return Err(Error::conflict(format!(
                        "a Job named {name} exists in namespace {} that this task attempt did \
                         not create: delete it, or give this worker its own \
                         --kubernetes-job-prefix",
                        self.namespace
                    )));
                }
                Ok(Some(found)) if found.metadata.deletion_timestamp.is_none() => {
                    tracing::info!(job = %name, "adopting the Job an earlier try of this attempt created");
                    return Ok(());
                }
                // Being deleted (a stop of this same attempt): wait until it is gone.
                Ok(Some(_)) => {}
                Err(e) => return Err(api_error(&format!("could not read Job {name}"), e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::unavailable(format!(
                    "Job {name} is still being deleted after {DELETING_WAIT:?}"
                )));
            }
            tokio::time::sleep(delay.next_delay()).await;
        }
    }

    /// Delete the Jobs of earlier attempts of this task (their workers lost the lease), so a
    /// task never has two Jobs running. `name` is this attempt's Job, for logs.
    async fn delete_earlier_attempts(&self, identity: &TaskIdentity, name: &str) {
        let listed = self
            .jobs()
            .list(&ListParams::default().labels(&identity.task_selector()))
            .await;
        let jobs = match listed {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!(job = %name, error = %e, "could not list earlier attempts' Jobs");
                return;
            }
        };
        for stale in jobs {
            // Only older attempts: a worker that lost its lease must never remove the Job of
            // the attempt that replaced it.
            let attempt = stale
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(spec::LABEL_ATTEMPT))
                .and_then(|a| a.parse::<u32>().ok());
            let Some(stale_name) = stale.metadata.name else {
                continue;
            };
            if attempt.is_some_and(|a| a < identity.attempt)
                && stale.metadata.deletion_timestamp.is_none()
            {
                tracing::info!(job = %stale_name, "deleting the Job of an earlier attempt");
                self.delete(&stale_name).await;
            }
        }
    }

    /// Delete a Job and, in the background, its pod. Errors are logged: the Job's deadline
    /// and TTL remove it in the end.
    async fn delete(&self, name: &str) {
        match self.jobs().delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::error!(job = %name, error = %e, "could not delete Job"),
        }
    }

    /// The newest pod of the attempt, if any.
    async fn pod(&self, identity: &TaskIdentity) -> kube::Result<Option<Pod>> {
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&identity.attempt_selector()))
            .await?;
        Ok(pods.items.into_iter().max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        }))
    }

    /// The ending of `job` if it has finished, reading its pod for the exit code.
    async fn ending_of(
        &self,
        job: &Job,
        identity: &TaskIdentity,
        timeout: Option<Duration>,
    ) -> kube::Result<Option<Ending>> {
        if outcome::finished(job, None, timeout).is_none() {
            return Ok(None);
        }
        let pod = self.pod(identity).await?;
        Ok(outcome::finished(job, pod.as_ref(), timeout))
    }

    /// Wait until the Job finishes, or its pod is stuck past the pending limit.
    async fn wait_finished(
        &self,
        name: &str,
        identity: &TaskIdentity,
        timeout: Option<Duration>,
    ) -> Result<Waited> {
        tokio::select! {
            finished = self.watch_job(name, identity, timeout) => finished.map(Waited::Finished),
            stuck = self.watch_pending(name, identity) => Ok(Waited::Stuck(stuck)),
        }
    }

    /// Look at the attempt's pod every `pod_check_interval` until it is stuck past the
    /// pending limit; never returns while it starts and runs normally.
    async fn watch_pending(&self, name: &str, identity: &TaskIdentity) -> Ending {
        let started = Instant::now();
        let mut pod_check = tokio::time::interval(self.config.pod_check_interval);
        pod_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            pod_check.tick().await;
            match self.pod(identity).await {
                Ok(pod) => {
                    let waited = started.elapsed();
                    if let Some(ending) =
                        outcome::stuck(pod.as_ref(), waited, self.config.pending_limit)
                    {
                        return ending;
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %name, error = %e, "could not read the Job's pod");
                }
            }
        }
    }

    /// Watch the Job (resuming from the last resourceVersion seen when the server ends the
    /// watch) until it is `Complete` or `Failed`.
    async fn watch_job(
        &self,
        name: &str,
        identity: &TaskIdentity,
        timeout: Option<Duration>,
    ) -> Result<Ending> {
        let mut failing = Failing::new(self.config.api_retry_for);
        // None: read the Job afresh before watching (first time, and after a 410 Gone).
        let mut version: Option<String> = None;
        loop {
            let from = match &version {
                Some(v) => v.clone(),
                None => match self.jobs().get_opt(name).await {
                    Ok(Some(job)) => {
                        failing.ok();
                        match self.ending_of(&job, identity, timeout).await {
                            Ok(Some(ending)) => return Ok(ending),
                            Ok(None) => {}
                            Err(e) => {
                                failing.retry(name, e).await?;
                                continue;
                            }
                        }
                        job.metadata.resource_version.unwrap_or_default()
                    }
                    Ok(None) => return Ok(deleted(name)),
                    Err(e) => {
                        failing.retry(name, e).await?;
                        continue;
                    }
                },
            };
            version = Some(from.clone());
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(WATCH_TIMEOUT_SECS);
            let stream = match self.jobs().watch(&params, &from).await {
                Ok(stream) => stream,
                Err(e) => {
                    failing.retry(name, e).await?;
                    continue;
                }
            };
            let mut stream = std::pin::pin!(stream);
            // Ends when the server closes the watch: resume from `version`.
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(job) | WatchEvent::Modified(job)) => {
                        failing.ok();
                        version.clone_from(&job.metadata.resource_version);
                        match self.ending_of(&job, identity, timeout).await {
                            Ok(Some(ending)) => return Ok(ending),
                            Ok(None) => {}
                            Err(e) => {
                                // Read it all again once the API answers.
                                version = None;
                                failing.retry(name, e).await?;
                                break;
                            }
                        }
                    }
                    Ok(WatchEvent::Deleted(_)) => return Ok(deleted(name)),
                    Ok(WatchEvent::Bookmark(bookmark)) => {
                        version = Some(bookmark.metadata.resource_version);
                    }
                    Ok(WatchEvent::Error(e)) => {
                        // 410 Gone: the version is too old; anything else: start afresh too.
                        if e.code != 410 {
                            tracing::warn!(job = %name, code = e.code, message = %e.message, "watch error; reading the Job again");
                        }
                        version = None;
                        break;
                    }
                    Err(e) => {
                        failing.retry(name, e).await?;
                        break;
                    }
                }
            }
        }
    }

    /// The last [`LOG_TAIL_BYTES`] of the attempt's pod log, or a line saying why there is
    /// none.
    async fn log_tail(&self, identity: &TaskIdentity) -> String {
        let pod = match self.pod(identity).await {
            Ok(Some(pod)) => pod,
            Ok(None) => return String::new(),
            Err(e) => return format!("kubernetes: could not find the pod to read its log: {e}\n"),
        };
        let name = pod.metadata.name.unwrap_or_default();
        let params = LogParams {
            container: Some(CONTAINER_NAME.to_string()),
            tail_lines: Some(LOG_TAIL_LINES),
            // Bounds what is read when the last lines are very long; the tail of it is kept.
            limit_bytes: Some(i64::try_from(4 * LOG_TAIL_BYTES).unwrap_or(i64::MAX)),
            ..LogParams::default()
        };
        match self.pods().logs(&name, &params).await {
            Ok(text) => {
                let mut tail = LogTail::new(LOG_TAIL_BYTES);
                tail.push(text.as_bytes());
                tail.to_text()
            }
            // A pod that never started has no log; the ending's note says why.
            Err(kube::Error::Api(e)) if e.code == 400 || e.code == 404 => String::new(),
            Err(e) => format!("kubernetes: could not read the log of pod {name}: {e}\n"),
        }
    }
}

#[async_trait]
impl Executor for KubernetesJobExecutor {
    async fn run(&self, request: ExecRequest, stop: CancellationToken) -> Result<ExecOutcome> {
        let identity = TaskIdentity::from_env(&request.env)?;
        let template = JobTemplate {
            name_prefix: &self.config.name_prefix,
            default_image: self.config.default_image.as_deref(),
            service_account: self.config.service_account.as_deref(),
            ttl_after_finished: self.config.ttl_after_finished,
        };
        let job = spec::build_job(&request, &identity, &template)?;
        let name = identity.job_name(&self.config.name_prefix);
        self.create(&job, &identity).await?;
        tracing::info!(job = %name, namespace = %self.namespace, task_id = identity.task_id, attempt = identity.attempt, "Kubernetes Job created");
        self.delete_earlier_attempts(&identity, &name).await;

        let waited = tokio::select! {
            waited = self.wait_finished(&name, &identity, request.timeout) => waited,
            () = stop.cancelled() => {
                // Bounded, so a hung API server cannot hold up a cancel or a shutdown; the
                // Job's deadline and TTL remain if the delete does not get through.
                let log_tail = tokio::time::timeout(STOP_CALL_TIMEOUT, self.log_tail(&identity))
                    .await
                    .unwrap_or_default();
                if tokio::time::timeout(STOP_CALL_TIMEOUT, self.delete(&name)).await.is_err() {
                    tracing::error!(job = %name, "the API server did not answer the delete of a stopped task's Job");
                }
                tracing::info!(job = %name, "task stopped; Job deleted");
                return Ok(ExecOutcome { exit: ExitKind::Stopped, log_tail });
            }
        };
        let (ending, stuck) = match waited {
            Ok(Waited::Finished(ending)) => (ending, false),
            Ok(Waited::Stuck(ending)) => (ending, true),
            Err(e) => {
                // Nothing may run on once `run` returns; the API may be back for the delete.
                self.delete(&name).await;
                return Err(e);
            }
        };
        let mut log_tail = self.log_tail(&identity).await;
        if let Some(note) = &ending.note {
            if !log_tail.is_empty() && !log_tail.ends_with('\n') {
                log_tail.push('\n');
            }
            log_tail.push_str(note);
            log_tail.push('\n');
            let mut kept = LogTail::new(LOG_TAIL_BYTES);
            kept.push(log_tail.as_bytes());
            log_tail = kept.to_text();
        }
        // A stuck Job would go on trying to start: it is removed even when Jobs are kept.
        if !self.config.keep_jobs || stuck {
            self.delete(&name).await;
        }
        tracing::info!(job = %name, exit = ?ending.exit, "Kubernetes Job finished");
        Ok(ExecOutcome {
            exit: ending.exit,
            log_tail,
        })
    }
}

/// How waiting for a Job ended.
enum Waited {
    /// The Job is `Complete` or `Failed` (or was deleted): nothing of it runs any more.
    Finished(Ending),
    /// Its pod stayed pending past the limit; the Job would go on trying.
    Stuck(Ending),
}

/// The ending of a Job deleted before it finished (by someone else, or a newer attempt).
fn deleted(name: &str) -> Ending {
    Ending {
        exit: ExitKind::Exited(outcome::NOT_RUN_EXIT_CODE),
        note: Some(format!(
            "kubernetes: Job {name} was deleted before it finished"
        )),
    }
}

/// An error from the API server, with what was being done. The cause is part of the message
/// because the worker reports only the message as the task's error.
fn api_error(what: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(status) if status.code == 403 => Error::permission_denied(format!(
            "{what}: forbidden ({}): give the worker's service account the RBAC verbs listed in \
             docs/kubernetes.md (jobs create/get/list/watch/delete, pods get/list, pods/log get)",
            status.message
        )),
        kube::Error::Api(status) if status.code == 422 || status.code == 400 => Error::invalid(
            format!("{what}: the API server refused it: {}", status.message),
        ),
        _ => Error::unavailable(format!("{what}: {e}")),
    }
}

/// Tracks how long API calls have been failing in a row.
struct Failing {
    since: Option<Instant>,
    limit: Duration,
    retry: Retries,
}

impl Failing {
    fn new(limit: Duration) -> Self {
        Self {
            since: None,
            limit,
            retry: RETRY_BACKOFF.retries(),
        }
    }

    fn ok(&mut self) {
        self.since = None;
        self.retry.reset();
    }

    /// Wait before the next try, or give up once the API has failed for longer than the limit.
    async fn retry(&mut self, name: &str, e: kube::Error) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.limit {
            return Err(api_error(
                &format!(
                    "could not watch Job {name}: the API server failed for {:?}",
                    self.limit
                ),
                e,
            ));
        }
        tracing::warn!(job = %name, error = %e, "Kubernetes API call failed; retrying");
        tokio::time::sleep(self.retry.next_delay()).await;
        Ok(())
    }
}

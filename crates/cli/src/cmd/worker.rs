//! `spillway worker`: lease tasks from the server and run them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use spillway_executor::Executor;
use spillway_kubernetes::job_executor::{ClusterAccess, JobExecutorConfig, KubernetesJobExecutor};

use super::Ctx;
use crate::config::{ExecutorKind, WorkerKubernetesSection};

/// Options of `spillway worker`.
///
/// The worker registers with the server, long-polls for tasks of its queues, runs each task's
/// command in a scratch directory and uploads what the command wrote to $SPILLWAY_OUTPUT_DIR.
/// On SIGTERM or SIGINT it stops leasing, gives running tasks --grace to finish, hands the rest
/// back as preempted (they run again elsewhere at once, without counting as a failure) and
/// exits 0. With --executor kubernetes each task runs as a Kubernetes Job in its --image
/// instead; leases, retries and cancels work the same.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queue to serve (repeatable; default: the config's, else `default`).
    #[arg(short, long = "queue", env = "SPILLWAY_QUEUES", value_delimiter = ',')]
    queues: Vec<String>,
    /// Tasks to run at once (default: one per core).
    #[arg(short, long, env = "SPILLWAY_CONCURRENCY")]
    concurrency: Option<u32>,
    /// The pool this worker belongs to.
    #[arg(long, env = "SPILLWAY_POOL")]
    pool: Option<String>,
    /// Where the worker makes its private folder (mode 700, a random name, removed when it
    /// stops) for the tasks' scratch folders (default: the system temp dir).
    #[arg(long, env = "SPILLWAY_SCRATCH_DIR")]
    scratch_dir: Option<PathBuf>,
    /// How long running tasks may finish after SIGTERM before they are handed back.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Exit once the queues are empty and nothing runs.
    #[arg(long)]
    exit_when_idle: bool,
    /// Stop gracefully when the process that started this worker goes away (used by
    /// `spillway up`, so that its workers never outlive it).
    #[arg(long)]
    exit_with_parent: bool,
    /// How tasks run: `local` (a process on this host) or `kubernetes` (one batch/v1 Job per
    /// task, in the task's --image; see docs/kubernetes.md) [default: local].
    #[arg(long, env = "SPILLWAY_EXECUTOR", value_enum)]
    executor: Option<ExecutorKind>,
    /// Run local tasks as this user: a name, a uid or uid:gid, with no supplementary groups.
    /// Needs a worker running as root, which hands each task's scratch folder to that user
    /// [default: the worker's own user].
    #[arg(long, env = "SPILLWAY_TASK_USER", value_name = "USER")]
    task_user: Option<String>,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
}

/// Options of the Kubernetes executor (`--executor kubernetes`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Kubernetes executor (--executor kubernetes)")]
pub struct KubernetesArgs {
    /// Namespace the Jobs go to [default: the kubeconfig context's, or the worker pod's own].
    #[arg(long = "kubernetes-namespace", env = "SPILLWAY_KUBERNETES_NAMESPACE")]
    namespace: Option<String>,
    /// Image for tasks submitted without --image.
    #[arg(long = "kubernetes-image", env = "SPILLWAY_KUBERNETES_IMAGE")]
    image: Option<String>,
    /// Kubeconfig file [default: in-cluster config in a pod, else $KUBECONFIG or
    /// ~/.kube/config].
    #[arg(long, env = "SPILLWAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long = "kubernetes-context", env = "SPILLWAY_KUBERNETES_CONTEXT")]
    context: Option<String>,
    /// Service account the task pods run as [default: none, and no API token in the pod].
    #[arg(
        long = "kubernetes-service-account",
        env = "SPILLWAY_KUBERNETES_SERVICE_ACCOUNT"
    )]
    service_account: Option<String>,
    /// Keep finished Jobs for inspection (Kubernetes still removes them after
    /// --kubernetes-job-ttl).
    #[arg(long = "kubernetes-keep-jobs", env = "SPILLWAY_KUBERNETES_KEEP_JOBS")]
    keep_jobs: bool,
    /// Job names are PREFIX-TASK-ATTEMPT; give workers of different Spillway servers sharing
    /// a namespace different prefixes [default: spillway].
    #[arg(long = "kubernetes-job-prefix", env = "SPILLWAY_KUBERNETES_JOB_PREFIX")]
    job_prefix: Option<String>,
    /// How long Kubernetes keeps a finished Job (ttlSecondsAfterFinished) [default: 1h].
    #[arg(long = "kubernetes-job-ttl", env = "SPILLWAY_KUBERNETES_JOB_TTL", value_parser = humantime::parse_duration)]
    job_ttl: Option<Duration>,
    /// How long a task's pod may stay pending (unschedulable, image not pulled) before the
    /// attempt fails [default: 10m].
    #[arg(long = "kubernetes-pending-limit", env = "SPILLWAY_KUBERNETES_PENDING_LIMIT", value_parser = humantime::parse_duration)]
    pending_limit: Option<Duration>,
}

impl KubernetesArgs {
    /// The executor's settings: flags and environment first, then `[worker.kubernetes]`.
    fn config(self, file: &WorkerKubernetesSection) -> (ClusterAccess, JobExecutorConfig) {
        let defaults = JobExecutorConfig::default();
        let access = ClusterAccess {
            kubeconfig: self.kubeconfig.or_else(|| file.kubeconfig.clone()),
            context: self.context.or_else(|| file.context.clone()),
        };
        let config = JobExecutorConfig {
            namespace: self.namespace.or_else(|| file.namespace.clone()),
            default_image: self.image.or_else(|| file.image.clone()),
            service_account: self
                .service_account
                .or_else(|| file.service_account.clone()),
            keep_jobs: self.keep_jobs || file.keep_jobs.unwrap_or(false),
            name_prefix: self
                .job_prefix
                .or_else(|| file.job_prefix.clone())
                .unwrap_or(defaults.name_prefix),
            ttl_after_finished: self
                .job_ttl
                .or(file.job_ttl)
                .unwrap_or(defaults.ttl_after_finished),
            pending_limit: self
                .pending_limit
                .or(file.pending_limit)
                .unwrap_or(defaults.pending_limit),
            ..defaults
        };
        (access, config)
    }
}

/// Run a worker until it is told to stop (or, with --exit-when-idle, runs out of work).
pub async fn run(ctx: &Ctx, args: WorkerArgs) -> Result<ExitCode> {
    let token = ctx.token.clone().context(
        "a worker needs a token: pass --token or SPILLWAY_TOKEN (create one with `spillway tokens create --role worker --name NAME`)",
    )?;
    let section = &ctx.file.worker;
    let mut config = spillway_worker::WorkerConfig::new(&ctx.server_url, Some(token));
    config.queues = if args.queues.is_empty() {
        section
            .queues
            .clone()
            .unwrap_or_else(|| vec![spillway_core::model::DEFAULT_QUEUE.to_string()])
    } else {
        args.queues
    };
    if let Some(c) = args.concurrency.or(section.concurrency) {
        config.concurrency = c;
    }
    if let Some(pool) = args.pool.or_else(|| section.pool.clone()) {
        config.pool = pool;
    }
    if let Some(dir) = args.scratch_dir.or_else(|| section.scratch_dir.clone()) {
        config.scratch_dir = dir;
    }
    config.grace_period = args.grace;
    config.exit_when_idle = args.exit_when_idle;
    config.exit_with_parent = args
        .exit_with_parent
        .then(std::os::unix::process::parent_id);
    config.tenant = ctx.tenant.clone();
    if let Some(spec) = args.task_user.or_else(|| section.task_user.clone()) {
        config.task_user = Some(spillway_executor::TaskUser::resolve(&spec)?);
    }
    // Every local task runs under this binary's task reaper, so that nothing it started
    // (setsid or not) outlives it.
    let exe = std::env::current_exe()
        .context("cannot find the spillway binary's own path to start the task reaper from")?;
    config.reaper = Some(spillway_executor::ReaperCommand::new(
        exe,
        [super::task_reaper::SUBCOMMAND],
    ));

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("signal received: stop leasing and hand back unfinished tasks");
        on_signal.cancel();
    });
    let executor: Arc<dyn Executor> = match args.executor.or(section.executor).unwrap_or_default() {
        ExecutorKind::Local => Arc::new(spillway_worker::local_executor(&config)),
        ExecutorKind::Kubernetes => {
            let (access, executor_config) = args.kubernetes.config(&section.kubernetes);
            let executor = KubernetesJobExecutor::connect(&access, executor_config)
                .await
                .context("cannot start the Kubernetes executor")?;
            tracing::info!(
                namespace = executor.namespace(),
                "tasks run as Kubernetes Jobs"
            );
            Arc::new(executor)
        }
    };
    // The worker logs its own summary when it stops.
    spillway_worker::run_with(config, executor, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::FileConfig;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn kubernetes_settings_come_from_flags_then_the_config_file() {
        let file = FileConfig::parse(
            "[worker]\nexecutor = \"kubernetes\"\n[worker.kubernetes]\nnamespace = \"batch\"\n\
             image = \"busybox:1.36\"\nkeep_jobs = true\njob_ttl = \"2h\"\n",
        )
        .expect("config parses");
        assert_eq!(file.worker.executor, Some(ExecutorKind::Kubernetes));
        let cli = Cli::try_parse_from([
            "worker",
            "--kubernetes-namespace",
            "jobs",
            "--kubeconfig",
            "/etc/kube.yaml",
            "--kubernetes-pending-limit",
            "90s",
        ])
        .expect("flags parse");
        assert_eq!(cli.worker.executor, None, "the file decides");
        let (access, config) = cli.worker.kubernetes.config(&file.worker.kubernetes);
        assert_eq!(access.kubeconfig, Some(PathBuf::from("/etc/kube.yaml")));
        assert_eq!(config.namespace.as_deref(), Some("jobs"), "the flag wins");
        assert_eq!(config.default_image.as_deref(), Some("busybox:1.36"));
        assert!(config.keep_jobs);
        assert_eq!(config.ttl_after_finished, Duration::from_secs(7200));
        assert_eq!(config.pending_limit, Duration::from_secs(90));
        assert_eq!(config.name_prefix, "spillway");
    }

    #[test]
    fn an_unknown_executor_or_kubernetes_key_is_refused() {
        assert!(Cli::try_parse_from(["worker", "--executor", "docker"]).is_err());
        let err = FileConfig::parse("[worker.kubernetes]\nimage_name = \"x\"\n")
            .expect_err("typo in the section");
        assert!(format!("{err:#}").contains("image_name"), "{err:#}");
    }
}

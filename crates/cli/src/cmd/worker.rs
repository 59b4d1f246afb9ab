//! `spillway worker`: lease tasks from the server and run them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Ctx;

/// Options of `spillway worker`.
///
/// The worker registers with the server, long-polls for tasks of its queues, runs each task's
/// command in a scratch directory and uploads what the command wrote to $SPILLWAY_OUTPUT_DIR.
/// On SIGTERM or SIGINT it stops leasing, gives running tasks --grace to finish, hands the rest
/// back as preempted (they run again elsewhere at once, without counting as a failure) and
/// exits 0.
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
    /// Where task scratch directories go (default: a folder in the system temp dir).
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

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("signal received: stop leasing and hand back unfinished tasks");
        on_signal.cancel();
    });
    // The worker logs its own summary when it stops.
    spillway_worker::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

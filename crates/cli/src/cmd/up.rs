//! `spillway up`: a server with SQLite and local blobs plus local worker processes, on one
//! machine, with no flags needed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use spillway_core::backoff::Backoff;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::server::{ServerArgs, write_secret};
use crate::config::{ADMIN_TOKEN_FILE, SERVER_URL_FILE};

/// Waits between restarts of a worker that keeps failing: doubling from 500ms, at most 30s;
/// a worker that ran longer than the longest wait starts the count over.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// How long workers get to hand their leases back after SIGTERM.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(15);

/// Options of `spillway up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Local worker processes to start (default: one per core, or none when `[[pools]]` are
    /// configured and the autoscaler runs the workers; 0 for none).
    #[arg(long, env = "SPILLWAY_UP_WORKERS")]
    workers: Option<u32>,
    /// Tasks each worker runs at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Queues the local workers serve.
    #[arg(long = "queue", default_value = "default")]
    queues: Vec<String>,
    /// Print the admin token (by default only the file holding it is named; the CLI on this
    /// machine reads it from there by itself).
    #[arg(long)]
    show_token: bool,
}

/// Start everything and supervise the workers until SIGTERM or SIGINT.
pub async fn run(ctx: &Ctx, args: UpArgs) -> Result<ExitCode> {
    // Workers stop first and hand their leases back; the server stops only after them.
    let stop_server = CancellationToken::new();
    let stop = CancellationToken::new();
    let running = super::server::start(ctx, &args.server, stop_server.clone()).await?;
    let url_file = ctx.data_dir.join(SERVER_URL_FILE);
    std::fs::write(&url_file, format!("{}\n", running.url))
        .with_context(|| format!("cannot write {}", url_file.display()))?;
    let token = match running.admin_token.clone() {
        Some(token) => token,
        None => anyhow::bail!(
            "the store already has tokens but {} is missing: pass --token, or start with a fresh --data-dir",
            ctx.data_dir.join(ADMIN_TOKEN_FILE).display()
        ),
    };
    write_secret(&ctx.data_dir.join(ADMIN_TOKEN_FILE), &token)?;
    let workers = workers_wanted(&args, ctx);
    // The local workers get a worker token of tenant `default`, never the admin token: their
    // tasks run untrusted commands. A new one each start; the previous start's is revoked.
    let worker_token = if workers > 0 {
        Some(
            spillway_server::bootstrap::local_workers_token(&running.state)
                .await
                .context("cannot create the worker token for the local workers")?,
        )
    } else {
        None
    };
    let token_file = ctx.data_dir.join(ADMIN_TOKEN_FILE);
    println!("Spillway is up at {}", running.url);
    println!(
        "  dashboard:   {}/ (sign in with the admin token)",
        running.url
    );
    if args.show_token {
        println!("  admin token: {token}");
        println!("               also in {}", token_file.display());
    } else {
        println!(
            "  admin token: in {} (the CLI on this machine finds it by itself; --show-token prints it)",
            token_file.display()
        );
    }
    println!("  data:        {}", ctx.data_dir.display());
    if workers > 0 || !ctx.file.autoscaled() {
        println!(
            "  workers:     {workers} local process(es) serving {}",
            args.queues.join(", ")
        );
    }
    let server_pools = ctx.file.server.as_ref().map_or(&[][..], |s| &s.pools[..]);
    for pool in ctx.file.pools.iter().chain(server_pools) {
        println!(
            "  pool:        {} ({}, tier {}, {} to {} workers) serving {}",
            pool.name,
            pool.provider.as_str(),
            pool.tier,
            pool.min,
            pool.max,
            pool.queues.join(", ")
        );
    }
    if ctx.file.autoscaled() {
        println!("               see `spillway pools` for what the autoscaler decides");
    }
    println!();
    println!("Try, in another terminal:");
    println!("  spillway submit --count 10 --wait -- echo hello from task {{index}}");
    println!("  spillway jobs");
    println!("  curl -s {}/metrics | grep spillway_tasks", running.url);
    println!("Stop with Ctrl-C.");

    let exe = std::env::current_exe().context("cannot find the spillway executable")?;
    let mut supervisors = Vec::new();
    if let Some(worker_token) = &worker_token {
        for n in 0..workers {
            let mut command = Command::new(&exe);
            command
                .arg("worker")
                .arg("--exit-with-parent")
                .arg("--concurrency")
                .arg(args.concurrency.to_string())
                .arg("--pool")
                .arg("local")
                .args(args.queues.iter().flat_map(|q| ["--queue", q.as_str()]))
                .env("SPILLWAY_SERVER", &running.url)
                .env("SPILLWAY_TOKEN", worker_token)
                .env("SPILLWAY_LOG_FORMAT", ctx.log_format.as_str())
                // Tasks inherit the worker's environment: nothing there may lead to the data
                // directory and its admin token.
                .env_remove("SPILLWAY_DATA_DIR")
                .kill_on_drop(true);
            supervisors.push(tokio::spawn(supervise(n, command, stop.clone())));
        }
    }

    tokio::select! {
        _ = super::shutdown_signal() => {}
        _ = stop.cancelled() => {}
    }
    println!("stopping: workers hand back their tasks, then the server stops");
    stop.cancel();
    for s in supervisors {
        let _ = s.await;
    }
    stop_server.cancel();
    running.task.await.context("server task panicked")??;
    Ok(ExitCode::SUCCESS)
}

/// How many local workers to start: --workers, else none when `[[pools]]` are configured
/// (the server's autoscaler runs the workers then), else one per core.
fn workers_wanted(args: &UpArgs, ctx: &Ctx) -> u32 {
    match args.workers {
        Some(n) => n,
        None if ctx.file.autoscaled() => 0,
        None => {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        }
    }
}

/// Keep one worker process running, restarting it with backoff when it dies, and stop it
/// gracefully (SIGTERM, then SIGKILL after a grace period) when `stop` is cancelled.
async fn supervise(n: u32, mut command: Command, stop: CancellationToken) {
    let mut retries = RESTART_BACKOFF.retries();
    loop {
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                tracing::error!(worker = n, error = %err, "cannot start worker");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!(worker = n, status = ?status.ok(), "worker exited; restarting");
                if started.elapsed() > RESTART_BACKOFF.max() {
                    retries.reset();
                }
                tokio::select! {
                    _ = tokio::time::sleep(retries.next_delay()) => {}
                    _ = stop.cancelled() => return,
                }
            }
            _ = stop.cancelled() => {
                terminate(n, &mut child).await;
                return;
            }
        }
    }
}

async fn terminate(n: u32, child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(WORKER_STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(worker = n, "worker did not stop in time; killing it");
        let _ = child.kill().await;
    }
}

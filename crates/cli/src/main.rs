//! The `spillway` binary: one program for the server, workers and the command line.

mod cmd;
mod config;
#[cfg(test)]
mod docs_check;
mod output;
mod providers;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Durable batch work queues with object staging and workers, on one machine or many.
///
/// Start everything on this machine with `spillway up`, then submit work from another
/// terminal: `spillway submit --count 10 -- echo task {index}`. Commands find the server and
/// the admin token that `up` wrote on their own; on other machines pass --server and --token
/// (or SPILLWAY_SERVER and SPILLWAY_TOKEN, or a spillway.toml).
#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Examples:
  spillway up
  spillway submit --count 10 --label team=a -- echo task {index}
  spillway jobs --label team=a -o wide
  spillway wait JOB --timeout 10m"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Config file (default: ./spillway.toml when it exists).
    #[arg(long, global = true, env = "SPILLWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Server URL (default: the one `spillway up` recorded, else http://127.0.0.1:7070).
    #[arg(long, global = true, env = "SPILLWAY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token (default: the admin token `spillway up` wrote on this machine).
    #[arg(long, global = true, env = "SPILLWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory for the database, local blobs and the admin token.
    #[arg(long, global = true, env = "SPILLWAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Act in this tenant (admins of every tenant only; others act in their own).
    #[arg(long, global = true, env = "SPILLWAY_TENANT")]
    pub tenant: Option<String>,
    /// Print JSON instead of tables, for scripts (the same as `--output json`).
    #[arg(long, global = true)]
    pub json: bool,
    /// How to print answers: table (the default), wide (more columns), json, yaml, or name
    /// (ids only, one per line, for xargs).
    #[arg(short = 'o', long, global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<output::Format>,
    /// Log filter, e.g. `info`, `spillway=debug`.
    #[arg(long, global = true, env = "SPILLWAY_LOG", default_value = "info")]
    pub log: String,
    /// How log lines look: `text`, or `json` (one object per line, with span fields).
    #[arg(
        long,
        global = true,
        env = "SPILLWAY_LOG_FORMAT",
        value_enum,
        default_value_t = telemetry::LogFormat::Text
    )]
    pub log_format: telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a server with SQLite and local blobs plus local workers: everything on one machine.
    #[command(after_help = "Example:\n  spillway up --workers 4")]
    Up(cmd::up::UpArgs),
    /// Run the HTTP server (API, metrics, background services) alone.
    #[command(after_help = "Example:\n  spillway server --listen 0.0.0.0:7070")]
    Server(cmd::server::ServerArgs),
    /// Run a worker that leases tasks from the server and runs them.
    #[command(after_help = "Example:\n  spillway worker --queue default --concurrency 4")]
    Worker(cmd::worker::WorkerArgs),
    /// Submit a job of one or many tasks.
    Submit(cmd::submit::SubmitArgs),
    /// Wait for a submitted job to finish, with a progress bar; exit 0 if it succeeded.
    #[command(
        after_help = "Exit codes: 0 every task succeeded, 1 the job failed or was cancelled, \
2 --timeout passed first.

Example:
  spillway wait JOB --timeout 30m"
    )]
    Wait(cmd::submit::WaitArgs),
    /// List jobs, newest first.
    #[command(
        after_help = "Examples:\n  spillway jobs --state running --label team=a --label run=7\n  spillway jobs --label team=a -o name | xargs spillway cancel"
    )]
    Jobs(cmd::jobs::JobsArgs),
    /// Show one job with its tasks.
    #[command(after_help = "Example:\n  spillway job JOB -o yaml")]
    Job(cmd::jobs::JobArgs),
    /// List a job's tasks.
    #[command(after_help = "Example:\n  spillway tasks JOB --state dead -o wide")]
    Tasks(cmd::jobs::TasksArgs),
    /// Show one task with its attempts: worker, start and end, outcome and exit code.
    #[command(after_help = "Example:\n  spillway task 42")]
    Task(cmd::jobs::TaskArgs),
    /// Print the whole log of a task's attempt, or follow it live with --follow.
    #[command(
        after_help = "Examples:\n  spillway logs 42 --attempt 1\n  spillway logs 42 --follow"
    )]
    Logs(cmd::logs::LogsArgs),
    /// Say why a task is not running: its place in the queue and what holds it.
    #[command(after_help = "Example:\n  spillway why 42")]
    Why(cmd::why::WhyArgs),
    /// Cancel jobs: waiting tasks are cancelled, running ones are told to stop.
    #[command(
        after_help = "Examples:\n  spillway cancel JOB1 JOB2\n  spillway cancel --label team=a --state running --dry-run"
    )]
    Cancel(cmd::jobs::CancelArgs),
    /// Run a job's dead and cancelled tasks again.
    #[command(after_help = "Example:\n  spillway retry JOB")]
    Retry(cmd::jobs::JobIdArg),
    /// List a job's result files, or download them.
    #[command(
        after_help = "Examples:\n  spillway results JOB --index 3\n  spillway results JOB --download out/"
    )]
    Results(cmd::jobs::ResultsArgs),
    /// Dead letters: list them, or requeue them.
    #[command(
        after_help = "Examples:\n  spillway dead --queue default\n  spillway dead requeue --all --queue default"
    )]
    Dead(cmd::dead::DeadArgs),
    /// List the workers the server knows: pool, host, state, running tasks, last heartbeat.
    #[command(after_help = "Example:\n  spillway workers -o wide")]
    Workers(cmd::workers::WorkersArgs),
    /// List, create and change queues.
    #[command(
        after_help = "Examples:\n  spillway queues\n  spillway queues create video --max-attempts 3 --lease 2m"
    )]
    Queues(cmd::admin::QueuesArgs),
    /// List, create and revoke API tokens.
    #[command(after_help = "Example:\n  spillway tokens create --name ci --role submitter")]
    Tokens(cmd::admin::TokensArgs),
    /// List and create tenants.
    #[command(after_help = "Example:\n  spillway tenants create acme")]
    Tenants(cmd::admin::TenantsArgs),
    /// Autoscaled pools: sizes, workers and the autoscaler's decisions; change their bounds.
    #[command(
        after_help = "Examples:\n  spillway pools list --decisions\n  spillway pools set home --min 1 --max 8"
    )]
    Pools(cmd::pools::PoolsArgs),
    /// Bridges from other systems: `spillway bridge pubsub` turns Pub/Sub messages into tasks.
    #[command(after_help = "Example:\n  spillway bridge pubsub --help")]
    Bridge(cmd::bridge::BridgeArgs),
    /// Measure queue throughput and latency on SQLite and PostgreSQL.
    #[command(after_help = "Example:\n  spillway bench --help")]
    Bench(cmd::bench::BenchArgs),
    /// Simulate a workload under Spillway's autoscaling policy and a KEDA-style one, and compare.
    #[command(after_help = "Example:\n  spillway simulate --help")]
    Simulate(cmd::simulate::SimulateArgs),
    /// Print this program's version and the server's.
    #[command(after_help = "Example:\n  spillway version -o json")]
    Version,
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = cmd::completion::AFTER_HELP)]
    Completion(cmd::completion::CompletionArgs),
    /// The process a local worker puts between itself and each task (internal).
    #[command(name = "__task-reaper", hide = true)]
    TaskReaper(cmd::task_reaper::TaskReaperArgs),
}

/// Variables this process must not hand on to the processes it starts (workers, and through
/// them tasks): secrets, and where the admin token is kept. Clap has read them by then.
const NOT_INHERITED_ENV: &[&str] = &[
    "SPILLWAY_TOKEN",
    // A PostgreSQL URL may carry a password.
    "SPILLWAY_STORE",
    "SPILLWAY_DATA_DIR",
];

/// Remove [`NOT_INHERITED_ENV`] from this process's environment. Call only while the process
/// has a single thread.
#[allow(unsafe_code)] // one of the workspace's two unsafe calls; see the SAFETY note
fn forget_inherited_secrets() {
    for name in NOT_INHERITED_ENV {
        // SAFETY: `main` calls this right after parsing the command line, before the async
        // runtime or anything else starts a thread, so no other thread can read or write the
        // environment at the same time.
        unsafe { std::env::remove_var(name) };
    }
}

/// Make this process non-dumpable: no core dumps, and other processes of the same user (a
/// task's command among them) can no longer read its memory or its original environment
/// through /proc/<pid>/{mem,environ} or attach to it with ptrace.
fn refuse_inspection() {
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %err, "cannot make this process non-dumpable; processes of the same user may read its memory");
    }
}

/// Allow glibc one malloc arena per core rather than its default of eight. glibc gives a
/// thread that allocates while others do an arena of its own and keeps each arena's memory;
/// the async runtime's blocking threads come and go under load, so over hours a server kept
/// making arenas, each holding a few MB: the million-task soak saw its RSS step up with each
/// new one. An explicit `MALLOC_ARENA_MAX` wins. Call only while the process has one thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one of the workspace's two unsafe calls; see the SAFETY note
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets a parameter of the allocator, and `main` calls this before
    // any other thread exists, so no allocation runs concurrently with the change.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } != 1 {
        tracing::warn!(
            arenas,
            "cannot limit glibc's malloc arenas; memory may grow with threads"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    forget_inherited_secrets();
    // The task reaper waits for signals through its signal mask: it runs before any thread.
    let command = match cli.command {
        Command::TaskReaper(args) => return cmd::task_reaper::run(args),
        // Needs neither a config nor a server: works wherever the binary runs.
        Command::Completion(args) => return cmd::completion::run(&args),
        command => command,
    };
    // The processes that serve and run tasks export spans when an OTLP endpoint is set.
    let service = match &command {
        Command::Up(_) | Command::Server(_) => Some("spillway-server"),
        Command::Worker(_) => Some("spillway-worker"),
        _ => None,
    };
    let telemetry = match telemetry::init(&cli.global.log, cli.global.log_format, service) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if telemetry.exporting() {
        spillway_server::trace::enable();
    }
    // The processes that hold tokens and start untrusted commands (directly or through their
    // workers).
    if matches!(
        command,
        Command::Up(_) | Command::Server(_) | Command::Worker(_)
    ) {
        refuse_inspection();
        limit_malloc_arenas();
    }
    // kube and object_store may each enable a rustls crypto backend; choose one explicitly so
    // TLS clients never panic over the ambiguity. It fails only if one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let ctx = cmd::Ctx::new(&cli.global)?;
        match command {
            Command::Up(args) => cmd::up::run(&ctx, args).await,
            Command::Server(args) => cmd::server::run(&ctx, args).await,
            Command::Worker(args) => cmd::worker::run(&ctx, args).await,
            Command::Submit(args) => cmd::submit::run(&ctx, args).await,
            Command::Wait(args) => cmd::submit::wait(&ctx, args).await,
            Command::Jobs(args) => cmd::jobs::list(&ctx, args).await,
            Command::Job(args) => cmd::jobs::show(&ctx, args).await,
            Command::Tasks(args) => cmd::jobs::tasks(&ctx, args).await,
            Command::Task(args) => cmd::jobs::task(&ctx, args).await,
            Command::Logs(args) => cmd::logs::run(&ctx, args).await,
            Command::Why(args) => cmd::why::run(&ctx, args).await,
            Command::Cancel(args) => cmd::jobs::cancel(&ctx, args).await,
            Command::Retry(args) => cmd::jobs::retry(&ctx, args).await,
            Command::Results(args) => cmd::jobs::results(&ctx, args).await,
            Command::Dead(args) => cmd::dead::run(&ctx, args).await,
            Command::Workers(args) => cmd::workers::run(&ctx, args).await,
            Command::Queues(args) => cmd::admin::queues(&ctx, args).await,
            Command::Tokens(args) => cmd::admin::tokens(&ctx, args).await,
            Command::Tenants(args) => cmd::admin::tenants(&ctx, args).await,
            Command::Pools(args) => cmd::pools::run(&ctx, args).await,
            Command::Bridge(args) => cmd::bridge::run(&ctx, args).await,
            Command::Bench(args) => cmd::bench::run(&ctx, args).await,
            Command::Simulate(args) => cmd::simulate::run(&ctx, args).await,
            Command::Version => cmd::version::run(&ctx).await,
            Command::Completion(args) => Ok(cmd::completion::run(&args)),
            Command::TaskReaper(_) => Err(anyhow::anyhow!(
                "the task reaper runs before the async runtime starts"
            )),
        }
    });
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! `spillway bench`: queue throughput and latency on SQLite and PostgreSQL.
//!
//! A benchmark, not a test: it reports figures next to their targets and never fails on them.
//! For each backend and run it starts a fresh server in this process on 127.0.0.1:0 and drives
//! it over real HTTP with the same client the worker uses, so the server and the load share
//! this machine's cores:
//!
//! - batched: jobs of 1,000 tasks, workers leasing up to 500 at a time and completing in bulk;
//! - per-request: loops that each submit a one-task job, lease one task and complete it alone;
//! - latency: an idle worker waits in a long-poll; the time from just before a submit to the
//!   arrival of the lease answer;
//! - on PostgreSQL also a plain-SQL baseline (`FOR UPDATE SKIP LOCKED`) on the same database;
//! - autoscale (last, SQLite): a `local` pool scaling from zero for a 20-task job; the time
//!   to the first scale-up decision and to the first task start;
//! - overload (only with `--only overload`, SQLite): the sustainable rate of one-task submits,
//!   then ten times it offered open loop; the shares admitted and shed (with `Retry-After`),
//!   latencies against the sustainable ones, and the server's RSS; with the adaptive in-flight
//!   limit and with a fixed one, in turn. Here the server is a child
//!   process on half of the CPUs and the load runs on the other half (see [`overload`]);
//! - big-table (only with `--only big-table`, SQLite and PostgreSQL when given): a store
//!   prefilled through the `Store` trait with `--big-table-tasks` tasks of a week's history
//!   (mostly succeeded, a few dead, about 1,000 waiting), then lease p50/p99, `/metrics`,
//!   `GET /v1/queues`, the dashboard's overview and one autoscaler pass, each p50/p99, and the
//!   RSS of a `spillway server` child process on that store; the same at 10,000 tasks in the
//!   same run as the baseline, with the ratios (see [`big_table`]);
//! - many-workers (only with `--only many-workers`, SQLite): `--simulated-workers` workers in
//!   this process, each on keep-alive connections of its own, registering, heart-beating and
//!   long-polling as `spillway worker` does, against a server child process on half of the
//!   CPUs: the server's CPU and RSS with every worker idle against the bare server's, then the
//!   submit-to-lease latency and CPU while work flows (see [`many_workers`]).

mod autoscale;
mod baseline;
mod big_table;
mod harness;
mod latency;
mod many_workers;
mod overload;
mod prefill;
mod procfs;
mod raw_http;
mod report;
mod server_process;
mod throughput;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::Ctx;
use report::{Measured, Report};

/// Tasks per submitted job in the batched scenario.
pub const JOB_SIZE: u32 = 1_000;
/// Most tasks one lease call takes in the batched scenario.
pub const LEASE_BATCH: u32 = 500;
/// Longest a scenario may take before the benchmark gives up on it.
pub const SCENARIO_DEADLINE: Duration = Duration::from_secs(600);
/// Log filter while the benchmark runs: per-request info lines would swamp the output.
const QUIET_LOG_FILTER: &str = "warn";

/// Options of `spillway bench`.
///
/// Starts its own servers (SQLite in a temporary directory; PostgreSQL in a fresh schema that
/// is dropped afterwards), so it needs no running server and touches no existing data.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Tasks per run in the batched scenario and the PostgreSQL baseline.
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub tasks: u32,
    /// Tasks per run in the one-task-per-request scenario (default: a tenth of --tasks).
    #[arg(long, value_name = "N")]
    pub single_tasks: Option<u32>,
    /// Runs of every scenario; the median is reported with the spread.
    #[arg(long, default_value_t = 3, value_name = "R")]
    pub runs: u32,
    /// Concurrent workers in the batched scenario (and connections in the baseline).
    #[arg(long, default_value_t = 4, value_name = "K")]
    pub workers: u32,
    /// Concurrent submit-lease-complete loops in the per-request scenario.
    #[arg(long, default_value_t = 32, value_name = "C")]
    pub concurrency: u32,
    /// Latency samples per run.
    #[arg(long, default_value_t = 300)]
    pub samples: u32,
    /// PostgreSQL to measure, e.g. postgres://postgres@127.0.0.1:5432/test (skipped if unset).
    #[arg(
        long,
        env = "SPILLWAY_TEST_POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub postgres: Option<String>,
    /// Measure only this backend or this scenario; big-table, many-workers and overload run
    /// only when named here.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// With `--only overload`: the server's in-flight request limit to measure (default: the
    /// server's default). Run once per limit to compare them on the same machine.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// With `--only overload`: tasks in each submitted job. 1, the cheapest write, makes the
    /// HTTP layer most of a request's cost; 100 makes the store the bottleneck, as in real use.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub submit_tasks: u32,
    /// With `--only big-table`: tasks in the big store (measured against a store of 10,000).
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    pub big_table_tasks: u64,
    /// With `--only many-workers`: simulated workers held against one server.
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    pub simulated_workers: u32,
    /// With `--only many-workers`: the length of each window the server's CPU is measured
    /// over, e.g. `20s` (shorter windows only for quick trials).
    #[arg(long, default_value = "20s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub cpu_window: Duration,
}

/// What `--only` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// The queue scenarios on SQLite.
    Sqlite,
    /// The queue scenarios and the baseline on PostgreSQL.
    Postgres,
    /// A local pool scaling up from zero (on SQLite).
    Autoscale,
    /// Ten times the sustainable submit rate, offered open loop to a server process on its own
    /// CPUs, with the adaptive in-flight limit and with a fixed one (on SQLite).
    Overload,
    /// A store prefilled with --big-table-tasks tasks of a week's history against one of
    /// 10,000: leases, /metrics, /v1/queues, the overview page, an autoscaler pass and the
    /// server's RSS (on SQLite, and PostgreSQL when given).
    BigTable,
    /// --simulated-workers idle, long-polling, heart-beating workers against one server
    /// process: its CPU and RSS, then lease latency while work flows (on SQLite).
    ManyWorkers,
}

/// A store backend to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite in a temporary directory, durable.
    Sqlite,
    /// PostgreSQL at --postgres, in a fresh schema.
    Postgres,
}

impl Backend {
    /// The stable name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The sizes of one benchmark, checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Tasks per batched run.
    pub tasks: u32,
    /// Tasks per per-request run.
    pub single_tasks: u32,
    /// Runs per scenario.
    pub runs: u32,
    /// Workers in the batched scenario.
    pub workers: u32,
    /// Loops in the per-request scenario.
    pub concurrency: u32,
    /// Latency samples per run.
    pub samples: u32,
    /// The overload server's in-flight limit, when not the default.
    pub max_in_flight: Option<usize>,
    /// Tasks per submitted job in the overload scenario.
    pub submit_tasks: u32,
    /// Tasks in the big-table scenario's big store.
    pub big_table_tasks: u64,
    /// Simulated workers in the many-workers scenario.
    pub simulated_workers: u32,
    /// The many-workers scenario's CPU window, seconds.
    pub cpu_window_s: f64,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> Result<Self> {
        let plan = Plan {
            tasks: args.tasks,
            single_tasks: args.single_tasks.unwrap_or((args.tasks / 10).max(1)),
            runs: args.runs,
            workers: args.workers,
            concurrency: args.concurrency,
            samples: args.samples,
            max_in_flight: args.max_in_flight,
            submit_tasks: args.submit_tasks,
            big_table_tasks: args.big_table_tasks,
            simulated_workers: args.simulated_workers,
            cpu_window_s: args.cpu_window.as_secs_f64(),
        };
        if plan.big_table_tasks == 0 {
            bail!("--big-table-tasks is 0: give at least 1");
        }
        if args.cpu_window.is_zero() {
            bail!("--cpu-window is 0: give a length such as 20s");
        }
        if plan.max_in_flight == Some(0) {
            bail!("--max-in-flight is 0: give at least 1");
        }
        for (flag, value) in [
            ("--tasks", plan.tasks),
            ("--single-tasks", plan.single_tasks),
            ("--runs", plan.runs),
            ("--workers", plan.workers),
            ("--concurrency", plan.concurrency),
            ("--samples", plan.samples),
            ("--submit-tasks", plan.submit_tasks),
            ("--simulated-workers", plan.simulated_workers),
        ] {
            if value == 0 {
                bail!("{flag} is 0: give at least 1");
            }
        }
        Ok(plan)
    }
}

/// Run the benchmark and print its figures.
pub async fn run(ctx: &Ctx, args: BenchArgs) -> Result<ExitCode> {
    let plan = Plan::from_args(&args)?;
    let selected = Selected {
        backends: backends(&args),
        scale: args.only.is_none_or(|o| o == Only::Autoscale),
        // Saturating the machine, or long, on purpose: so only when asked for.
        overload: args.only == Some(Only::Overload),
        big_table: (args.only == Some(Only::BigTable)).then(|| args.postgres.clone()),
        many_workers: args.only == Some(Only::ManyWorkers),
        cpu_window: args.cpu_window,
    };
    // The benchmark runs on a runtime of its own whose threads log only warnings, so the
    // server's per-request info lines neither flood the terminal nor cost time.
    let report = tokio::task::spawn_blocking(move || {
        let quiet = quiet_dispatch();
        tracing::dispatcher::with_default(&quiet, || -> Result<Report> {
            let runtime = quiet_runtime(quiet.clone())?;
            runtime.block_on(measure(plan, selected))
        })
    })
    .await
    .context("the benchmark thread panicked")??;
    if ctx.out.is_structured() {
        ctx.out.value(&report)?;
    } else {
        report.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// The backends to measure: `None` for PostgreSQL means it is skipped (no URL).
fn backends(args: &BenchArgs) -> Vec<(Backend, Option<String>)> {
    let mut out = Vec::new();
    if args.only.is_none_or(|o| o == Only::Sqlite) {
        out.push((Backend::Sqlite, None));
    }
    if args.only.is_none_or(|o| o == Only::Postgres) {
        out.push((Backend::Postgres, args.postgres.clone()));
    }
    out
}

fn quiet_dispatch() -> tracing::Dispatch {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(QUIET_LOG_FILTER))
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish();
    tracing::Dispatch::new(subscriber)
}

fn quiet_runtime(quiet: tracing::Dispatch) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spillway-bench")
        .on_thread_start(move || {
            // The guard would restore the previous default when dropped; these threads belong
            // to the benchmark's runtime and end with it, so it is kept for their lifetime.
            std::mem::forget(tracing::dispatcher::set_default(&quiet));
        })
        .build()
        .context("cannot start the benchmark's async runtime")
}

/// The scenarios `--only` selected.
struct Selected {
    /// The backends of the queue scenarios: `None` for PostgreSQL means it is skipped (no URL).
    backends: Vec<(Backend, Option<String>)>,
    scale: bool,
    overload: bool,
    /// Big-table, with the PostgreSQL URL if there is one.
    big_table: Option<Option<String>>,
    many_workers: bool,
    cpu_window: Duration,
}

/// Every scenario on every backend, then autoscale, overload, big-table and many-workers when
/// selected, `plan.runs` times each.
async fn measure(plan: Plan, selected: Selected) -> Result<Report> {
    let Selected {
        backends,
        scale,
        overload,
        ..
    } = selected;
    let mut report = Report::new(plan.clone());
    for (backend, url) in backends {
        if backend == Backend::Postgres && url.is_none() {
            let note = "postgres skipped: pass --postgres URL or set SPILLWAY_TEST_POSTGRES_URL";
            eprintln!("{note}");
            report.skipped.push(note.to_string());
            continue;
        }
        let mut measured = Measured::default();
        for run in 1..=plan.runs {
            eprintln!("{} run {run}/{}", backend.as_str(), plan.runs);
            let server = harness::BenchServer::start(backend, url.as_deref())
                .await
                .with_context(|| format!("cannot start a {} server", backend.as_str()))?;
            let outcome = run_once(&plan, &server, &mut measured).await;
            let stopped = server.stop().await;
            outcome?;
            stopped?;
            if let Some(url) = &url {
                let rate = baseline::run(url, plan.tasks, plan.workers)
                    .await
                    .context("the plain-SQL baseline failed")?;
                eprintln!("  baseline      {rate:>10.0} tasks/s");
                measured.baseline.push(rate);
            }
        }
        report.add(backend, &measured);
    }
    if scale {
        let mut measured = Measured::default();
        for run in 1..=plan.runs {
            eprintln!("autoscale run {run}/{}", plan.runs);
            let sample = autoscale::run_once()
                .await
                .context("the autoscale scenario failed")?;
            eprintln!(
                "  autoscale     decision {:.1} ms, first task start {:.1} ms",
                sample.decision_ms, sample.first_start_ms
            );
            measured.scale_decision_ms.push(sample.decision_ms);
            measured.first_start_ms.push(sample.first_start_ms);
        }
        report.add_autoscale(&measured);
    }
    if overload {
        let mut runs = Vec::new();
        for run in 1..=plan.runs {
            eprintln!("overload run {run}/{}", plan.runs);
            // Both kinds of limit in each run, first one then the other in turn, so neither
            // always meets the machine in the same state.
            let order = if run % 2 == 1 {
                [false, true]
            } else {
                [true, false]
            };
            for adaptive in order {
                let sample =
                    overload_on_own_thread(plan.max_in_flight, plan.submit_tasks, adaptive)
                        .await
                        .context("the overload scenario failed")?;
                eprintln!(
                    "  overload      {} limit {}: {:.1}% admitted, {:.1}% shed ({:.1}% of them with Retry-After); admitted p50 {:.3} ms, p99 {:.3} ms",
                    if adaptive { "adaptive" } else { "fixed" },
                    sample.max_in_flight,
                    sample.admitted_pct(),
                    sample.shed_pct(),
                    sample.retry_after_pct(),
                    sample.admitted_p50_ms,
                    sample.admitted_p99_ms
                );
                runs.push(sample);
            }
        }
        report.add_overload(runs);
    }
    if let Some(url) = selected.big_table {
        let mut tables = Vec::new();
        let mut stores = vec![(Backend::Sqlite, None)];
        match url {
            Some(url) => stores.push((Backend::Postgres, Some(url))),
            None => {
                let note = "big-table on postgres skipped: pass --postgres URL or set SPILLWAY_TEST_POSTGRES_URL";
                eprintln!("{note}");
                report.skipped.push(note.to_string());
            }
        }
        for (backend, url) in stores {
            let mut sizes = vec![big_table::BASELINE_TASKS];
            if plan.big_table_tasks != big_table::BASELINE_TASKS {
                sizes.push(plan.big_table_tasks);
            }
            for tasks in sizes {
                eprintln!("big table {} {tasks} tasks", backend.as_str());
                let table = big_table::run(backend, url.as_deref(), tasks, plan.runs)
                    .await
                    .with_context(|| {
                        format!(
                            "the big-table scenario failed on {} with {tasks} tasks",
                            backend.as_str()
                        )
                    })?;
                tables.push(table);
            }
        }
        report.add_big_table(tables);
    }
    if selected.many_workers {
        let mut runs = Vec::new();
        for run in 1..=plan.runs {
            eprintln!("many workers run {run}/{}", plan.runs);
            let sample = many_workers_on_own_thread(plan.simulated_workers, selected.cpu_window)
                .await
                .context("the many-workers scenario failed")?;
            runs.push(sample);
        }
        report.add_many_workers(runs);
    }
    Ok(report)
}

/// [`many_workers::run_pinned`] on a thread of its own, since it pins its thread to the load's
/// CPUs.
async fn many_workers_on_own_thread(
    workers: u32,
    window: Duration,
) -> Result<many_workers::ManyWorkersRun> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spillway-workers".to_string())
        .spawn(move || {
            // The receiver waits for this answer; nothing else can drop it.
            let _ = done.send(many_workers::run_pinned(workers, window));
        })
        .context("cannot start the many-workers thread")?;
    result
        .await
        .context("the many-workers thread ended without an answer")?
}

/// [`overload::run_pinned`] on a thread of its own, since it pins its thread to the load's CPUs.
async fn overload_on_own_thread(
    max_in_flight: Option<usize>,
    submit_tasks: u32,
    adaptive: bool,
) -> Result<overload::OverloadRun> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spillway-overload".to_string())
        .spawn(move || {
            // The receiver waits for this answer; nothing else can drop it.
            let _ = done.send(overload::run_pinned(max_in_flight, submit_tasks, adaptive));
        })
        .context("cannot start the overload thread")?;
    result
        .await
        .context("the overload thread ended without an answer")?
}

/// The three Spillway scenarios on one fresh server.
async fn run_once(
    plan: &Plan,
    server: &harness::BenchServer,
    measured: &mut Measured,
) -> Result<()> {
    let rate = throughput::batched(server, plan.tasks, plan.workers)
        .await
        .context("the batched scenario failed")?;
    eprintln!("  batched       {rate:>10.0} tasks/s");
    measured.batched.push(rate);

    let rate = throughput::per_request(server, plan.single_tasks, plan.concurrency)
        .await
        .context("the per-request scenario failed")?;
    eprintln!("  per-request   {rate:>10.0} tasks/s");
    measured.per_request.push(rate);

    let lat = latency::measure(server, plan.samples)
        .await
        .context("the latency scenario failed")?;
    eprintln!(
        "  latency       p50 {:.3} ms, p99 {:.3} ms (the submit request alone: p50 {:.3} ms)",
        lat.p50_ms, lat.p99_ms, lat.submit_p50_ms
    );
    measured.p50_ms.push(lat.p50_ms);
    measured.p99_ms.push(lat.p99_ms);
    Ok(())
}

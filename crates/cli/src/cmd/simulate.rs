//! `spillway simulate`: run a workload against pools under Spillway's autoscaling policy and a
//! KEDA-style one, and compare time to drain, waits, worker-hours and cost.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use spillway_autoscale::config::{MEMORY_PROVIDER, PolicyConfig, PoolConfig, validate_pools};
use spillway_autoscale::sim::workload::parse_trace;
use spillway_autoscale::sim::{
    Arrivals, Durations, PolicyKind, SIM_QUEUE, SimReport, SimSetup, Workload, simulate, svg,
};

use super::Ctx;
use crate::output;

/// Options of `spillway simulate`.
///
/// Example: a day of a million tasks on up to 10,000 workers:
/// `spillway simulate --arrivals poisson:11.57:1000000 --durations lognormal:10m:1 --max 10000`
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// When tasks arrive: batch:N (all at once), poisson:RATE_PER_SECOND:N, or trace:FILE
    /// (one arrival time in seconds per line).
    #[arg(long, default_value = "batch:1000", value_name = "SPEC")]
    arrivals: String,
    /// How long tasks run: fixed:DURATION, lognormal:MEAN:SIGMA, or trace:FILE (seconds per
    /// line, used in order and repeated).
    #[arg(long, default_value = "fixed:10s", value_name = "SPEC")]
    durations: String,
    /// Share of tasks from burstable jobs (0 to 1); the rest run only on tier-0 pools.
    #[arg(long, default_value_t = 1.0, value_name = "FRACTION")]
    burstable: f64,
    /// A TOML file with [[pools]] (and optionally [autoscale]), such as spillway.toml. Without
    /// it, one tier-0 pool is made from --min, --max, --concurrency, --startup, --cost-per-hour
    /// and --idle-timeout.
    #[arg(long, value_name = "FILE")]
    pools: Option<PathBuf>,
    /// Fewest workers of the one pool.
    #[arg(long, default_value_t = 0)]
    min: u32,
    /// Most workers of the one pool.
    #[arg(long, default_value_t = 100)]
    max: u32,
    /// Tasks per worker of the one pool.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Start-up time of the one pool's workers.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    startup: Duration,
    /// Cost of one worker-hour of the one pool.
    #[arg(long, default_value_t = 1.0)]
    cost_per_hour: f64,
    /// Idle time before one of the pool's workers may be drained.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// How soon the backlog should be gone (overrides [autoscale]).
    #[arg(long, value_parser = humantime::parse_duration)]
    drain_target: Option<Duration>,
    /// How long Spillway must want fewer workers before draining (overrides [autoscale]).
    #[arg(long, value_parser = humantime::parse_duration)]
    scale_in_window: Option<Duration>,
    /// Task time Spillway assumes before any task has finished (overrides [autoscale]).
    #[arg(long, value_parser = humantime::parse_duration)]
    assumed_task_duration: Option<Duration>,
    /// Time between Spillway's policy passes (overrides [autoscale]).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// The KEDA-style policy's polling interval.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    keda_polling: Duration,
    /// The KEDA-style policy's cooldown before scaling in.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    keda_cooldown: Duration,
    /// Queue length per worker the KEDA-style policy aims at (default: the pool's concurrency).
    #[arg(long)]
    keda_target: Option<u32>,
    /// Preemptions per worker-hour, in every pool.
    #[arg(long, default_value_t = 0.0, value_name = "PER_HOUR")]
    preemption_rate: f64,
    /// Seed of the random workload and preemptions; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write a chart of waiting tasks and workers over time to this SVG file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// `[[pools]]` and `[autoscale]` of a TOML file; other sections (as in spillway.toml) are
/// left alone.
#[derive(Debug, Deserialize)]
struct PoolsFile {
    #[serde(default)]
    autoscale: PolicyConfig,
    pools: Vec<PoolConfig>,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    tasks: usize,
    elapsed_seconds: f64,
    runs: &'a [SimReport],
}

fn read_trace(what: &str, path: &str) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} trace {path}"))?;
    parse_trace(what, &text).with_context(|| format!("invalid {what} trace {path}"))
}

fn arrivals(spec: &str) -> Result<Arrivals> {
    match spec.strip_prefix("trace:") {
        Some(path) => Ok(Arrivals::Trace(read_trace("arrival", path)?)),
        None => Ok(spec.parse()?),
    }
}

fn durations(spec: &str) -> Result<Durations> {
    match spec.strip_prefix("trace:") {
        Some(path) => Ok(Durations::Trace(read_trace("duration", path)?)),
        None => Ok(spec.parse()?),
    }
}

fn load_pools(path: &Path) -> Result<(Vec<PoolConfig>, PolicyConfig)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pools file {}", path.display()))?;
    let file: PoolsFile =
        toml::from_str(&text).with_context(|| format!("invalid pools file {}", path.display()))?;
    Ok((file.pools, file.autoscale))
}

fn setup(args: &SimulateArgs) -> Result<SimSetup> {
    let (pools, mut policy) = match &args.pools {
        Some(path) => load_pools(path)?,
        None => {
            let mut pool = PoolConfig::new("home", MEMORY_PROVIDER, vec![SIM_QUEUE.to_string()]);
            pool.min = args.min;
            pool.max = args.max;
            pool.concurrency = args.concurrency;
            pool.startup = args.startup;
            pool.cost_per_hour = args.cost_per_hour;
            pool.idle_timeout = args.idle_timeout;
            (vec![pool], PolicyConfig::default())
        }
    };
    let mut setup = SimSetup::new(pools);
    validate_pools(&setup.pools)?;
    if let Some(v) = args.drain_target {
        policy.drain_target = v;
    }
    if let Some(v) = args.scale_in_window {
        policy.scale_in_window = v;
    }
    if let Some(v) = args.assumed_task_duration {
        policy.assumed_task_duration = v;
    }
    if let Some(v) = args.interval {
        policy.interval = v;
    }
    policy.validate()?;
    if args.keda_polling.is_zero() {
        anyhow::bail!("--keda-polling is 0: give a positive duration such as 30s");
    }
    if !(args.preemption_rate.is_finite() && args.preemption_rate >= 0.0) {
        anyhow::bail!(
            "--preemption-rate {} is invalid: give preemptions per worker-hour, at least 0",
            args.preemption_rate
        );
    }
    if !(0.0..=1.0).contains(&args.burstable) {
        anyhow::bail!(
            "--burstable {} is invalid: give a share from 0 to 1",
            args.burstable
        );
    }
    setup.policy = policy;
    setup.keda.polling = args.keda_polling;
    setup.keda.cooldown = args.keda_cooldown;
    setup.keda.target_per_worker = args.keda_target;
    setup.preemption_per_hour = args.preemption_rate;
    setup.seed = args.seed;
    Ok(setup)
}

/// Run `spillway simulate`.
pub async fn run(ctx: &Ctx, args: SimulateArgs) -> Result<ExitCode> {
    let setup = setup(&args)?;
    let (arrivals, durations) = (arrivals(&args.arrivals)?, durations(&args.durations)?);
    let (burstable, seed) = (args.burstable, args.seed);
    let started = Instant::now();
    // CPU-bound: the two policies run side by side on blocking threads.
    let (workload, runs) = tokio::task::spawn_blocking(move || {
        let workload = Workload::generate(&arrivals, &durations, burstable, seed);
        let runs: Vec<SimReport> = std::thread::scope(|scope| {
            let handles: Vec<_> = [PolicyKind::Spillway, PolicyKind::Keda]
                .into_iter()
                .map(|policy| {
                    let (workload, setup) = (&workload, &setup);
                    scope.spawn(move || simulate(workload, setup, policy))
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        (workload, runs)
    })
    .await
    .context("the simulation stopped unexpectedly")?;
    if runs.len() != 2 {
        anyhow::bail!(
            "a simulation thread panicked; run again with RUST_BACKTRACE=1 and report it"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(path) = &args.svg {
        let title = format!(
            "{} tasks, arrivals {}, durations {}",
            workload.len(),
            args.arrivals,
            args.durations
        );
        std::fs::write(path, svg::chart(&title, &runs))
            .with_context(|| format!("cannot write chart to {}", path.display()))?;
    }
    if ctx.out.is_structured() {
        ctx.out.value(&Output {
            tasks: workload.len(),
            elapsed_seconds: elapsed,
            runs: &runs,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&[
        "POLICY",
        "DRAINED IN",
        "WAIT P50",
        "WAIT P95",
        "WORKER-HOURS",
        "COST",
        "PEAK",
        "STARTED",
        "INTERRUPTED",
        "LOST WORK",
    ]);
    for r in &runs {
        table.add_row(vec![
            r.policy.to_string(),
            output::seconds(r.drain_seconds),
            output::seconds(r.wait_p50_seconds),
            output::seconds(r.wait_p95_seconds),
            format!("{:.1}", r.worker_hours),
            format!("{:.2}", r.cost),
            r.peak_workers.to_string(),
            r.workers_started.to_string(),
            r.interrupted_tasks.to_string(),
            format!("{:.1} h", r.lost_work_hours),
        ]);
    }
    println!("{table}");
    println!(
        "{} tasks simulated under 2 policies in {elapsed:.2}s (wall clock){}",
        workload.len(),
        args.svg
            .as_ref()
            .map(|p| format!("; chart written to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(args: &[&str]) -> SimulateArgs {
        let argv = std::iter::once("simulate").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("arguments parse").args
    }

    #[test]
    fn pools_file_may_be_a_whole_spillway_toml_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spillway.toml");
        std::fs::write(
            &path,
            r#"
data_dir = "/tmp/elsewhere"
[autoscale]
drain_target = "2m"
[[pools]]
name = "home"
provider = "local"
queues = ["gpu"]
max = 3
[[pools]]
name = "spot"
provider = "compute_engine"
compute_engine = { project = "p", region = "europe-west4", instance_group = "gpu" }
queues = ["gpu"]
tier = 1
"#,
        )
        .expect("write pools file");
        let args = parse(&[
            "--pools",
            path.to_str().expect("utf-8 path"),
            "--interval",
            "5s",
        ]);
        let setup = setup(&args).expect("valid setup");
        assert_eq!(setup.pools.len(), 2);
        assert_eq!(setup.pools[1].queues, vec![SIM_QUEUE.to_string()]);
        assert_eq!(setup.policy.drain_target, Duration::from_secs(120));
        assert_eq!(setup.policy.interval, Duration::from_secs(5));
    }

    #[test]
    fn traces_are_read_from_files_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("arrivals.txt");
        std::fs::write(&path, "0\n0.5\n2\n").expect("write trace");
        let spec = format!("trace:{}", path.display());
        assert_eq!(
            arrivals(&spec).expect("trace reads"),
            Arrivals::Trace(vec![0.0, 0.5, 2.0])
        );
        let err = arrivals("trace:/no/such/file").expect_err("missing file");
        assert!(
            format!("{err:#}").contains("cannot read arrival trace"),
            "{err:#}"
        );
        let err = setup(&parse(&["--burstable", "1.5"])).expect_err("share above 1");
        assert!(err.to_string().contains("--burstable 1.5"), "{err}");
        let err = setup(&parse(&["--min", "5", "--max", "2"])).expect_err("min above max");
        assert!(err.to_string().contains("above max"), "{err}");
    }
}

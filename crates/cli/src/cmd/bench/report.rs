//! The figures: median and spread over the runs, next to their targets, as a table or JSON.

use serde::Serialize;

use super::big_table::{BASELINE_TASKS, BigTable, BigTableRun};
use super::many_workers::ManyWorkersRun;
use super::overload::OverloadRun;
use super::{Backend, Plan};

/// Target of the batched scenario on SQLite, in tasks per second.
pub const TARGET_BATCHED_SQLITE: f64 = 100_000.0;
/// Target of the per-request scenario, in tasks per second.
pub const TARGET_PER_REQUEST: f64 = 20_000.0;
/// Target of Spillway's batched throughput on PostgreSQL relative to the plain-SQL baseline.
pub const TARGET_BASELINE_RATIO: f64 = 0.8;
/// Target median submit-to-start latency, in milliseconds.
pub const TARGET_P50_MS: f64 = 1.0;
/// Target 99th percentile submit-to-start latency, in milliseconds.
pub const TARGET_P99_MS: f64 = 5.0;
/// Target time from a submit to a local pool's first scale-up decision, in milliseconds.
pub const TARGET_SCALE_DECISION_MS: f64 = 1_000.0;

/// Target of the big table's lease p99, as a multiple of the same figure at
/// [`BASELINE_TASKS`].
pub const TARGET_BIG_TABLE_LEASE_RATIO: f64 = 2.0;
/// Target of `/metrics`, `GET /v1/queues`, the overview page and an autoscaler pass on the big
/// table, in milliseconds.
pub const TARGET_BIG_TABLE_READ_MS: f64 = 50.0;
/// Target of the server's RSS on the big table, in MiB.
pub const TARGET_BIG_TABLE_RSS_MIB: f64 = 300.0;
/// Target of the server's CPU with every simulated worker idle, percent of one core.
pub const TARGET_IDLE_WORKERS_CPU_PCT: f64 = 10.0;
/// Target of the server's RSS with every simulated worker idle beyond the bare server's, MiB.
pub const TARGET_IDLE_WORKERS_RSS_MIB: f64 = 100.0;

/// One figure of the overload runs: scenario name, unit, and how to read it from a run.
type Figure = (&'static str, &'static str, fn(&OverloadRun) -> Option<f64>);
/// One figure of a big-table run: scenario name, unit, how to read it, and its target.
type BigFigure = (
    &'static str,
    &'static str,
    fn(&BigTableRun) -> Option<f64>,
    BigTarget,
);
/// One figure of a many-workers run: scenario name, unit, how to read it, and its target
/// (at most this much).
type WorkersFigure = (
    &'static str,
    &'static str,
    fn(&ManyWorkersRun) -> Option<f64>,
    Option<f64>,
);

/// What a big-table figure is judged against.
#[derive(Debug, Clone, Copy)]
enum BigTarget {
    /// Nothing.
    None,
    /// At most this multiple of the figure at [`BASELINE_TASKS`].
    Ratio(f64),
    /// At most this much.
    AtMost(f64),
}

/// The values of every run of one backend, per scenario.
#[derive(Debug, Default)]
pub struct Measured {
    /// Batched throughput, tasks/s.
    pub batched: Vec<f64>,
    /// Per-request throughput, tasks/s.
    pub per_request: Vec<f64>,
    /// Median latency, ms.
    pub p50_ms: Vec<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Vec<f64>,
    /// Plain-SQL baseline throughput, tasks/s (PostgreSQL only).
    pub baseline: Vec<f64>,
    /// Submit to a pool's first scale-up decision, ms (autoscale only).
    pub scale_decision_ms: Vec<f64>,
    /// Submit to the first task start by a worker the pool started, ms (autoscale only).
    pub first_start_ms: Vec<f64>,
}

/// The median and range of a scenario's runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// The median run.
    pub median: f64,
    /// The lowest run.
    pub min: f64,
    /// The highest run.
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `sqlite` or `postgres`; for overload, `sqlite, fixed limit` or `sqlite, adaptive limit`;
    /// for big-table, the backend and the store's size (`sqlite, 10000000 tasks`); for
    /// many-workers, `sqlite, 2000 workers`.
    pub backend: String,
    /// `batched`, `per_request`, `latency_p50`, `latency_p99`, `baseline_sql`,
    /// `autoscale_decision` or `autoscale_first_start`.
    pub scenario: &'static str,
    /// `tasks/s` or `ms`.
    pub unit: &'static str,
    /// Median and range over the runs.
    pub value: Spread,
    /// Every run's value, in order.
    pub runs: Vec<f64>,
    /// Median over the baseline's median: Spillway batched on PostgreSQL against plain SQL,
    /// and overload figures with the adaptive limit against the fixed one.
    pub ratio_vs_baseline: Option<f64>,
    /// The target, for people.
    pub target: Option<String>,
    /// Whether the median meets the target.
    pub meets_target: Option<bool>,
}

/// Everything the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The sizes used.
    pub plan: Plan,
    /// The figures.
    pub rows: Vec<Row>,
    /// Backends not measured, and why.
    pub skipped: Vec<String>,
    /// Every overload run with its counts (`--only overload`); summarised in `rows`.
    pub overload: Vec<OverloadRun>,
    /// Every big-table store with its runs (`--only big-table`); summarised in `rows`.
    pub big_table: Vec<BigTable>,
    /// Every many-workers run (`--only many-workers`); summarised in `rows`.
    pub many_workers: Vec<ManyWorkersRun>,
}

impl Report {
    /// An empty report for `plan`.
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            rows: Vec::new(),
            skipped: Vec::new(),
            overload: Vec::new(),
            big_table: Vec::new(),
            many_workers: Vec::new(),
        }
    }

    /// Add one backend's figures with their targets.
    pub fn add(&mut self, backend: Backend, m: &Measured) {
        let name = backend.as_str();
        let baseline = Spread::of(&m.baseline);
        let mut push = |scenario, unit, runs: &[f64], target: Option<(String, bool)>, ratio| {
            if let Some(value) = Spread::of(runs) {
                self.rows.push(Row {
                    backend: name.to_string(),
                    scenario,
                    unit,
                    value,
                    runs: runs.to_vec(),
                    ratio_vs_baseline: ratio,
                    meets_target: target.as_ref().map(|t| t.1),
                    target: target.map(|t| t.0),
                });
            }
        };
        let batched = Spread::of(&m.batched);
        let ratio = batched.zip(baseline).map(|(s, b)| s.median / b.median);
        let batched_target = match (backend, ratio) {
            (Backend::Sqlite, _) => batched.map(|s| {
                (
                    format!(">= {} tasks/s", thousands(TARGET_BATCHED_SQLITE)),
                    s.median >= TARGET_BATCHED_SQLITE,
                )
            }),
            (Backend::Postgres, Some(r)) => Some((
                format!(">= {TARGET_BASELINE_RATIO}x baseline"),
                r >= TARGET_BASELINE_RATIO,
            )),
            (Backend::Postgres, None) => None,
        };
        push("batched", "tasks/s", &m.batched, batched_target, ratio);
        let per_request = Spread::of(&m.per_request).map(|s| {
            (
                format!(">= {} tasks/s", thousands(TARGET_PER_REQUEST)),
                s.median >= TARGET_PER_REQUEST,
            )
        });
        push("per_request", "tasks/s", &m.per_request, per_request, None);
        let p50 = Spread::of(&m.p50_ms)
            .map(|s| (format!("<= {TARGET_P50_MS} ms"), s.median <= TARGET_P50_MS));
        push("latency_p50", "ms", &m.p50_ms, p50, None);
        let p99 = Spread::of(&m.p99_ms)
            .map(|s| (format!("<= {TARGET_P99_MS} ms"), s.median <= TARGET_P99_MS));
        push("latency_p99", "ms", &m.p99_ms, p99, None);
        push("baseline_sql", "tasks/s", &m.baseline, None, None);
    }

    /// Add the autoscale scenario's figures (a local pool on SQLite).
    pub fn add_autoscale(&mut self, m: &Measured) {
        if let Some(value) = Spread::of(&m.scale_decision_ms) {
            self.rows.push(Row {
                backend: Backend::Sqlite.as_str().to_string(),
                scenario: "autoscale_decision",
                unit: "ms",
                value,
                runs: m.scale_decision_ms.clone(),
                ratio_vs_baseline: None,
                target: Some(format!("<= {TARGET_SCALE_DECISION_MS} ms")),
                meets_target: Some(value.median <= TARGET_SCALE_DECISION_MS),
            });
        }
        if let Some(value) = Spread::of(&m.first_start_ms) {
            self.rows.push(Row {
                backend: Backend::Sqlite.as_str().to_string(),
                scenario: "autoscale_first_start",
                unit: "ms",
                value,
                runs: m.first_start_ms.clone(),
                ratio_vs_baseline: None,
                target: None,
                meets_target: None,
            });
        }
    }

    /// Add the overload runs: one row per figure and kind of limit (no targets: the benchmark
    /// only reports; the adaptive limit's ratio is against the fixed one's), and the runs
    /// themselves for `--json`.
    pub fn add_overload(&mut self, runs: Vec<OverloadRun>) {
        let figures: [Figure; 13] = [
            ("overload_sustainable", "req/s", |r| Some(r.sustainable_rps)),
            ("overload_sustainable_p50", "ms", |r| {
                Some(r.sustainable_p50_ms)
            }),
            ("overload_sustainable_p99", "ms", |r| {
                Some(r.sustainable_p99_ms)
            }),
            ("overload_offered", "req/s", |r| Some(r.offered_rps)),
            ("overload_sent", "req/s", |r| Some(r.sent_rps)),
            ("overload_admitted", "%", |r| Some(r.admitted_pct())),
            ("overload_shed", "%", |r| Some(r.shed_pct())),
            ("overload_shed_with_retry_after", "%", |r| {
                Some(r.retry_after_pct())
            }),
            ("overload_admitted_p50", "ms", |r| Some(r.admitted_p50_ms)),
            ("overload_admitted_p99", "ms", |r| Some(r.admitted_p99_ms)),
            ("overload_rss_before", "MiB", |r| r.rss_before_mib),
            ("overload_rss_peak", "MiB", |r| r.rss_peak_mib),
            ("overload_rss_after", "MiB", |r| r.rss_after_mib),
        ];
        // The fixed limit is the baseline the adaptive one is compared with.
        let fixed: Vec<&OverloadRun> = runs.iter().filter(|r| !r.adaptive).collect();
        let adaptive: Vec<&OverloadRun> = runs.iter().filter(|r| r.adaptive).collect();
        for (scenario, unit, value_of) in figures {
            let fixed_values: Vec<f64> = fixed.iter().filter_map(|r| value_of(r)).collect();
            let fixed_spread = Spread::of(&fixed_values);
            if let Some(value) = fixed_spread {
                self.rows.push(Row {
                    backend: "sqlite, fixed limit".to_string(),
                    scenario,
                    unit,
                    value,
                    runs: fixed_values,
                    ratio_vs_baseline: None,
                    target: None,
                    meets_target: None,
                });
            }
            let values: Vec<f64> = adaptive.iter().filter_map(|r| value_of(r)).collect();
            if let Some(value) = Spread::of(&values) {
                self.rows.push(Row {
                    backend: "sqlite, adaptive limit".to_string(),
                    scenario,
                    unit,
                    value,
                    runs: values,
                    ratio_vs_baseline: fixed_spread
                        .filter(|f| f.median != 0.0)
                        .map(|f| value.median / f.median),
                    target: None,
                    meets_target: None,
                });
            }
        }
        self.overload = runs;
    }

    /// Add the big-table stores: one row per figure and store (median over the runs), each
    /// store of another size than [`BASELINE_TASKS`] against the baseline store of its backend,
    /// with the targets; and the stores themselves for `--json`.
    pub fn add_big_table(&mut self, tables: Vec<BigTable>) {
        let figures: [BigFigure; 13] = [
            (
                "big_table_lease_p50",
                "ms",
                |r| Some(r.lease.p50_ms),
                BigTarget::None,
            ),
            (
                "big_table_lease_p99",
                "ms",
                |r| Some(r.lease.p99_ms),
                BigTarget::Ratio(TARGET_BIG_TABLE_LEASE_RATIO),
            ),
            (
                "big_table_metrics_p50",
                "ms",
                |r| Some(r.metrics.p50_ms),
                BigTarget::None,
            ),
            (
                "big_table_metrics_p99",
                "ms",
                |r| Some(r.metrics.p99_ms),
                BigTarget::AtMost(TARGET_BIG_TABLE_READ_MS),
            ),
            (
                "big_table_queues_p50",
                "ms",
                |r| Some(r.queues.p50_ms),
                BigTarget::None,
            ),
            (
                "big_table_queues_p99",
                "ms",
                |r| Some(r.queues.p99_ms),
                BigTarget::AtMost(TARGET_BIG_TABLE_READ_MS),
            ),
            (
                "big_table_overview_p50",
                "ms",
                |r| Some(r.overview.p50_ms),
                BigTarget::None,
            ),
            (
                "big_table_overview_p99",
                "ms",
                |r| Some(r.overview.p99_ms),
                BigTarget::AtMost(TARGET_BIG_TABLE_READ_MS),
            ),
            (
                "big_table_autoscaler_pass_p50",
                "ms",
                |r| Some(r.autoscaler_pass.p50_ms),
                BigTarget::None,
            ),
            (
                "big_table_autoscaler_pass_p99",
                "ms",
                |r| Some(r.autoscaler_pass.p99_ms),
                BigTarget::AtMost(TARGET_BIG_TABLE_READ_MS),
            ),
            (
                "big_table_queue_demand_p50",
                "ms",
                |r| Some(r.queue_demand.p50_ms),
                BigTarget::None,
            ),
            (
                "big_table_queue_demand_p99",
                "ms",
                |r| Some(r.queue_demand.p99_ms),
                BigTarget::None,
            ),
            (
                "big_table_server_rss",
                "MiB",
                |r| r.rss_mib,
                BigTarget::AtMost(TARGET_BIG_TABLE_RSS_MIB),
            ),
        ];
        for table in &tables {
            let backend = format!(
                "{}, {} tasks",
                table.backend,
                thousands(table.shape.tasks as f64)
            );
            let baseline = tables.iter().find(|t| {
                t.backend == table.backend
                    && t.shape.tasks == BASELINE_TASKS
                    && t.shape.tasks != table.shape.tasks
            });
            self.rows.push(Row {
                backend: backend.clone(),
                scenario: "big_table_prefill",
                unit: "s",
                value: Spread {
                    median: table.prefill_s,
                    min: table.prefill_s,
                    max: table.prefill_s,
                },
                runs: vec![table.prefill_s],
                ratio_vs_baseline: None,
                target: None,
                meets_target: None,
            });
            for (scenario, unit, value_of, target) in figures {
                let values: Vec<f64> = table.runs.iter().filter_map(value_of).collect();
                let Some(value) = Spread::of(&values) else {
                    continue;
                };
                let base = baseline.and_then(|b| {
                    let values: Vec<f64> = b.runs.iter().filter_map(value_of).collect();
                    Spread::of(&values)
                });
                let ratio = base
                    .filter(|b| b.median > 0.0)
                    .map(|b| value.median / b.median);
                // Targets are for the big store; the baseline store only gives the reference.
                let judged = match (target, baseline.is_some()) {
                    (_, false) => None,
                    (BigTarget::None, true) => None,
                    (BigTarget::Ratio(at_most), true) => ratio.map(|r| {
                        (
                            format!("<= {at_most}x {} tasks", thousands(BASELINE_TASKS as f64)),
                            r <= at_most,
                        )
                    }),
                    (BigTarget::AtMost(limit), true) => Some((
                        format!("<= {} {unit}", thousands(limit)),
                        value.median <= limit,
                    )),
                };
                self.rows.push(Row {
                    backend: backend.clone(),
                    scenario,
                    unit,
                    value,
                    runs: values,
                    ratio_vs_baseline: ratio,
                    meets_target: judged.as_ref().map(|t| t.1),
                    target: judged.map(|t| t.0),
                });
            }
        }
        self.big_table = tables;
    }

    /// Add the many-workers runs: one row per figure (median over the runs) with the targets,
    /// and the runs themselves for `--json`.
    pub fn add_many_workers(&mut self, runs: Vec<ManyWorkersRun>) {
        let figures: [WorkersFigure; 12] = [
            ("many_workers_bare_cpu", "%", |r| r.bare_cpu_pct, None),
            ("many_workers_bare_rss", "MiB", |r| r.bare_rss_mib, None),
            (
                "many_workers_idle_cpu",
                "%",
                |r| r.idle_cpu_pct,
                Some(TARGET_IDLE_WORKERS_CPU_PCT),
            ),
            ("many_workers_idle_rss", "MiB", |r| r.idle_rss_mib, None),
            (
                "many_workers_idle_rss_beyond_bare",
                "MiB",
                ManyWorkersRun::rss_beyond_bare_mib,
                Some(TARGET_IDLE_WORKERS_RSS_MIB),
            ),
            (
                "many_workers_idle_requests",
                "req/s",
                |r| Some(r.idle_requests_per_s),
                None,
            ),
            ("many_workers_busy_cpu", "%", |r| r.busy_cpu_pct, None),
            (
                "many_workers_busy_rate",
                "tasks/s",
                |r| Some(r.busy_rate),
                None,
            ),
            (
                "many_workers_busy_submits_shed",
                "requests",
                |r| Some(r.busy_submits_shed as f64),
                None,
            ),
            (
                "many_workers_lease_p50",
                "ms",
                |r| Some(r.lease_p50_ms),
                None,
            ),
            (
                "many_workers_lease_p99",
                "ms",
                |r| Some(r.lease_p99_ms),
                None,
            ),
            (
                "many_workers_errors",
                "requests",
                |r| Some(r.errors as f64),
                None,
            ),
        ];
        let backend = match runs.first() {
            Some(run) => format!(
                "{}, {} workers",
                Backend::Sqlite.as_str(),
                thousands(f64::from(run.workers))
            ),
            None => return,
        };
        for (scenario, unit, value_of, target) in figures {
            let values: Vec<f64> = runs.iter().filter_map(value_of).collect();
            let Some(value) = Spread::of(&values) else {
                continue;
            };
            let judged = target.map(|limit| {
                let shown = if unit == "%" {
                    format!("<= {limit}% of a core")
                } else {
                    format!("<= {limit} {unit}")
                };
                (shown, value.median <= limit)
            });
            self.rows.push(Row {
                backend: backend.clone(),
                scenario,
                unit,
                value,
                runs: values,
                ratio_vs_baseline: None,
                meets_target: judged.as_ref().map(|t| t.1),
                target: judged.map(|t| t.0),
            });
        }
        self.many_workers = runs;
    }

    /// Print the table for people.
    pub fn print(&self) {
        let p = &self.plan;
        let queue_scenarios = self.rows.iter().any(|r| {
            matches!(
                r.scenario,
                "batched" | "per_request" | "latency_p50" | "baseline_sql"
            )
        });
        if !queue_scenarios {
            println!("spillway bench: {} runs", p.runs);
        } else {
            println!(
                "spillway bench: {} runs; batched {} tasks (jobs of {}, {} workers); per-request {} tasks ({} loops); {} latency samples",
                p.runs,
                p.tasks,
                super::JOB_SIZE,
                p.workers,
                p.single_tasks,
                p.concurrency,
                p.samples
            );
        }
        let mut table = crate::output::table(&[
            "BACKEND",
            "SCENARIO",
            "MEDIAN",
            "MIN..MAX",
            "VS BASELINE",
            "TARGET",
            "MET",
        ]);
        for row in &self.rows {
            let v = row.value;
            table.add_row(vec![
                row.backend.to_string(),
                row.scenario.to_string(),
                format!("{} {}", figure(v.median, row.unit), row.unit),
                format!("{}..{}", figure(v.min, row.unit), figure(v.max, row.unit)),
                row.ratio_vs_baseline
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.2}x")),
                row.target.clone().unwrap_or_else(|| "-".to_string()),
                match row.meets_target {
                    Some(true) => "yes".to_string(),
                    Some(false) => "no".to_string(),
                    None => "-".to_string(),
                },
            ]);
        }
        println!("{table}");
        for run in &self.overload {
            println!(
                "overload, {} limit: {} sent, {} not sent (generator at its cap), {} admitted, {} answered 503, {} answered 429, {} of those with Retry-After, {} other; {}",
                if run.adaptive { "adaptive" } else { "fixed" },
                run.sent,
                run.not_sent,
                run.admitted,
                run.shed_503,
                run.shed_429,
                run.shed_with_retry_after,
                run.other,
                cpus(run)
            );
        }
        for table in &self.big_table {
            let s = table.shape;
            println!(
                "big table, {} {} tasks: {} waiting, {} dead, the rest succeeded, in {} jobs of {} over {} queues; {} run(s)",
                table.backend,
                thousands(s.tasks as f64),
                s.waiting,
                table.dead,
                s.jobs,
                s.job_size,
                super::prefill::QUEUES.len(),
                table.runs.len()
            );
        }
        for run in &self.many_workers {
            println!(
                "many workers: {} simulated workers, windows of {:.0} s, work at {} tasks/s ({} tasks), {} failed requests; {}",
                run.workers,
                run.window_s,
                thousands(super::many_workers::BUSY_RATE),
                run.busy_tasks,
                run.errors,
                if run.server_cpus.is_empty() {
                    "server and workers shared the only CPU".to_string()
                } else {
                    format!(
                        "server on CPUs {:?}, workers on CPUs {:?}",
                        run.server_cpus, run.load_cpus
                    )
                }
            );
        }
        for note in &self.skipped {
            println!("{note}");
        }
    }
}

/// Where the overload's server and load ran.
fn cpus(run: &OverloadRun) -> String {
    if run.server_cpus.is_empty() {
        "server and load shared the only CPU".to_string()
    } else {
        format!(
            "server on CPUs {:?}, load on CPUs {:?}",
            run.server_cpus, run.load_cpus
        )
    }
}

/// A throughput as a whole number with thousands separators, a latency with three decimals,
/// a share or a size with one.
fn figure(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.3}"),
        "%" | "MiB" | "s" => format!("{value:.1}"),
        _ => thousands(value),
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle_run_and_the_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.0), "0");
    }

    #[test]
    fn postgres_batched_is_judged_against_the_baseline() {
        let mut report = Report::new(Plan {
            tasks: 1,
            single_tasks: 1,
            runs: 1,
            workers: 1,
            concurrency: 1,
            samples: 1,
            max_in_flight: None,
            submit_tasks: 1,
            big_table_tasks: 1,
            simulated_workers: 1,
            cpu_window_s: 1.0,
        });
        report.add(
            Backend::Postgres,
            &Measured {
                batched: vec![900.0],
                baseline: vec![1000.0],
                ..Default::default()
            },
        );
        let batched = &report.rows[0];
        assert_eq!(batched.scenario, "batched");
        assert_eq!(batched.ratio_vs_baseline, Some(0.9));
        assert_eq!(batched.meets_target, Some(true));
        assert_eq!(report.rows[1].scenario, "baseline_sql");
    }

    #[test]
    fn overload_rows_come_per_kind_of_limit_with_the_adaptive_against_the_fixed() {
        let mut report = Report::new(Plan {
            tasks: 1,
            single_tasks: 1,
            runs: 2,
            workers: 1,
            concurrency: 1,
            samples: 1,
            max_in_flight: None,
            submit_tasks: 1,
            big_table_tasks: 1,
            simulated_workers: 1,
            cpu_window_s: 1.0,
        });
        let run = |adaptive, admitted_p50_ms| OverloadRun {
            adaptive,
            admitted_p50_ms,
            ..OverloadRun::example()
        };
        report.add_overload(vec![
            run(false, 600.0),
            run(true, 60.0),
            run(true, 40.0),
            run(false, 400.0),
        ]);
        let p50 = |backend: &str| {
            report
                .rows
                .iter()
                .find(|r| r.scenario == "overload_admitted_p50" && r.backend == backend)
                .expect("a row")
        };
        let fixed = p50("sqlite, fixed limit");
        assert_eq!((fixed.value.median, fixed.ratio_vs_baseline), (500.0, None));
        let adaptive = p50("sqlite, adaptive limit");
        assert_eq!(adaptive.value.median, 50.0);
        assert_eq!(adaptive.ratio_vs_baseline, Some(0.1));
    }

    #[test]
    fn a_scale_decision_is_judged_against_one_second() {
        let mut report = Report::new(Plan {
            tasks: 1,
            single_tasks: 1,
            runs: 1,
            workers: 1,
            concurrency: 1,
            samples: 1,
            max_in_flight: None,
            submit_tasks: 1,
            big_table_tasks: 1,
            simulated_workers: 1,
            cpu_window_s: 1.0,
        });
        report.add_autoscale(&Measured {
            scale_decision_ms: vec![1500.0, 20.0, 30.0],
            first_start_ms: vec![400.0],
            ..Default::default()
        });
        let decision = &report.rows[0];
        assert_eq!(decision.scenario, "autoscale_decision");
        assert_eq!(decision.value.median, 30.0);
        assert_eq!(decision.meets_target, Some(true));
        assert_eq!(report.rows[1].scenario, "autoscale_first_start");
        assert_eq!(report.rows[1].meets_target, None);
    }

    fn plan() -> Plan {
        Plan {
            tasks: 1,
            single_tasks: 1,
            runs: 1,
            workers: 1,
            concurrency: 1,
            samples: 1,
            max_in_flight: None,
            submit_tasks: 1,
            big_table_tasks: 1,
            simulated_workers: 1,
            cpu_window_s: 1.0,
        }
    }

    fn big_table(tasks: u64, lease_p99_ms: f64, metrics_p99_ms: f64) -> BigTable {
        let p = |p99_ms| super::super::big_table::Percentiles {
            p50_ms: 1.0,
            p99_ms,
            samples: 1,
        };
        BigTable {
            backend: "sqlite",
            shape: super::super::prefill::Shape::of(tasks),
            dead: 1,
            prefill_s: 2.0,
            runs: vec![BigTableRun {
                lease: p(lease_p99_ms),
                metrics: p(metrics_p99_ms),
                queues: p(1.0),
                overview: p(1.0),
                queue_demand: p(1.0),
                autoscaler_pass: p(1.0),
                rss_mib: Some(40.0),
            }],
        }
    }

    #[test]
    fn the_big_store_is_judged_against_the_baseline_store_and_the_limits() {
        let mut report = Report::new(plan());
        report.add_big_table(vec![
            big_table(BASELINE_TASKS, 2.0, 10.0),
            big_table(1_000_000, 5.0, 60.0),
        ]);
        let find = |backend: &str, scenario: &str| {
            report
                .rows
                .iter()
                .find(|r| r.backend == backend && r.scenario == scenario)
                .expect("a row")
        };
        let lease = find("sqlite, 1,000,000 tasks", "big_table_lease_p99");
        assert_eq!(lease.ratio_vs_baseline, Some(2.5));
        assert_eq!(lease.meets_target, Some(false));
        let metrics = find("sqlite, 1,000,000 tasks", "big_table_metrics_p99");
        assert_eq!(metrics.target.as_deref(), Some("<= 50 ms"));
        assert_eq!(metrics.meets_target, Some(false));
        let rss = find("sqlite, 1,000,000 tasks", "big_table_server_rss");
        assert_eq!(rss.meets_target, Some(true));
        let baseline = find("sqlite, 10,000 tasks", "big_table_lease_p99");
        assert_eq!(
            (baseline.ratio_vs_baseline, baseline.meets_target),
            (None, None)
        );
        let prefill = find("sqlite, 1,000,000 tasks", "big_table_prefill");
        assert_eq!(prefill.value.median, 2.0);
        assert_eq!(report.big_table.len(), 2);
    }

    #[test]
    fn idle_workers_are_judged_by_cpu_and_by_memory_beyond_the_bare_server() {
        let mut report = Report::new(plan());
        report.add_many_workers(vec![ManyWorkersRun::example()]);
        let find = |scenario: &str| {
            report
                .rows
                .iter()
                .find(|r| r.scenario == scenario)
                .expect("a row")
        };
        let cpu = find("many_workers_idle_cpu");
        assert_eq!(cpu.backend, "sqlite, 2,000 workers");
        assert_eq!(cpu.meets_target, Some(true));
        let rss = find("many_workers_idle_rss_beyond_bare");
        assert_eq!(rss.value.median, 80.0);
        assert_eq!(rss.target.as_deref(), Some("<= 100 MiB"));
        assert_eq!(find("many_workers_busy_cpu").meets_target, None);
    }
}

//! `spillway bench`'s big-table and many-workers scenarios, run at a tiny size: every figure
//! is reported. A benchmark is not a timed test, so no figure is judged here.

use serde_json::Value;

use crate::support::spillway;

/// `spillway --json bench` with `args`; the report.
fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = spillway(dir.path())
        .args(["--json", "bench"])
        .args(args)
        .output()
        .expect("run spillway bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "spillway bench failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the report is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The report's row of `scenario` for `backend`.
fn row<'a>(report: &'a Value, backend: &str, scenario: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["backend"] == backend && r["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no {scenario} row for {backend} in {report:#}"))
}

fn median(row: &Value) -> f64 {
    let value = row["value"]["median"]
        .as_f64()
        .unwrap_or_else(|| panic!("no median in {row}"));
    assert!(value.is_finite(), "{row}");
    value
}

const BIG_TABLE_FIGURES: [&str; 13] = [
    "big_table_lease_p50",
    "big_table_lease_p99",
    "big_table_metrics_p50",
    "big_table_metrics_p99",
    "big_table_queues_p50",
    "big_table_queues_p99",
    "big_table_overview_p50",
    "big_table_overview_p99",
    "big_table_autoscaler_pass_p50",
    "big_table_autoscaler_pass_p99",
    "big_table_queue_demand_p50",
    "big_table_queue_demand_p99",
    "big_table_server_rss",
];

#[test]
fn big_table_at_a_tiny_size_reports_every_figure_against_the_baseline() {
    let mut args = vec![
        "--only",
        "big-table",
        "--big-table-tasks",
        "2000",
        "--runs",
        "1",
    ];
    let postgres = std::env::var("SPILLWAY_TEST_POSTGRES_URL").ok();
    if let Some(url) = &postgres {
        args.extend(["--postgres", url]);
    }
    let report = bench(&args);
    let mut backends = vec!["sqlite"];
    if postgres.is_some() {
        backends.push("postgres");
    }
    for backend in &backends {
        let small = format!("{backend}, 2,000 tasks");
        let baseline = format!("{backend}, 10,000 tasks");
        for store in [&small, &baseline] {
            assert!(median(row(&report, store, "big_table_prefill")) > 0.0);
            for figure in BIG_TABLE_FIGURES {
                median(row(&report, store, figure));
            }
        }
        for figure in BIG_TABLE_FIGURES {
            let row = row(&report, &small, figure);
            assert!(row["ratio_vs_baseline"].is_f64(), "no ratio in {row}");
        }
        for figure in [
            "big_table_lease_p99",
            "big_table_metrics_p99",
            "big_table_queues_p99",
            "big_table_overview_p99",
            "big_table_autoscaler_pass_p99",
            "big_table_server_rss",
        ] {
            let row = row(&report, &small, figure);
            assert!(row["target"].is_string(), "no target in {row}");
            assert!(row["meets_target"].is_boolean(), "{row}");
        }
    }
    let stores = report["big_table"].as_array().expect("big_table");
    assert_eq!(
        stores.len(),
        2 * backends.len(),
        "a store of each size on each backend"
    );
    for store in stores {
        let runs = store["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{store}");
        for figure in ["lease", "metrics", "queues", "overview", "autoscaler_pass"] {
            assert!(runs[0][figure]["samples"].as_u64() > Some(0), "{store}");
        }
    }
    let dead: Vec<u64> = stores
        .iter()
        .map(|s| s["dead"].as_u64().expect("dead"))
        .collect();
    assert!(
        dead.iter().all(|&d| d > 0),
        "every store has dead letters: {dead:?}"
    );
}

#[test]
fn many_workers_at_a_tiny_size_reports_every_figure() {
    let report = bench(&[
        "--only",
        "many-workers",
        "--simulated-workers",
        "20",
        "--cpu-window",
        "2s",
        "--runs",
        "1",
    ]);
    let backend = "sqlite, 20 workers";
    for figure in [
        "many_workers_bare_cpu",
        "many_workers_bare_rss",
        "many_workers_idle_cpu",
        "many_workers_idle_rss",
        "many_workers_idle_rss_beyond_bare",
        "many_workers_idle_requests",
        "many_workers_busy_cpu",
        "many_workers_busy_rate",
        "many_workers_lease_p50",
        "many_workers_lease_p99",
    ] {
        median(row(&report, backend, figure));
    }
    for figure in ["many_workers_idle_cpu", "many_workers_idle_rss_beyond_bare"] {
        let row = row(&report, backend, figure);
        assert!(row["meets_target"].is_boolean(), "no target in {row}");
    }
    assert_eq!(median(row(&report, backend, "many_workers_errors")), 0.0);
    let run = &report["many_workers"][0];
    assert_eq!(run["workers"], 20, "{run}");
    assert!(run["busy_tasks"].as_u64() > Some(0), "{run}");
}

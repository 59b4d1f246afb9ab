//! The quickstart as a user runs it: `spillway up`, then the primes example through the CLI.

use std::time::Duration;

use nix::sys::signal::Signal;
use spillway_client::{Client, DeadListQuery};
use spillway_core::api::ObjectInfo;

use crate::support::{ChildGuard, START_DEADLINE, free_port, repo_root, spillway, wait_ready};

/// Tasks of the example run here: enough to keep two workers busy, few enough to be quick.
const TASKS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primes_example_runs_to_the_end_under_spillway_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = spillway(dir.path());
    up.arg("--data-dir")
        .arg(&data)
        .arg("up")
        .arg("--workers")
        .arg("2")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let mut up = ChildGuard::spawn("up", up, dir.path());
    let token = wait_ready(&mut up, &url, &data).await;

    let example = repo_root().join("examples/primes");
    let all = std::fs::read_to_string(example.join("tasks.jsonl")).expect("read tasks.jsonl");
    let first: Vec<&str> = all
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(TASKS)
        .collect();
    assert_eq!(
        first.len(),
        TASKS,
        "the example has fewer than {TASKS} tasks"
    );
    let tasks_file = dir.path().join("tasks.jsonl");
    std::fs::write(&tasks_file, first.join("\n") + "\n").expect("write tasks");

    // The CLI finds the server and the token through the data directory, as on a laptop.
    let mut submit = spillway(dir.path());
    submit
        .arg("--data-dir")
        .arg(&data)
        .arg("submit")
        .arg("--from")
        .arg(&tasks_file)
        .arg("--wait")
        .arg("--")
        .arg("python3")
        .arg(example.join("task.py"));
    let mut submit = ChildGuard::spawn("submit", submit, dir.path());
    let status = submit.wait_exit(Duration::from_secs(300)).await;
    let printed = submit.output();
    assert!(
        status.success(),
        "submit --wait failed with {status}:\n{printed}"
    );
    let summary = printed
        .lines()
        .find(|l| l.starts_with("job ") && l.contains(" succeeded"))
        .unwrap_or_else(|| panic!("no summary line in:\n{printed}"));
    assert!(
        summary.contains(&format!("{TASKS} succeeded, 0 dead")),
        "{summary}"
    );
    let job = summary
        .split_whitespace()
        .nth(1)
        .expect("a job id after `job`")
        .to_string();

    let results = spillway(dir.path())
        .arg("--data-dir")
        .arg(&data)
        .arg("results")
        .arg(&job)
        .arg("--json")
        .output()
        .expect("run spillway results");
    assert!(results.status.success(), "{results:?}");
    let files: Vec<ObjectInfo> = serde_json::from_slice(&results.stdout).expect("results JSON");
    let mut paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    let mut expected: Vec<String> = (0..TASKS).map(|i| format!("{i}/result.json")).collect();
    expected.sort();
    assert_eq!(paths, expected);

    let client = Client::new(&url, Some(token)).expect("client");
    let dead = client
        .dead_list(&DeadListQuery::default())
        .await
        .expect("dead list");
    assert!(dead.items.is_empty(), "dead tasks: {:?}", dead.items);
    // One result checked for content: below 4,000,000 there are 283,146 primes.
    let stream = client
        .job_result_get(&job, 0, "result.json")
        .await
        .expect("result 0");
    let saved = dir.path().join("result-0.json");
    spillway_client::stream_to_file(stream, &saved)
        .await
        .expect("save result 0");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("read")).expect("JSON");
    assert_eq!(result["task_id"], "task-0");
    assert_eq!(result["primes"], 283_146);

    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(START_DEADLINE).await;
    assert!(
        status.success(),
        "`spillway up` exited with {status}:\n{}",
        up.output()
    );
}

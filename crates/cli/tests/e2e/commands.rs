//! The commands people know from kubectl and gcloud: `workers`, `task`, `wait`, `version`,
//! `completion`, `--output json|yaml|wide|name`, several `--label` selectors, bulk `cancel`
//! and `results --index`, each run as the real binary against a real server.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use spillway_client::Client;
use spillway_core::api::SubmitJob;
use spillway_core::model::Job;
use spillway_core::state::JobState;

use crate::support::{
    STATE_DEADLINE, Server, ServerExtras, WorkerSpec, create_queue, fast_settings, free_port,
    only_task, spillway, start_worker, submit, wait_job_final, wait_until,
};

/// Run `spillway ARGS` against `server` with its admin token.
fn run(dir: &Path, server: &Server, args: &[&str]) -> Output {
    spillway(dir)
        .arg("--server")
        .arg(&server.url)
        .arg("--token")
        .arg(&server.token)
        .args(args)
        .output()
        .expect("run spillway")
}

/// Run `spillway ARGS` and return its stdout, failing the test unless it exits 0.
fn ok(dir: &Path, server: &Server, args: &[&str]) -> String {
    let out = run(dir, server, args);
    assert!(
        out.status.success(),
        "spillway {args:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The lines of `-o name` output, sorted.
fn names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn sorted(ids: &[&Job]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|j| j.id.clone()).collect();
    ids.sort();
    ids
}

/// Submit a job of one task running `argv` with `labels` to `queue`.
async fn submit_labelled(
    client: &Client,
    queue: &str,
    argv: &[&str],
    labels: &[(&str, &str)],
) -> Job {
    let mut request = SubmitJob::command(queue, argv.iter().map(|a| a.to_string()).collect());
    request.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    client.job_submit(&request).await.expect("submit").job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_task_wait_results_and_cancel_by_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, "e2e", fast_settings(1)).await;
    create_queue(&client, "idle", fast_settings(1)).await;
    let _worker = start_worker(
        "worker",
        dir.path(),
        &server.url,
        &server.token,
        &WorkerSpec::new("e2e"),
    );
    let worker = wait_until("the worker to register", STATE_DEADLINE, || async {
        client
            .worker_list()
            .await
            .ok()
            .and_then(|l| l.workers.into_iter().next())
    })
    .await;

    // workers: a table by default, more columns with wide, ids with name, JSON read back.
    let table = ok(dir.path(), &server, &["workers"]);
    assert!(
        table.contains("LAST HEARTBEAT") && table.contains(&worker.id),
        "{table}"
    );
    assert!(!table.contains("QUEUES"), "{table}");
    let wide = ok(dir.path(), &server, &["workers", "-o", "wide"]);
    assert!(wide.contains("QUEUES") && wide.contains("e2e"), "{wide}");
    assert_eq!(
        names(&ok(dir.path(), &server, &["workers", "-o", "name"])),
        vec![worker.id.clone()]
    );
    let json: Value =
        serde_json::from_str(&ok(dir.path(), &server, &["workers", "--output", "json"]))
            .expect("workers -o json is JSON");
    assert_eq!(json["workers"][0]["pool"], "local");

    // wait on jobs submitted earlier: exit 0 when every task succeeded, 1 when not.
    let good = submit(&client, "e2e", &["true"], 2).await;
    let bad = submit_labelled(&client, "e2e", &["sh", "-c", "exit 3"], &[("kind", "bad")]).await;
    let waited = run(dir.path(), &server, &["wait", &good.id]);
    assert_eq!(waited.status.code(), Some(0), "{waited:?}");
    assert!(
        String::from_utf8_lossy(&waited.stdout).contains("succeeded"),
        "{waited:?}"
    );
    let waited = run(dir.path(), &server, &["wait", &bad.id, "--timeout", "5m"]);
    assert_eq!(waited.status.code(), Some(1), "{waited:?}");
    let finished: Value =
        serde_json::from_slice(&run(dir.path(), &server, &["wait", &bad.id, "-o", "json"]).stdout)
            .expect("wait -o json is JSON");
    assert_eq!(finished["state"], "failed");
    // A job nothing serves never finishes: --timeout gives up with exit code 2.
    let stuck = submit(&client, "idle", &["true"], 1).await;
    let waited = run(dir.path(), &server, &["wait", &stuck.id, "--timeout", "1s"]);
    assert_eq!(waited.status.code(), Some(2), "{waited:?}");

    // task: the attempts with worker, outcome and exit code.
    let task = only_task(&client, &bad.id).await;
    let shown = ok(dir.path(), &server, &["task", &task.id.to_string()]);
    for want in ["ATTEMPT", "OUTCOME", "failed", &worker.id, "dead"] {
        assert!(shown.contains(want), "no {want:?} in:\n{shown}");
    }
    let yaml: Value = serde_yaml::from_str(&ok(
        dir.path(),
        &server,
        &["task", &task.id.to_string(), "-o", "yaml"],
    ))
    .expect("task -o yaml is YAML");
    assert_eq!(yaml["attempts"][0]["exit_code"], 3);
    assert_eq!(yaml["attempts"][0]["worker_id"], worker.id.as_str());
    assert_eq!(
        ok(
            dir.path(),
            &server,
            &["task", &task.id.to_string(), "-o", "name"]
        )
        .trim(),
        task.id.to_string()
    );

    // dead --label: dead letters filtered by their job's labels.
    assert_eq!(
        names(&ok(
            dir.path(),
            &server,
            &["dead", "--label", "kind=bad", "-o", "name"]
        )),
        [task.id.to_string()]
    );
    assert!(
        ok(
            dir.path(),
            &server,
            &["dead", "-l", "kind=good", "-o", "name"]
        )
        .is_empty(),
        "a label no job has lists no dead letter"
    );

    // results --index: only that task's files.
    let made = submit(
        &client,
        "e2e",
        &[
            "sh",
            "-c",
            "echo $SPILLWAY_TASK_INDEX > $SPILLWAY_OUTPUT_DIR/out.txt",
        ],
        3,
    )
    .await;
    assert_eq!(
        wait_job_final(&client, &made.id, STATE_DEADLINE)
            .await
            .state,
        JobState::Succeeded
    );
    assert_eq!(
        names(&ok(
            dir.path(),
            &server,
            &["results", &made.id, "-o", "name"]
        )),
        ["0/out.txt", "1/out.txt", "2/out.txt"]
    );
    assert_eq!(
        names(&ok(
            dir.path(),
            &server,
            &["results", &made.id, "--index", "1", "-o", "name"]
        )),
        ["1/out.txt"]
    );
    let into = dir.path().join("one");
    ok(
        dir.path(),
        &server,
        &[
            "results",
            &made.id,
            "--index",
            "2",
            "--download",
            into.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(into.join("2/out.txt")).expect("task 2's result"),
        "2\n"
    );
    assert!(
        !into.join("1").exists(),
        "--index 2 downloaded task 1's files"
    );

    // cancel --state: a running job and a queued one with the same label; only the queued
    // one is cancelled.
    let running = submit_labelled(&client, "e2e", &["sleep", "600"], &[("team", "x")]).await;
    wait_until("the sleeper to run", STATE_DEADLINE, || async {
        client
            .job_get(&running.id)
            .await
            .ok()
            .filter(|j| j.state == JobState::Running)
    })
    .await;
    let queued = submit_labelled(&client, "e2e", &["true"], &[("team", "x")]).await;
    let out = ok(
        dir.path(),
        &server,
        &[
            "cancel", "--label", "team=x", "--state", "queued", "-o", "name",
        ],
    );
    assert_eq!(names(&out), sorted(&[&queued]));
    assert_eq!(
        client.job_get(&queued.id).await.expect("job").state,
        JobState::Cancelled
    );
    let still = client.job_get(&running.id).await.expect("job");
    assert!(
        still.state == JobState::Running && !still.cancel_requested,
        "{still:?}"
    );
    let out = ok(dir.path(), &server, &["cancel", "--label", "team=x"]);
    assert!(out.contains("cancelled 1 jobs"), "{out}");
    let stopped = wait_job_final(&client, &running.id, STATE_DEADLINE).await;
    assert_eq!(stopped.state, JobState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_labels_bulk_cancel_and_output_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    // No worker: every job stays queued.
    let a1 = submit_labelled(
        &client,
        "default",
        &["true"],
        &[("team", "a"), ("run", "1")],
    )
    .await;
    let a2 = submit_labelled(
        &client,
        "default",
        &["true"],
        &[("team", "a"), ("run", "2")],
    )
    .await;
    let b1 = submit_labelled(
        &client,
        "default",
        &["true"],
        &[("team", "b"), ("run", "1")],
    )
    .await;
    let a = submit_labelled(&client, "default", &["true"], &[("team", "a")]).await;

    // Several --label selectors are ANDed; a bare key matches any value.
    let only = |args: &[&str]| {
        let mut all = vec!["jobs", "-o", "name"];
        all.extend_from_slice(args);
        names(&ok(dir.path(), &server, &all))
    };
    assert_eq!(
        only(&["--label", "team=a", "--label", "run=1"]),
        sorted(&[&a1])
    );
    assert_eq!(only(&["-l", "team=a", "-l", "run"]), sorted(&[&a1, &a2]));
    assert_eq!(only(&["--label", "run=1"]), sorted(&[&a1, &b1]));
    assert_eq!(only(&["--label", "team=a"]), sorted(&[&a1, &a2, &a]));

    // -o json and -o yaml read back as the page; --json still works; wide adds LABELS.
    let json: Value =
        serde_json::from_str(&ok(dir.path(), &server, &["jobs", "-o", "json"])).expect("JSON");
    assert_eq!(json["items"].as_array().expect("items").len(), 4);
    let alias: Value =
        serde_json::from_str(&ok(dir.path(), &server, &["jobs", "--json"])).expect("JSON");
    assert_eq!(alias, json);
    let yaml: Value =
        serde_yaml::from_str(&ok(dir.path(), &server, &["job", &b1.id, "-o", "yaml"]))
            .expect("YAML");
    assert_eq!(yaml["job"]["labels"]["team"], "b");
    let table = ok(dir.path(), &server, &["jobs"]);
    assert!(!table.contains("LABELS"), "{table}");
    let wide = ok(dir.path(), &server, &["jobs", "-o", "wide"]);
    assert!(wide.contains("LABELS") && wide.contains("run=2"), "{wide}");

    // A bulk cancel needs a selector.
    let refused = run(dir.path(), &server, &["cancel"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--label"),
        "{refused:?}"
    );
    // A dry run lists the matching jobs and cancels nothing.
    let dry = ok(
        dir.path(),
        &server,
        &["cancel", "--label", "team=a", "--dry-run", "-o", "name"],
    );
    assert_eq!(names(&dry), sorted(&[&a1, &a2, &a]));
    for job in [&a1, &a2, &b1, &a] {
        let now = client.job_get(&job.id).await.expect("job");
        assert!(
            now.state == JobState::Queued && !now.cancel_requested,
            "a dry run changed {now:?}"
        );
    }
    // The real one cancels exactly the matching jobs.
    let out = ok(
        dir.path(),
        &server,
        &[
            "cancel", "--label", "team=a", "--label", "run", "--state", "queued",
        ],
    );
    assert!(out.contains("cancelled 2 jobs"), "{out}");
    let states: Vec<JobState> = {
        let mut states = Vec::new();
        for job in [&a1, &a2, &b1, &a] {
            states.push(client.job_get(&job.id).await.expect("job").state);
        }
        states
    };
    assert_eq!(
        states,
        [
            JobState::Cancelled,
            JobState::Cancelled,
            JobState::Queued,
            JobState::Queued
        ]
    );
    // Several ids at once.
    let out = ok(dir.path(), &server, &["cancel", &b1.id, &a.id]);
    assert!(out.contains("cancelled 2 jobs"), "{out}");
    assert_eq!(
        client.job_get(&a.id).await.expect("job").state,
        JobState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let version = env!("CARGO_PKG_VERSION");
    // With no server listening, the client's version still prints.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = spillway(dir.path())
        .args(["--server", &nowhere, "version"])
        .output()
        .expect("run spillway version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains(&format!("client: {version}")), "{text}");
    assert!(text.contains("server: unreachable ("), "{text}");

    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let text = ok(dir.path(), &server, &["version"]);
    assert!(text.contains(&format!("client: {version}")), "{text}");
    assert!(text.contains(&format!("server: {version}")), "{text}");
    // No token needed for the server's version.
    let out = spillway(dir.path())
        .args([
            "--server",
            &server.url,
            "--token",
            "wrong",
            "version",
            "-o",
            "json",
        ])
        .output()
        .expect("run spillway version");
    let json: Value = serde_json::from_slice(&out.stdout).expect("version -o json is JSON");
    assert_eq!(json["client"], version);
    assert_eq!(json["server"], version);

    for shell in ["bash", "zsh", "fish"] {
        let out = spillway(dir.path())
            .args(["completion", shell])
            .output()
            .expect("run spillway completion");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {out:?}");
        for command in ["workers", "cancel", "wait", "completion"] {
            assert!(script.contains(command), "{shell} script lacks {command}");
        }
    }
}

/// The pool `home` of `pools -o json`, once `check` accepts it.
async fn pool_when(
    dir: &Path,
    server: &Server,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(what, STATE_DEADLINE, || {
        let out = run(dir, server, &["pools", "-o", "json"]);
        let pools: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let home = pools
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "home"))
            .cloned()
            .filter(|p| check(p));
        async move { home }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_set_outlives_a_restart_until_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("spillway.toml");
    std::fs::write(
        &config,
        "[[pools]]\nname = \"home\"\nprovider = \"external\"\nqueues = [\"default\"]\nmin = 0\nmax = 4\n",
    )
    .expect("write spillway.toml");
    let extras = ServerExtras {
        config: Some(config),
        ..ServerExtras::default()
    };
    let port = free_port();
    let server = Server::start_with("server-1", &data, port, None, &extras).await;
    pool_when(dir.path(), &server, "the configured bounds", |p| {
        p["min"] == 0 && p["max"] == 4
    })
    .await;
    let out = ok(
        dir.path(),
        &server,
        &["pools", "set", "home", "--min", "1", "--max", "2"],
    );
    assert!(out.contains("min 1, max 2"), "{out}");
    drop(server);

    // The same database after a restart: the bounds set at run time hold.
    let server = Server::start_with("server-2", &data, port, None, &extras).await;
    pool_when(
        dir.path(),
        &server,
        "the kept bounds after a restart",
        |p| p["min"] == 1 && p["max"] == 2,
    )
    .await;
    let out = ok(dir.path(), &server, &["pools", "set", "home", "--reset"]);
    assert!(out.contains("min 0, max 4"), "{out}");
    drop(server);

    // Reset is kept too: the configured bounds again after another restart.
    let server = Server::start_with("server-3", &data, port, None, &extras).await;
    let home = pool_when(dir.path(), &server, "the configured bounds again", |p| {
        p["max"] == 4
    })
    .await;
    assert_eq!(home["min"], 0);
}

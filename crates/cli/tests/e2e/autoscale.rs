//! Why tasks wait, and autoscaled pools: the real server and CLI, no fixed workers.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use spillway_client::Client;
use spillway_core::api::{PoolStatus, SubmitJob, WaitReasonKind};
use spillway_core::model::{Attempt, QueueSettings, Task};
use spillway_core::state::{AttemptOutcome, TaskState};

use crate::support::{
    ChildGuard, Server, all_tasks, create_queue, free_port, spillway, submit, wait_job_final,
    wait_ready, wait_until,
};

/// Run the CLI against `server` with `args`; panics when it fails.
fn cli(dir: &Path, server: &Server, args: &[&str]) -> String {
    let out: Output = spillway(dir)
        .arg("--server")
        .arg(&server.url)
        .arg("--token")
        .arg(&server.token)
        .args(args)
        .output()
        .expect("run spillway");
    assert!(
        out.status.success(),
        "spillway {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_gives_the_lease_order_position_and_what_holds_a_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, "work", QueueSettings::default()).await;

    // Three low-priority tasks, then one urgent task that jumps ahead of them all.
    let mut low = SubmitJob::command("work", vec!["true".into()]);
    low.count = Some(3);
    let low = client.job_submit(&low).await.expect("submit").job;
    let mut urgent = SubmitJob::command("work", vec!["true".into()]);
    urgent.priority = 10;
    let urgent = client.job_submit(&urgent).await.expect("submit").job;
    let mut later = SubmitJob::command("work", vec!["true".into()]);
    later.delay = Some(Duration::from_secs(3600));
    let later = client.job_submit(&later).await.expect("submit").job;

    let low_tasks = all_tasks(&client, &low.id).await;
    let urgent_task = &all_tasks(&client, &urgent.id).await[0];
    let positions: Vec<Option<u64>> = {
        let mut p = Vec::new();
        for t in &low_tasks {
            p.push(client.task_why(t.id).await.expect("why").position);
        }
        p
    };
    assert_eq!(
        positions,
        [Some(1), Some(2), Some(3)],
        "low tasks queue behind the urgent one"
    );
    let why = client.task_why(urgent_task.id).await.expect("why");
    assert_eq!(why.position, Some(0));
    assert_eq!(why.reasons[0].kind, WaitReasonKind::WaitingForWorker);

    let delayed = &all_tasks(&client, &later.id).await[0];
    let why = client.task_why(delayed.id).await.expect("why");
    assert_eq!(why.state, TaskState::Scheduled);
    assert_eq!(
        why.position, None,
        "a task not yet due has no place in the lease order"
    );
    assert_eq!(why.reasons[0].kind, WaitReasonKind::Scheduled);
    assert_eq!(why.reasons[0].until, Some(delayed.run_at));

    // Pausing the queue comes first in the reasons, in the CLI too.
    cli(dir.path(), &server, &["queues", "pause", "work"]);
    let text = cli(dir.path(), &server, &["why", &low_tasks[0].id.to_string()]);
    assert!(text.contains("1 task ahead"), "{text}");
    assert!(text.contains("is paused"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&cli(
        dir.path(),
        &server,
        &["--json", "why", &low_tasks[0].id.to_string()],
    ))
    .expect("why --json is JSON");
    assert_eq!(json["reasons"][0]["kind"], "queue_paused", "{json}");
    let job = cli(dir.path(), &server, &["job", &low.id]);
    assert!(job.contains("waiting   queue \"work\" is paused"), "{job}");
}

/// `spillway up` started by a test, with a client holding its admin token.
struct Up {
    _process: ChildGuard,
    client: Client,
    url: String,
    token: String,
}

/// Start `spillway up` with `config` as its spillway.toml and no `--workers`.
async fn up_with(dir: &Path, config: &str) -> Up {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let file = dir.join("spillway.toml");
    std::fs::write(&file, config).expect("write spillway.toml");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = spillway(dir);
    up.arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("up")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let mut up = ChildGuard::spawn("up", up, dir);
    let token = wait_ready(&mut up, &url, &data).await;
    let client = Client::new(&url, Some(token.clone())).expect("client");
    Up {
        _process: up,
        client,
        url,
        token,
    }
}

/// Policy settings that make a test's pools react within seconds.
const FAST_POLICY: &str = r#"
[autoscale]
interval = "500ms"
drain_target = "5s"
scale_in_window = "2s"
assumed_task_duration = "1s"
"#;

/// Wait until every pool named is back at zero workers, desired and actual.
async fn wait_pools_at_zero(client: &Client, names: &[&str]) -> Vec<PoolStatus> {
    wait_until("pools back at zero", SCALE_DEADLINE, || async {
        let pools = client.pool_list().await.ok()?;
        let at_zero = names.iter().all(|name| {
            pools
                .iter()
                .any(|p| p.name == *name && p.desired == 0 && p.actual == 0 && p.busy == 0)
        });
        at_zero.then_some(pools)
    })
    .await
}

/// How long scaling up, running a batch and scaling back to zero may take on a loaded machine.
/// The last worker of a pool stays until the batch's arrivals leave the server's 60 s arrival
/// window (they count as ongoing demand until then), so going back to zero takes over a minute.
const SCALE_DEADLINE: Duration = Duration::from_secs(180);

/// Every attempt of `tasks`, with the pool of the worker that ran it.
async fn attempts_by_pool(client: &Client, tasks: &[Task]) -> Vec<(Attempt, String)> {
    let workers = client.worker_list().await.expect("workers").workers;
    let mut out = Vec::new();
    for t in tasks {
        for attempt in client.task_get(t.id).await.expect("task").attempts {
            let pool = workers
                .iter()
                .find(|w| w.id == attempt.worker_id)
                .map(|w| w.pool.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "attempt of task {} by unknown worker {}",
                        t.id, attempt.worker_id
                    )
                });
            out.push((attempt, pool));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_a_local_pool_scales_from_zero_through_a_batch_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{FAST_POLICY}
[[pools]]
name = \"home\"
provider = \"local\"
queues = [\"default\"]
min = 0
max = 4
startup = \"2s\"
idle_timeout = \"1s\"
"
    );
    let up = up_with(dir.path(), &config).await;
    let client = up.client.clone();
    let pools = client.pool_list().await.expect("pools");
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(
        (pools[0].desired, pools[0].actual),
        (0, 0),
        "up starts no worker"
    );

    let job = submit(&client, "default", &["sleep", "0.2"], 40).await;
    let job = wait_job_final(&client, &job.id, SCALE_DEADLINE).await;
    assert_eq!(job.counts.succeeded, 40, "{job:?}");
    let pools = wait_pools_at_zero(&client, &["home"]).await;

    let tasks = all_tasks(&client, &job.id).await;
    assert!(
        tasks.iter().all(|t| t.preemptions == 0),
        "scale-in preempted a task"
    );
    for (attempt, pool) in attempts_by_pool(&client, &tasks).await {
        assert_eq!(attempt.outcome, AttemptOutcome::Succeeded, "{attempt:?}");
        assert_eq!(pool, "home");
    }
    let home = &pools[0];
    assert!(
        home.decisions
            .iter()
            .any(|d| d.from == 0 && d.to > 0 && d.to <= 4),
        "no scale-up from zero recorded: {:?}",
        home.decisions
    );
    assert!(
        home.decisions.iter().any(|d| d.to < d.from),
        "no scale-in recorded: {:?}",
        home.decisions
    );

    // The CLI explains the decisions.
    let out = spillway(dir.path())
        .arg("--server")
        .arg(&up.url)
        .arg("--token")
        .arg(&up.token)
        .args(["pools", "list", "--decisions"])
        .output()
        .expect("run spillway pools");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("LAST DECISION") && text.contains("home"),
        "{text}"
    );
    assert!(text.contains("0 → "), "the scale-up is listed: {text}");
    assert!(
        text.contains("backlog"),
        "decisions give their reason: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_burstable_jobs_run_on_the_burst_tier_and_it_returns_to_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{FAST_POLICY}
[[pools]]
name = \"home\"
provider = \"local\"
queues = [\"default\"]
max = 1
startup = \"2s\"
idle_timeout = \"1s\"

[[pools]]
name = \"spot\"
provider = \"local\"
queues = [\"default\"]
max = 3
tier = 1
startup = \"2s\"
idle_timeout = \"1s\"
"
    );
    let up = up_with(dir.path(), &config).await;
    let client = up.client.clone();

    // Burstable work first, so the home worker takes some of it before the fixed job.
    let mut burst = SubmitJob::command("default", vec!["sleep".into(), "0.5".into()]);
    burst.count = Some(16);
    burst.burstable = true;
    let burst = client.job_submit(&burst).await.expect("submit").job;
    let fixed = submit(&client, "default", &["sleep", "0.2"], 6).await;
    for job in [&burst, &fixed] {
        let done = wait_job_final(&client, &job.id, SCALE_DEADLINE).await;
        assert_eq!(
            done.counts.succeeded,
            u64::from(done.task_count),
            "{done:?}"
        );
    }
    wait_pools_at_zero(&client, &["spot"]).await;

    let fixed_runs = attempts_by_pool(&client, &all_tasks(&client, &fixed.id).await).await;
    assert!(
        fixed_runs.iter().all(|(_, pool)| pool == "home"),
        "a job that is not burstable ran on the burst tier: {fixed_runs:?}"
    );
    let burst_runs = attempts_by_pool(&client, &all_tasks(&client, &burst.id).await).await;
    for pool in ["home", "spot"] {
        assert!(
            burst_runs.iter().any(|(_, p)| p == pool),
            "no burstable task ran on {pool}: {burst_runs:?}"
        );
    }
}

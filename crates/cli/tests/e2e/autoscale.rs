//! Why tasks wait, and autoscaled pools: the real server and CLI, no fixed workers.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use spillway_core::api::{SubmitJob, WaitReasonKind};
use spillway_core::model::QueueSettings;
use spillway_core::state::TaskState;

use crate::support::{Server, all_tasks, create_queue, free_port, spillway};

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

//! The command line refuses bad input with messages that say what to do, and writes nothing.

use std::path::Path;
use std::process::Output;

use spillway_client::JobListQuery;

use crate::support::{Server, free_port, spillway};

/// Run `spillway submit` against `server` with `args`.
fn submit(dir: &Path, server: &Server, args: &[&str]) -> Output {
    spillway(dir)
        .arg("--server")
        .arg(&server.url)
        .arg("--token")
        .arg(&server.token)
        .arg("submit")
        .args(args)
        .output()
        .expect("run spillway submit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_refuses_bad_and_unknown_queues_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();

    let bad = submit(dir.path(), &server, &["--queue", "Bad Name", "--", "true"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success(),
        "a bad queue name was accepted: {bad:?}"
    );
    assert!(
        stderr.contains("Bad Name"),
        "the message should name the queue: {stderr}"
    );
    assert!(stderr.contains("invalid queue name"), "{stderr}");

    let unknown = submit(dir.path(), &server, &["--queue", "nosuch", "--", "true"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success(),
        "an unknown queue was accepted: {unknown:?}"
    );
    assert!(
        stderr.contains("nosuch"),
        "the message should name the queue: {stderr}"
    );
    assert!(
        stderr.contains("spillway queues create"),
        "the message should say how to create the queue: {stderr}"
    );

    let jobs = client
        .job_list(&JobListQuery::default())
        .await
        .expect("jobs");
    assert!(
        jobs.items.is_empty(),
        "a refused submit left jobs: {:?}",
        jobs.items
    );
    let queues = client.queue_list().await.expect("queues");
    let names: Vec<_> = queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["default"], "a refused submit created a queue");
}

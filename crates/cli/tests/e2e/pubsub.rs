//! `spillway bridge pubsub` against the real Pub/Sub emulator and a real `spillway server`:
//! 1,000 messages become 1,000 jobs, one per message id, across a bridge killed with SIGKILL
//! midway and started again. Skipped with a printed reason when the emulator is missing,
//! unless CI=true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use spillway_client::{Client, JobListQuery};
use spillway_core::model::{Job, QueueSettings};
use spillway_pubsub::emulator::{Emulator, find_or_skip};
use spillway_pubsub::mapping::{LABEL_MESSAGE_ID, LABEL_SUBSCRIPTION};
use spillway_pubsub::{OutgoingMessage, PubSub};

use crate::support::{
    ChildGuard, STATE_DEADLINE, Server, create_queue, free_port, spillway, wait_until,
};

const MESSAGES: usize = 1000;
const TOPIC: &str = "projects/spillway-test/topics/work";
const SUBSCRIPTION: &str = "projects/spillway-test/subscriptions/work";
const QUEUE: &str = "from-pubsub";
/// Short, so messages the killed bridge held come back within the test.
const ACK_DEADLINE_SECS: u32 = 10;

async fn publish_all(pubsub: &PubSub) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let messages: Vec<OutgoingMessage> = chunk
            .iter()
            .map(|i| OutgoingMessage {
                data: format!("{{\"i\":{i}}}").into_bytes(),
                attributes: BTreeMap::from([("index".to_string(), i.to_string())]),
            })
            .collect();
        ids.extend(pubsub.publish(TOPIC, &messages).await.expect("publish"));
    }
    assert_eq!(
        ids.len(),
        MESSAGES,
        "the emulator gives distinct message ids"
    );
    ids
}

/// Every job the bridge made for SUBSCRIPTION, page by page.
async fn bridged_jobs(client: &Client) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .job_list(&JobListQuery {
                queue: Some(QUEUE.into()),
                labels: [(LABEL_SUBSCRIPTION.to_string(), SUBSCRIPTION.to_string())].into(),
                limit: Some(1000),
                cursor,
                ..Default::default()
            })
            .await
            .expect("list jobs");
        jobs.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return jobs,
        }
    }
}

fn start_bridge(name: &str, dir: &Path, server: &Server, emulator: &Emulator) -> ChildGuard {
    let mut command = spillway(dir);
    command
        .env("SPILLWAY_SERVER", &server.url)
        .env("SPILLWAY_TOKEN", &server.token)
        .env("SPILLWAY_LOG", "info,spillway_pubsub=debug")
        .env("PUBSUB_EMULATOR_HOST", emulator.host())
        .args([
            "bridge",
            "pubsub",
            "--subscription",
            SUBSCRIPTION,
            "--queue",
            QUEUE,
        ])
        .args(["--max-messages", "100", "--concurrency", "4"])
        .args(["--ack-extension", &ACK_DEADLINE_SECS.to_string()])
        .args(["--", "cat"]);
    ChildGuard::spawn(name, command, dir)
}

/// Jobs the bridge stored since it last finished a batch (whose messages are not yet
/// acknowledged), from its debug log.
fn stored_since_last_batch(bridge: &ChildGuard) -> usize {
    let output = bridge.output();
    let tail = output.rsplit("batch done").next().unwrap_or_default();
    tail.matches("stored message_id").count()
}

/// The last `duplicates=N` the bridge logged.
fn logged_duplicates(bridge: &ChildGuard) -> u64 {
    let output = bridge.output();
    output
        .rsplit("duplicates=")
        .next()
        .filter(|_| output.contains("duplicates="))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_become_a_thousand_jobs_across_a_killed_bridge() {
    let Some(script) = find_or_skip("pubsub bridge restart") else {
        return;
    };
    let emulator = Emulator::start(&script).await.expect("start the emulator");
    let pubsub = emulator.client().expect("pubsub client");
    pubsub.topic_create(TOPIC).await.expect("create topic");
    pubsub
        .subscription_create(SUBSCRIPTION, TOPIC, ACK_DEADLINE_SECS)
        .await
        .expect("create subscription");
    let published = publish_all(&pubsub).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start("server", &dir.path().join("server"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, QUEUE, QueueSettings::default()).await;

    // First bridge: killed without warning in the middle of a batch, once a good part of the
    // messages are jobs, so some jobs are stored but their messages not yet acknowledged
    // (acknowledgements go out at the end of each batch).
    let mut first = start_bridge("bridge-1", dir.path(), &server, &emulator);
    let at_kill = wait_until(
        "the first bridge to be mid-batch after 300 jobs",
        STATE_DEADLINE,
        || {
            first.assert_running();
            let mid_batch = stored_since_last_batch(&first);
            let total = first.output().matches("stored message_id").count();
            // Early in a batch of up to 100, so its acknowledgement is surely not sent yet.
            async move { (total >= 300 && (1..=50).contains(&mid_batch)).then_some(total) }
        },
    )
    .await;
    first.kill9();
    let after_kill = bridged_jobs(&client).await.len();
    assert!(
        after_kill < MESSAGES,
        "the first bridge finished ({after_kill} jobs) before it was killed; the restart was not tested"
    );

    // Second bridge: stores the rest, and finds the jobs of messages the first one stored
    // but never acknowledged when Pub/Sub delivers them again.
    let mut second = start_bridge("bridge-2", dir.path(), &server, &emulator);
    wait_until(&format!("{MESSAGES} jobs"), STATE_DEADLINE, || {
        second.assert_running();
        let client = client.clone();
        async move { (bridged_jobs(&client).await.len() >= MESSAGES).then_some(()) }
    })
    .await;
    wait_until(
        "the second bridge to meet a redelivered message whose job exists",
        STATE_DEADLINE,
        || {
            second.assert_running();
            let n = logged_duplicates(&second);
            async move { (n > 0).then_some(n) }
        },
    )
    .await;

    let jobs = bridged_jobs(&client).await;
    let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        *per_message
            .entry(job.labels[LABEL_MESSAGE_ID].clone())
            .or_default() += 1;
        assert_eq!(job.task_count, 1);
    }
    let doubled: Vec<_> = per_message.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "messages with more than one job: {doubled:?}"
    );
    let seen: BTreeSet<String> = per_message.keys().cloned().collect();
    let lost: Vec<_> = published.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{} messages lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert_eq!(jobs.len(), MESSAGES, "killed after {at_kill} jobs");

    // A graceful stop finishes the batch in progress and exits 0.
    second.signal(nix::sys::signal::Signal::SIGTERM);
    let status = second.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "the bridge exited with {status}:\n{}",
        second.output()
    );
}

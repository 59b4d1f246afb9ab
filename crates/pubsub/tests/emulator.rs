//! The bridge against the real Pub/Sub emulator and a real Spillway server (in-process, real
//! HTTP on 127.0.0.1): outcomes on a topic, and messages that cannot become jobs.
//!
//! Skipped with a printed reason when the emulator is missing, unless CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use spillway_client::{Client, JobListQuery};
use spillway_core::api::{CreateQueue, SubmitJob};
use spillway_core::model::{Job, QueueSettings};
use spillway_pubsub::emulator::{Emulator, find_or_skip};
use spillway_pubsub::mapping::LABEL_SUBSCRIPTION;
use spillway_pubsub::{
    BridgeConfig, BridgeStats, DataFormat, JobTemplate, OutcomeConfig, OutcomePublisher,
    OutgoingMessage, PubSub, ReceivedMessage, run_bridge,
};
use spillway_testkit::{TestServer, TestServerExt, wait_until};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);
const QUEUE: &str = "from-pubsub";

/// A Spillway server on 127.0.0.1 with a queue, and an admin client; the server stops when
/// the returned [`TestServer`] drops.
async fn spillway_server() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let client = server.admin_client();
    create_queue(&client).await;
    (server, client)
}

async fn create_queue(client: &Client) {
    client
        .queue_create(&CreateQueue {
            name: QUEUE.into(),
            tenant: None,
            settings: QueueSettings::default(),
        })
        .await
        .expect("create queue");
}

fn template(format: DataFormat) -> JobTemplate {
    JobTemplate {
        queue: QUEUE.into(),
        spec: SubmitJob::command(QUEUE, vec!["cat".into()]).spec,
        priority: 0,
        burstable: false,
        data_format: format,
    }
}

async fn jobs_of(client: &Client, subscription: &str) -> Vec<Job> {
    client
        .job_list(&JobListQuery {
            queue: Some(QUEUE.into()),
            labels: [(LABEL_SUBSCRIPTION.to_string(), subscription.to_string())].into(),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .items
}

/// Pull from `subscription` until `n` messages arrived; acknowledges them.
async fn receive(pubsub: &PubSub, subscription: &str, n: usize) -> Vec<ReceivedMessage> {
    let got = Mutex::new(Vec::new());
    let what = format!("{n} messages on {subscription}");
    wait_until(&what, DEADLINE, || async {
        let batch = pubsub.pull(subscription, 100).await.expect("pull");
        let ids: Vec<String> = batch.iter().map(|m| m.ack_id.clone()).collect();
        pubsub.acknowledge(subscription, &ids).await.expect("ack");
        let mut got = got.lock().await;
        got.extend(batch);
        (got.len() >= n).then(|| std::mem::take(&mut *got))
    })
    .await
}

fn message(data: &[u8], attributes: &[(&str, &str)]) -> OutgoingMessage {
    OutgoingMessage {
        data: data.to_vec(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_published_once_to_the_outcome_topic_across_restarts() {
    let Some(script) = find_or_skip("outcome topic") else {
        return;
    };
    let emulator = Emulator::start(&script).await.expect("emulator");
    let pubsub = emulator.client().unwrap();
    let (server, spillway) = spillway_server().await;

    let (topic, sub) = ("projects/p/topics/work", "projects/p/subscriptions/work");
    let (outcomes, outcomes_sub) = ("projects/p/topics/done", "projects/p/subscriptions/done");
    pubsub.topic_create(topic).await.unwrap();
    pubsub.subscription_create(sub, topic, 10).await.unwrap();
    pubsub.topic_create(outcomes).await.unwrap();
    pubsub
        .subscription_create(outcomes_sub, outcomes, 10)
        .await
        .unwrap();
    let published = pubsub
        .publish(
            topic,
            &[
                message(br#"{"n":1}"#, &[("team", "ml")]),
                message(br#"{"n":2}"#, &[]),
                message(br#"{"n":3}"#, &[]),
            ],
        )
        .await
        .unwrap();

    let cancel = CancellationToken::new();
    let stats = Arc::new(BridgeStats::default());
    let bridge = {
        let (pubsub, spillway, cancel, stats) = (
            pubsub.clone(),
            spillway.clone(),
            cancel.clone(),
            stats.clone(),
        );
        let config = BridgeConfig::new(sub, template(DataFormat::Json));
        tokio::spawn(async move { run_bridge(&pubsub, &spillway, &config, &stats, &cancel).await })
    };
    let jobs = wait_until("three jobs", DEADLINE, || async {
        let jobs = jobs_of(&spillway, sub).await;
        (jobs.len() == 3).then_some(jobs)
    })
    .await;
    let labelled: BTreeSet<_> = jobs
        .iter()
        .map(|j| j.labels["pubsub.message_id"].clone())
        .collect();
    assert_eq!(labelled, published.iter().cloned().collect());
    let ml = jobs
        .iter()
        .find(|j| j.labels.get("team").map(String::as_str) == Some("ml"))
        .expect("the attribute became a label");
    assert_eq!(ml.task_count, 1);

    // Two jobs finish (cancelled is a final state; no worker needed), one stays queued.
    for job in &jobs[..2] {
        spillway.job_cancel(&job.id.to_string()).await.unwrap();
    }
    let state_file = server.dir().join("outcomes.ids");
    let config = OutcomeConfig {
        subscription: sub.into(),
        queue: QUEUE.into(),
        topic: outcomes.into(),
        state_file: state_file.clone(),
        interval: Duration::from_millis(100),
    };
    let publisher = Mutex::new(OutcomePublisher::open(config.clone()).unwrap());
    wait_until("two outcomes to be published", DEADLINE, || async {
        let mut publisher = publisher.lock().await;
        publisher.publish_pass(&pubsub, &spillway).await.unwrap();
        (publisher.published_count() >= 2).then_some(())
    })
    .await;
    let n = publisher.into_inner().published_count();
    assert_eq!(n, 2);
    let got = receive(&pubsub, outcomes_sub, 2).await;
    let mut reported: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for m in &got {
        let body: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
        assert_eq!(body["state"], "cancelled");
        assert_eq!(m.attributes["spillway_state"], "cancelled");
        assert_eq!(body["job_id"], m.attributes["spillway_job_id"].as_str());
        assert!(published.contains(&body["message_id"].as_str().unwrap().to_string()));
        reported.insert(m.attributes["spillway_job_id"].clone(), body);
    }
    let expected: BTreeSet<String> = jobs[..2].iter().map(|j| j.id.to_string()).collect();
    assert_eq!(reported.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // A restarted publisher reads its state file and publishes nothing twice; the third job,
    // finished now, is published by it.
    let mut restarted = OutcomePublisher::open(config).unwrap();
    assert_eq!(restarted.published_count(), 2);
    assert_eq!(restarted.publish_pass(&pubsub, &spillway).await.unwrap(), 0);
    spillway.job_cancel(&jobs[2].id.to_string()).await.unwrap();
    assert_eq!(restarted.publish_pass(&pubsub, &spillway).await.unwrap(), 1);
    let third = receive(&pubsub, outcomes_sub, 1).await;
    assert_eq!(
        third[0].attributes["spillway_job_id"],
        jobs[2].id.to_string()
    );

    cancel.cancel();
    bridge.await.unwrap().expect("bridge stops cleanly");
    assert_eq!(stats.created.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_go_to_the_reject_topic_or_back_to_pubsub_never_to_a_job() {
    let Some(script) = find_or_skip("malformed message") else {
        return;
    };
    let emulator = Emulator::start(&script).await.expect("emulator");
    let pubsub = emulator.client().unwrap();
    let (_server, spillway) = spillway_server().await;

    let topic = "projects/p/topics/incoming";
    let (with_rejects, without_rejects) = (
        "projects/p/subscriptions/with-rejects",
        "projects/p/subscriptions/without-rejects",
    );
    let (rejects, rejects_sub) = (
        "projects/p/topics/rejects",
        "projects/p/subscriptions/rejects",
    );
    pubsub.topic_create(topic).await.unwrap();
    pubsub
        .subscription_create(with_rejects, topic, 10)
        .await
        .unwrap();
    pubsub
        .subscription_create(without_rejects, topic, 10)
        .await
        .unwrap();
    pubsub.topic_create(rejects).await.unwrap();
    pubsub
        .subscription_create(rejects_sub, rejects, 10)
        .await
        .unwrap();
    let ids = pubsub
        .publish(
            topic,
            &[message(b"not json", &[("k", "v")]), message(b"[1,2]", &[])],
        )
        .await
        .unwrap();

    let cancel = CancellationToken::new();
    let run = |sub: &'static str, reject_topic: Option<&str>| {
        let (pubsub, spillway, cancel) = (pubsub.clone(), spillway.clone(), cancel.clone());
        let mut config = BridgeConfig::new(sub, template(DataFormat::Json));
        config.reject_topic = reject_topic.map(str::to_string);
        let stats = Arc::new(BridgeStats::default());
        let handle = {
            let stats = stats.clone();
            tokio::spawn(
                async move { run_bridge(&pubsub, &spillway, &config, &stats, &cancel).await },
            )
        };
        (stats, handle)
    };
    let (stats_with, bridge_with) = run(with_rejects, Some(rejects));
    let (stats_without, bridge_without) = run(without_rejects, None);

    // With a reject topic: the bad message arrives there unchanged, with the reason.
    let rejected = receive(&pubsub, rejects_sub, 1).await;
    assert_eq!(rejected[0].data, b"not json");
    assert_eq!(rejected[0].attributes["k"], "v");
    assert_eq!(rejected[0].attributes["spillway_source_message_id"], ids[0]);
    assert!(
        rejected[0].attributes["spillway_reject_reason"].contains("not JSON"),
        "{:?}",
        rejected[0].attributes
    );
    wait_until(
        "the rejected message to be acknowledged",
        DEADLINE,
        || async { (stats_with.acked.load(Ordering::Relaxed) == 2).then_some(()) },
    )
    .await;

    // Without one: it is left unacknowledged and comes again once its ack deadline (10s)
    // passes (Pub/Sub's dead-letter policy would move it aside); never acknowledged, never a job.
    wait_until("the bad message to be redelivered", DEADLINE, || async {
        (stats_without.rejected.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .await;
    assert_eq!(stats_without.acked.load(Ordering::Relaxed), 1);

    for sub in [with_rejects, without_rejects] {
        let jobs = jobs_of(&spillway, sub).await;
        assert_eq!(jobs.len(), 1, "only the JSON message became a job on {sub}");
        assert_eq!(jobs[0].labels["pubsub.message_id"], ids[1]);
    }
    cancel.cancel();
    bridge_with.await.unwrap().unwrap();
    bridge_without.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_subscription_stops_the_bridge_with_a_clear_error() {
    let Some(script) = find_or_skip("missing subscription") else {
        return;
    };
    let emulator = Emulator::start(&script).await.expect("emulator");
    let pubsub = emulator.client().unwrap();
    let (_server, spillway) = spillway_server().await;
    let config = BridgeConfig::new("projects/p/subscriptions/nope", template(DataFormat::Json));
    let err = run_bridge(
        &pubsub,
        &spillway,
        &config,
        &BridgeStats::default(),
        &CancellationToken::new(),
    )
    .await
    .expect_err("no such subscription");
    assert!(
        err.message()
            .contains("pubsub pull on projects/p/subscriptions/nope answered 404"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_the_server_is_down_are_stored_when_it_returns() {
    let Some(script) = find_or_skip("server outage") else {
        return;
    };
    let emulator = Emulator::start(&script).await.expect("emulator");
    let pubsub = emulator.client().unwrap();
    let (topic, sub) = (
        "projects/p/topics/outage",
        "projects/p/subscriptions/outage",
    );
    pubsub.topic_create(topic).await.unwrap();
    pubsub.subscription_create(sub, topic, 10).await.unwrap();

    let mut server = TestServer::start().await;
    let client = server.admin_client();
    create_queue(&client).await;
    let cancel = CancellationToken::new();
    let stats = Arc::new(BridgeStats::default());
    let bridge = {
        let (pubsub, client, cancel, stats) = (
            pubsub.clone(),
            client.clone(),
            cancel.clone(),
            stats.clone(),
        );
        let config = BridgeConfig::new(sub, template(DataFormat::Json));
        tokio::spawn(async move { run_bridge(&pubsub, &client, &config, &stats, &cancel).await })
    };
    pubsub.publish(topic, &[message(b"1", &[])]).await.unwrap();
    wait_until("the first message's job", DEADLINE, || async {
        (jobs_of(&client, sub).await.len() == 1).then_some(())
    })
    .await;

    // The server goes away; what is published now cannot be stored, and must not be lost.
    server.stop_serving().await;
    let during = pubsub
        .publish(topic, &[message(b"2", &[]), message(b"3", &[])])
        .await
        .unwrap();
    wait_until(
        "the bridge to give up on the submits and hand the messages back",
        DEADLINE,
        || async { (stats.handed_back.load(Ordering::Relaxed) >= 2).then_some(()) },
    )
    .await;
    assert_eq!(
        stats.acked.load(Ordering::Relaxed),
        1,
        "nothing unstored was acknowledged"
    );

    // Back on the same port with the same database: the messages come again and are stored.
    server.serve_again().await;
    let jobs = wait_until("three jobs", DEADLINE, || async {
        let jobs = jobs_of(&client, sub).await;
        (jobs.len() >= 3).then_some(jobs)
    })
    .await;
    assert_eq!(jobs.len(), 3);
    let ids: BTreeSet<_> = jobs
        .iter()
        .map(|j| j.labels["pubsub.message_id"].clone())
        .collect();
    assert!(
        during.iter().all(|id| ids.contains(id)),
        "{ids:?} lacks one of {during:?}"
    );
    cancel.cancel();
    bridge.await.unwrap().unwrap();
    server.stop().await;
}

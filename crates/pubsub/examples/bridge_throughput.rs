//! Messages per second through the bridge: the real Pub/Sub emulator, a Spillway server (the
//! shared `TestServer`: SQLite, in this process, real HTTP on 127.0.0.1) and the bridge with its
//! default batch size and concurrency. Publishes N messages first, then times the bridge from its
//! start until the server holds N jobs. The baseline, in the same run: a consumer that only
//! pulls and acknowledges the same N messages from a second subscription, in batches of the
//! same size, i.e. what the emulator allows before Spillway does anything.
//!
//!   cargo run --release -p spillway-pubsub --example bridge_throughput [N] [RUNS]
//!
//! Prints each run and the median. Needs the emulator (see `spillway_pubsub::emulator`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measurement, not a library

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spillway_core::api::{CreateQueue, SubmitJob};
use spillway_core::model::QueueSettings;
use spillway_pubsub::emulator::{Emulator, find};
use spillway_pubsub::{
    BridgeConfig, BridgeStats, DataFormat, JobTemplate, OutgoingMessage, run_bridge,
};
use spillway_testkit::{TestServer, TestServerExt};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(2000, |a| a.parse().expect("N is a number"));
    let runs: usize = args
        .next()
        .map_or(3, |a| a.parse().expect("RUNS is a number"));
    let script = find().expect("the Pub/Sub emulator is needed: set SPILLWAY_PUBSUB_EMULATOR");
    let emulator = Emulator::start(&script).await.expect("emulator");
    let pubsub = emulator.client().unwrap();
    let server = TestServer::start().await;
    let spillway = server.admin_client();

    let mut rates = Vec::new();
    let mut baselines = Vec::new();
    for run in 0..runs {
        let queue = format!("bench-{run}");
        spillway
            .queue_create(&CreateQueue {
                name: queue.clone(),
                tenant: None,
                settings: QueueSettings::default(),
            })
            .await
            .unwrap();
        let topic = format!("projects/bench/topics/topic-{run}");
        let sub = format!("projects/bench/subscriptions/sub-{run}");
        pubsub.topic_create(&topic).await.unwrap();
        pubsub.subscription_create(&sub, &topic, 60).await.unwrap();
        let baseline_sub = format!("projects/bench/subscriptions/baseline-{run}");
        pubsub
            .subscription_create(&baseline_sub, &topic, 60)
            .await
            .unwrap();
        for start in (0..n).step_by(500) {
            let batch: Vec<_> = (start..n.min(start + 500))
                .map(|i| OutgoingMessage {
                    data: format!("{{\"i\":{i}}}").into_bytes(),
                    attributes: [("index".to_string(), i.to_string())].into(),
                })
                .collect();
            pubsub.publish(&topic, &batch).await.unwrap();
        }
        let started = Instant::now();
        let mut drained = 0;
        while drained < n {
            let batch = pubsub
                .pull(&baseline_sub, spillway_pubsub::bridge::DEFAULT_MAX_MESSAGES)
                .await
                .unwrap();
            let ids: Vec<String> = batch.into_iter().map(|m| m.ack_id).collect();
            if !ids.is_empty() {
                pubsub.acknowledge(&baseline_sub, &ids).await.unwrap();
            }
            drained += ids.len();
        }
        let baseline = n as f64 / started.elapsed().as_secs_f64();

        let template = JobTemplate {
            queue: queue.clone(),
            spec: SubmitJob::command(&queue, vec!["cat".into()]).spec,
            priority: 0,
            burstable: false,
            data_format: DataFormat::Json,
        };
        let config = BridgeConfig::new(&sub, template);
        let stats = Arc::new(BridgeStats::default());
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let bridge = {
            let (pubsub, spillway, stats, cancel) = (
                pubsub.clone(),
                spillway.clone(),
                stats.clone(),
                cancel.clone(),
            );
            tokio::spawn(
                async move { run_bridge(&pubsub, &spillway, &config, &stats, &cancel).await },
            )
        };
        while stats.created.load(Ordering::Relaxed) < n as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        cancel.cancel();
        bridge.await.unwrap().unwrap();
        let rate = n as f64 / elapsed.as_secs_f64();
        println!(
            "run {}: {n} messages in {elapsed:.2?}: {rate:.0} messages/s; pull+ack only: {baseline:.0} messages/s ({:.2}x)",
            run + 1,
            rate / baseline
        );
        rates.push(rate);
        baselines.push(baseline);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rate, baseline) = (median(&mut rates), median(&mut baselines));
    println!(
        "median: {rate:.0} messages/s through the bridge; {baseline:.0} pull+ack only; ratio {:.2}x",
        rate / baseline
    );
}

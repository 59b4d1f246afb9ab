//! Two replicas on PostgreSQL share the autoscaler of a Kubernetes pool (a worker Deployment on
//! the fake API server, reached through a kubeconfig as a real cluster would be). The replica
//! that leads is killed with -9 while workers run checked load through both replicas.
//!
//! What must hold: one replica leads at a time (`spillway_autoscaler_leader` on `/metrics`)
//! and the follower shows the pool as the leader saw it; the other replica takes the lead
//! within a bounded time (the wait below is the bound; the time taken is printed); the pool is
//! resized once per decision, whoever makes it: the fake API server sees exactly one scale
//! write for the first backlog, none when the lead moves, one for the second backlog, none
//! from the restarted replica; and the history of the load through both replicas is clean. A task of the test plays the cluster's controllers
//! and kubelet, so the Deployment's pods come and run (their workers never register).
//!
//! `SPILLWAY_FAULT_TASKS=5000 cargo nextest run -p spillway --test e2e history_the_leader`
//! repeats it at a larger size (needs `SPILLWAY_TEST_POSTGRES_URL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use spillway_client::Client;
use spillway_core::api::PoolStatus;
use spillway_core::model::QueueSettings;
use spillway_kubernetes::fake::{DEFAULT_NAMESPACE, FakeApiServer, RecordedRequest};

use super::runs::{PACE, PER_JOB, TASK, assert_checked, settings, wait_completed};
use super::{Load, QUEUE, Rig, fault_tasks};
use crate::postgres::TempDatabase;
use crate::support::{
    STATE_DEADLINE, ServerExtras, WorkerSpec, create_queue, free_port, submit, wait_until,
};

/// The autoscaled pool and the Deployment it scales.
const POOL: &str = "k8s";
/// The queue the pool serves. No worker ever takes its tasks (the Deployment's pods are fake),
/// so its backlog, and with it the autoscaler's decision, stays put until the test adds work.
const SCALED: &str = "scaled";
/// Tasks of each backlog: a worker each (one-second tasks, one-second drain target), and one
/// more while their arrivals count.
const BACKLOG: u32 = 3;
/// How often the test's stand-in for the cluster's controllers and kubelet runs.
const CLUSTER_TICK: Duration = Duration::from_millis(100);
/// How long the other replica may take to lead once the leader is dead: many autoscaler
/// intervals, and PostgreSQL ends the dead replica's session (and its advisory lock) as soon
/// as the kernel closes its socket.
const TAKEOVER_BOUND: Duration = Duration::from_secs(30);

/// The config both replicas run with: a fast autoscaler, and the pool. Scale-in waits ten
/// minutes, so a pass that sees less demand (arrivals leaving their window) holds the size.
/// Pods start but never register: `startup` is long enough that none counts as failed.
fn config_for(fake: &FakeApiServer) -> String {
    format!(
        r#"
[autoscale]
interval = "300ms"
drain_target = "1s"
assumed_task_duration = "1s"
scale_in_window = "10m"

[[pools]]
name = "{POOL}"
provider = "kubernetes"
queues = ["{SCALED}"]
min = 0
max = 20
startup = "10m"
kubernetes = {{ mode = "deployment", deployment = "{POOL}", kubeconfig = "{}" }}
"#,
        fake.kubeconfig_path().display()
    )
}

/// The worker Deployment as the Helm chart installs it, at zero replicas.
fn install_deployment(fake: &FakeApiServer) {
    let labels = json!({"app.kubernetes.io/name": "spillway-worker", "spillway.dev/pool": POOL});
    fake.create(
        DEFAULT_NAMESPACE,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": POOL},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "worker", "image": "spillway", "args": ["worker", "--pool", POOL]}]},
                },
            },
        }),
    )
    .expect("create the worker Deployment");
}

/// The replica counts of every write to the Deployment's scale subresource, in order.
fn scale_writes(fake: &FakeApiServer) -> Vec<i64> {
    let path = format!("/apis/apps/v1/namespaces/{DEFAULT_NAMESPACE}/deployments/{POOL}/scale");
    fake.requests()
        .iter()
        .filter(|r: &&RecordedRequest| r.path == path && r.method != "GET")
        .map(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["spec"]["replicas"].as_i64())
                .unwrap_or_else(|| panic!("a scale write without spec.replicas: {r:?}"))
        })
        .collect()
}

/// How many times the Deployment was read: once per autoscaler pass, whoever runs it.
fn deployment_reads(fake: &FakeApiServer) -> usize {
    let path = format!("/apis/apps/v1/namespaces/{DEFAULT_NAMESPACE}/deployments/{POOL}");
    fake.requests()
        .iter()
        .filter(|r| r.path == path && r.method == "GET")
        .count()
}

/// Wait until the fake has seen `want` scale writes, and return them.
async fn wait_scale_writes(fake: &FakeApiServer, want: usize) -> Vec<i64> {
    wait_until(
        &format!("{want} scale writes to the Deployment"),
        STATE_DEADLINE,
        || {
            let writes = scale_writes(fake);
            async move { (writes.len() >= want).then_some(writes) }
        },
    )
    .await
}

/// The pool as `client`'s replica shows it, once it is at `size` with its pods.
async fn pool_at(client: &Client, size: u32) -> Option<PoolStatus> {
    let pools = client.pool_list().await.ok()?;
    pools
        .into_iter()
        .find(|p| p.name == POOL && p.desired == size && p.actual == size)
}

/// Whether `client`'s replica says it leads the autoscaler (`None` when it does not answer).
async fn leads(client: &Client) -> Option<bool> {
    let text = client.metrics().await.ok()?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("spillway_autoscaler_leader "))?;
    Some(value.trim() == "1")
}

/// Play the cluster's controllers and kubelet until the returned task is aborted.
fn run_cluster(fake: &Arc<FakeApiServer>) -> tokio::task::JoinHandle<()> {
    let fake = fake.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CLUSTER_TICK);
        loop {
            tick.tick().await;
            fake.settle();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_the_leader_replica_is_killed_and_the_autoscaler_moves() {
    let Some(admin_url) = crate::postgres::admin_url_or_skip("the leader fault run") else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    let fake = Arc::new(
        FakeApiServer::start()
            .await
            .expect("start the fake API server"),
    );
    install_deployment(&fake);
    let cluster = run_cluster(&fake);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("spillway.toml");
    std::fs::write(&config, config_for(&fake)).expect("write the config");
    let extras = ServerExtras {
        config: Some(config),
        ..ServerExtras::default()
    };
    let mut rig = Rig::start_in(dir, None, Some(db.url.clone()), settings(), extras).await;
    let port_b = free_port();
    let mut b = rig.replica("server-b", port_b).await;
    let admin_b = b.client();
    create_queue(&rig.admin, SCALED, QueueSettings::default()).await;

    // Checked load through both replicas: a worker and the load generator on each side.
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let _workers = [
        rig.worker("worker-a", &spec).await,
        rig.worker_to("worker-b", &b.url, &spec).await,
    ];
    let target = fault_tasks();
    let load = Load::start(&rig, TASK, PER_JOB, target, PACE).await;
    wait_completed(&rig, target / 3).await;

    // The first decision: a backlog of BACKLOG tasks, one scale write whoever leads.
    submit(&rig.admin, SCALED, &["true"], BACKLOG).await;
    let first = wait_scale_writes(&fake, 1).await;
    assert!(
        first.len() == 1 && first[0] >= i64::from(BACKLOG),
        "the first backlog's scale writes: {first:?}"
    );
    let size = u32::try_from(first[0]).expect("a small size");
    // One leader, and the follower shows the pool as the leader saw it (kept in the store),
    // on the API and on /metrics: what a load balancer in front of both shows either way.
    let leader_is_a = wait_until("a replica to lead", STATE_DEADLINE, || {
        let (a, b) = (rig.admin.clone(), admin_b.clone());
        async move {
            match (leads(&a).await?, leads(&b).await?) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            }
        }
    })
    .await;
    let (leader, follower) = if leader_is_a {
        (rig.admin.clone(), admin_b.clone())
    } else {
        (admin_b.clone(), rig.admin.clone())
    };
    let shown = wait_until(
        "the follower to show the leader's view",
        STATE_DEADLINE,
        || {
            let follower = follower.clone();
            async move { pool_at(&follower, size).await }
        },
    )
    .await;
    assert!(
        shown.decisions.iter().any(|d| d.to == size),
        "the follower shows the leader's decision: {shown:?}"
    );
    let metrics = follower.metrics().await.expect("the follower's metrics");
    assert!(
        metrics.contains(&format!(
            "spillway_pool_desired_workers{{pool=\"{POOL}\"}} {size}"
        )),
        "the follower publishes the leader's desired size: {metrics}"
    );
    // While the leader reads the Deployment on several more passes, the follower still does
    // not lead.
    let reads = deployment_reads(&fake);
    wait_until("more passes of the leader", STATE_DEADLINE, || {
        let more = deployment_reads(&fake) >= reads + 6;
        async move { more.then_some(()) }
    })
    .await;
    assert_eq!(
        (leads(&leader).await, leads(&follower).await),
        (Some(true), Some(false)),
        "exactly one replica leads the autoscaler"
    );

    // Kill the leader; the follower must lead within the bound, resizing nothing: the pool
    // already has the size the same backlog asks for.
    let killed_at = Instant::now();
    if leader_is_a {
        rig.kill_server();
    } else {
        b.process.kill9();
    }
    tokio::time::timeout(TAKEOVER_BOUND, async {
        wait_until("the other replica to lead", TAKEOVER_BOUND, || {
            let follower = follower.clone();
            async move { leads(&follower).await.unwrap_or(false).then_some(()) }
        })
        .await
    })
    .await
    .unwrap_or_else(|_| panic!("no replica took the lead within {TAKEOVER_BOUND:?}"));
    let takeover = killed_at.elapsed();
    // Its passes as the leader see the pool as it is.
    let reads = deployment_reads(&fake);
    let led = wait_until("the new leader's passes", STATE_DEADLINE, || {
        let follower = follower.clone();
        let passed = deployment_reads(&fake) >= reads + 3;
        async move {
            if passed {
                pool_at(&follower, size).await
            } else {
                None
            }
        }
    })
    .await;
    // The killed replica comes back (as a follower) for its worker and the load.
    if leader_is_a {
        rig.restart_server().await;
    } else {
        b = rig.replica("server-b-2", port_b).await;
    }
    assert_eq!(
        scale_writes(&fake),
        first,
        "the new leader resized the pool again for the decision already made ({led:?})"
    );

    // The second decision, made by the new leader: one more write, and only one.
    submit(&follower, SCALED, &["true"], BACKLOG).await;
    let second = wait_scale_writes(&fake, 2).await;
    assert!(
        second.len() == 2 && second[1] >= i64::from(2 * BACKLOG),
        "the scale writes of two decisions: {second:?}"
    );

    load.finish().await;
    let checked = rig.check("leader-killed", 1).await;
    assert_checked(&checked, 1);
    // Passes ran on both replicas all along; still no write beyond the two decisions.
    assert_eq!(
        scale_writes(&fake).len(),
        2,
        "a pool resized more than once per decision: {:?}",
        scale_writes(&fake)
    );
    println!(
        "history leader-killed: the lead moved {} ms after the kill; scale writes {:?} (first leader: {})",
        takeover.as_millis(),
        scale_writes(&fake),
        if leader_is_a { "server-1" } else { "server-b" }
    );
    cluster.abort();
    drop(b);
}

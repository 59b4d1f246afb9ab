//! The autoscaler service over the real store and HTTP API, with the in-memory pool provider
//! standing in for processes (real worker processes are tested from the CLI crate), moved by
//! the test's clock: scale up on submit, drain only idle workers, back to zero, burst tiers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_autoscale::config::{MEMORY_PROVIDER, PolicyConfig, PoolConfig};
use spillway_autoscale::memory::MemoryProvider;
use spillway_autoscale::provider::{InstanceState, PoolObserve, PoolProvider};
use spillway_core::api::PoolStatus;
use spillway_core::clock::Clock;
use spillway_server::ServerConfig;
use spillway_server::autoscale::Autoscaler;
use spillway_server::autoscale::service::LEADER_KEY;
use spillway_server::testkit::{DEFAULT_DEADLINE, wait_until};
use spillway_store::{WorkerBeat, WorkerRegister};

use spillway_server::autoscale::service;
use tokio_util::sync::CancellationToken;

use crate::support::{Server, ok, problem, simple_job};

fn pool(name: &str, tier: u32, max: u32) -> PoolConfig {
    let mut pool = PoolConfig::new(name, MEMORY_PROVIDER, vec!["default".into()]);
    pool.tier = tier;
    pool.max = max;
    pool.idle_timeout = Duration::from_secs(30);
    pool
}

fn config(pools: Vec<PoolConfig>) -> ServerConfig {
    ServerConfig {
        pools,
        autoscale: PolicyConfig {
            drain_target: Duration::from_secs(60),
            scale_in_window: Duration::from_secs(60),
            assumed_task_duration: Duration::from_secs(60),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A server with `pools` and an autoscaler over one shared in-memory provider.
async fn setup(pools: Vec<PoolConfig>) -> (Server, Arc<MemoryProvider>, Autoscaler) {
    let server = Server::with_config(config(pools)).await;
    let provider = Arc::new(MemoryProvider::new());
    let providers = HashMap::from([(
        MEMORY_PROVIDER.to_string(),
        provider.clone() as spillway_autoscale::provider::DynPoolProvider,
    )]);
    let autoscaler = Autoscaler::new(server.state.clone(), providers, LEADER_KEY);
    (server, provider, autoscaler)
}

async fn pools(server: &Server) -> Vec<PoolStatus> {
    ok(server.get("/v1/pools", &server.admin).await, StatusCode::OK).await
}

async fn live(provider: &MemoryProvider, pool: &PoolConfig) -> Vec<String> {
    let seen = provider
        .pool_observe(PoolObserve {
            pool,
            now: chrono::Utc::now(),
        })
        .await
        .expect("observe");
    seen.instances
        .iter()
        .filter(|i| i.state.is_live())
        .map(|i| i.id.clone())
        .collect()
}

/// The memory provider's instances become running workers registered under their ids.
async fn start_workers(server: &Server, provider: &MemoryProvider, pool: &PoolConfig) {
    provider.start_all(&pool.name);
    for id in live(provider, pool).await {
        server
            .store
            .worker_register(WorkerRegister {
                id: id.clone(),
                tenant: "default".into(),
                pool: pool.name.clone(),
                hostname: "test-host".into(),
                queues: pool.queues.clone(),
                concurrency: 1,
                now: server.clock.now(),
            })
            .await
            .expect("register");
    }
}

#[tokio::test]
async fn a_submit_scales_a_pool_up_from_zero_in_one_step() {
    let home = pool("home", 0, 5);
    let (server, provider, autoscaler) = setup(vec![home.clone()]).await;
    autoscaler.pass().await.expect("pass");
    assert!(
        live(&provider, &home).await.is_empty(),
        "no work, no workers"
    );

    server
        .submit(
            &server.admin,
            json!({"command": ["x"], "tasks": [{}, {}, {}, {}]}),
        )
        .await;
    autoscaler.pass().await.expect("pass");
    let started = live(&provider, &home).await;
    assert_eq!(
        started.len(),
        5,
        "4 tasks of 60s plus arrivals fill the pool"
    );

    let listed = pools(&server).await;
    let [status] = &listed[..] else {
        panic!("one pool expected: {listed:?}")
    };
    assert_eq!(
        (status.name.as_str(), status.provider.as_str()),
        ("home", "memory")
    );
    assert_eq!((status.desired, status.actual), (5, 5));
    let [decision] = &status.decisions[..] else {
        panic!("one decision expected: {:?}", status.decisions)
    };
    assert_eq!((decision.from, decision.to), (0, 5));
    assert!(decision.reason.contains("0 → 5"), "{}", decision.reason);

    let text = server
        .get("/metrics", "")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        text.contains("spillway_pool_desired_workers{pool=\"home\"} 5"),
        "{text}"
    );
    assert!(text.contains("spillway_workers_down 0"), "{text}");
}

#[tokio::test]
async fn only_idle_workers_are_drained_and_the_pool_returns_to_zero() {
    let home = pool("home", 0, 2);
    let (server, provider, autoscaler) = setup(vec![home.clone()]).await;
    server
        .submit(&server.admin, json!({"command": ["x"], "tasks": [{}, {}]}))
        .await;
    autoscaler.pass().await.expect("pass");
    start_workers(&server, &provider, &home).await;
    let workers = live(&provider, &home).await;
    assert_eq!(workers.len(), 2);

    // One worker takes both tasks and finishes one: it stays busy, the other is idle.
    let busy = &workers[0];
    let leased = server.lease(&server.admin, busy, &["default"], 2).await;
    assert_eq!(leased.len(), 2);
    let done = json!({"completions": [{"task_id": leased[0]["task_id"], "lease_token": leased[0]["lease_token"], "exit_code": 0}]});
    ok::<Value>(
        server.post("/v1/tasks/complete", &server.admin, done).await,
        StatusCode::OK,
    )
    .await;
    server
        .store
        .worker_heartbeat(WorkerBeat {
            id: busy.clone(),
            running: 1,
            draining: false,
            now: server.clock.now(),
        })
        .await
        .expect("heartbeat");

    // Arrivals leave the one-minute window, then the target stays low for the scale-in
    // window, then idle workers go.
    for _ in 0..3 {
        autoscaler.pass().await.expect("pass");
        server.clock.advance(Duration::from_secs(61));
    }
    autoscaler.pass().await.expect("pass");
    let seen = provider
        .pool_observe(PoolObserve {
            pool: &home,
            now: server.clock.now(),
        })
        .await
        .expect("observe");
    let draining: Vec<_> = seen
        .instances
        .iter()
        .filter(|i| i.state == InstanceState::Draining)
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(
        draining,
        vec![workers[1].clone()],
        "only the idle worker drains"
    );

    // The busy worker finishes; after the idle timeout and window it goes too.
    let done = json!({"completions": [{"task_id": leased[1]["task_id"], "lease_token": leased[1]["lease_token"], "exit_code": 0}]});
    ok::<Value>(
        server.post("/v1/tasks/complete", &server.admin, done).await,
        StatusCode::OK,
    )
    .await;
    server
        .store
        .worker_heartbeat(WorkerBeat {
            id: busy.clone(),
            running: 0,
            draining: false,
            now: server.clock.now(),
        })
        .await
        .expect("heartbeat");
    provider.exit_drained(&home.name);
    for _ in 0..3 {
        autoscaler.pass().await.expect("pass");
        server.clock.advance(Duration::from_secs(61));
    }
    autoscaler.pass().await.expect("pass");
    provider.exit_drained(&home.name);
    assert!(
        live(&provider, &home).await.is_empty(),
        "the pool is back to zero"
    );
    let status = &pools(&server).await[0];
    assert_eq!(status.desired, 0);
    let last = status.decisions.last().expect("decisions");
    assert_eq!(last.to, 0, "{:?}", status.decisions);
}

#[tokio::test]
async fn a_burst_pool_grows_only_for_burstable_work_and_leases_only_it() {
    let home = pool("home", 0, 1);
    let spot = pool("spot", 1, 5);
    let (server, provider, autoscaler) = setup(vec![home.clone(), spot.clone()]).await;
    server
        .submit(
            &server.admin,
            json!({"command": ["x"], "tasks": [{}, {}, {}, {}, {}, {}]}),
        )
        .await;
    autoscaler.pass().await.expect("pass");
    assert_eq!(live(&provider, &home).await.len(), 1);
    assert!(
        live(&provider, &spot).await.is_empty(),
        "a burst tier never grows for tasks of jobs that are not burstable"
    );

    let burst = server
        .submit(
            &server.admin,
            json!({"command": ["y"], "burstable": true, "tasks": [{}, {}, {}]}),
        )
        .await;
    autoscaler.pass().await.expect("pass");
    assert!(
        !live(&provider, &spot).await.is_empty(),
        "burstable backlog beyond the home pool grows the burst tier"
    );

    let resp = server
        .post(
            "/v1/workers",
            &server.admin,
            json!({"hostname": "spot-host", "pool": "spot", "queues": ["default"], "concurrency": 8}),
        )
        .await;
    let worker: Value = ok(resp, StatusCode::CREATED).await;
    let id = worker["id"].as_str().expect("id");
    let leased = server.lease(&server.admin, id, &["default"], 10).await;
    assert_eq!(
        leased.len(),
        3,
        "the burst worker takes the burstable tasks"
    );
    assert!(
        leased.iter().all(|t| t["job_id"] == burst.as_str()),
        "a burst worker leased a task of a job that is not burstable: {leased:?}"
    );
    assert!(
        server
            .lease(&server.admin, id, &["default"], 10)
            .await
            .is_empty(),
        "nothing else is leasable for the burst worker"
    );
}

#[tokio::test]
async fn pool_bounds_change_through_patch() {
    let home = pool("home", 0, 5);
    let (server, _provider, _autoscaler) = setup(vec![home]).await;
    let resp = server
        .req(Method::PATCH, "/v1/pools/home", &server.admin)
        .json(&json!({"min": 1, "max": 3}))
        .send()
        .await
        .expect("send");
    let status: PoolStatus = ok(resp, StatusCode::OK).await;
    assert_eq!((status.min, status.max), (1, 3));
    assert_eq!(
        (pools(&server).await[0].min, pools(&server).await[0].max),
        (1, 3)
    );

    let resp = server
        .req(Method::PATCH, "/v1/pools/home", &server.admin)
        .json(&json!({"min": 4}))
        .send()
        .await
        .expect("send");
    let p = problem(resp, StatusCode::BAD_REQUEST).await;
    assert!(p.detail.contains("above max"), "{}", p.detail);
    let resp = server
        .req(Method::PATCH, "/v1/pools/nope", &server.admin)
        .json(&json!({"max": 4}))
        .send()
        .await
        .expect("send");
    problem(resp, StatusCode::NOT_FOUND).await;
    let viewer = server.token("viewer", "default").await;
    let resp = server
        .req(Method::PATCH, "/v1/pools/home", &viewer)
        .json(&json!({"max": 4}))
        .send()
        .await
        .expect("send");
    problem(resp, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_submit_wakes_the_service_long_before_its_interval() {
    let home = pool("home", 0, 3);
    let (server, provider, autoscaler) = setup(vec![home.clone()]).await;
    let stop = CancellationToken::new();
    let mut service = service::spawn(
        Arc::new(autoscaler),
        service::Config {
            interval: Duration::from_secs(3600),
            wake_delay: Duration::from_millis(10),
            ..Default::default()
        },
        stop.clone(),
    );
    service.run_pass().await;
    assert!(live(&provider, &home).await.is_empty());
    server.submit(&server.admin, simple_job()).await;
    wait_until(
        "the pool to grow after a submit",
        DEFAULT_DEADLINE,
        || async { (!live(&provider, &home).await.is_empty()).then_some(()) },
    )
    .await;
    stop.cancel();
    service.join().await;
}

/// A provider that cannot be reached, as a cloud API during an outage.
struct Unreachable;

#[async_trait::async_trait]
impl PoolProvider for Unreachable {
    fn provider_name(&self) -> &'static str {
        "external"
    }
    async fn pool_observe(
        &self,
        _: PoolObserve<'_>,
    ) -> spillway_core::Result<spillway_autoscale::provider::PoolObservation> {
        Err(spillway_core::Error::unavailable(
            "connect to 10.0.0.1:443: connection refused",
        ))
    }
    async fn pool_resize(
        &self,
        _: spillway_autoscale::provider::PoolResize<'_>,
    ) -> spillway_core::Result<()> {
        Err(spillway_core::Error::unavailable("unreachable"))
    }
}

#[tokio::test]
async fn a_pool_whose_provider_fails_does_not_stop_the_others() {
    let home = pool("home", 0, 3);
    let mut broken = pool("east", 0, 3);
    broken.provider = "external".to_string();
    let server = Server::with_config(config(vec![broken.clone(), home.clone()])).await;
    let memory = Arc::new(MemoryProvider::new());
    let providers = HashMap::from([
        (
            MEMORY_PROVIDER.to_string(),
            memory.clone() as spillway_autoscale::provider::DynPoolProvider,
        ),
        (
            "external".to_string(),
            Arc::new(Unreachable) as spillway_autoscale::provider::DynPoolProvider,
        ),
    ]);
    let autoscaler = Autoscaler::new(server.state.clone(), providers, LEADER_KEY);
    server
        .submit(&server.admin, json!({"command": ["x"], "tasks": [{}, {}]}))
        .await;

    autoscaler
        .pass()
        .await
        .expect("one failing pool does not fail the pass");
    assert!(
        !live(&memory, &home).await.is_empty(),
        "the healthy pool took the work"
    );
    let listed = pools(&server).await;
    let east = listed
        .iter()
        .find(|p| p.name == "east")
        .expect("east listed");
    assert!(
        east.problems
            .iter()
            .any(|p| p.contains("failed to observe") && p.contains("connection refused")),
        "{east:?}"
    );
    let text = metrics_text(&server).await;
    assert!(
        text.contains(r#"spillway_pool_problems{pool="east",kind="provider_error"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"spillway_pool_problems{pool="home""#),
        "{text}"
    );
}

async fn metrics_text(server: &Server) -> String {
    server
        .get("/metrics", "")
        .await
        .text()
        .await
        .expect("metrics")
}

/// An instance whose worker has not registered within the pool's startup time is a
/// `never_registered` problem on the pool's status and in /metrics, counted once however many
/// passes see it; the problem goes once the worker registers.
#[tokio::test]
async fn instances_whose_worker_never_registers_are_a_pool_problem() {
    let mut home = pool("home", 0, 3);
    home.min = 1;
    home.startup = Duration::from_secs(30);
    let (server, provider, autoscaler) = setup(vec![home.clone()]).await;
    autoscaler.pass().await.expect("pass");
    let started = live(&provider, &home).await;
    assert_eq!(started.len(), 1, "the pool's min is started");
    let listed = pools(&server).await;
    assert!(listed[0].problems.is_empty(), "not due yet: {listed:?}");

    server.clock.advance(Duration::from_secs(31));
    autoscaler.pass().await.expect("pass");
    autoscaler
        .pass()
        .await
        .expect("a second pass sees it again");
    let listed = pools(&server).await;
    assert!(
        listed[0]
            .problems
            .iter()
            .any(|p| p.contains("no registered worker") && p.contains(&started[0])),
        "{listed:?}"
    );
    let text = metrics_text(&server).await;
    for series in [
        r#"spillway_pool_problems{pool="home",kind="never_registered"} 1"#,
        r#"spillway_pool_problem_occurrences_total{pool="home",kind="never_registered"} 1"#,
        r#"spillway_pool_instances_never_registered_total{pool="home"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }

    start_workers(&server, &provider, &home).await;
    autoscaler.pass().await.expect("pass");
    let listed = pools(&server).await;
    assert!(listed[0].problems.is_empty(), "registered now: {listed:?}");
    let text = metrics_text(&server).await;
    assert!(
        !text.contains(r#"spillway_pool_problems{pool="home",kind="never_registered"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"spillway_pool_instances_never_registered_total{pool="home"} 1"#),
        "{text}"
    );
}

/// A provider's problems are published by kind while they last, and each appearance is counted.
#[tokio::test]
async fn pool_problems_are_published_by_kind() {
    let home = pool("home", 0, 4);
    let (server, provider, autoscaler) = setup(vec![home.clone()]).await;
    provider.set_quota("home", Some(1));
    server
        .submit(
            &server.admin,
            json!({"command": ["x"], "tasks": [{}, {}, {}, {}]}),
        )
        .await;
    autoscaler.pass().await.expect("pass");
    let text = metrics_text(&server).await;
    for series in [
        r#"spillway_pool_problems{pool="home",kind="quota"} 1"#,
        r#"spillway_pool_problem_occurrences_total{pool="home",kind="quota"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }

    // Short of quota, the policy asks only for what the pool has, which the quota allows.
    autoscaler.pass().await.expect("pass");
    let text = metrics_text(&server).await;
    assert!(
        !text.contains(r#"spillway_pool_problems{pool="home",kind="quota"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"spillway_pool_problem_occurrences_total{pool="home",kind="quota"} 1"#),
        "{text}"
    );
}

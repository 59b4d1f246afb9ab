//! The Kubernetes pool provider against the fake API server, reached through a kubeconfig
//! over 127.0.0.1: the conformance suite in both modes, the exact requests it makes, and how
//! refusals and failures show.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::conformance::{Harness, t0, test_pool};
use spillway_autoscale::provider::{
    DynPoolProvider, InstanceState, PoolObservation, PoolObserve, PoolProblemKind, PoolProvider,
    PoolResize,
};
use spillway_core::model::{DEFAULT_TENANT, WorkerState};
use spillway_core::{ErrorKind, Result};
use spillway_kubernetes::KubernetesProvider;
use spillway_kubernetes::config::KubernetesMode;
use spillway_kubernetes::config::KubernetesPool;
use spillway_kubernetes::fake::{FakeApiServer, Fault, RecordedRequest};
use spillway_kubernetes::provider::{DRAIN_DELETION_COST, POD_DELETION_COST};
use spillway_store::DynStore;
use spillway_store::params::WorkerRegister;
use spillway_store::sqlite::SqliteStore;
use spillway_store::{WorkerExit, WorkerList};

const NS: &str = "default";
const IMAGE: &str = "registry.example/spillway:test";

struct Env {
    fake: Arc<FakeApiServer>,
    store: DynStore,
    provider: Arc<KubernetesProvider>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Arc::new(FakeApiServer::start().await.expect("start fake api server"));
    let dir = tempfile::tempdir().expect("temp dir");
    let store: DynStore = Arc::new(
        SqliteStore::open(&dir.path().join("spillway.db"))
            .await
            .expect("open store"),
    );
    let provider = Arc::new(KubernetesProvider::new(store.clone()));
    Env {
        fake,
        store,
        provider,
        _dir: dir,
    }
}

fn section(mode: KubernetesMode, kubeconfig: &std::path::Path) -> KubernetesPool {
    let mut section = KubernetesPool {
        mode,
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..KubernetesPool::default()
    };
    if mode == KubernetesMode::WorkQueue {
        section.image = Some(IMAGE.into());
        section.server_url = Some("http://spillway.spillway.svc:8080".into());
        section.token_secret = Some("spillway-worker-token".into());
    }
    section
}

/// A Kubernetes pool like the conformance suite's, with its section filled in.
fn pool(name: &str, mode: KubernetesMode, fake: &FakeApiServer) -> PoolConfig {
    let mut pool = test_pool(name);
    pool.provider = "kubernetes".to_string();
    pool.set_section(&section(mode, fake.kubeconfig_path()))
        .expect("section");
    pool.validate().expect("valid pool");
    pool
}

/// The worker Deployment the Helm chart would have installed, at zero replicas.
fn install_deployment(fake: &FakeApiServer, name: &str) {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "spillway-worker", "spillway.dev/pool": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "spillway-worker", "spillway.dev/pool": name}},
                "spec": {"containers": [{"name": "worker", "image": IMAGE, "args": ["worker", "--pool", name]}]},
            },
        },
    });
    // Already there is fine: the harness asks once per case.
    let _ = fake.create(NS, deployment);
}

/// Lets the conformance suite's `test_pool` (a `memory` pool) reach the Kubernetes provider:
/// it becomes a `kubernetes` pool with its section, and its Deployment exists.
struct AsKubernetes {
    inner: Arc<KubernetesProvider>,
    fake: Arc<FakeApiServer>,
    mode: KubernetesMode,
}

impl AsKubernetes {
    fn fix(&self, pool: &PoolConfig) -> PoolConfig {
        let mut pool = pool.clone();
        pool.provider = "kubernetes".to_string();
        pool.set_section(&section(self.mode, self.fake.kubeconfig_path()))
            .expect("section");
        if self.mode == KubernetesMode::Deployment {
            install_deployment(&self.fake, &pool.name);
        }
        pool
    }
}

#[async_trait]
impl PoolProvider for AsKubernetes {
    fn provider_name(&self) -> &'static str {
        self.inner.provider_name()
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        let pool = self.fix(params.pool);
        self.inner
            .pool_observe(PoolObserve {
                pool: &pool,
                now: params.now,
            })
            .await
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        let pool = self.fix(params.pool);
        self.inner
            .pool_resize(PoolResize {
                pool: &pool,
                desired: params.desired,
                drain: params.drain,
                now: params.now,
            })
            .await
    }
}

/// What `spillway worker` does in a work-queue pod, played against the store: it registers
/// with hostname = pod name once its pod runs, and when asked to drain it finishes and exits 0.
async fn play_workers(fake: Arc<FakeApiServer>, store: DynStore, pool: String) {
    let Ok(workers) = store
        .worker_list(WorkerList {
            tenant: None,
            now: t0(),
        })
        .await
    else {
        return;
    };
    for pod in fake.objects("pods") {
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        if pod["metadata"]["labels"]["spillway.dev/pool"] != json!(pool) {
            continue;
        }
        let worker = workers
            .iter()
            .find(|w| w.hostname == name && w.pool == pool);
        match worker {
            None if pod["status"]["phase"] == "Running" => {
                let _ = store
                    .worker_register(WorkerRegister {
                        id: format!("w-{name}"),
                        tenant: DEFAULT_TENANT.to_string(),
                        pool: pool.clone(),
                        hostname: name.clone(),
                        queues: vec!["default".into()],
                        concurrency: 1,
                        now: Utc::now(),
                    })
                    .await;
            }
            Some(w) if w.state == WorkerState::Draining => {
                fake.finish_pod(&name, 0, "drained\n");
                let _ = store
                    .worker_exit(WorkerExit {
                        id: w.id.clone(),
                        now: Utc::now(),
                    })
                    .await;
            }
            _ => {}
        }
    }
}

async fn harness(mode: KubernetesMode) -> Harness {
    let env = env().await;
    let provider: DynPoolProvider = Arc::new(AsKubernetes {
        inner: env.provider.clone(),
        fake: env.fake.clone(),
        mode,
    });
    let fake = env.fake.clone();
    let store = env.store.clone();
    // The store's directory must outlive the harness.
    let dir = env._dir;
    // One player at a time: two overlapping players could both see a pod without a worker and
    // register it twice, the second time undoing a drain the provider asked for in between.
    let players = Arc::new(tokio::sync::Mutex::new(()));
    let settle = move |pool: &str| {
        let _ = &dir;
        fake.settle();
        if mode == KubernetesMode::WorkQueue {
            // The store is async and settle is not: the workers act at the case's next await.
            let (fake, store, pool) = (fake.clone(), store.clone(), pool.to_string());
            let players = players.clone();
            tokio::spawn(async move {
                let _turn = players.lock().await;
                play_workers(fake, store, pool).await;
            });
        }
    };
    Harness {
        provider,
        settle: Box::new(settle),
        deadline: Duration::from_secs(10),
    }
}

mod deployment_mode {
    use super::*;
    spillway_autoscale::pool_provider_conformance_tests!(|| harness(KubernetesMode::Deployment));
}

mod work_queue_mode {
    use super::*;
    spillway_autoscale::pool_provider_conformance_tests!(|| harness(KubernetesMode::WorkQueue));
}

async fn resize(env: &Env, pool: &PoolConfig, desired: u32, drain: &[&str]) -> Result<()> {
    env.provider
        .pool_resize(PoolResize {
            pool,
            desired,
            drain: drain.iter().map(|s| s.to_string()).collect(),
            now: t0(),
        })
        .await
}

async fn observe(env: &Env, pool: &PoolConfig) -> PoolObservation {
    env.provider
        .pool_observe(PoolObserve { pool, now: t0() })
        .await
        .expect("observe")
}

fn writes(fake: &FakeApiServer) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect()
}

fn running_ids(seen: &PoolObservation) -> Vec<String> {
    seen.instances
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .map(|i| i.id.clone())
        .collect()
}

#[tokio::test]
async fn scale_up_patches_the_scale_subresource_conditionally() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    let rv = env
        .fake
        .object("deployments", NS, "web")
        .expect("deployment")["metadata"]["resourceVersion"]
        .clone();
    resize(&env, &pool, 3, &[]).await.expect("resize");
    let writes = writes(&env.fake);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let scale = &writes[0];
    assert_eq!(scale.method, "PATCH");
    assert_eq!(
        scale.path,
        "/apis/apps/v1/namespaces/default/deployments/web/scale"
    );
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        scale.body,
        Some(json!({"metadata": {"resourceVersion": rv}, "spec": {"replicas": 3}}))
    );
    // Asking again writes nothing.
    env.fake.clear_requests();
    resize(&env, &pool, 3, &[]).await.expect("resize again");
    assert!(self::writes(&env.fake).is_empty());
}

#[tokio::test]
async fn drain_marks_the_pod_before_the_scale_down() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    resize(&env, &pool, 3, &[]).await.expect("resize");
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    let running = running_ids(&seen);
    assert_eq!(running.len(), 3, "{seen:?}");
    let victim = running[2].clone();
    env.fake.clear_requests();
    resize(&env, &pool, 2, &[&victim]).await.expect("drain");
    let writes = writes(&env.fake);
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(
        writes[0].path,
        format!("/api/v1/namespaces/default/pods/{victim}")
    );
    assert_eq!(
        writes[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        writes[0].body,
        Some(
            json!({"metadata": {"annotations": {POD_DELETION_COST: DRAIN_DELETION_COST.to_string()}}})
        )
    );
    assert!(writes[1].path.ends_with("/deployments/web/scale"));
    assert_eq!(
        writes[1]
            .body
            .as_ref()
            .map(|b| b["spec"]["replicas"].clone()),
        Some(json!(2))
    );
    // The ReplicaSet removes exactly the victim: it is deleted (SIGTERM), the others stay.
    env.fake.step();
    let seen = observe(&env, &pool).await;
    let draining: Vec<_> = seen
        .instances
        .iter()
        .filter(|i| i.state == InstanceState::Draining)
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(draining, vec![victim.clone()]);
    assert_eq!(seen.live(), 2);
}

#[tokio::test]
async fn drain_while_keeping_the_size_deletes_the_pod_for_a_replacement() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    resize(&env, &pool, 2, &[]).await.expect("resize");
    env.fake.settle();
    let victim = running_ids(&observe(&env, &pool).await)[0].clone();
    env.fake.clear_requests();
    resize(&env, &pool, 2, &[&victim])
        .await
        .expect("drain and replace");
    let writes = writes(&env.fake);
    let methods: Vec<_> = writes.iter().map(|w| w.method.as_str()).collect();
    assert_eq!(methods, ["PATCH", "DELETE"], "{writes:#?}");
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.count(InstanceState::Running), 2);
    assert!(!running_ids(&seen).contains(&victim));
}

#[tokio::test]
async fn a_conflicting_scale_write_is_retried_on_a_fresh_read() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    let path = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    env.fake.inject(Fault::new(
        "PATCH",
        path,
        409,
        "Conflict",
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again",
    ));
    resize(&env, &pool, 2, &[])
        .await
        .expect("resize despite one conflict");
    let requests = env.fake.requests();
    let scale_writes = requests.iter().filter(|r| r.path == path).count();
    assert_eq!(scale_writes, 2);
    let reads = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/deployments/web"))
        .count();
    assert_eq!(reads, 2, "read again after the conflict");
    let deployment = env
        .fake
        .object("deployments", NS, "web")
        .expect("deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
}

#[tokio::test]
async fn forbidden_is_a_permission_problem() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    let message = "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:spillway:spillway\" cannot patch resource \"deployments/scale\" in API group \"apps\" in the namespace \"default\"";
    env.fake.inject(Fault::new(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        403,
        "Forbidden",
        message,
    ));
    resize(&env, &pool, 2, &[])
        .await
        .expect("a refusal is status, not an error");
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.problems.len(), 1, "{seen:?}");
    assert_eq!(seen.problems[0].kind, PoolProblemKind::Permission);
    assert!(
        seen.problems[0].message.contains("cannot patch resource"),
        "{seen:?}"
    );
    // Once a resize goes through, the problem clears.
    resize(&env, &pool, 2, &[]).await.expect("resize");
    assert!(observe(&env, &pool).await.problems.is_empty());

    // A refused read shows the same way.
    env.fake.inject(Fault::new(
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web",
        403,
        "Forbidden",
        "deployments.apps \"web\" is forbidden: cannot get",
    ));
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.problems[0].kind, PoolProblemKind::Permission);
    assert!(seen.instances.is_empty());
}

#[tokio::test]
async fn unschedulable_pods_are_a_stock_out_and_bad_images_a_start_failure() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    env.fake.set_unschedulable(true);
    resize(&env, &pool, 2, &[]).await.expect("resize");
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.count(InstanceState::Starting), 2);
    assert_eq!(seen.problems.len(), 1, "{seen:?}");
    let problem = &seen.problems[0];
    assert_eq!(problem.kind, PoolProblemKind::StockOut);
    assert!(problem.message.contains("Insufficient cpu"), "{problem:?}");
    assert!(problem.message.contains("1 more"), "{problem:?}");
    // The first-seen time stays while the problem holds.
    let later = env
        .provider
        .pool_observe(PoolObserve {
            pool: &pool,
            now: t0() + chrono::Duration::minutes(5),
        })
        .await
        .expect("observe");
    assert_eq!(later.problems[0].since, t0());

    env.fake.set_unschedulable(false);
    env.fake.fail_image_pull(IMAGE);
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.problems.len(), 1, "{seen:?}");
    assert_eq!(seen.problems[0].kind, PoolProblemKind::StartFailed);
    assert!(seen.problems[0].message.contains("ImagePullBackOff"));
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable() {
    let env = env().await;
    // A kubeconfig naming a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let path = env._dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        env.fake
            .kubeconfig_yaml()
            .replace(&env.fake.url(), &format!("http://127.0.0.1:{port}")),
    )
    .expect("write kubeconfig");
    let mut pool = pool("web", KubernetesMode::Deployment, &env.fake);
    let mut section = spillway_kubernetes::config::section(&pool).expect("section");
    section.kubeconfig = Some(path);
    pool.set_section(&section).expect("section");
    let err = env
        .provider
        .pool_observe(PoolObserve {
            pool: &pool,
            now: t0(),
        })
        .await
        .expect_err("nobody listens");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.message().contains("kubernetes API unreachable"),
        "{err}"
    );
    let err = resize(&env, &pool, 1, &[]).await.expect_err("resize");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    // A missing Deployment says what to do.
    let pool = self::pool("absent", KubernetesMode::Deployment, &env.fake);
    let err = env
        .provider
        .pool_observe(PoolObserve {
            pool: &pool,
            now: t0(),
        })
        .await
        .expect_err("no deployment");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("deploy/helm/spillway"), "{err}");
}

#[tokio::test]
async fn work_queue_creates_one_job_per_deficit_with_the_worker_command() {
    let env = env().await;
    let mut pool = pool("batch_gpu", KubernetesMode::WorkQueue, &env.fake);
    pool.queues = vec!["render".into(), "encode".into()];
    pool.concurrency = 2;
    resize(&env, &pool, 3, &[]).await.expect("resize");
    let writes = writes(&env.fake);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let create = &writes[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/apis/batch/v1/namespaces/default/jobs")
    );
    assert_eq!(create.content_type.as_deref(), Some("application/json"));
    let job = create.body.clone().expect("body");
    assert_eq!(job["metadata"]["generateName"], "batch-gpu-");
    assert_eq!(job["metadata"]["labels"]["spillway.dev/pool"], "batch_gpu");
    assert_eq!(job["spec"]["parallelism"], 3);
    assert!(
        job["spec"].get("completions").is_none(),
        "work-queue jobs leave completions unset"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], IMAGE);
    assert_eq!(
        container["args"],
        json!([
            "worker",
            "--exit-when-idle",
            "--pool",
            "batch_gpu",
            "--concurrency",
            "2",
            "--queue",
            "render",
            "--queue",
            "encode"
        ])
    );
    assert_eq!(
        container["env"][0],
        json!({"name": "SPILLWAY_SERVER", "value": "http://spillway.spillway.svc:8080"})
    );
    assert_eq!(
        container["env"][1]["valueFrom"]["secretKeyRef"],
        json!({"name": "spillway-worker-token", "key": "token"})
    );
    assert_eq!(
        container["resources"]["requests"],
        json!({"cpu": "1", "memory": "512Mi"})
    );

    // Three wanted at once, then three pods; a bigger size adds a second Job for the difference.
    assert_eq!(observe(&env, &pool).await.live(), 3);
    env.fake.settle();
    assert_eq!(observe(&env, &pool).await.count(InstanceState::Running), 3);
    resize(&env, &pool, 5, &[]).await.expect("grow");
    let jobs = env.fake.objects("jobs");
    let parallelism: Vec<_> = jobs
        .iter()
        .map(|j| j["spec"]["parallelism"].clone())
        .collect();
    assert_eq!(parallelism.len(), 2);
    assert!(parallelism.contains(&json!(2)), "{parallelism:?}");
}

/// Two pods of one Job whose workers have not registered are both stopped: the Job goes down
/// by two, so its controller starts no replacement.
#[tokio::test]
async fn work_queue_stops_unregistered_pods_without_replacements() {
    let env = env().await;
    let pool = pool("u", KubernetesMode::WorkQueue, &env.fake);
    resize(&env, &pool, 2, &[]).await.expect("resize");
    env.fake.settle();
    let pods: Vec<String> = env
        .fake
        .objects("pods")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");

    resize(&env, &pool, 0, &[&pods[0], &pods[1]])
        .await
        .expect("drain both");
    env.fake.settle();
    let job = &env.fake.objects("jobs")[0];
    assert_eq!(job["spec"]["parallelism"], json!(0), "{job}");
    let left: Vec<Value> = env.fake.objects("pods");
    assert!(left.is_empty(), "no replacement pod: {left:?}");
    assert_eq!(observe(&env, &pool).await.live(), 0);
}

#[tokio::test]
async fn work_queue_drains_through_the_store_and_deletes_finished_jobs() {
    let env = env().await;
    let pool = pool("q", KubernetesMode::WorkQueue, &env.fake);
    resize(&env, &pool, 2, &[]).await.expect("resize");
    env.fake.settle();
    play_workers(env.fake.clone(), env.store.clone(), "q".into()).await;
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.count(InstanceState::Running), 2);
    assert!(
        seen.instances.iter().all(|i| i.worker_id.is_some()),
        "{seen:?}"
    );
    let ids = running_ids(&seen);

    env.fake.clear_requests();
    resize(&env, &pool, 0, &[&ids[0], &ids[1]])
        .await
        .expect("drain all");
    assert!(
        writes(&env.fake).is_empty(),
        "draining goes through the store, not the API"
    );
    let workers = env
        .store
        .worker_list(WorkerList {
            tenant: None,
            now: t0(),
        })
        .await
        .expect("workers");
    assert!(workers.iter().all(|w| w.state == WorkerState::Draining));
    assert_eq!(observe(&env, &pool).await.count(InstanceState::Draining), 2);

    // The workers exit 0; the Job completes; the provider deletes it in the background.
    play_workers(env.fake.clone(), env.store.clone(), "q".into()).await;
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.live(), 0, "{seen:?}");
    let delete = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("the finished job is deleted");
    assert!(
        delete
            .path
            .starts_with("/apis/batch/v1/namespaces/default/jobs/q-")
    );
    assert_eq!(
        delete.body.as_ref().map(|b| b["propagationPolicy"].clone()),
        Some(json!("Background"))
    );
    env.fake.step();
    assert!(env.fake.objects("jobs").is_empty());
    assert!(env.fake.objects("pods").is_empty(), "its pods go with it");
}

/// A worker of another tenant that registered from a pod's hostname with the pool's name is
/// none of the pool's (pools serve the default tenant): the pod is not joined to it, and
/// draining the pod leaves that worker alone.
#[tokio::test]
async fn another_tenants_worker_is_neither_joined_nor_drained() {
    let env = env().await;
    let pool = pool("q", KubernetesMode::WorkQueue, &env.fake);
    resize(&env, &pool, 1, &[]).await.expect("resize");
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    let pod = seen.instances[0].id.clone();
    env.store
        .worker_register(WorkerRegister {
            id: "w-globex".into(),
            tenant: "globex".into(),
            pool: "q".into(),
            hostname: pod.clone(),
            queues: vec!["default".into()],
            concurrency: 1,
            now: t0(),
        })
        .await
        .expect("register");
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.instances[0].worker_id, None, "{seen:?}");

    resize(&env, &pool, 0, &[&pod]).await.expect("drain");
    let globex = env
        .store
        .worker_list(WorkerList {
            tenant: None,
            now: t0(),
        })
        .await
        .expect("workers")
        .into_iter()
        .find(|w| w.id == "w-globex")
        .map(|w| w.state);
    assert_eq!(
        globex,
        Some(WorkerState::Active),
        "another tenant's worker is not drained"
    );
}

#[tokio::test]
async fn a_quota_refusing_the_job_is_a_quota_problem() {
    let env = env().await;
    let pool = pool("q", KubernetesMode::WorkQueue, &env.fake);
    env.fake.set_quota(NS, "jobs", 0);
    resize(&env, &pool, 2, &[])
        .await
        .expect("quota is status, not an error");
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.problems.len(), 1, "{seen:?}");
    assert_eq!(seen.problems[0].kind, PoolProblemKind::Quota);
    assert!(seen.problems[0].message.contains("exceeded quota"));
    assert_eq!(seen.live(), 0);
}

#[tokio::test]
async fn a_deployment_short_of_pod_quota_reports_it() {
    let env = env().await;
    let pool = pool("web", KubernetesMode::Deployment, &env.fake);
    install_deployment(&env.fake, "web");
    env.fake.set_quota(NS, "pods", 1);
    resize(&env, &pool, 3, &[]).await.expect("resize");
    env.fake.settle();
    let seen = observe(&env, &pool).await;
    assert_eq!(seen.count(InstanceState::Running), 1);
    let kinds: Vec<_> = seen.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, vec![PoolProblemKind::Quota], "{seen:?}");
}

/// Method, URI, content type and body of one request.
type Seen = (String, String, Option<String>, Value);

/// The provider over a `tower::service_fn` instead of a network: the exact request it sends.
#[tokio::test]
async fn tower_level_scale_request() {
    use kube::client::Body;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let record = record.clone();
        async move {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            record
                .lock()
                .expect("lock")
                .push((method.clone(), uri.clone(), content_type, body));
            let answer = if uri.starts_with("/api/v1/namespaces/team/pods") {
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": []})
            } else if uri.contains("/scale") {
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "workers"},
                    "spec": {"replicas": 4}})
            } else {
                json!({"kind": "Deployment", "apiVersion": "apps/v1",
                    "metadata": {"name": "workers", "namespace": "team", "resourceVersion": "42"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
                        "template": {"metadata": {"labels": {"app": "w"}},
                            "spec": {"containers": [{"name": "w", "image": "i"}]}}}})
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from(answer.to_string().into_bytes()))
                    .expect("response"),
            )
        }
    });
    let client = kube::Client::new(service, "team");
    let dir = tempfile::tempdir().expect("dir");
    let store: DynStore = Arc::new(
        SqliteStore::open(&dir.path().join("s.db"))
            .await
            .expect("store"),
    );
    let provider = KubernetesProvider::with_client(store, client, "team");
    let mut pool = test_pool("pool");
    pool.provider = "kubernetes".to_string();
    pool.set_section(&KubernetesPool {
        deployment: Some("workers".into()),
        ..KubernetesPool::default()
    })
    .expect("section");
    provider
        .pool_resize(PoolResize {
            pool: &pool,
            desired: 4,
            drain: vec![],
            now: t0(),
        })
        .await
        .expect("resize");
    let seen = seen.lock().expect("lock").clone();
    let (method, uri, content_type, body) = seen.last().cloned().expect("requests");
    assert_eq!(method, "PATCH");
    assert_eq!(
        uri,
        "/apis/apps/v1/namespaces/team/deployments/workers/scale?"
    );
    assert_eq!(
        content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        body,
        json!({"metadata": {"resourceVersion": "42"}, "spec": {"replicas": 4}})
    );
    let list = &seen[1];
    assert!(list.1.contains("labelSelector=app%3Dw"), "{list:?}");
}

#[test]
fn job_manifest_carries_pool_resources_and_placement() {
    let mut pool = test_pool("gpu");
    pool.provider = "kubernetes".to_string();
    pool.resources.cpu = 0.5;
    pool.resources.gpu = 1;
    let mut section = section(KubernetesMode::WorkQueue, std::path::Path::new("/k"));
    section.service_account = Some("batch".into());
    section.token_key = Some("worker-token".into());
    section.node_selector.insert("pool".into(), "spot".into());
    section.labels.insert("team".into(), "render".into());
    let job = spillway_kubernetes::provider::job_manifest(&pool, &section, "jobs", 4);
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "batch");
    assert_eq!(spec["nodeSelector"], json!({"pool": "spot"}));
    let resources = &spec["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "500m");
    assert_eq!(resources["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(
        spec["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["key"],
        "worker-token"
    );
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["team"], "render");
    assert_eq!(labels["spillway.dev/pool"], "gpu");
    assert_eq!(job["metadata"]["namespace"], "jobs");
}

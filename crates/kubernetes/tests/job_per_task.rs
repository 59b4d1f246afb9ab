//! Job-per-task mode end to end: a real Spillway server (SQLite in a temporary folder) over
//! HTTP on 127.0.0.1, a real worker running the Kubernetes Job executor, and the in-repo fake
//! API server reached through its kubeconfig. The test plays the kubelet.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use spillway_client::{Client, TaskListQuery};
use spillway_core::api::{CreateQueue, CreateToken, SubmitJob};
use spillway_core::auth::Role;
use spillway_core::model::{QueueSettings, Task};
use spillway_core::state::TaskState;
use spillway_kubernetes::fake::FakeApiServer;
use spillway_kubernetes::job_executor::{ClusterAccess, JobExecutorConfig, KubernetesJobExecutor};
use spillway_testkit::{TestServer, TestServerExt, wait_until, wait_until_seen};
use spillway_worker::{WorkerConfig, WorkerSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

struct Spillway {
    base: String,
    admin: Client,
    worker_token: String,
    server: TestServer,
}

impl Spillway {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let base = server.base.clone();
        let admin = server.admin_client();
        let worker_token = admin
            .token_create(&CreateToken {
                name: "worker".into(),
                role: Role::Worker,
                tenant: Some("default".into()),
                expires_at: None,
                queues: None,
            })
            .await
            .unwrap()
            .token;
        admin
            .queue_create(&CreateQueue {
                name: "k8s".into(),
                tenant: None,
                // One attempt, so a failing task ends at once and the outcome is certain.
                settings: QueueSettings {
                    max_attempts: 1,
                    ..Default::default()
                },
            })
            .await
            .unwrap();
        Self {
            base,
            admin,
            worker_token,
            server,
        }
    }

    async fn tasks(&self, job_id: &str) -> Vec<Task> {
        let mut tasks = self
            .admin
            .job_task_list(job_id, &TaskListQuery::default())
            .await
            .unwrap()
            .items;
        tasks.sort_by_key(|t| t.index);
        tasks
    }

    /// A worker serving queue `k8s` through the Kubernetes Job executor of `fake`.
    async fn worker(
        &self,
        fake: &FakeApiServer,
        shutdown: CancellationToken,
    ) -> JoinHandle<WorkerSummary> {
        self.worker_with(fake, shutdown, JobExecutorConfig::default())
            .await
    }

    /// [`Self::worker`] with executor settings of the test's choosing (namespace and default
    /// image are set here).
    async fn worker_with(
        &self,
        fake: &FakeApiServer,
        shutdown: CancellationToken,
        executor_config: JobExecutorConfig,
    ) -> JoinHandle<WorkerSummary> {
        let executor = KubernetesJobExecutor::connect(
            &ClusterAccess {
                kubeconfig: Some(fake.kubeconfig_path().to_path_buf()),
                context: None,
            },
            JobExecutorConfig {
                namespace: Some("batch".into()),
                default_image: Some("busybox:1.36".into()),
                ..executor_config
            },
        )
        .await
        .unwrap();
        let mut config = WorkerConfig::new(&self.base, Some(self.worker_token.clone()));
        config.queues = vec!["k8s".into()];
        config.concurrency = 3;
        config.scratch_dir = self.server.dir().join("scratch");
        config.heartbeat_interval = Duration::from_millis(200);
        config.lease_wait = Duration::from_secs(1);
        config.grace_period = Duration::from_millis(200);
        tokio::spawn(async move {
            spillway_worker::run_with(config, Arc::new(executor), shutdown)
                .await
                .unwrap()
        })
    }
}

/// Poll `check` (running the fake's controllers before each look) until it gives a value.
async fn wait_for<T>(fake: &FakeApiServer, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    wait_until(what, DEADLINE, || {
        fake.step();
        std::future::ready(check())
    })
    .await
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["labels"][key].as_str()
}

fn name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap().to_string()
}

/// The pod of each task (by task id), once every one of `task_ids` has one.
fn pods_by_task(fake: &FakeApiServer, task_ids: &[i64]) -> Option<BTreeMap<i64, String>> {
    let pods: BTreeMap<i64, String> = fake
        .objects("pods")
        .iter()
        .filter_map(|pod| Some((label(pod, "spillway.dev/task")?.parse().ok()?, name(pod))))
        .collect();
    task_ids
        .iter()
        .all(|id| pods.contains_key(id))
        .then_some(pods)
}

#[tokio::test]
async fn tasks_run_as_jobs_and_end_from_their_status() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeApiServer::start().await.unwrap();
    let spillway = Spillway::start().await;
    let mut submit =
        SubmitJob::command("k8s", vec!["run".into(), "--part".into(), "{index}".into()]);
    submit.count = Some(3);
    let job = spillway.admin.job_submit(&submit).await.unwrap().job;
    let task_ids: Vec<i64> = spillway.tasks(&job.id).await.iter().map(|t| t.id).collect();

    let shutdown = CancellationToken::new();
    let worker = spillway.worker(&fake, shutdown.clone()).await;

    // The worker creates one Job per task; the Job controller makes their pods.
    let pods = wait_for(&fake, "a pod per task", || pods_by_task(&fake, &task_ids)).await;
    let jobs = fake.objects("jobs");
    assert_eq!(jobs.len(), 3);
    for k8s_job in &jobs {
        assert_eq!(k8s_job["metadata"]["namespace"], "batch");
        assert_eq!(label(k8s_job, "spillway.dev/job"), Some(job.id.as_str()));
        assert_eq!(label(k8s_job, "spillway.dev/attempt"), Some("1"));
        assert_eq!(k8s_job["spec"]["backoffLimit"], 0);
        let container = &k8s_job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "busybox:1.36");
        let index = container["command"][2].as_str().unwrap();
        let task_id: i64 = label(k8s_job, "spillway.dev/task")
            .unwrap()
            .parse()
            .unwrap();
        let position = task_ids.iter().position(|id| *id == task_id).unwrap();
        assert_eq!(index, position.to_string(), "{{index}} is the task's index");
    }

    // Play the kubelet: start the pods, then end them with 0, 3 and 0.
    fake.start_pending_pods();
    assert!(fake.finish_pod(&pods[&task_ids[0]], 0, "ok\n"));
    assert!(fake.finish_pod(&pods[&task_ids[1]], 3, "bad input\n"));
    assert!(fake.finish_pod(&pods[&task_ids[2]], 0, "ok too\n"));

    let tasks = wait_until_seen(
        "the tasks to end",
        DEADLINE,
        || {
            fake.step();
            spillway.tasks(&job.id)
        },
        |tasks| tasks.iter().all(|t| t.state.is_final()),
    )
    .await;
    assert_eq!(tasks[0].state, TaskState::Succeeded, "{:?}", tasks[0]);
    assert_eq!(tasks[2].state, TaskState::Succeeded, "{:?}", tasks[2]);
    assert_eq!(tasks[1].state, TaskState::Dead, "{:?}", tasks[1]);
    assert_eq!(tasks[1].exit_code, Some(3));
    assert_eq!(tasks[1].last_error.as_deref(), Some("exited with status 3"));
    let log = spillway.admin.task_logs(tasks[0].id, None).await.unwrap();
    assert!(log.contains("ok"), "{log:?}");
    let log = spillway.admin.task_logs(tasks[1].id, None).await.unwrap();
    assert!(log.contains("bad input"), "{log:?}");

    // Finished Jobs are deleted, and with them (Background propagation) their pods.
    wait_for(&fake, "the Jobs and pods to be deleted", || {
        (fake.objects("jobs").is_empty() && fake.objects("pods").is_empty()).then_some(())
    })
    .await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (2, 1), "{summary:?}");
}

#[tokio::test]
async fn cancelling_the_spillway_job_deletes_its_running_kubernetes_job() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeApiServer::start().await.unwrap();
    let spillway = Spillway::start().await;
    let submit = SubmitJob::command("k8s", vec!["sleep".into(), "3600".into()]);
    let job = spillway.admin.job_submit(&submit).await.unwrap().job;
    let task_id = spillway.tasks(&job.id).await[0].id;

    let shutdown = CancellationToken::new();
    let worker = spillway.worker(&fake, shutdown.clone()).await;
    let pods = wait_for(&fake, "the task's pod", || pods_by_task(&fake, &[task_id])).await;
    fake.start_pending_pods();
    let job_name = name(&fake.objects("jobs")[0]);

    spillway.admin.job_cancel(&job.id).await.unwrap();
    wait_for(&fake, "the Kubernetes Job to be deleted", || {
        fake.objects("jobs").is_empty().then_some(())
    })
    .await;
    let delete = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(
        delete.path,
        format!("/apis/batch/v1/namespaces/batch/jobs/{job_name}")
    );
    let policy = delete
        .body
        .as_ref()
        .and_then(|b| b["propagationPolicy"].as_str().map(str::to_string))
        .or_else(|| delete.query.get("propagationPolicy").cloned());
    assert_eq!(policy.as_deref(), Some("Background"));
    // The garbage collector takes the pod too (the kubelet stops it).
    wait_for(&fake, "the pod to go", || {
        fake.finish_terminating_pods();
        fake.object("pods", "batch", &pods[&task_id])
            .is_none()
            .then_some(())
    })
    .await;

    let task = wait_until_seen(
        "the task to be cancelled",
        DEADLINE,
        || async { spillway.tasks(&job.id).await.remove(0) },
        |task| task.state == TaskState::Cancelled,
    )
    .await;
    assert_eq!(task.failures, 0);
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.released, 1, "{summary:?}");
}

#[tokio::test]
async fn a_pod_that_can_never_start_fails_the_task_through_the_queue_policy() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeApiServer::start().await.unwrap();
    let spillway = Spillway::start().await;
    let submit = SubmitJob::command("k8s", vec!["run".into()]);
    let job = spillway.admin.job_submit(&submit).await.unwrap().job;
    let task_id = spillway.tasks(&job.id).await[0].id;

    let shutdown = CancellationToken::new();
    let worker = spillway
        .worker_with(
            &fake,
            shutdown.clone(),
            JobExecutorConfig {
                // Look at the pod often; the pending limit stays long, so only a reason that
                // can never clear ends the attempt.
                pod_check_interval: Duration::from_millis(50),
                ..JobExecutorConfig::default()
            },
        )
        .await;
    let pods = wait_for(&fake, "the task's pod", || pods_by_task(&fake, &[task_id])).await;
    // The kubelet cannot parse the image reference.
    assert!(fake.modify("pods", "batch", &pods[&task_id], |pod| {
        pod["status"]["phase"] = "Pending".into();
        pod["status"]["containerStatuses"] = serde_json::json!([{
            "name": "task", "image": "busybox:1.36", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": { "waiting": { "reason": "InvalidImageName",
                                    "message": "couldn't parse image name" } },
        }]);
    }));

    let task = wait_until_seen(
        "the task to end",
        DEADLINE,
        || async { spillway.tasks(&job.id).await.remove(0) },
        |task| task.state.is_final(),
    )
    .await;
    assert_eq!(task.state, TaskState::Dead, "{task:?}");
    assert_eq!(task.exit_code, Some(125));
    let log = spillway.admin.task_logs(task.id, None).await.unwrap();
    assert!(log.contains("InvalidImageName"), "{log:?}");
    // The stuck Job is removed, or it would go on trying to start.
    wait_for(&fake, "the Job to be deleted", || {
        fake.objects("jobs").is_empty().then_some(())
    })
    .await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.failed, 1, "{summary:?}");
}

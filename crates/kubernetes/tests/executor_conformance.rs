//! The executor conformance suite on [`KubernetesJobExecutor`], against the in-repo fake API
//! server reached through its kubeconfig. The fake runs no commands, so a background kubelet
//! player acts each case's behaviour out on the Job's pod: it runs the fake's controllers
//! (Job, garbage collector, `activeDeadlineSeconds`), starts pending pods, and ends each pod
//! the way its behaviour says, printing variables from the pod spec's `env` as a command
//! would. "Nothing left" means no Job and no pod of the attempt, finished or not.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use spillway_executor::conformance::{Behaviour, DynHarness, Harness};
use spillway_executor::{ExecRequest, Executor};
use spillway_kubernetes::fake::FakeApiServer;
use spillway_kubernetes::job_executor::spec::{CONTAINER_NAME, LABEL_TASK};
use spillway_kubernetes::job_executor::{ClusterAccess, JobExecutorConfig, KubernetesJobExecutor};
use tokio::task::JoinHandle;

/// How often the kubelet player moves the fake cluster along.
const TICK: Duration = Duration::from_millis(10);

/// What the player does with the pod of one task.
#[derive(Debug)]
struct Script {
    behaviour: Behaviour,
    /// The pod has been ended, or has written its log (for `Hang`).
    acted: bool,
}

type Scripts = Arc<Mutex<BTreeMap<String, Script>>>;

struct KubernetesHarness {
    fake: Arc<FakeApiServer>,
    executor: Arc<KubernetesJobExecutor>,
    scripts: Scripts,
    kubelet: JoinHandle<()>,
}

impl Drop for KubernetesHarness {
    fn drop(&mut self) {
        self.kubelet.abort();
    }
}

impl KubernetesHarness {
    async fn boxed() -> DynHarness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fake = Arc::new(FakeApiServer::start().await.unwrap());
        let executor = KubernetesJobExecutor::connect(
            &ClusterAccess {
                kubeconfig: Some(fake.kubeconfig_path().to_path_buf()),
                context: None,
            },
            JobExecutorConfig {
                namespace: Some("batch".into()),
                default_image: Some("busybox:1.36".into()),
                ..JobExecutorConfig::default()
            },
        )
        .await
        .unwrap();
        let scripts = Scripts::default();
        let kubelet = tokio::spawn(play_kubelet(fake.clone(), scripts.clone()));
        Box::new(Self {
            fake,
            executor: Arc::new(executor),
            scripts,
            kubelet,
        })
    }
}

fn task_of(request: &ExecRequest) -> String {
    request.env["SPILLWAY_TASK_ID"].clone()
}

fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object["metadata"]["labels"][key].as_str()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

/// The pod's container's environment, as the kubelet would give it to the command.
fn container_env(pod: &Value) -> BTreeMap<String, String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == CONTAINER_NAME)
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["value"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// The cluster: controllers and kubelet, every [`TICK`], until the harness is dropped.
async fn play_kubelet(fake: Arc<FakeApiServer>, scripts: Scripts) {
    loop {
        fake.step();
        fake.finish_terminating_pods();
        fake.step();
        fake.start_pending_pods();
        for pod in fake.objects("pods") {
            let running = pod["status"]["phase"] == "Running";
            let deleting = pod["metadata"].get("deletionTimestamp").is_some();
            let Some(task) = label(&pod, LABEL_TASK) else {
                continue;
            };
            let mut scripts = scripts.lock().unwrap();
            let Some(script) = scripts.get_mut(task) else {
                continue;
            };
            if !running || deleting || script.acted {
                continue;
            }
            script.acted = match &script.behaviour {
                Behaviour::Exit { code, log } => fake.finish_pod(name(&pod), *code, log),
                Behaviour::PrintEnv { names } => {
                    let env = container_env(&pod);
                    let log: String = names
                        .iter()
                        .map(|n| format!("{n}={}\n", env.get(n).map_or("", String::as_str)))
                        .collect();
                    fake.finish_pod(name(&pod), 0, &log)
                }
                Behaviour::Hang { log } => fake.write_log(name(&pod), log),
            };
        }
        fake.step();
        tokio::time::sleep(TICK).await;
    }
}

#[async_trait]
impl Harness for KubernetesHarness {
    fn executor(&self) -> Arc<dyn Executor> {
        self.executor.clone()
    }

    async fn act_out(&self, request: &mut ExecRequest, behaviour: &Behaviour) {
        // What a busybox container would run; the player acts it out on the fake.
        request.argv = vec![
            "sh".into(),
            "-c".into(),
            format!(": acted out by the conformance harness: {behaviour:?}")
                .chars()
                .take(200)
                .collect(),
        ];
        request.shell = false;
        request.image = None;
        self.scripts.lock().unwrap().insert(
            task_of(request),
            Script {
                behaviour: behaviour.clone(),
                acted: false,
            },
        );
    }

    async fn started(&self, request: &ExecRequest) -> bool {
        self.scripts
            .lock()
            .unwrap()
            .get(&task_of(request))
            .is_some_and(|s| s.acted)
    }

    async fn leftovers(&self, request: &ExecRequest) -> Vec<String> {
        // Every Job and pod of the attempt, finished or not: with its default settings the
        // executor deletes each attempt's Job, and the garbage collector its pods.
        let task = task_of(request);
        let mut left = Vec::new();
        for (plural, kind) in [("jobs", "Job"), ("pods", "pod")] {
            for object in self.fake.objects(plural) {
                if label(&object, LABEL_TASK) != Some(task.as_str()) {
                    continue;
                }
                let mut state = Vec::new();
                if let Some(phase) = object["status"]["phase"].as_str() {
                    state.push(phase.to_string());
                }
                for condition in object["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if kind == "Job" && condition["status"] == "True" {
                        state.push(condition["type"].as_str().unwrap_or("").to_string());
                    }
                }
                if object["metadata"].get("deletionTimestamp").is_some() {
                    state.push("deleting".to_string());
                }
                left.push(format!("{kind} {} ({})", name(&object), state.join(", ")));
            }
        }
        left
    }
}

spillway_executor::executor_conformance_tests!(KubernetesHarness::boxed);

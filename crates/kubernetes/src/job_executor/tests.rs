//! The executor against a `kube::Client` whose transport is a tower service answering each
//! request the way the API server documents it, recording every request for assertions.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::client::Body;
use serde_json::{Value, json};
use spillway_executor::{ExecRequest, Executor, ExitKind};
use spillway_testkit::wait_until;
use tokio_util::sync::CancellationToken;

use super::{JobExecutorConfig, KubernetesJobExecutor};

const JOBS: &str = "/apis/batch/v1/namespaces/work/jobs";
const PODS: &str = "/api/v1/namespaces/work/pods";
const NAME: &str = "spillway-42-2";
const JOB_ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// One request the executor made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Value,
}

impl Call {
    fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }

    /// `"VERB path"` in the words of the API: create, get, watch, list, delete, log.
    fn summary(&self) -> String {
        let verb = match self.method.as_str() {
            "POST" => "create",
            "DELETE" => "delete",
            _ if self.is_watch() => "watch",
            _ if self.path.ends_with("/log") => "log",
            _ if self.path == JOBS || self.path == PODS => "list",
            _ => "get",
        };
        format!("{verb} {}", self.path)
    }
}

/// How the fake transport answers one request.
enum Answer {
    Json(u16, Value),
    Text(String),
    /// Newline-delimited watch events, then the end of the stream.
    Events(Vec<Value>),
    /// Never answer (a watch on a Job that keeps running).
    Hang,
}

type Router = dyn Fn(&Call) -> Answer + Send + Sync;

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The requests other than listing pods (which the pending check also does at any time)
    /// and listing Jobs of earlier attempts.
    fn story(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(Call::summary)
            .filter(|s| s != &format!("list {PODS}") && s != &format!("list {JOBS}"))
            .collect()
    }
}

fn client(
    recorder: &Recorder,
    router: impl Fn(&Call) -> Answer + Send + Sync + 'static,
) -> kube::Client {
    let router: Arc<Router> = Arc::new(router);
    let recorder = recorder.clone();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let router = router.clone();
        let recorder = recorder.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().map(url_decode_pairs).unwrap_or_default(),
                body: if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                },
            };
            recorder.calls.lock().unwrap().push(call.clone());
            let (status, content_type, text) = match router(&call) {
                Answer::Json(status, value) => (status, "application/json", value.to_string()),
                Answer::Text(text) => (200, "text/plain", text),
                Answer::Events(events) => (
                    200,
                    "application/json",
                    events.iter().map(|e| format!("{e}\n")).collect(),
                ),
                Answer::Hang => std::future::pending().await,
            };
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(Body::from(text.into_bytes()))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, "work")
}

/// Split a query string into decoded pairs.
fn url_decode_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn labels() -> Value {
    json!({
        "spillway.dev/task": "42",
        "spillway.dev/job": JOB_ID,
        "spillway.dev/attempt": "2",
    })
}

fn request() -> ExecRequest {
    ExecRequest {
        resources: Default::default(),
        argv: vec!["python".into(), "run.py".into()],
        shell: false,
        env: BTreeMap::from([
            ("SPILLWAY_TASK_ID".into(), "42".into()),
            ("SPILLWAY_JOB_ID".into(), JOB_ID.into()),
            ("SPILLWAY_TASK_INDEX".into(), "0".into()),
            ("SPILLWAY_ATTEMPT".into(), "2".into()),
            ("SPILLWAY_INPUT_DIR".into(), "/tmp/w/42-2/input".into()),
            ("SPILLWAY_OUTPUT_DIR".into(), "/tmp/w/42-2/output".into()),
            ("SPILLWAY_PAYLOAD".into(), "/tmp/w/42-2/payload.json".into()),
            ("MODE".into(), "fast".into()),
        ]),
        cwd: "/tmp/w/42-2".into(),
        stdin: br#"{"n":7}"#.to_vec(),
        timeout: Some(Duration::from_secs(600)),
        image: Some("python:3.12-slim".into()),
    }
}

fn config() -> JobExecutorConfig {
    JobExecutorConfig {
        // The first check runs at once; later ones would be timing-dependent.
        pod_check_interval: Duration::from_secs(3600),
        ..JobExecutorConfig::default()
    }
}

/// The Job as the API server returns it, with `status`.
fn job(resource_version: &str, status: Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": NAME, "namespace": "work", "uid": "u-1",
            "resourceVersion": resource_version, "labels": labels(),
        },
        "spec": { "backoffLimit": 0, "activeDeadlineSeconds": 600, "template": {} },
        "status": status,
    })
}

fn condition(kind: &str, reason: &str) -> Value {
    json!({ "conditions": [{ "type": kind, "status": "True", "reason": reason }] })
}

fn pod_list(state: Value, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": { "resourceVersion": "9" },
        "items": [{
            "metadata": { "name": "spillway-42-2-x7k2p", "namespace": "work", "labels": labels(),
                          "creationTimestamp": "2026-01-01T00:00:00Z" },
            "status": { "phase": phase, "containerStatuses": [{
                "name": "task", "image": "python:3.12-slim", "imageID": "", "ready": false,
                "restartCount": 0, "state": state,
            }]},
        }],
    })
}

fn terminated(code: i32, reason: &str) -> Value {
    pod_list(
        json!({ "terminated": { "exitCode": code, "reason": reason } }),
        if code == 0 { "Succeeded" } else { "Failed" },
    )
}

fn job_list() -> Value {
    json!({ "apiVersion": "batch/v1", "kind": "JobList", "metadata": { "resourceVersion": "9" }, "items": [] })
}

fn status(code: u16, reason: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code,
            "reason": reason, "message": format!("jobs.batch \"{NAME}\" {reason}") })
}

fn deleted() -> Answer {
    Answer::Json(
        200,
        json!({ "apiVersion": "v1", "kind": "Status", "status": "Success" }),
    )
}

/// A cluster where the Job runs, then its watch reports `finished`, its pod `pod`, its log
/// `log`.
fn finishing(finished: Value, pod: Value, log: &'static str) -> impl Fn(&Call) -> Answer {
    move |call: &Call| match call.summary().split_once(' ').unwrap() {
        ("create", JOBS) => Answer::Json(201, job("5", json!({}))),
        ("get", path) if path == format!("{JOBS}/{NAME}") => {
            Answer::Json(200, job("5", json!({ "active": 1 })))
        }
        ("watch", JOBS) => Answer::Events(vec![
            json!({ "type": "MODIFIED", "object": finished.clone() }),
        ]),
        ("list", JOBS) => Answer::Json(200, job_list()),
        ("list", PODS) => Answer::Json(200, pod.clone()),
        ("log", _) => Answer::Text(log.to_string()),
        ("delete", _) => deleted(),
        other => panic!("unexpected request {other:?}"),
    }
}

#[tokio::test]
async fn a_completed_job_is_exit_zero_with_its_log_and_is_deleted() {
    let recorder = Recorder::default();
    let cluster = finishing(
        job("7", condition("Complete", "CompletionsReached")),
        terminated(0, "Completed"),
        "ok\n",
    );
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Exited(0));
    assert_eq!(outcome.log_tail, "ok\n");

    assert_eq!(
        recorder.story(),
        [
            format!("create {JOBS}"),
            format!("get {JOBS}/{NAME}"),
            format!("watch {JOBS}"),
            format!("log {PODS}/spillway-42-2-x7k2p/log"),
            format!("delete {JOBS}/{NAME}"),
        ]
    );
    let calls = recorder.calls();
    let create = &calls[0];
    assert_eq!(
        create.body,
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": NAME, "labels": labels() },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": 600,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {
                        "labels": labels(),
                        "annotations": { "spillway.dev/payload": "{\"n\":7}" },
                    },
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "containers": [{
                            "name": "task",
                            "image": "python:3.12-slim",
                            "command": ["python", "run.py"],
                            "env": [
                                { "name": "MODE", "value": "fast" },
                                { "name": "SPILLWAY_ATTEMPT", "value": "2" },
                                { "name": "SPILLWAY_JOB_ID", "value": JOB_ID },
                                { "name": "SPILLWAY_PAYLOAD", "value": "/var/run/spillway/payload.json" },
                                { "name": "SPILLWAY_TASK_ID", "value": "42" },
                                { "name": "SPILLWAY_TASK_INDEX", "value": "0" },
                            ],
                            "volumeMounts": [{
                                "name": "spillway-payload",
                                "mountPath": "/var/run/spillway",
                                "readOnly": true,
                            }],
                            "resources": {
                                "requests": { "cpu": "1000m", "memory": "512Mi" },
                                "limits": { "memory": "512Mi" },
                            },
                        }],
                        "volumes": [{
                            "name": "spillway-payload",
                            "downwardAPI": { "items": [{
                                "path": "payload.json",
                                "fieldRef": { "fieldPath": "metadata.annotations['spillway.dev/payload']" },
                            }]},
                        }],
                    },
                },
            },
        })
    );
    let watch = calls.iter().find(|c| c.is_watch()).unwrap();
    assert_eq!(
        watch.query["resourceVersion"], "5",
        "the watch resumes from the get"
    );
    assert_eq!(
        watch.query["fieldSelector"],
        format!("metadata.name={NAME}")
    );
    let log = calls.iter().find(|c| c.path.ends_with("/log")).unwrap();
    assert_eq!(log.query["container"], "task");
    assert_eq!(log.query["tailLines"], "2000");
    let pods = calls.iter().find(|c| c.path == PODS).unwrap();
    assert_eq!(
        pods.query["labelSelector"],
        format!("spillway.dev/task=42,spillway.dev/job={JOB_ID},spillway.dev/attempt=2")
    );
    let delete = calls.iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(delete.body["propagationPolicy"], "Background");
}

#[tokio::test]
async fn a_failed_job_reports_the_container_exit_code_and_oom_kills_say_so() {
    let recorder = Recorder::default();
    let cluster = finishing(
        job("7", condition("Failed", "BackoffLimitExceeded")),
        terminated(3, "Error"),
        "trying\nboom\n",
    );
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Exited(3));
    assert_eq!(outcome.log_tail, "trying\nboom\n");
    assert!(recorder.story().contains(&format!("delete {JOBS}/{NAME}")));

    let recorder = Recorder::default();
    let cluster = finishing(
        job("7", condition("Failed", "BackoffLimitExceeded")),
        terminated(137, "OOMKilled"),
        "allocating",
    );
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Exited(137));
    assert!(
        outcome
            .log_tail
            .starts_with("allocating\nkubernetes: OOMKilled"),
        "{}",
        outcome.log_tail
    );
}

#[tokio::test]
async fn a_deadline_is_a_timeout_and_kept_jobs_are_not_deleted() {
    let recorder = Recorder::default();
    let cluster = finishing(
        job("7", condition("Failed", "DeadlineExceeded")),
        terminated(137, "Error"),
        "",
    );
    let config = JobExecutorConfig {
        keep_jobs: true,
        ..config()
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::TimedOut(Duration::from_secs(600)));
    assert!(recorder.calls().iter().all(|c| c.method != "DELETE"));
}

#[tokio::test]
async fn an_existing_job_of_the_same_attempt_is_adopted_not_created_twice() {
    let recorder = Recorder::default();
    let cluster = |call: &Call| match call.summary().split_once(' ').unwrap() {
        ("create", JOBS) => Answer::Json(409, status(409, "AlreadyExists")),
        // Already finished while no worker watched it.
        ("get", _) => Answer::Json(200, job("8", condition("Complete", "CompletionsReached"))),
        ("list", JOBS) => Answer::Json(200, job_list()),
        ("list", PODS) => Answer::Json(200, terminated(0, "Completed")),
        ("log", _) => Answer::Text("done before\n".into()),
        ("delete", _) => deleted(),
        other => panic!("unexpected request {other:?}"),
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Exited(0));
    assert_eq!(outcome.log_tail, "done before\n");
    let story = recorder.story();
    assert_eq!(story.iter().filter(|s| s.starts_with("create")).count(), 1);
    assert!(!story.iter().any(|s| s.starts_with("watch")), "{story:?}");
}

#[tokio::test]
async fn a_job_of_the_same_name_from_someone_else_is_an_error() {
    let recorder = Recorder::default();
    let cluster = |call: &Call| match call.summary().split_once(' ').unwrap() {
        ("create", JOBS) => Answer::Json(409, status(409, "AlreadyExists")),
        ("get", _) => {
            let mut other = job("8", json!({}));
            other["metadata"]["labels"]["spillway.dev/job"] = json!("another-job");
            Answer::Json(200, other)
        }
        other => panic!("unexpected request {other:?}"),
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let err = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message().contains("--kubernetes-job-prefix"), "{err}");
}

#[tokio::test]
async fn jobs_of_earlier_attempts_are_deleted_and_later_ones_left_alone() {
    let recorder = Recorder::default();
    let finished = finishing(
        job("7", condition("Complete", "CompletionsReached")),
        terminated(0, "Completed"),
        "",
    );
    let cluster = move |call: &Call| {
        if call.summary() == format!("list {JOBS}") {
            let mut earlier = job("3", json!({ "active": 1 }));
            earlier["metadata"]["name"] = json!("spillway-42-1");
            earlier["metadata"]["labels"]["spillway.dev/attempt"] = json!("1");
            // A later attempt's Job (this worker lost the race) must be left alone.
            let mut later = job("4", json!({ "active": 1 }));
            later["metadata"]["name"] = json!("spillway-42-3");
            later["metadata"]["labels"]["spillway.dev/attempt"] = json!("3");
            let mut list = job_list();
            list["items"] = json!([earlier, job("5", json!({ "active": 1 })), later]);
            return Answer::Json(200, list);
        }
        finished(call)
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    let calls = recorder.calls();
    let list = calls
        .iter()
        .find(|c| c.path == JOBS && c.method == "GET" && !c.is_watch())
        .unwrap();
    assert_eq!(
        list.query["labelSelector"],
        format!("spillway.dev/task=42,spillway.dev/job={JOB_ID}")
    );
    let deletes: Vec<_> = recorder
        .story()
        .into_iter()
        .filter(|s| s.starts_with("delete"))
        .collect();
    assert_eq!(
        deletes,
        [
            format!("delete {JOBS}/spillway-42-1"),
            format!("delete {JOBS}/{NAME}")
        ]
    );
}

#[tokio::test]
async fn a_watch_that_is_gone_reads_the_job_again_and_resumes() {
    let recorder = Recorder::default();
    let watches = Arc::new(Mutex::new(0));
    let cluster = move |call: &Call| match call.summary().split_once(' ').unwrap() {
        ("create", JOBS) => Answer::Json(201, job("5", json!({}))),
        ("get", _) => Answer::Json(200, job("5", json!({ "active": 1 }))),
        ("watch", JOBS) => {
            let mut n = watches.lock().unwrap();
            *n += 1;
            match *n {
                // The server closes the first watch after a bookmark: resume from it.
                1 => Answer::Events(vec![json!({ "type": "BOOKMARK", "object": {
                    "kind": "Job", "apiVersion": "batch/v1", "metadata": { "resourceVersion": "6" } } })]),
                // Then the version is too old.
                2 => Answer::Events(vec![
                    json!({ "type": "ERROR", "object": status(410, "Expired") }),
                ]),
                _ => Answer::Events(vec![json!({ "type": "MODIFIED",
                    "object": job("9", condition("Complete", "CompletionsReached")) })]),
            }
        }
        ("list", JOBS) => Answer::Json(200, job_list()),
        ("list", PODS) => Answer::Json(200, terminated(0, "Completed")),
        ("log", _) => Answer::Text(String::new()),
        ("delete", _) => deleted(),
        other => panic!("unexpected request {other:?}"),
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.exit, ExitKind::Exited(0));
    let calls = recorder.calls();
    let versions: Vec<&str> = calls
        .iter()
        .filter(|c| c.is_watch())
        .map(|c| c.query["resourceVersion"].as_str())
        .collect();
    assert_eq!(versions, ["5", "6", "5"]);
    let gets = recorder
        .story()
        .iter()
        .filter(|s| s.starts_with("get"))
        .count();
    assert_eq!(gets, 2, "the 410 makes the executor read the Job again");
}

#[tokio::test]
async fn stopping_deletes_the_running_job_with_its_pod() {
    let recorder = Recorder::default();
    let cluster = |call: &Call| match call.summary().split_once(' ').unwrap() {
        ("create", JOBS) => Answer::Json(201, job("5", json!({}))),
        ("get", _) => Answer::Json(200, job("5", json!({ "active": 1 }))),
        ("watch", JOBS) => Answer::Hang,
        ("list", JOBS) => Answer::Json(200, job_list()),
        ("list", PODS) => Answer::Json(200, pod_list(json!({ "running": {} }), "Running")),
        ("log", _) => Answer::Text("working\n".into()),
        ("delete", _) => deleted(),
        other => panic!("unexpected request {other:?}"),
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { executor.run(request(), stop).await }
    });
    // Stop once the executor is watching.
    wait_until("a watch to start", Duration::from_secs(10), || async {
        recorder.calls().iter().any(Call::is_watch).then_some(())
    })
    .await;
    stop.cancel();
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.exit, ExitKind::Stopped);
    assert_eq!(outcome.log_tail, "working\n");
    let calls = recorder.calls();
    let delete = calls.iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(delete.path, format!("{JOBS}/{NAME}"));
    assert_eq!(delete.body["propagationPolicy"], "Background");
}

#[tokio::test]
async fn a_pod_that_cannot_pull_its_image_ends_the_attempt_as_not_run() {
    let recorder = Recorder::default();
    let cluster = |call: &Call| match call.summary().split_once(' ').unwrap() {
        ("create", JOBS) => Answer::Json(201, job("5", json!({}))),
        ("get", _) => Answer::Json(200, job("5", json!({ "active": 1 }))),
        ("watch", JOBS) => Answer::Hang,
        ("list", JOBS) => Answer::Json(200, job_list()),
        ("list", PODS) => Answer::Json(
            200,
            pod_list(
                json!({ "waiting": { "reason": "ImagePullBackOff",
                                     "message": "Back-off pulling image \"pyhton:3\"" } }),
                "Pending",
            ),
        ),
        ("log", _) => Answer::Json(400, status(400, "BadRequest")),
        ("delete", _) => deleted(),
        other => panic!("unexpected request {other:?}"),
    };
    let config = JobExecutorConfig {
        pending_limit: Duration::ZERO,
        keep_jobs: true,
        ..config()
    };
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config).unwrap();
    let outcome = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        outcome.exit,
        ExitKind::Exited(super::outcome::NOT_RUN_EXIT_CODE)
    );
    assert!(
        outcome.log_tail.contains("ImagePullBackOff"),
        "{}",
        outcome.log_tail
    );
    // A stuck Job would retry pulling for ever: it goes even when Jobs are kept.
    assert!(recorder.story().contains(&format!("delete {JOBS}/{NAME}")));
}

#[tokio::test]
async fn a_task_without_an_image_makes_no_request() {
    let recorder = Recorder::default();
    let executor = KubernetesJobExecutor::new(
        client(&recorder, |call: &Call| {
            panic!("unexpected request {call:?}")
        }),
        config(),
    )
    .unwrap();
    let mut request = request();
    request.image = None;
    let err = executor
        .run(request, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message().contains("--kubernetes-image"), "{err}");
    assert!(recorder.calls().is_empty());
}

#[tokio::test]
async fn forbidden_names_the_rbac_to_grant() {
    let recorder = Recorder::default();
    let cluster = |_: &Call| Answer::Json(403, status(403, "Forbidden"));
    let executor = KubernetesJobExecutor::new(client(&recorder, cluster), config()).unwrap();
    let err = executor
        .run(request(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.message().contains("RBAC"), "{err}");
}

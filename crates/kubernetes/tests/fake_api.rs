//! The fake API server answers the kube client (through a kubeconfig over 127.0.0.1) the way
//! the Kubernetes API reference documents it, and its controllers behave like the real ones.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use serde_json::json;
use spillway_kubernetes::fake::{FakeApiServer, POD_DELETION_COST};

async fn start() -> (FakeApiServer, kube::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeApiServer::start().await.expect("start fake");
    let cluster = spillway_kubernetes::client::connect(Some(fake.kubeconfig_path()), None)
        .await
        .expect("client from the fake's kubeconfig");
    assert_eq!(cluster.default_namespace, "default");
    (fake, cluster.client)
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "worker", "image": "spillway:test"}]},
            },
        },
    }))
    .expect("deployment json")
}

fn job(name: &str, parallelism: i32, backoff: i32) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"spillway.dev/pool": "p"}},
        "spec": {
            "parallelism": parallelism,
            "backoffLimit": backoff,
            "template": {
                "metadata": {"labels": {"spillway.dev/pool": "p"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "worker", "image": "spillway:test"}],
                },
            },
        },
    }))
    .expect("job json")
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[tokio::test]
async fn create_get_replace_and_their_failures() {
    let (fake, client) = start().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let created = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect("create");
    let rv = created.metadata.resource_version.clone().expect("rv");
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.uid.is_some());

    let again = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect_err("second create");
    let kube::Error::Api(status) = again else {
        panic!("want an API status, got {again:?}")
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    let missing = api.get("nope").await.expect_err("missing");
    let kube::Error::Api(status) = missing else {
        panic!("want an API status")
    };
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert!(api.get_opt("nope").await.expect("get_opt").is_none());

    let mut changed = created.clone();
    changed.spec.as_mut().expect("spec").replicas = Some(3);
    let replaced = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .expect("replace with the current resourceVersion");
    assert_ne!(replaced.metadata.resource_version, Some(rv.clone()));
    assert_eq!(replaced.metadata.generation, Some(2));
    // The same stale resourceVersion again is a conflict.
    let stale = api
        .replace("web", &PostParams::default(), &changed)
        .await
        .expect_err("stale replace");
    let kube::Error::Api(status) = stale else {
        panic!("want an API status")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let puts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(
        puts[0].path,
        "/apis/apps/v1/namespaces/default/deployments/web"
    );
    assert_eq!(puts[0].content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn strict_about_content_types_kinds_and_tokens() {
    let (fake, client) = start().await;
    let request = |content_type: &str, body: serde_json::Value| {
        http::Request::post("/api/v1/namespaces/default/pods")
            .header("content-type", content_type)
            .body(serde_json::to_vec(&body).expect("json"))
            .expect("request")
    };
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let err = client
        .request::<Pod>(request("text/plain", pod.clone()))
        .await
        .expect_err("text/plain");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 415),
        "{err:?}"
    );

    let mut wrong = pod.clone();
    wrong["kind"] = json!("Deployment");
    let err = client
        .request::<Pod>(request("application/json", wrong))
        .await
        .expect_err("kind mismatch");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message.contains("kind")),
        "{err:?}"
    );

    let mut other_ns = pod.clone();
    other_ns["metadata"]["namespace"] = json!("elsewhere");
    let err = client
        .request::<Pod>(request("application/json", other_ns))
        .await
        .expect_err("namespace mismatch");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400),
        "{err:?}"
    );

    let created = client
        .request::<Pod>(request("application/json", pod))
        .await
        .expect("a good pod");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );

    // A client without the kubeconfig's token is refused.
    let mut config = kube::Config::new(fake.url().parse().expect("url"));
    config.default_namespace = "default".into();
    let anonymous = kube::Client::try_from(config).expect("client");
    let err = Api::<Pod>::default_namespaced(anonymous)
        .list(&ListParams::default())
        .await
        .expect_err("no token");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "{err:?}"
    );
}

#[tokio::test]
async fn deployment_controller_scales_through_the_scale_subresource() {
    let (fake, client) = start().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .expect("create");
    fake.settle();
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 3);
    assert!(listed.metadata.resource_version.is_some());
    assert!(listed.items.iter().all(|p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("web-"))
    }));

    // The pod with the lowest deletion cost goes first on scale-down.
    let victim = names(&listed.items)[1].clone();
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {POD_DELETION_COST: "-100"}}})),
    )
    .await
    .expect("annotate");
    let scale = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    fake.step();
    let deleting = fake
        .object("pods", "default", &victim)
        .expect("victim still there");
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    fake.settle();
    let left = names(
        &pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list")
            .items,
    );
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&victim));

    let scale = deployments.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=web")
    );
    let patch = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/scale"))
        .expect("scale patch recorded");
    assert_eq!(
        patch.path,
        "/apis/apps/v1/namespaces/default/deployments/web/scale"
    );
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body, Some(json!({"spec": {"replicas": 2}})));
}

#[tokio::test]
async fn job_controller_has_work_queue_semantics() {
    let (fake, client) = start().await;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    jobs.create(&PostParams::default(), &job("q", 3, 6))
        .await
        .expect("create");
    fake.settle();
    let listed = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=q"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 3);
    let pod_names = names(&listed.items);

    // One pod succeeds: no replacement starts, and the Job completes when the rest end.
    assert!(fake.finish_pod(&pod_names[0], 0, "done\n"));
    fake.settle();
    assert_eq!(
        pods.list(&ListParams::default().labels("job-name=q"))
            .await
            .expect("list")
            .items
            .len(),
        3
    );
    let log = pods
        .logs(&pod_names[0], &LogParams::default())
        .await
        .expect("log");
    assert_eq!(log, "done\n");
    let status = jobs.get("q").await.expect("job").status.expect("status");
    assert_eq!((status.active, status.succeeded), (Some(2), Some(1)));
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .all(|c| c.type_ != "Complete")
    );
    fake.finish_pod(&pod_names[1], 0, "");
    fake.finish_pod(&pod_names[2], 0, "");
    fake.settle();
    let status = jobs.get("q").await.expect("job").status.expect("status");
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True"),
        "work-queue job completes"
    );

    // Deleting with Background propagation takes its pods with it.
    jobs.delete("q", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(fake.object("jobs", "default", "q").is_none());
    fake.step();
    assert!(
        pods.list(&ListParams::default().labels("job-name=q"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let delete = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("delete recorded");
    assert_eq!(
        delete.body.as_ref().map(|b| b["propagationPolicy"].clone()),
        Some(json!("Background"))
    );
    let missing = jobs
        .delete("q", &DeleteParams::background())
        .await
        .expect_err("gone");
    assert!(matches!(&missing, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"));
}

#[tokio::test]
async fn job_fails_past_its_backoff_limit_and_orphans_by_default() {
    let (fake, client) = start().await;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(&PostParams::default(), &job("f", 1, 1))
        .await
        .expect("create");
    for _ in 0..2 {
        fake.settle();
        let pod = fake
            .objects("pods")
            .into_iter()
            .find(|p| p["status"]["phase"] == "Running")
            .expect("a running pod");
        fake.finish_pod(pod["metadata"]["name"].as_str().unwrap_or(""), 1, "boom\n");
    }
    fake.settle();
    let status = jobs.get("f").await.expect("job").status.expect("status");
    assert_eq!(status.failed, Some(2));
    let conditions = status.conditions.unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Failed" && c.reason.as_deref() == Some("BackoffLimitExceeded"))
    );
    let pod = &fake.objects("pods")[0];
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );

    // Without a propagationPolicy the API server orphans a Job's pods.
    jobs.delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    fake.step();
    let pods = fake.objects("pods");
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| {
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(Vec::is_empty)
    }));
}

#[tokio::test]
async fn a_job_past_its_active_deadline_fails_and_its_pods_go() {
    let (fake, client) = start().await;
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client);
    let mut deadlined = job("d", 1, 0);
    if let Some(spec) = deadlined.spec.as_mut() {
        spec.active_deadline_seconds = Some(1);
    }
    jobs.create(&PostParams::default(), &deadlined)
        .await
        .expect("create");
    fake.settle();
    let pod = fake
        .objects("pods")
        .into_iter()
        .find(|p| p["status"]["phase"] == "Running")
        .expect("a running pod");
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    // A running container's log can be read before it ends.
    assert!(fake.write_log(&pod_name, "working\n"));
    let log = pods
        .logs(&pod_name, &LogParams::default())
        .await
        .expect("log of a running pod");
    assert_eq!(log, "working\n");
    let status = jobs.get("d").await.expect("job").status.expect("status");
    assert!(status.conditions.unwrap_or_default().is_empty());

    // Once the deadline has passed, the Job controller stops the pod and fails the Job.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let conditions = loop {
        fake.settle();
        let status = jobs.get("d").await.expect("job").status.expect("status");
        let conditions = status.conditions.unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == "Failed") {
            break conditions;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the Job did not fail past its deadline: {conditions:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for kind in ["FailureTarget", "Failed"] {
        let condition = conditions
            .iter()
            .find(|c| c.type_ == kind)
            .expect("condition");
        assert_eq!(
            condition.reason.as_deref(),
            Some("DeadlineExceeded"),
            "{kind}"
        );
    }
    assert!(
        fake.objects("pods").is_empty(),
        "{:?}",
        fake.objects("pods")
    );
}

#[tokio::test]
async fn watch_streams_events_and_resumes_from_a_resource_version() {
    let (fake, client) = start().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let deployments: Api<Deployment> = Api::default_namespaced(client);
    deployments
        .create(&PostParams::default(), &deployment("w", 1))
        .await
        .expect("create");
    let rv = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    fake.step();
    let stream = pods
        .watch(&WatchParams::default().labels("app=w").timeout(5), &rv)
        .await
        .expect("watch");
    let mut stream = stream.boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("an event before the deadline")
        .expect("event")
        .expect("stream open");
    let WatchEvent::Added(pod) = first else {
        panic!("want ADDED, got {first:?}")
    };
    let name = pod.metadata.name.clone().expect("name");
    // Live events follow: the kubelet starts the pod, then it is deleted.
    fake.start_pending_pods();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("modified in time")
        .expect("event")
        .expect("open");
    assert!(
        matches!(next, WatchEvent::Modified(ref p) if p.metadata.name.as_deref() == Some(name.as_str()))
    );
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    let gone = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("deleted in time")
        .expect("event")
        .expect("open");
    assert!(matches!(gone, WatchEvent::Deleted(_)), "{gone:?}");
    let watch = fake
        .requests()
        .into_iter()
        .find(|r| r.query.get("watch").map(String::as_str) == Some("true"))
        .expect("watch recorded");
    assert_eq!(watch.query.get("resourceVersion"), Some(&rv));
    assert_eq!(
        watch.query.get("labelSelector").map(String::as_str),
        Some("app=w")
    );
}

#[tokio::test]
async fn unschedulable_and_image_pull_failures_show_on_pods() {
    let (fake, client) = start().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    Api::<Deployment>::default_namespaced(client)
        .create(&PostParams::default(), &deployment("u", 1))
        .await
        .expect("create");
    fake.set_unschedulable(true);
    fake.settle();
    let pod = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .remove(0);
    let condition = pod
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .remove(0);
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("PodScheduled", "False")
    );
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));

    fake.set_unschedulable(false);
    fake.fail_image_pull("spillway:test");
    fake.settle();
    let pod = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .remove(0);
    let waiting = pod
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .remove(0);
    let reason = waiting.state.and_then(|s| s.waiting).and_then(|w| w.reason);
    assert_eq!(reason.as_deref(), Some("ImagePullBackOff"));
}

#[tokio::test]
async fn scale_writes_check_resource_versions_and_patch_types() {
    let (_fake, client) = start().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client);
    let created = deployments
        .create(&PostParams::default(), &deployment("s", 1))
        .await
        .expect("create");
    let stale = created.metadata.resource_version.clone().expect("rv");
    deployments
        .patch_scale(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale}, "spec": {"replicas": 2}})),
        )
        .await
        .expect("conditional patch with the current version");
    let err = deployments
        .patch_scale(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale}, "spec": {"replicas": 3}})),
        )
        .await
        .expect_err("stale version");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );

    let mut scale = deployments.get_scale("s").await.expect("scale");
    scale.spec.as_mut().expect("spec").replicas = Some(5);
    let replaced = deployments
        .replace_scale(
            "s",
            &PostParams::default(),
            serde_json::to_vec(&scale).expect("json"),
        )
        .await
        .expect("replace scale");
    assert_eq!(replaced.spec.and_then(|s| s.replicas), Some(5));
    let err = deployments
        .replace_scale(
            "s",
            &PostParams::default(),
            serde_json::to_vec(&scale).expect("json"),
        )
        .await
        .expect_err("same version twice");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err:?}"
    );

    let negative = deployments
        .patch_scale(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .expect_err("negative replicas");
    assert!(
        matches!(&negative, kube::Error::Api(s) if s.code == 422),
        "{negative:?}"
    );
    let apply = deployments
        .patch(
            "s",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment"})),
        )
        .await
        .expect_err("server-side apply is not served");
    assert!(
        matches!(&apply, kube::Error::Api(s) if s.code == 415),
        "{apply:?}"
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410_expired() {
    let (fake, client) = start().await;
    let pods: Api<Pod> = Api::default_namespaced(client);
    let rv = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    fake.create(
        "default",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .expect("pod");
    fake.compact();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("in time")
        .expect("event")
        .expect("one event");
    let WatchEvent::Error(status) = event else {
        panic!("want ERROR, got {event:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    // From the current version it works again.
    let now = fake.resource_version().to_string();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(5), &now)
        .await
        .expect("watch from now")
        .boxed();
    fake.create(
        "default",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .expect("pod");
    let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("in time")
        .expect("event")
        .expect("one event");
    assert!(
        matches!(event, WatchEvent::Added(ref p) if p.metadata.name.as_deref() == Some("q")),
        "{event:?}"
    );
}

#[tokio::test]
async fn kubeconfig_contexts_are_chosen_by_name() {
    let (fake, _) = start().await;
    let cluster = spillway_kubernetes::client::connect(Some(fake.kubeconfig_path()), Some("fake"))
        .await
        .expect("the named context");
    Api::<Pod>::default_namespaced(cluster.client)
        .list(&ListParams::default())
        .await
        .expect("list through the named context");
    let err = spillway_kubernetes::client::connect(Some(fake.kubeconfig_path()), Some("prod"))
        .await
        .expect_err("no such context");
    assert_eq!(
        err.kind(),
        spillway_core::ErrorKind::InvalidArgument,
        "{err}"
    );
    assert!(err.message().contains("\"prod\""), "{err}");
    let err = spillway_kubernetes::client::connect(
        Some(std::path::Path::new("/nonexistent/kubeconfig")),
        None,
    )
    .await
    .expect_err("no file");
    assert!(err.message().contains("/nonexistent/kubeconfig"), "{err}");
}

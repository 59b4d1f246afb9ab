//! The exact requests the provider sends, and the fake's refusal of malformed ones.

use serde_json::json;
use spillway_compute_engine::api::RESOURCE_LINK_PREFIX;
use spillway_compute_engine::fake::{FAKE_TOKEN, RecordedRequest};

use crate::support::{env, pool};

fn calls(requests: &[RecordedRequest]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

fn call(method: &str, path: &str) -> (String, String) {
    (method.to_string(), format!("/compute/v1/{path}"))
}

#[tokio::test]
async fn zonal_resize_lists_reads_resizes_and_polls_the_operation_until_done() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 3, &[]).await.expect("resize");

    let requests = env.fake.requests();
    let igm = "projects/proj/zones/europe-west4-a/instanceGroupManagers/workers";
    let resize = &requests[2];
    let operation = resize_operation_name(&env, &requests);
    assert_eq!(
        calls(&requests),
        vec![
            call("POST", &format!("{igm}/listManagedInstances")),
            call("GET", igm),
            call("POST", &format!("{igm}/resize")),
            call(
                "GET",
                &format!("projects/proj/zones/europe-west4-a/operations/{operation}")
            ),
            call(
                "GET",
                &format!("projects/proj/zones/europe-west4-a/operations/{operation}")
            ),
        ],
        "pending → running → done takes two polls"
    );
    assert_eq!(resize.query, vec![("size".to_string(), "3".to_string())]);
    assert_eq!(resize.body, None, "resize takes no body");
    assert_eq!(requests[0].param("maxResults"), Some("500"));
    assert_eq!(env.fake.target_size(&group), Some(3));
}

/// The name of the operation the resize answered with, as the fake recorded it polled.
fn resize_operation_name(_env: &crate::support::Env, requests: &[RecordedRequest]) -> String {
    requests
        .iter()
        .find(|r| r.path.contains("/operations/"))
        .and_then(|r| r.path.rsplit('/').next())
        .expect("an operation was polled")
        .to_string()
}

#[tokio::test]
async fn regional_calls_use_region_paths_and_region_operations() {
    let env = env().await;
    let group = env
        .fake
        .add_regional_group("proj", "us-central1", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 2, &[]).await.expect("resize");
    let requests = env.fake.requests();
    let igm = "projects/proj/regions/us-central1/instanceGroupManagers/workers";
    let operation = resize_operation_name(&env, &requests);
    assert_eq!(requests[2].path, format!("/compute/v1/{igm}/resize"));
    assert_eq!(requests[2].param("size"), Some("2"));
    assert_eq!(
        requests.last().map(|r| r.path.clone()),
        Some(format!(
            "/compute/v1/projects/proj/regions/us-central1/operations/{operation}"
        ))
    );
    let zones: Vec<String> = env
        .fake
        .instances(&group)
        .iter()
        .map(|i| i.instance.clone())
        .collect();
    assert!(zones[0].contains("/zones/us-central1-a/"), "{zones:?}");
    assert!(zones[1].contains("/zones/us-central1-b/"), "{zones:?}");
}

#[tokio::test]
async fn draining_an_instance_without_worker_deletes_it_with_its_url() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 2, &[]).await.expect("resize");
    let seen = env
        .wait_until(&pool, "two running", |s| s.live() == 2)
        .await;
    let victim = seen.instances[0].id.clone();
    env.fake.clear_requests();
    env.resize(&pool, 1, &[victim.as_str()])
        .await
        .expect("drain");

    let requests = env.fake.requests();
    let deletes: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.path.ends_with("/deleteInstances"))
        .collect();
    assert_eq!(deletes.len(), 1, "{requests:?}");
    let url =
        format!("{RESOURCE_LINK_PREFIX}projects/proj/zones/europe-west4-a/instances/{victim}");
    assert_eq!(
        deletes[0].body,
        Some(json!({"instances": [url], "skipInstancesOnValidationError": true}))
    );
    assert!(
        deletes[0]
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        deletes[0].content_type
    );
    assert!(
        !requests.iter().any(|r| r.path.ends_with("/resize")),
        "deleting lowers the target itself: {requests:?}"
    );
    assert_eq!(env.fake.target_size(&group), Some(1));

    // Asking again sends nothing new.
    env.fake.clear_requests();
    env.resize(&pool, 1, &[victim.as_str()])
        .await
        .expect("again");
    assert!(
        !env.fake
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/deleteInstances") || r.path.ends_with("/resize")),
        "{:?}",
        env.fake.requests()
    );
}

#[tokio::test]
async fn same_or_smaller_size_without_drain_sends_no_change() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 3, &[]).await.expect("resize");
    env.fake.clear_requests();
    env.resize(&pool, 3, &[]).await.expect("same");
    env.resize(&pool, 1, &[]).await.expect("smaller");
    let changes: Vec<RecordedRequest> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/resize") || r.path.ends_with("/deleteInstances"))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(env.fake.target_size(&group), Some(3));
}

#[tokio::test]
async fn managed_instances_are_read_across_pages() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.fake.set_page_size(2);
    env.resize(&pool, 5, &[]).await.expect("resize");
    env.fake.clear_requests();
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(seen.instances.len(), 5, "{seen:?}");
    let tokens: Vec<Option<String>> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/listManagedInstances"))
        .map(|r| r.param("pageToken").map(str::to_string))
        .collect();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert_eq!(tokens[0], None);
    assert!(tokens[1].is_some() && tokens[2].is_some() && tokens[1] != tokens[2]);
}

#[tokio::test]
async fn the_fake_refuses_malformed_requests_with_google_errors() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let other = env.fake.add_zonal_group("proj", "europe-west4-a", "others");
    let pool_other = pool("other", &env.fake, &other);
    env.resize(&pool_other, 1, &[]).await.expect("resize other");
    let foreign = env.fake.instances(&other)[0].instance.clone();
    let base = format!("{}/{}", env.fake.base_url(), group.path());
    let http = reqwest::Client::new();
    let cases = vec![
        ("no token", http.post(format!("{base}/resize?size=1")), 401),
        (
            "negative size",
            http.post(format!("{base}/resize?size=-1"))
                .bearer_auth(FAKE_TOKEN),
            400,
        ),
        (
            "missing size",
            http.post(format!("{base}/resize")).bearer_auth(FAKE_TOKEN),
            400,
        ),
        (
            "unknown parameter",
            http.post(format!("{base}/resize?size=1&sise=2"))
                .bearer_auth(FAKE_TOKEN),
            400,
        ),
        (
            "resize with a body",
            http.post(format!("{base}/resize?size=1"))
                .bearer_auth(FAKE_TOKEN)
                .json(&json!({"size": 1})),
            400,
        ),
        (
            "GET resize",
            http.get(format!("{base}/resize?size=1"))
                .bearer_auth(FAKE_TOKEN),
            404,
        ),
        (
            "delete without JSON content type",
            http.post(format!("{base}/deleteInstances"))
                .bearer_auth(FAKE_TOKEN)
                .body(json!({"instances": [foreign.clone()]}).to_string()),
            400,
        ),
        (
            "delete of another group's instance",
            http.post(format!("{base}/deleteInstances"))
                .bearer_auth(FAKE_TOKEN)
                .json(&json!({"instances": [foreign], "skipInstancesOnValidationError": true})),
            400,
        ),
        (
            "delete with an unknown field",
            http.post(format!("{base}/deleteInstances"))
                .bearer_auth(FAKE_TOKEN)
                .json(&json!({"instances": [], "force": true})),
            400,
        ),
        (
            "maxResults above 500",
            http.post(format!("{base}/listManagedInstances?maxResults=501"))
                .bearer_auth(FAKE_TOKEN),
            400,
        ),
        (
            "unknown group",
            http.get(format!(
                "{}/projects/proj/zones/europe-west4-a/instanceGroupManagers/nope",
                env.fake.base_url()
            ))
            .bearer_auth(FAKE_TOKEN),
            404,
        ),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.expect(what);
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: serde_json::Value = response.json().await.expect(what);
        assert_eq!(body["error"]["code"], status, "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
        assert!(
            body["error"]["errors"][0]["reason"].is_string(),
            "{what}: {body}"
        );
    }
    assert_eq!(env.fake.target_size(&group), Some(0), "nothing was applied");
}

#[tokio::test]
async fn the_fakes_operations_step_on_get_and_finish_on_wait() {
    let env = env().await;
    let group = env
        .fake
        .add_regional_group("proj", "us-central1", "workers");
    let base = env.fake.base_url();
    let http = reqwest::Client::new();
    let operation: serde_json::Value = http
        .post(format!("{base}/{}/resize?size=1", group.path()))
        .bearer_auth(FAKE_TOKEN)
        .send()
        .await
        .expect("resize")
        .json()
        .await
        .expect("operation");
    assert_eq!(operation["kind"], "compute#operation");
    assert_eq!(operation["status"], "PENDING");
    assert_eq!(
        operation["targetLink"],
        format!("{RESOURCE_LINK_PREFIX}{}", group.path())
    );
    assert!(
        operation["region"]
            .as_str()
            .is_some_and(|r| r.ends_with("/regions/us-central1"))
    );
    let name = operation["name"].as_str().expect("a name").to_string();
    let path = group.operation_path(&name);
    let get = |http: &reqwest::Client| http.get(format!("{base}/{path}")).bearer_auth(FAKE_TOKEN);
    let seen: serde_json::Value = get(&http)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("op");
    assert_eq!(seen["status"], "RUNNING");
    let waited: serde_json::Value = http
        .post(format!("{base}/{path}/wait"))
        .bearer_auth(FAKE_TOKEN)
        .send()
        .await
        .expect("wait")
        .json()
        .await
        .expect("op");
    assert_eq!(waited["status"], "DONE");
    assert_eq!(waited["selfLink"], format!("{RESOURCE_LINK_PREFIX}{path}"));
    let zonal_path = format!("projects/proj/zones/us-central1-a/operations/{name}");
    let wrong_scope = http
        .get(format!("{base}/{zonal_path}"))
        .bearer_auth(FAKE_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(
        wrong_scope.status().as_u16(),
        404,
        "a regional operation is not a zone's"
    );
}

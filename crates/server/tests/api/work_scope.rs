//! Work calls stay inside the caller's tenant and the caller's registration: a lease token
//! of another tenant's task gets nothing done, and an exited worker's id leases nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spillway_core::clock::Clock;
use spillway_store::TaskLease;

use crate::support::{Server, ok, problem, simple_job};

/// The lease of one task: (task id, lease token).
fn lease_of(task: &Value) -> (i64, String) {
    (
        task["task_id"].as_i64().expect("task id"),
        task["lease_token"]
            .as_str()
            .expect("lease token")
            .to_string(),
    )
}

async fn task_state(server: &Server, id: i64) -> Value {
    ok(
        server.get(&format!("/v1/tasks/{id}"), &server.admin).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn reports_on_another_tenants_leases_are_refused_as_not_found() {
    let server = Server::start().await;
    ok::<Value>(
        server
            .post("/v1/tenants", &server.admin, json!({"name": "acme"}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let acme = server.token("admin", "acme").await;
    let ours = server.token("worker", "default").await;
    let submitter = server.token("submitter", "default").await;
    server.submit(&submitter, simple_job()).await;
    server.submit(&submitter, simple_job()).await;
    server.submit(&acme, simple_job()).await;

    // Two of our leases through the API (the server's ledger knows them), one straight from
    // the store (as if leased before a restart: only the store knows it).
    let our_worker = server.worker(&ours, &["default"]).await;
    let leased = server.lease(&ours, &our_worker, &["default"], 1).await;
    let (a, a_token) = lease_of(&leased[0]);
    let unknown = server
        .store
        .task_lease(TaskLease {
            tenant: "default".into(),
            queues: vec!["default".into()],
            worker_id: our_worker.clone(),
            worker_pool: "default".into(),
            burstable_only: false,
            max: 1,
            now: server.clock.now(),
        })
        .await
        .expect("lease from the store");
    let (b, b_token) = (unknown[0].task_id, unknown[0].lease_token.clone());
    let acme_worker = server.worker(&acme, &["default"]).await;
    let acme_leased = server.lease(&acme, &acme_worker, &["default"], 1).await;
    let (c, c_token) = lease_of(&acme_leased[0]);
    let before = (task_state(&server, a).await, task_state(&server, b).await);

    let beats: Value = ok(
        server
            .post(
                "/v1/tasks/heartbeat",
                &acme,
                json!({"leases": [
                    {"task_id": a, "lease_token": a_token},
                    {"task_id": c, "lease_token": c_token},
                    {"task_id": b, "lease_token": b_token},
                ]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    let statuses: Vec<_> = beats["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["task_id"].as_i64(), r["status"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (Some(a), Some("lost")),
            (Some(c), Some("extended")),
            (Some(b), Some("lost"))
        ]
    );

    let refused = |answer: &Value, ids: &[i64]| {
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), ids.len(), "{answer}");
        for (result, id) in results.iter().zip(ids) {
            assert_eq!(result["task_id"].as_i64(), Some(*id), "{answer}");
            assert_eq!(result["ok"], false, "{answer}");
            let error = result["error"].as_str().unwrap_or_default();
            assert!(error.contains("not found"), "{answer}");
        }
    };
    let leases = json!([
        {"task_id": a, "lease_token": a_token},
        {"task_id": b, "lease_token": b_token},
    ]);
    let mut completions = leases.clone();
    let mut failures = leases.clone();
    let mut releases = leases.clone();
    for i in 0..2 {
        failures[i]["error"] = json!("boom");
        failures[i]["retryable"] = json!(false);
        releases[i]["reason"] = json!("preempted");
        completions[i]["exit_code"] = json!(0);
    }
    for (path, body) in [
        ("/v1/tasks/complete", json!({"completions": completions})),
        ("/v1/tasks/fail", json!({"failures": failures})),
        ("/v1/tasks/release", json!({"releases": releases})),
    ] {
        let answer: Value = ok(server.post(path, &acme, body).await, StatusCode::OK).await;
        refused(&answer, &[a, b]);
    }
    for (id, token) in [(a, &a_token), (b, &b_token)] {
        problem(
            server
                .post(
                    &format!("/v1/tasks/{id}/complete"),
                    &acme,
                    json!({"task_id": id, "lease_token": token}),
                )
                .await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    assert_eq!(
        (task_state(&server, a).await, task_state(&server, b).await),
        before,
        "a refused report changed the task"
    );

    // A batch mixing both tenants applies only the caller's own, in place.
    let answer: Value = ok(
        server
            .post(
                "/v1/tasks/complete",
                &ours,
                json!({"completions": [
                    {"task_id": c, "lease_token": c_token},
                    {"task_id": a, "lease_token": a_token},
                    {"task_id": b, "lease_token": b_token},
                ]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    let oks: Vec<_> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["task_id"].as_i64(), r["ok"].as_bool()))
        .collect();
    assert_eq!(
        oks,
        vec![
            (Some(c), Some(false)),
            (Some(a), Some(true)),
            (Some(b), Some(true))
        ]
    );
    assert_eq!(task_state(&server, c).await["task"]["state"], "leased");
    assert_eq!(task_state(&server, a).await["task"]["state"], "succeeded");
    server.stop().await;
}

#[tokio::test]
async fn an_exited_worker_must_register_again_before_it_leases() {
    let server = Server::start().await;
    let work = server.token("worker", "default").await;
    let submitter = server.token("submitter", "default").await;
    server.submit(&submitter, simple_job()).await;
    let worker = server.worker(&work, &["default"]).await;
    let resp = server
        .req(Method::DELETE, &format!("/v1/workers/{worker}"), &work)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Twice: once looked up in the store, once from the server's cache.
    for _ in 0..2 {
        let p = problem(
            server
                .post(
                    "/v1/tasks/lease",
                    &work,
                    json!({"worker_id": worker, "queues": ["default"], "max_tasks": 1}),
                )
                .await,
            StatusCode::CONFLICT,
        )
        .await;
        assert!(p.detail.contains("register again"), "{}", p.detail);
        assert!(p.detail.contains(&worker), "{}", p.detail);
    }
    let p = problem(
        server
            .post(
                &format!("/v1/workers/{worker}/heartbeat"),
                &work,
                json!({"running": 0, "draining": false}),
            )
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(p.detail.contains("register again"), "{}", p.detail);

    let again = server.worker(&work, &["default"]).await;
    assert_ne!(again, worker);
    assert_eq!(server.lease(&work, &again, &["default"], 1).await.len(), 1);
    server.stop().await;
}

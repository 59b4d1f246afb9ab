//! The server's pool providers against the provider conformance suite of
//! `spillway-autoscale`, over a real store (and, for `local`, real child processes that speak
//! to a real server over HTTP).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spillway_autoscale::conformance::{Harness, t0, test_pool};
use spillway_autoscale::provider::{DynPoolProvider, PoolObserve, PoolProvider, PoolResize};
use spillway_core::model::WorkerState;
use spillway_server::autoscale::providers::external::ExternalProvider;
use spillway_server::autoscale::providers::local::{LocalConfig, LocalProvider};
use spillway_store::{DynStore, WorkerRegister};
use tokio::sync::Mutex;

use crate::support::{Server, ok};
use spillway_store::{WorkerExit, WorkerList};

/// Let an external pool catch up with what was asked, as its operator would: register the
/// workers wanted and let drained ones exit.
async fn settle_external(
    store: DynStore,
    provider: DynPoolProvider,
    pool: String,
    gate: Arc<Mutex<()>>,
) {
    let _one_at_a_time = gate.lock().await;
    let config = test_pool(&pool);
    let Ok(seen) = provider
        .pool_observe(PoolObserve {
            pool: &config,
            now: t0(),
        })
        .await
    else {
        return;
    };
    let Ok(workers) = store
        .worker_list(WorkerList {
            tenant: None,
            now: t0(),
        })
        .await
    else {
        return;
    };
    let mine: Vec<_> = workers.iter().filter(|w| w.pool == pool).collect();
    for w in mine.iter().filter(|w| w.state == WorkerState::Draining) {
        let _ = store
            .worker_exit(WorkerExit {
                id: w.id.clone(),
                now: t0(),
            })
            .await;
    }
    let active = mine
        .iter()
        .filter(|w| w.state == WorkerState::Active)
        .count() as u32;
    for _ in active..seen.desired.unwrap_or(0) {
        let _ = store
            .worker_register(WorkerRegister {
                id: format!("w-{}", uuid::Uuid::new_v4().simple()),
                tenant: "default".into(),
                pool: pool.clone(),
                hostname: "elsewhere".into(),
                queues: config.queues.clone(),
                concurrency: 1,
                now: t0(),
            })
            .await;
    }
}

mod external {
    use super::*;

    spillway_autoscale::pool_provider_conformance_tests!(|| async {
        let server = Server::start().await;
        let store = server.store.clone();
        let provider: DynPoolProvider = Arc::new(ExternalProvider::new(store.clone()));
        let settled = provider.clone();
        let gate = Arc::new(Mutex::new(()));
        let server = Arc::new(server);
        Harness {
            provider,
            settle: Box::new(move |pool: &str| {
                let _keep_alive = &server;
                tokio::spawn(settle_external(
                    store.clone(),
                    settled.clone(),
                    pool.to_string(),
                    gate.clone(),
                ));
            }),
            deadline: Duration::from_secs(10),
        }
    });
}

/// Stands in for `spillway worker` in the provider suite only (the real binary is tested from
/// the CLI crate): registers with the token it was given, heartbeats, exits when told to drain.
const FAKE_WORKER: &str = r#"#!/bin/sh
pool="$3"
auth="Authorization: Bearer $SPILLWAY_TOKEN"
body=$(curl -sf -X POST "$SPILLWAY_SERVER/v1/workers" -H "$auth" -H 'content-type: application/json' \
  -d "{\"pool\":\"$pool\",\"hostname\":\"$SPILLWAY_INSTANCE_ID\",\"queues\":[\"default\"],\"concurrency\":1}") || exit 3
id=$(printf '%s' "$body" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || exit 4
while true; do
  reply=$(curl -sf -X POST "$SPILLWAY_SERVER/v1/workers/$id/heartbeat" -H "$auth" \
    -H 'content-type: application/json' -d '{"running":0}') || exit 5
  case "$reply" in *'"drain":true'*)
    curl -sf -X DELETE "$SPILLWAY_SERVER/v1/workers/$id" -H "$auth"; exit 0;;
  esac
  sleep 0.1
done
"#;

fn fake_worker(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-worker.sh");
    std::fs::write(&path, FAKE_WORKER).expect("write fake worker");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

mod local {
    use super::*;

    spillway_autoscale::pool_provider_conformance_tests!(|| async {
        let server = Server::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let provider: DynPoolProvider = Arc::new(LocalProvider::new(
            server.store.clone(),
            server.state.pools().clone(),
            LocalConfig {
                program: fake_worker(dir.path()),
                server_url: server.base.clone(),
            },
        ));
        let keep = Arc::new((server, dir));
        Harness {
            provider,
            settle: Box::new(move |_pool: &str| {
                let _keep_alive = &keep;
            }),
            deadline: Duration::from_secs(20),
        }
    });
}

/// Drain through the store reaches the worker: its next heartbeat answer says drain.
#[tokio::test]
async fn an_external_drain_reaches_the_worker_heartbeat() {
    let server = Server::start().await;
    let worker = server.worker(&server.admin, &["default"]).await;
    let provider = ExternalProvider::new(server.store.clone());
    let mut pool = test_pool("default");
    pool.min = 0;
    provider
        .pool_resize(PoolResize {
            pool: &pool,
            desired: 0,
            drain: vec![worker.clone()],
            now: t0(),
        })
        .await
        .expect("resize");
    let reply: serde_json::Value = ok(
        server
            .post(
                &format!("/v1/workers/{worker}/heartbeat"),
                &server.admin,
                json!({"running": 0}),
            )
            .await,
        reqwest::StatusCode::OK,
    )
    .await;
    assert_eq!(reply["drain"], true, "{reply}");
}

/// A worker of another tenant that registers with an external pool's name is none of the
/// pool's: it neither shows in the pool's observation nor counts in its size on
/// `GET /v1/pools`, while the pool tenant's own worker does.
#[tokio::test]
async fn another_tenants_worker_is_not_counted_in_an_external_pool() {
    use spillway_autoscale::config::PoolConfig;
    use spillway_core::api::PoolStatus;
    use spillway_server::ServerConfig;
    use spillway_server::autoscale::Autoscaler;

    let gpu = PoolConfig::new("gpu", "external", vec!["default".into()]);
    let server = Server::with_config(ServerConfig {
        pools: vec![gpu.clone()],
        ..Default::default()
    })
    .await;
    ok::<serde_json::Value>(
        server
            .post("/v1/tenants", &server.admin, json!({"name": "globex"}))
            .await,
        reqwest::StatusCode::CREATED,
    )
    .await;
    let register = |token: String| {
        let server = &server;
        async move {
            let body: serde_json::Value = ok(
                server
                    .post(
                        "/v1/workers",
                        &token,
                        json!({"pool": "gpu", "hostname": "gpu-1", "queues": ["default"], "concurrency": 1}),
                    )
                    .await,
                reqwest::StatusCode::CREATED,
            )
            .await;
            body["id"].as_str().expect("worker id").to_string()
        }
    };
    let autoscaler = Autoscaler::with_registered_providers(server.state.clone());
    let actual = || async {
        autoscaler.pass().await.expect("pass");
        let pools: Vec<PoolStatus> = ok(
            server.get("/v1/pools", &server.admin).await,
            reqwest::StatusCode::OK,
        )
        .await;
        pools
            .iter()
            .find(|p| p.name == "gpu")
            .expect("gpu pool")
            .actual
    };

    let intruder = register(server.token("worker", "globex").await).await;
    assert_eq!(
        actual().await,
        0,
        "globex's worker is not the default tenant's pool's"
    );
    let seen = ExternalProvider::new(server.store.clone())
        .pool_observe(PoolObserve {
            pool: &gpu,
            now: t0(),
        })
        .await
        .expect("observe");
    assert!(
        seen.instances.iter().all(|i| i.id != intruder),
        "{:?}",
        seen.instances
    );

    let own = register(server.token("worker", "default").await).await;
    assert_eq!(actual().await, 1, "the default tenant's worker is");
    let seen = ExternalProvider::new(server.store.clone())
        .pool_observe(PoolObserve {
            pool: &gpu,
            now: t0(),
        })
        .await
        .expect("observe");
    let ids: Vec<_> = seen.instances.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, [own]);
    server.stop().await;
}

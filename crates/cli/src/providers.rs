//! The pool providers this binary plugs into the server: the one place a provider is
//! registered. Each provider crate owns its `[[pools]]` section and exports its check; adding a
//! provider is its crate plus one `register` call here.

use std::sync::Arc;

use spillway_autoscale::provider::DynPoolProvider;
use spillway_server::autoscale::ProviderRegistry;
use spillway_server::autoscale::providers::deferred::DeferredProvider;

/// `local`, `external` and `memory` (the server's own), `kubernetes` and `compute_engine`.
pub fn registry() -> ProviderRegistry {
    ProviderRegistry::builtin()
        .register(
            spillway_kubernetes::PROVIDER,
            spillway_kubernetes::validate_pool,
            // Builds one client per (kubeconfig, context) of its pools on first use; no IO here.
            |ctx| {
                Arc::new(spillway_kubernetes::KubernetesProvider::new(
                    ctx.store.clone(),
                ))
            },
        )
        .register(
            spillway_compute_engine::PROVIDER,
            spillway_compute_engine::validate_pool,
            |ctx| {
                // Finding credentials can fail: build on first use, so the error shows on the
                // pool's status instead of stopping the server.
                let store = ctx.store.clone();
                Arc::new(DeferredProvider::new(
                    spillway_compute_engine::PROVIDER,
                    move || {
                        let store = store.clone();
                        async move {
                            let provider =
                                spillway_compute_engine::ComputeEngineProvider::new(store)?;
                            Ok(Arc::new(provider) as DynPoolProvider)
                        }
                    },
                ))
            },
        )
}

#[cfg(test)]
mod tests {
    use spillway_autoscale::config::PoolConfig;

    use super::*;

    #[test]
    fn the_binary_runs_every_provider() {
        assert_eq!(
            registry().names(),
            [
                "compute_engine",
                "external",
                "kubernetes",
                "local",
                "memory"
            ]
        );
    }

    #[test]
    fn cloud_pools_are_checked_by_their_own_crates() {
        let mut k8s = PoolConfig::new("k8s", "kubernetes", vec!["default".into()]);
        registry()
            .check_pools(std::slice::from_ref(&k8s))
            .expect("kubernetes pools run in the server");
        k8s.sections.insert(
            "kubernetes".into(),
            serde_json::json!({"mode": "work_queue"}),
        );
        let err = registry().check_pools(&[k8s]).expect_err("no image");
        assert!(err.message().contains("kubernetes.image"), "{err}");
        let gce = PoolConfig::new("spot", "compute_engine", vec!["default".into()]);
        let err = registry().check_pools(&[gce]).expect_err("no section");
        assert!(err.message().contains("no compute_engine section"), "{err}");
    }

    /// The binary's registry runs a `kubernetes` pool: a submit scales its worker Deployment
    /// through the scale subresource of the fake API server, reached through a kubeconfig over
    /// 127.0.0.1.
    #[tokio::test]
    async fn the_server_scales_a_kubernetes_deployment_for_a_submit() {
        use serde_json::json;
        use spillway_kubernetes::config::KubernetesPool;
        use spillway_kubernetes::fake::FakeApiServer;
        use spillway_server::ServerConfig;
        use spillway_server::autoscale::Autoscaler;
        use spillway_testkit::{TestServer, TestServerExt};

        let _ = rustls::crypto::ring::default_provider().install_default();
        let fake = FakeApiServer::start().await.expect("fake api server");
        fake.create(
            "default",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "k8s"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"spillway.dev/pool": "k8s"}},
                    "template": {
                        "metadata": {"labels": {"spillway.dev/pool": "k8s"}},
                        "spec": {"containers": [{"name": "worker", "image": "spillway:test", "args": ["worker", "--pool", "k8s"]}]},
                    },
                },
            }),
        )
        .expect("create deployment");
        let mut k8s = PoolConfig::new("k8s", "kubernetes", vec!["default".into()]);
        k8s.max = 4;
        k8s.set_section(&KubernetesPool {
            kubeconfig: Some(fake.kubeconfig_path().to_path_buf()),
            ..Default::default()
        })
        .expect("section");
        let server = TestServer::builder()
            .config(ServerConfig {
                pools: vec![k8s],
                ..Default::default()
            })
            .providers(registry())
            .start()
            .await;
        let autoscaler = Autoscaler::with_registered_providers(server.state.clone());
        let submitted = reqwest::Client::new()
            .post(format!("{}/v1/jobs", server.base))
            .bearer_auth(&server.admin)
            .json(&json!({"command": ["x"], "tasks": [{}, {}]}))
            .send()
            .await
            .expect("submit");
        assert_eq!(submitted.status(), reqwest::StatusCode::CREATED);
        autoscaler.pass().await.expect("pass");

        let replicas = fake
            .object("deployments", "default", "k8s")
            .and_then(|d| d["spec"]["replicas"].as_u64());
        assert!(
            replicas.is_some_and(|r| r >= 2),
            "deployment scaled for 2 tasks: {replicas:?}"
        );
        assert!(
            fake.requests()
                .iter()
                .any(|r| r.path.ends_with("/deployments/k8s/scale")),
            "through the scale subresource: {:?}",
            fake.requests()
        );
        let listed = server.admin_client().pool_list().await.expect("pools");
        assert_eq!(listed[0].provider, "kubernetes");
    }
}

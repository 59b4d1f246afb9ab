//! `kubernetes = { … }` of a pool whose provider is `kubernetes`.
//!
//! ```toml
//! [[pools]]
//! name = "k8s"
//! provider = "kubernetes"
//! queues = ["default"]
//! kubernetes = { mode = "deployment", deployment = "spillway-worker" }
//!
//! [[pools]]
//! name = "batch"
//! provider = "kubernetes"
//! queues = ["batch"]
//! kubernetes = { mode = "work_queue", image = "ghcr.io/acme/spillway:0.1", server_url = "http://spillway:8080", token_secret = "spillway-worker-token" }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use spillway_autoscale::config::PoolConfig;
use spillway_core::{Error, Result};

/// The provider name of Kubernetes pools, and the name of their section.
pub const PROVIDER: &str = "kubernetes";

/// Check a `kubernetes` pool's own section (optional: every field has a default), for the
/// provider registry's start-up check.
pub fn validate_pool(pool: &PoolConfig) -> Result<()> {
    section(pool)?.validate(&pool.name)
}

/// A pool's `kubernetes` section, or the defaults when it has none.
pub fn section(pool: &PoolConfig) -> Result<KubernetesPool> {
    Ok(pool.section::<KubernetesPool>()?.unwrap_or_default())
}

/// Key of the token inside [`KubernetesPool::token_secret`] unless `token_key` says otherwise.
pub const DEFAULT_TOKEN_KEY: &str = "token";

/// How a Kubernetes pool runs its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubernetesMode {
    /// Scale a Deployment of `spillway worker` through its scale subresource.
    #[default]
    Deployment,
    /// Parallel `batch/v1` Jobs whose pods run `spillway worker --exit-when-idle`.
    WorkQueue,
}

/// Where and how a Kubernetes pool's workers run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesPool {
    /// Deployment (default) or work-queue Jobs.
    #[serde(default)]
    pub mode: KubernetesMode,
    /// The namespace; default the one of the kubeconfig context, or of the pod in-cluster.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A kubeconfig file; default `$KUBECONFIG` / `~/.kube/config` when present, else the
    /// in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig; default its current context.
    #[serde(default)]
    pub context: Option<String>,
    /// Deployment mode: the Deployment to scale; default the pool's name.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Work-queue mode: the container image with the `spillway` binary (required).
    #[serde(default)]
    pub image: Option<String>,
    /// Work-queue mode: the URL workers reach the server at, e.g. `http://spillway:8080`
    /// (required).
    #[serde(default)]
    pub server_url: Option<String>,
    /// Work-queue mode: the Secret holding the workers' API token (required).
    #[serde(default)]
    pub token_secret: Option<String>,
    /// Work-queue mode: the key of the token in `token_secret`; default `token`.
    #[serde(default)]
    pub token_key: Option<String>,
    /// Work-queue mode: the service account of the worker pods; default the namespace's.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Work-queue mode: extra labels on the Jobs and their pods.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Work-queue mode: node selector of the worker pods (e.g. a spot node pool).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
}

impl KubernetesPool {
    /// Check the section on its own; `pool` names the pool in errors.
    pub fn validate(&self, pool: &str) -> Result<()> {
        let empty = |field: &str, value: &Option<String>| -> Result<()> {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(Error::invalid(format!(
                    "pool {pool:?}: kubernetes.{field} is empty: give a value or leave it out"
                )));
            }
            Ok(())
        };
        if let Some(ns) = &self.namespace
            && ns.is_empty()
        {
            return Err(Error::invalid(format!(
                "pool {pool:?}: kubernetes.namespace is empty: leave it out to use the context's namespace"
            )));
        }
        for (field, value) in [
            ("context", &self.context),
            ("deployment", &self.deployment),
            ("image", &self.image),
            ("server_url", &self.server_url),
            ("token_secret", &self.token_secret),
            ("token_key", &self.token_key),
            ("service_account", &self.service_account),
        ] {
            empty(field, value)?;
        }
        match self.mode {
            KubernetesMode::Deployment => {
                let work_queue_only = [
                    ("image", self.image.is_some()),
                    ("server_url", self.server_url.is_some()),
                    ("token_secret", self.token_secret.is_some()),
                    ("token_key", self.token_key.is_some()),
                    ("service_account", self.service_account.is_some()),
                    ("labels", !self.labels.is_empty()),
                    ("node_selector", !self.node_selector.is_empty()),
                ];
                if let Some((field, _)) = work_queue_only.iter().find(|(_, set)| *set) {
                    return Err(Error::invalid(format!(
                        "pool {pool:?}: kubernetes.{field} only applies to mode = \"work_queue\": set it on the Deployment's pod template instead, or switch modes"
                    )));
                }
            }
            KubernetesMode::WorkQueue => {
                if self.deployment.is_some() {
                    return Err(Error::invalid(format!(
                        "pool {pool:?}: kubernetes.deployment only applies to mode = \"deployment\": remove it"
                    )));
                }
                for (field, value) in [
                    ("image", &self.image),
                    ("server_url", &self.server_url),
                    ("token_secret", &self.token_secret),
                ] {
                    if value.is_none() {
                        return Err(Error::invalid(format!(
                            "pool {pool:?}: mode = \"work_queue\" needs kubernetes.{field} (image = the spillway image, server_url = how pods reach the server, token_secret = the Secret with a worker token)"
                        )));
                    }
                }
                if let Some(url) = &self.server_url
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    return Err(Error::invalid(format!(
                        "pool {pool:?}: kubernetes.server_url {url:?} is not an http:// or https:// URL"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The key of the token in `token_secret`.
    pub fn token_key(&self) -> &str {
        self.token_key.as_deref().unwrap_or(DEFAULT_TOKEN_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_queue() -> KubernetesPool {
        KubernetesPool {
            mode: KubernetesMode::WorkQueue,
            image: Some("spillway:1".into()),
            server_url: Some("http://spillway:8080".into()),
            token_secret: Some("worker-token".into()),
            ..KubernetesPool::default()
        }
    }

    #[test]
    fn work_queue_mode_needs_image_url_and_secret() {
        assert!(work_queue().validate("p").is_ok());
        let mut section = work_queue();
        section.image = None;
        let err = section.validate("p").expect_err("no image");
        assert!(err.message().contains("kubernetes.image"), "{err}");
        let mut section = work_queue();
        section.server_url = Some("spillway:8080".into());
        assert!(section.validate("p").is_err());
    }

    #[test]
    fn fields_of_the_other_mode_are_refused() {
        let section = KubernetesPool {
            image: Some("spillway:1".into()),
            ..KubernetesPool::default()
        };
        let err = section.validate("p").expect_err("image in deployment mode");
        assert!(err.message().contains("work_queue"), "{err}");
        let mut section = work_queue();
        section.deployment = Some("d".into());
        assert!(section.validate("p").is_err());
    }

    #[test]
    fn parses_from_toml() {
        let section: KubernetesPool = toml::from_str(
            "mode = \"work_queue\"\nimage = \"i\"\nserver_url = \"http://s\"\ntoken_secret = \"t\"\nkubeconfig = \"/k\"\ncontext = \"c\"\nlabels = { team = \"a\" }\n",
        )
        .expect("parse");
        assert_eq!(section.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(section.token_key(), "token");
        assert!(toml::from_str::<KubernetesPool>("bogus = 1").is_err());
    }
}

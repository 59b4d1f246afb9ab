//! `kubernetes = { … }` of a pool whose provider is `kubernetes`.

use serde::{Deserialize, Serialize};
use spillway_core::{Error, Result};

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
    /// Deployment mode: the Deployment to scale; default the pool's name.
    #[serde(default)]
    pub deployment: Option<String>,
}

impl KubernetesPool {
    /// Check the section on its own; `pool` names the pool in errors.
    pub fn validate(&self, pool: &str) -> Result<()> {
        if let Some(ns) = &self.namespace
            && ns.is_empty()
        {
            return Err(Error::invalid(format!(
                "pool {pool:?}: kubernetes.namespace is empty: leave it out to use the context's namespace"
            )));
        }
        Ok(())
    }
}

//! Building a `kube::Client`: from a kubeconfig file (and context), or inferred as kube does
//! (`$KUBECONFIG` / `~/.kube/config` when present, else the in-cluster service account).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use spillway_core::{Error, Result};

/// A client and the namespace its configuration defaults to.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The namespace of the kubeconfig context, or of the pod in-cluster (else `default`).
    pub default_namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

/// Load the client configuration: `kubeconfig` (with `context`, else its current context);
/// else `context` of the default kubeconfig; else inferred (the default kubeconfig when
/// present, then the in-cluster service account).
pub async fn load_config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                Error::invalid(format!(
                    "cannot read kubeconfig {}: {e}: check kubernetes.kubeconfig, or leave it out to use the in-cluster service account",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| {
                    Error::invalid(format!(
                        "kubeconfig {} has no usable context{}: {e}",
                        path.display(),
                        context.map(|c| format!(" {c:?}")).unwrap_or_default()
                    ))
                })
        }
        (None, Some(name)) => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
            Error::invalid(format!(
                "cannot use kubeconfig context {name:?} of $KUBECONFIG or ~/.kube/config: {e}"
            ))
        }),
        (None, None) => kube::Config::infer().await.map_err(|e| {
            Error::unavailable(format!(
                "no Kubernetes configuration found: {e}: run the server in a pod with a service account, or set kubernetes.kubeconfig"
            ))
        }),
    }
}

/// A client from [`load_config`].
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Cluster> {
    let config = load_config(kubeconfig, context).await?;
    let default_namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::unavailable(format!("cannot build a Kubernetes client: {e}")))?;
    Ok(Cluster {
        client,
        default_namespace,
    })
}

//! Configuration: `spillway.toml`, then `SPILLWAY_*` environment variables, then flags.
//!
//! Flags and environment variables are declared together on the clap arguments (`env = ...`);
//! the file fills in whatever neither gave. Unknown fields in the file are errors, so a typo
//! never silently falls back to a default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use spillway_autoscale::config::{PolicyConfig, PoolConfig, validate_pools};

/// Name of the config file looked up in the current directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "spillway.toml";
/// The server URL used when nothing else names one.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:7070";
/// File in the data directory holding the admin token written by `spillway up`.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File in the data directory holding the URL of the server started by `spillway up`.
pub const SERVER_URL_FILE: &str = "server.url";

/// The whole `spillway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Where `up` and `server` keep the SQLite database, local blobs and the admin token.
    pub data_dir: Option<PathBuf>,
    /// How the CLI and workers reach the server.
    pub client: ClientSection,
    /// Where state and objects live.
    pub storage: StorageSection,
    /// The HTTP server's settings.
    pub server: Option<spillway_server::ServerConfig>,
    /// Worker defaults.
    pub worker: WorkerSection,
    /// `[[pools]]`: groups of workers the server's autoscaler sizes from their queues' backlog.
    pub pools: Vec<PoolConfig>,
    /// `[autoscale]`: how the autoscaler weighs backlog against time.
    pub autoscale: Option<PolicyConfig>,
}

/// `[client]`: how to reach the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSection {
    /// The server's base URL.
    pub server: Option<String>,
    /// A bearer token.
    pub token: Option<String>,
    /// A file holding a bearer token.
    pub token_file: Option<PathBuf>,
}

/// `[storage]`: the store and blob URLs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `sqlite:///path/to/spillway.db` (default: in the data directory) or `postgres://…`.
    pub store: Option<String>,
    /// `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix` or `memory://`.
    pub blobs: Option<String>,
    /// Memory for SQLite's page cache, e.g. "64MiB".
    pub sqlite_cache: Option<spillway_server::size::ByteSize>,
}

/// `[worker]`: defaults for `spillway worker`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Queues to serve.
    pub queues: Option<Vec<String>>,
    /// Tasks at once.
    pub concurrency: Option<u32>,
    /// The pool this worker belongs to.
    pub pool: Option<String>,
    /// Where each worker makes its private folder (mode 700) for task scratch folders.
    pub scratch_dir: Option<PathBuf>,
    /// How tasks run: `local` processes (the default) or one `kubernetes` Job per task.
    pub executor: Option<ExecutorKind>,
    /// Run local tasks as this user (a name, a uid or `uid:gid`); the worker must be root.
    pub task_user: Option<String>,
    /// `[worker.kubernetes]`: the Kubernetes Job executor's settings.
    pub kubernetes: WorkerKubernetesSection,
}

/// How a worker runs its tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A process on the worker's host.
    #[default]
    Local,
    /// One `batch/v1` Job per task in a Kubernetes cluster.
    Kubernetes,
}

/// `[worker.kubernetes]`: defaults for the `--kubernetes-*` flags of `spillway worker`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerKubernetesSection {
    /// The namespace Jobs go to (default: the kubeconfig context's, or the worker pod's).
    pub namespace: Option<String>,
    /// The image of tasks that name none.
    pub image: Option<String>,
    /// A kubeconfig file (default: in-cluster config, else `$KUBECONFIG` / `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    pub context: Option<String>,
    /// The service account task pods run as.
    pub service_account: Option<String>,
    /// Keep finished Jobs instead of deleting them.
    pub keep_jobs: Option<bool>,
    /// Job names start with this.
    pub job_prefix: Option<String>,
    /// How long Kubernetes keeps a finished Job (`ttlSecondsAfterFinished`), e.g. "1h".
    #[serde(default, with = "humantime_serde")]
    pub job_ttl: Option<std::time::Duration>,
    /// How long a pod may stay pending before its attempt fails, e.g. "10m".
    #[serde(default, with = "humantime_serde")]
    pub pending_limit: Option<std::time::Duration>,
}

impl FileConfig {
    /// Load `path`, or `./spillway.toml` when it exists, or defaults.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !default.exists() {
                    return Ok(Self::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parse the text of a config file and check its pools and autoscale settings.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text)?;
        validate_pools(&config.pools)?;
        // Each provider's own section (`kubernetes = { … }`) is checked by its crate, through
        // the registry the binary runs, so a typo there fails at load, not at server start.
        let providers = crate::providers::registry();
        providers.check_pools(&config.pools)?;
        if let Some(server) = &config.server {
            providers.check_pools(&server.pools)?;
        }
        if let Some(autoscale) = &config.autoscale {
            autoscale.validate()?;
        }
        Ok(config)
    }

    /// Whether `[[pools]]` (or `[[server.pools]]`) are configured, so the autoscaler runs the
    /// workers.
    pub fn autoscaled(&self) -> bool {
        !self.pools.is_empty() || self.server.as_ref().is_some_and(|s| !s.pools.is_empty())
    }
}

/// The data directory: flag/env first, then the file, then `$XDG_DATA_HOME/spillway` or
/// `~/.local/share/spillway`, or `./.spillway` when there is no home.
pub fn data_dir(flag: Option<&Path>, file: &FileConfig) -> PathBuf {
    if let Some(dir) = flag.or(file.data_dir.as_deref()) {
        return dir.to_path_buf();
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("spillway");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/spillway");
    }
    PathBuf::from(".spillway")
}

/// The server URL: flag/env, then the file, then what `spillway up` recorded, then the default.
pub fn server_url(flag: Option<&str>, file: &FileConfig, data_dir: &Path) -> String {
    if let Some(url) = flag.or(file.client.server.as_deref()) {
        return url.trim_end_matches('/').to_string();
    }
    if let Ok(url) = std::fs::read_to_string(data_dir.join(SERVER_URL_FILE)) {
        let url = url.trim();
        if !url.is_empty() {
            return url.to_string();
        }
    }
    DEFAULT_SERVER_URL.to_string()
}

/// The bearer token: flag/env, then the file's `token` or `token_file`, then the admin token
/// that `spillway up` wrote on this machine.
pub fn token(flag: Option<&str>, file: &FileConfig, data_dir: &Path) -> Result<Option<String>> {
    if let Some(token) = flag.or(file.client.token.as_deref()) {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(path) = &file.client.token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        return Ok(Some(token.trim().to_string()));
    }
    match std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)) {
        Ok(token) => Ok(Some(token.trim().to_string())),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_parses() {
        let text = include_str!("../../../spillway.example.toml");
        let config = FileConfig::parse(text).expect("spillway.example.toml must parse");
        assert!(config.storage.store.is_some());
        assert!(config.worker.queues.is_some());
        assert!(config.autoscaled(), "the sample shows [[pools]]");
        assert!(config.autoscale.is_some(), "the sample shows [autoscale]");
        assert!(
            config.server.is_some_and(|s| s.metrics_auth),
            "the sample shows metrics_auth"
        );
    }

    /// The commented-out cloud pools of the sample and the README's pools example are valid.
    #[test]
    fn the_cloud_pool_examples_are_valid() {
        let sample = include_str!("../../../spillway.example.toml");
        let commented = sample
            .split_once("# Pools on Kubernetes")
            .expect("the sample shows cloud pools")
            .1;
        let uncommented: String = commented
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.starts_with("[[") || line.contains(" = "))
            .map(|line| format!("{line}\n"))
            .collect();
        let readme = include_str!("../../../README.md");
        let section = readme
            .split_once("## Running on Kubernetes")
            .expect("README has the section")
            .1;
        let example = section
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .expect("a TOML example")
            .0;
        for (name, text) in [("sample", uncommented.as_str()), ("README", example)] {
            let config = FileConfig::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let providers: Vec<_> = config.pools.iter().map(|p| p.provider.as_str()).collect();
            assert_eq!(providers, ["kubernetes", "compute_engine"], "{name}");
        }
    }

    #[test]
    fn pools_are_validated_at_load() {
        let text = "[[pools]]\nname = \"spot\"\nprovider = \"local\"\nqueues = [\"q\"]\ntier = 1\n";
        let err = FileConfig::parse(text).expect_err("burst pool without home pool");
        assert!(err.to_string().contains("no tier-0 pool"), "{err}");
        let err = FileConfig::parse("[autoscale]\ninterval = \"0s\"\n").expect_err("zero interval");
        assert!(err.to_string().contains("interval"), "{err}");
    }

    #[test]
    fn provider_sections_are_checked_at_load_by_their_crates() {
        let pool = "name = \"k8s\"\nprovider = \"kubernetes\"\nqueues = [\"q\"]\n";
        let typo = format!("[[pools]]\n{pool}kubernetes = {{ namespce = \"batch\" }}\n");
        let err = FileConfig::parse(&typo).expect_err("unknown kubernetes key");
        assert!(err.to_string().contains("namespce"), "{err}");
        let nested = format!("[[server.pools]]\n{pool}kubernetes = {{ mode = \"work_queue\" }}\n");
        let err = FileConfig::parse(&nested).expect_err("work queue without image");
        assert!(err.to_string().contains("kubernetes.image"), "{err}");
        let unknown = "[[pools]]\nname = \"p\"\nprovider = \"nomad\"\nqueues = [\"q\"]\n";
        let err = FileConfig::parse(unknown).expect_err("unknown provider");
        assert!(err.to_string().contains("use one of"), "{err}");
        FileConfig::parse(&format!("[[pools]]\n{pool}")).expect("defaults are a valid section");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = FileConfig::parse("[client]\nservr = \"http://x\"\n").expect_err("typo");
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn token_falls_back_to_the_admin_token_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "sw_secret\n").expect("write");
        let file = FileConfig::default();
        assert_eq!(
            token(None, &file, dir.path()).expect("token").as_deref(),
            Some("sw_secret")
        );
        assert_eq!(
            token(Some("flag"), &file, dir.path())
                .expect("token")
                .as_deref(),
            Some("flag")
        );
    }
}

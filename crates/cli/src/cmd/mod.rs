//! One module per command family. Each command returns the process exit code.

pub mod admin;
pub mod bench;
pub mod bridge;
pub mod completion;
pub mod dead;
pub mod jobs;
pub mod logs;
pub mod pools;
pub mod server;
pub mod simulate;
pub mod submit;
pub mod task_reaper;
pub mod task_spec;
pub mod up;
pub mod version;
pub mod why;
pub mod worker;
pub mod workers;

use std::path::PathBuf;

use anyhow::{Context, Result};
use spillway_client::Client;

use crate::Global;
use crate::config::{self, FileConfig};
use crate::output::Printer;

/// What every command needs: the merged configuration and how to reach the server.
pub struct Ctx {
    /// The config file's contents (defaults when there is none).
    pub file: FileConfig,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The server's base URL.
    pub server_url: String,
    /// The bearer token, if one was found.
    pub token: Option<String>,
    /// The tenant asked for with --tenant.
    pub tenant: Option<String>,
    /// How to print answers (`--output`, or `--json`).
    pub out: Printer,
    /// How log lines look (handed on to the workers `up` starts).
    pub log_format: crate::telemetry::LogFormat,
}

impl Ctx {
    /// Merge file, environment and flags.
    pub fn new(global: &Global) -> Result<Self> {
        let file = FileConfig::load(global.config.as_deref())?;
        let data_dir = config::data_dir(global.data_dir.as_deref(), &file);
        let server_url = config::server_url(global.server.as_deref(), &file, &data_dir);
        let token = config::token(global.token.as_deref(), &file, &data_dir)?;
        Ok(Self {
            file,
            data_dir,
            server_url,
            token,
            tenant: global.tenant.clone(),
            out: Printer::new(global.output, global.json),
            log_format: global.log_format,
        })
    }

    /// A client for the configured server.
    pub fn client(&self) -> Result<Client> {
        if self.token.is_none() {
            anyhow::bail!(
                "no API token found: pass --token or set SPILLWAY_TOKEN, or start `spillway up` on this machine (it writes {})",
                self.data_dir.join(config::ADMIN_TOKEN_FILE).display()
            );
        }
        Client::new(&self.server_url, self.token.clone())
            .with_context(|| format!("cannot make a client for {}", self.server_url))
    }
}

/// Wait for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

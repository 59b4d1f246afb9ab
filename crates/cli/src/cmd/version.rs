//! `spillway version`: this program's version and the server's.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use spillway_client::Client;

use super::Ctx;

/// What `spillway version` prints.
#[derive(Debug, Serialize)]
struct Versions {
    /// This program's version.
    client: String,
    /// The server's version; `None` when it could not be asked.
    server: Option<String>,
    /// Why the server's version is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
    /// The server asked.
    server_url: String,
}

/// Print both versions. The server's route needs no token, so this works without one; an
/// unreachable server is reported, not an error: the client's version is still worth
/// printing.
pub async fn run(ctx: &Ctx) -> Result<ExitCode> {
    let asked = match Client::new(&ctx.server_url, ctx.token.clone()) {
        Ok(client) => client.version().await.map(|v| v.version),
        Err(err) => Err(err),
    };
    let (server, server_error) = match asked {
        Ok(version) => (Some(version), None),
        Err(err) => (None, Some(err.to_string())),
    };
    let versions = Versions {
        client: env!("CARGO_PKG_VERSION").to_string(),
        server,
        server_error,
        server_url: ctx.server_url.clone(),
    };
    let name = versions.client.clone();
    ctx.out.show(&versions, &name, || {
        let server = match (&versions.server, &versions.server_error) {
            (Some(version), _) => format!("{version} ({})", versions.server_url),
            (None, error) => format!("unreachable ({})", error.as_deref().unwrap_or("no answer")),
        };
        format!("client: {}\nserver: {server}\n", versions.client)
    })?;
    Ok(ExitCode::SUCCESS)
}

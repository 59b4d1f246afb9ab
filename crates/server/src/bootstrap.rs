//! First start: the `default` tenant and queue, and the first admin token.

use spillway_core::auth::Role;
use spillway_core::model::{DEFAULT_QUEUE, DEFAULT_TENANT, QueueSettings};
use spillway_core::{ErrorKind, Result, Timestamp};
use spillway_store::{DynStore, QueueCreate, TokenCreate};

use crate::auth::{hash_secret, new_secret, new_token_id};
use spillway_store::TenantCreate;

/// The name given to the first admin token.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

/// Create tenant `default` and its queue `default` when missing and, when no token exists yet,
/// an admin token for every tenant. Returns that token's secret (shown once), or `None` when
/// tokens already existed. Safe to run on every start.
pub async fn bootstrap(store: &DynStore, now: Timestamp) -> Result<Option<String>> {
    ignore_conflict(
        store
            .tenant_create(TenantCreate {
                name: DEFAULT_TENANT.to_string(),
                now,
            })
            .await
            .map(|_| ()),
    )?;
    ignore_conflict(
        store
            .queue_create(QueueCreate {
                tenant: DEFAULT_TENANT.to_string(),
                name: DEFAULT_QUEUE.to_string(),
                settings: QueueSettings::default(),
                now,
            })
            .await
            .map(|_| ()),
    )?;
    if !store.token_list(None).await?.is_empty() {
        return Ok(None);
    }
    let secret = new_secret();
    let info = store
        .token_create(TokenCreate {
            id: new_token_id(),
            name: BOOTSTRAP_TOKEN_NAME.to_string(),
            tenant: None,
            role: Role::Admin,
            secret_hash: hash_secret(&secret),
            now,
        })
        .await?;
    tracing::info!(token_id = %info.id, "created the first admin token");
    Ok(Some(secret))
}

fn ignore_conflict(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(()),
        other => other,
    }
}

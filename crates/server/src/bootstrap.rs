//! First start: the `default` tenant and queue, and the first admin token; the worker token
//! of `spillway up`'s own workers.

use spillway_core::api::CreateToken;
use spillway_core::auth::{Principal, Role};
use spillway_core::model::{DEFAULT_QUEUE, DEFAULT_TENANT, QueueSettings};
use spillway_core::{ErrorKind, Result, Timestamp};
use spillway_store::{DynStore, QueueCreate, TokenCreate};

use crate::app::{self, Caller};
use crate::auth::{hash_secret, new_secret, new_token_id};
use crate::state::AppState;
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
            expires_at: None,
            queues: None,
        })
        .await?;
    tracing::info!(token_id = %info.id, "created the first admin token");
    Ok(Some(secret))
}

/// The name of the worker token `spillway up` gives the workers it starts.
pub const LOCAL_WORKERS_TOKEN_NAME: &str = "spillway-up-workers";

/// A new worker token of tenant `default` for the workers `spillway up` starts on this
/// machine; returns its secret. The tokens earlier starts made for them (same name, role
/// worker) are revoked first, so only the running `up`'s token works and its secret is kept
/// nowhere but in memory (and in its workers, which drop it from their environment).
pub async fn local_workers_token(state: &AppState) -> Result<String> {
    // `up` acts here as an admin of tenant `default` only, so it cannot touch another tenant.
    let principal = Principal {
        token_id: "spillway-up".to_string(),
        tenant: Some(DEFAULT_TENANT.to_string()),
        role: Role::Admin,
        queues: None,
    };
    let caller = Caller::own(&principal);
    for old in app::admin::token_list(state, caller).await? {
        if old.name == LOCAL_WORKERS_TOKEN_NAME && old.role == Role::Worker {
            app::admin::token_revoke(state, caller, &old.id).await?;
        }
    }
    let created = app::admin::token_create(
        state,
        caller,
        CreateToken {
            name: LOCAL_WORKERS_TOKEN_NAME.to_string(),
            role: Role::Worker,
            tenant: None,
            expires_at: None,
            queues: None,
        },
    )
    .await?;
    Ok(created.token)
}

fn ignore_conflict(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(()),
        other => other,
    }
}

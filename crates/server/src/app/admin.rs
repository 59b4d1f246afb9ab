//! Tenants and tokens.

use chrono::{SecondsFormat, SubsecRound};
use spillway_core::api::{CreateToken, CreatedToken};
use spillway_core::auth::{Action, Role};
use spillway_core::model::{DEFAULT_QUEUE, QueueSettings, Tenant, TokenInfo};
use spillway_core::names::validate_name;
use spillway_core::{Error, ErrorKind, Result};
use spillway_store::{QueueCreate, TokenCreate};

use super::Caller;
use crate::auth::{hash_secret, new_secret, new_token_id};
use crate::state::AppState;
use spillway_store::TenantCreate;
use spillway_store::TokenRevoke;

/// Create the tenant `name` with its `default` queue.
pub async fn tenant_create(state: &AppState, caller: Caller<'_>, name: &str) -> Result<Tenant> {
    may_create_tenants(caller)?;
    validate_name("tenant", name)?;
    let now = state.clock.now();
    let tenant = state
        .store
        .tenant_create(TenantCreate {
            name: name.to_string(),
            now,
        })
        .await?;
    // A tenant is usable at once: submits without a queue go to `default`.
    ensure_default_queue(state, &tenant.name).await?;
    tracing::info!(tenant = %tenant.name, "tenant created");
    Ok(tenant)
}

/// Fail unless the caller may create tenants: only an admin of every tenant may (checked by
/// [`tenant_create`]; the API asks first, before it reads the request body).
pub fn may_create_tenants(caller: Caller<'_>) -> Result<()> {
    caller.require(Action::ManageTokens)?;
    if !caller.all_tenants() {
        return Err(Error::permission_denied(
            "only an admin of every tenant may create tenants: use a token made without a tenant",
        ));
    }
    Ok(())
}

/// Create `tenant`'s `default` queue unless it exists.
async fn ensure_default_queue(state: &AppState, tenant: &str) -> Result<()> {
    let created = state
        .store
        .queue_create(QueueCreate {
            tenant: tenant.to_string(),
            name: DEFAULT_QUEUE.to_string(),
            settings: QueueSettings::default(),
            now: state.clock.now(),
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tenants the caller can see.
pub async fn tenant_list(state: &AppState, caller: Caller<'_>) -> Result<Vec<Tenant>> {
    caller.require(Action::Read)?;
    let tenants = state.store.tenant_list().await?;
    Ok(tenants
        .into_iter()
        .filter(|t| caller.principal.sees_tenant(&t.name))
        .collect())
}

/// Create the token `req` asks for in the caller's tenant (`req.tenant` is read only through
/// `caller`, which the protocol builds from it); its secret is in the answer and never shown
/// again. An expiry must lie ahead of the server's clock, and every queue of a scope must
/// exist in the token's tenant, so a typo is refused rather than minting a useless token.
pub async fn token_create(
    state: &AppState,
    caller: Caller<'_>,
    req: CreateToken,
) -> Result<CreatedToken> {
    caller.require(Action::ManageTokens)?;
    req.validate()?;
    let CreateToken {
        name,
        role,
        expires_at,
        queues,
        ..
    } = req;
    // Kept to the second (rounded down, never later than asked), so every backend answers
    // the time it was given.
    let expires_at = expires_at.map(|at| at.trunc_subsecs(0));
    let now = state.clock.now();
    if let Some(at) = expires_at
        && at <= now
    {
        return Err(Error::invalid(format!(
            "expires_at {} is not in the future (the server's time is {}): give a later time, or an --expires-in such as 30d",
            at.to_rfc3339_opts(SecondsFormat::Secs, true),
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        )));
    }
    // An admin of every tenant asking for an admin or a metrics token without a tenant makes
    // one of every tenant (a metrics token of every tenant sees every tenant's series); every
    // other token is bound to one tenant.
    let every_tenant = matches!(role, Role::Admin | Role::Metrics);
    let tenant = if caller.all_tenants() && caller.requested.is_none() && every_tenant {
        None
    } else {
        let tenant = caller.tenant()?;
        let known = state.store.tenant_list().await?;
        if !known.iter().any(|t| t.name == tenant) {
            return Err(Error::not_found(format!(
                "tenant {tenant:?} not found: create it with POST /v1/tenants first"
            )));
        }
        Some(tenant)
    };
    if let (Some(queues), Some(tenant)) = (&queues, &tenant) {
        for queue in queues {
            state.store.queue_get(tenant, queue).await.map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Error::not_found(format!(
                        "queue {queue:?} not found in tenant {tenant:?}: create it first, or leave it out of the token's queues"
                    ))
                } else {
                    e
                }
            })?;
        }
    }
    let secret = new_secret();
    let info = state
        .store
        .token_create(TokenCreate {
            id: new_token_id(),
            name,
            tenant,
            role,
            secret_hash: hash_secret(&secret),
            now,
            expires_at,
            queues,
        })
        .await?;
    tracing::info!(token_id = %info.id, role = info.role.as_str(), tenant = ?info.tenant, expires_at = ?info.expires_at, queues = ?info.queues, "token created");
    Ok(CreatedToken {
        token: secret,
        info,
    })
}

/// The tokens of the caller's tenant (of every tenant for an admin of all), never their
/// secrets. Only admins may list them: the names and roles of a tenant's tokens are theirs
/// to manage, not for every token holder to read.
pub async fn token_list(state: &AppState, caller: Caller<'_>) -> Result<Vec<TokenInfo>> {
    caller.require(Action::ManageTokens)?;
    let scope = caller.scope()?;
    state.store.token_list(scope.as_deref()).await
}

/// Revoke the token `id`; it stops working at once on this server.
pub async fn token_revoke(state: &AppState, caller: Caller<'_>, id: &str) -> Result<()> {
    caller.require(Action::ManageTokens)?;
    let scope = caller.scope()?;
    state
        .store
        .token_revoke(TokenRevoke {
            tenant: scope,
            id: id.to_string(),
            now: state.clock.now(),
        })
        .await?;
    state.shared.tokens.forget(id);
    state.shared.sessions.forget_token(id);
    tracing::info!(token_id = %id, "token revoked");
    Ok(())
}

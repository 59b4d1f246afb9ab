//! Tenants and tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use spillway_core::api::{CreateTenant, CreateToken, CreatedToken, Problem};
use spillway_core::auth::{Action, Role};
use spillway_core::model::{DEFAULT_QUEUE, QueueSettings, Tenant, TokenInfo};
use spillway_core::names::validate_name;
use spillway_core::{Error, ErrorKind};
use spillway_store::{QueueCreate, TokenCreate};

use crate::auth::{Auth, hash_secret, new_secret, new_token_id, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Longest token name accepted.
const MAX_TOKEN_NAME: usize = 200;

/// Create a tenant (with its `default` queue). Only an admin of every tenant may.
#[utoipa::path(post, path = "/v1/tenants", tag = "admin", request_body = CreateTenant,
    security(("bearer" = [])),
    responses((status = 201, body = Tenant), (status = "4XX", body = Problem)))]
pub async fn tenant_create(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    auth.require(Action::ManageTokens)?;
    if auth.0.tenant.is_some() {
        return Err(Error::permission_denied(
            "only an admin of every tenant may create tenants: use a token made without a tenant",
        )
        .into());
    }
    let req: CreateTenant = body.parse()?;
    validate_name("tenant", &req.name)?;
    let now = state.clock.now();
    let tenant = state.store.tenant_create(&req.name, now).await?;
    // A tenant is usable at once: submits without a queue go to `default`.
    ensure_default_queue(&state, &tenant.name).await?;
    tracing::info!(tenant = %tenant.name, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant)))
}

pub(crate) async fn ensure_default_queue(state: &AppState, tenant: &str) -> Result<(), Error> {
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
#[utoipa::path(get, path = "/v1/tenants", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = "4XX", body = Problem)))]
pub async fn tenant_list(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<Tenant>>> {
    auth.require(Action::Read)?;
    let tenants = state.store.tenant_list().await?;
    Ok(Json(
        tenants
            .into_iter()
            .filter(|t| auth.0.sees_tenant(&t.name))
            .collect(),
    ))
}

/// Create a token; its secret is in the answer and never shown again.
#[utoipa::path(post, path = "/v1/tokens", tag = "admin", request_body = CreateToken,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = "4XX", body = Problem)))]
pub async fn token_create(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    auth.require(Action::ManageTokens)?;
    let mut req: CreateToken = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    if req.name.trim().is_empty() || req.name.len() > MAX_TOKEN_NAME {
        return Err(Error::invalid(format!(
            "token name must be 1 to {MAX_TOKEN_NAME} characters, e.g. \"ci-submitter\""
        ))
        .into());
    }
    // An admin of every tenant asking for an admin token without a tenant makes another
    // admin of every tenant; every other token is bound to one tenant.
    let tenant = if auth.0.tenant.is_none() && req.tenant.is_none() && req.role == Role::Admin {
        None
    } else {
        let tenant = auth.tenant(req.tenant.as_deref())?;
        let known = state.store.tenant_list().await?;
        if !known.iter().any(|t| t.name == tenant) {
            return Err(Error::not_found(format!(
                "tenant {tenant:?} not found: create it with POST /v1/tenants first"
            ))
            .into());
        }
        Some(tenant)
    };
    let secret = new_secret();
    let info = state
        .store
        .token_create(TokenCreate {
            id: new_token_id(),
            name: req.name,
            tenant,
            role: req.role,
            secret_hash: hash_secret(&secret),
            now: state.clock.now(),
        })
        .await?;
    tracing::info!(token_id = %info.id, role = info.role.as_str(), tenant = ?info.tenant, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: secret,
            info,
        }),
    ))
}

/// Tokens the caller can see (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "admin", params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenInfo>), (status = "4XX", body = Problem)))]
pub async fn token_list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let tokens = state.store.token_list(scope.as_deref()).await?;
    Ok(Json(tokens))
}

/// Revoke a token.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the token's id"), TenantQuery),
    responses((status = 204, description = "revoked"), (status = "4XX", body = Problem)))]
pub async fn token_revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<StatusCode> {
    auth.require(Action::ManageTokens)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    state
        .store
        .token_revoke(scope.as_deref(), &id, state.clock.now())
        .await?;
    state.shared.tokens.forget(&id);
    tracing::info!(token_id = %id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

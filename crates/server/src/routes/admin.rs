//! `/v1/tenants` and `/v1/tokens` over HTTP (through [`crate::app::admin`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use spillway_core::api::{CreateTenant, CreateToken, CreatedToken, Problem};
use spillway_core::auth::Action;
use spillway_core::model::{Tenant, TokenInfo};

use crate::app::{Caller, admin};
use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Create a tenant (with its `default` queue). Only an admin of every tenant may.
#[utoipa::path(post, path = "/v1/tenants", tag = "admin", request_body = CreateTenant,
    security(("bearer" = [])),
    responses((status = 201, body = Tenant), (status = "4XX", body = Problem)))]
pub async fn tenant_create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let caller = Caller::own(&principal);
    // Refuse before the body is read.
    admin::may_create_tenants(caller)?;
    let req: CreateTenant = body.parse()?;
    let tenant = admin::tenant_create(&state, caller, &req.name).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Tenants the caller can see.
#[utoipa::path(get, path = "/v1/tenants", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = "4XX", body = Problem)))]
pub async fn tenant_list(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> ApiResult<Json<Vec<Tenant>>> {
    Ok(Json(
        admin::tenant_list(&state, Caller::own(&principal)).await?,
    ))
}

/// Create a token; its secret is in the answer and never shown again. It may expire
/// (`expires_at`, in the future) and may be limited to some queues of its tenant (`queues`,
/// which must exist; not for admin or metrics tokens). An expired token is answered 401.
#[utoipa::path(post, path = "/v1/tokens", tag = "admin", request_body = CreateToken,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = "4XX", body = Problem)))]
pub async fn token_create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    // Refuse before the body is read.
    principal.require(Action::ManageTokens)?;
    let mut req: CreateToken = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let tenant = req.tenant.clone();
    let caller = Caller::new(&principal, tenant.as_deref());
    let created = admin::token_create(&state, caller, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The tokens of the caller's tenant (never their secrets). Admins only.
#[utoipa::path(get, path = "/v1/tokens", tag = "admin", params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenInfo>), (status = "4XX", body = Problem)))]
pub async fn token_list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(admin::token_list(&state, caller).await?))
}

/// Revoke a token.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the token's id"), TenantQuery),
    responses((status = 204, description = "revoked"), (status = "4XX", body = Problem)))]
pub async fn token_revoke(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<StatusCode> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    admin::token_revoke(&state, caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

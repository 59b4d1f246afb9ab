//! Autoscaled pools: their status and recent decisions, and changing their bounds.

use axum::Json;
use axum::extract::State;
use spillway_core::Error;
use spillway_core::api::{PoolStatus, PoolUpdate, Problem};
use spillway_core::auth::Action;

use crate::auth::Auth;
use crate::autoscale::POOL_TENANT;
use crate::extract::{JsonBody, Path};
use crate::problem::ApiResult;
use crate::state::AppState;

/// Every configured pool with what the autoscaler last saw and its latest decisions.
#[utoipa::path(get, path = "/v1/pools", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<PoolStatus>), (status = "4XX", body = Problem)))]
pub async fn list(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<PoolStatus>>> {
    auth.require(Action::Read)?;
    Ok(Json(state.shared.pools.statuses()))
}

/// Change a pool's `min` and `max` until the server restarts; the next pass uses them.
#[utoipa::path(patch, path = "/v1/pools/{name}", tag = "admin", request_body = PoolUpdate,
    params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PoolStatus), (status = "4XX", body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<PoolStatus>> {
    auth.require(Action::ManageQueues)?;
    // Pools serve the default tenant's queues, so only its admins (or admins of every
    // tenant) may resize them.
    if auth.0.tenant.as_deref().is_some_and(|t| t != POOL_TENANT) {
        return Err(Error::permission_denied(format!(
            "pools serve tenant {POOL_TENANT:?}: use an admin token of that tenant or of every tenant"
        ))
        .into());
    }
    let update: PoolUpdate = body.parse()?;
    let status = state.shared.pools.update(&name, &update)?;
    tracing::info!(pool = %name, min = status.min, max = status.max, "pool bounds changed");
    Ok(Json(status))
}

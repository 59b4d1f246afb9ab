//! `/v1/pools` over HTTP (through [`crate::app::pools`]): the autoscaled pools' status and
//! decisions, and changing their bounds.

use axum::Json;
use axum::extract::State;
use spillway_core::api::{PoolStatus, PoolUpdate, Problem};

use crate::app::{Caller, pools};
use crate::auth::Auth;
use crate::extract::{JsonBody, Path};
use crate::problem::ApiResult;
use crate::state::AppState;

/// Every configured pool with what the autoscaler last saw and its latest decisions. Every
/// role may read it, a metrics token too.
#[utoipa::path(get, path = "/v1/pools", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<PoolStatus>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> ApiResult<Json<Vec<PoolStatus>>> {
    Ok(Json(pools::list(&state, Caller::own(&principal))?))
}

/// Change a pool's `min` and `max`, or with `reset` go back to the configured ones. Kept in
/// the store: they outlive a restart and reach every replica.
#[utoipa::path(patch, path = "/v1/pools/{name}", tag = "admin", request_body = PoolUpdate,
    params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PoolStatus), (status = "4XX", body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(name): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<PoolStatus>> {
    // Refuse before the body is read.
    pools::may_resize(Caller::own(&principal))?;
    let update: PoolUpdate = body.parse()?;
    Ok(Json(
        pools::update(&state, Caller::own(&principal), &name, &update).await?,
    ))
}

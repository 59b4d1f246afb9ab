//! `/v1/queues` over HTTP (through [`crate::app::queues`]), and the `?tenant=` query every
//! route shares.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use spillway_core::api::{CreateQueue, Problem, QueueView};
use spillway_core::auth::Action;
use spillway_core::model::{Queue, QueueSettings};
use spillway_core::names::validate_name;
use utoipa::IntoParams;

use crate::app::{Caller, queues};
use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::problem::ApiResult;
use crate::state::AppState;

/// Choose the tenant of a request (only for admins of every tenant).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// Create a queue.
#[utoipa::path(post, path = "/v1/queues", tag = "queues", request_body = CreateQueue,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = Queue), (status = "4XX", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Queue>)> {
    // Refuse before the body is read.
    principal.require(Action::ManageQueues)?;
    let mut req: CreateQueue = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let caller = Caller::new(&principal, req.tenant.as_deref());
    let queue = queues::create(&state, caller, req.name, req.settings).await?;
    Ok((StatusCode::CREATED, Json(queue)))
}

/// Queues the caller can see, with their numbers.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", params(TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<QueueView>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<QueueView>>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(queues::list(&state, caller).await?))
}

/// One queue with its numbers.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "the queue"), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = QueueView), (status = "4XX", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(name): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<QueueView>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(queues::get(&state, caller, &name).await?))
}

/// Change some of a queue's settings; fields left out keep their current value.
#[utoipa::path(patch, path = "/v1/queues/{name}", tag = "queues", request_body = QueueSettings,
    params(("name" = String, Path, description = "the queue"), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Queue), (status = "4XX", body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(name): Path<String>,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<Queue>> {
    // Refuse before the body is read.
    principal.require(Action::ManageQueues)?;
    validate_name("queue", &name)?;
    let patch: serde_json::Value = body.parse()?;
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(queues::update(&state, caller, &name, patch).await?))
}

//! `GET /v1/tasks/{id}/why`: decodes the request and answers with [`crate::app::why::why`].

use axum::Json;
use axum::extract::State;
use spillway_core::TaskId;
use spillway_core::api::{Problem, TaskWhy};

use crate::app::{Caller, why as app};
use crate::auth::Auth;
use crate::extract::{Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Where a task stands and why it is not running.
#[utoipa::path(get, path = "/v1/tasks/{id}/why", tag = "tasks", params(("id" = i64, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TaskWhy), (status = "4XX", body = Problem)))]
pub async fn why(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<TaskWhy>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(app::why(&state, caller, id).await?))
}

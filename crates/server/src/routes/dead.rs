//! Dead letters: listing and requeueing.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use spillway_core::Error;
use spillway_core::api::{Changed, Page, Problem, RequeueRequest};
use spillway_core::auth::Action;
use spillway_core::model::Task;
use spillway_core::names::validate_name;
use spillway_store::{DeadList, DeadRequeue};
use utoipa::IntoParams;

use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Query};
use crate::problem::ApiResult;
use crate::routes::page_limit;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Filters of the dead letter list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// Only this queue.
    pub queue: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// Dead tasks, oldest first.
#[utoipa::path(get, path = "/v1/dead", tag = "dead", params(DeadQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Task>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<DeadQuery>,
) -> ApiResult<Json<Page<Task>>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    if let Some(queue) = &q.queue {
        validate_name("queue", queue)?;
    }
    let page = state
        .store
        .dead_list(DeadList {
            tenant: scope,
            queue: q.queue,
            limit: page_limit(q.limit)?,
            cursor: q.cursor,
        })
        .await?;
    Ok(Json(page))
}

/// Requeue dead tasks: the listed ones, or every dead task of a queue.
#[utoipa::path(post, path = "/v1/dead/requeue", tag = "dead", request_body = RequeueRequest,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = Changed), (status = "4XX", body = Problem)))]
pub async fn requeue(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<Changed>> {
    auth.require(Action::Requeue)?;
    let mut req: RequeueRequest = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    if req.task_ids.is_empty() == req.queue.is_none() {
        return Err(Error::invalid(
            "give either task_ids or queue: the dead tasks to requeue, or a queue to requeue all of",
        )
        .into());
    }
    let scope = match &req.queue {
        // A queue is named within one tenant; check it exists so a typo is a 404, not 0.
        Some(queue) => {
            validate_name("queue", queue)?;
            let tenant = auth.tenant(req.tenant.as_deref())?;
            state.store.queue_get(&tenant, queue).await?;
            Some(tenant)
        }
        None => auth.scope(req.tenant.as_deref())?,
    };
    let changed = state
        .store
        .dead_requeue(DeadRequeue {
            tenant: scope,
            task_ids: req.task_ids,
            queue: req.queue,
            now: state.clock.now(),
        })
        .await?;
    tracing::info!(changed, "dead tasks requeued");
    Ok(Json(Changed { changed }))
}

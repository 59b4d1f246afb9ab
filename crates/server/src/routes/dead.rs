//! `/v1/dead` over HTTP: listing and requeueing dead letters (through [`crate::app::dead`]).

use axum::Json;
use axum::extract::State;
use spillway_core::Error;
use spillway_core::api::{Changed, Page, Problem, RequeueRequest};
use spillway_core::auth::Action;
use spillway_core::model::Task;
use utoipa::IntoParams;

use crate::app::{Caller, dead};
use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Query, QueryPairs};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Filters of the dead letter list.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only tasks whose job has this label, as `key=value` or `key` for any value; repeat
    /// for several (all must match).
    pub label: Vec<String>,
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
    Auth(principal): Auth,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Page<Task>>> {
    let q = DeadQuery::from_pairs(pairs)?;
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(
        dead::list_labelled(&state, caller, q.queue, &q.label, q.limit, q.cursor).await?,
    ))
}

impl DeadQuery {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        let mut q = QueryPairs::read(pairs, &["queue", "label", "limit", "cursor", "tenant"])?;
        Ok(DeadQuery {
            queue: q.take("queue"),
            label: q.labels(),
            limit: q.number("limit")?,
            cursor: q.take("cursor"),
            tenant: q.take("tenant"),
        })
    }
}

/// Requeue dead tasks: the listed ones, or every dead task of a queue.
#[utoipa::path(post, path = "/v1/dead/requeue", tag = "dead", request_body = RequeueRequest,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = Changed), (status = "4XX", body = Problem)))]
pub async fn requeue(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<Changed>> {
    // Refuse before the body is read.
    principal.require(Action::Requeue)?;
    let mut req: RequeueRequest = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let tenant = req.tenant.clone();
    let caller = Caller::new(&principal, tenant.as_deref());
    let changed = dead::requeue(&state, caller, req).await?;
    Ok(Json(Changed { changed }))
}

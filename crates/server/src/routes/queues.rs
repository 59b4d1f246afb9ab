//! Queues and their numbers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use spillway_core::Error;
use spillway_core::api::{CreateQueue, Problem, QueueView};
use spillway_core::auth::Action;
use spillway_core::model::{Queue, QueueSettings, QueueStats};
use spillway_core::names::validate_name;
use spillway_store::QueueCreate;
use utoipa::IntoParams;

use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query, parse_json};
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
    auth: Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Queue>)> {
    auth.require(Action::ManageQueues)?;
    let mut req: CreateQueue = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    validate_name("queue", &req.name)?;
    req.settings.validate()?;
    let tenant = auth.tenant(req.tenant.as_deref())?;
    let queue = state
        .store
        .queue_create(QueueCreate {
            tenant,
            name: req.name,
            settings: req.settings,
            now: state.clock.now(),
        })
        .await?;
    tracing::info!(tenant = %queue.tenant, queue = %queue.name, "queue created");
    Ok((StatusCode::CREATED, Json(queue)))
}

/// Queues the caller can see, with their numbers.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", params(TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<QueueView>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<QueueView>>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let queues = state.store.queue_list(scope.as_deref()).await?;
    let stats = state
        .store
        .queue_stats(scope.as_deref(), state.clock.now())
        .await?;
    let views = queues
        .into_iter()
        .map(|queue| {
            let stats = stats
                .iter()
                .find(|s| s.tenant == queue.tenant && s.queue == queue.name)
                .cloned();
            view(queue, stats)
        })
        .collect();
    Ok(Json(views))
}

fn view(queue: Queue, stats: Option<QueueStats>) -> QueueView {
    let stats = stats.unwrap_or_else(|| QueueStats {
        tenant: queue.tenant.clone(),
        queue: queue.name.clone(),
        counts: Default::default(),
        oldest_available_age_seconds: None,
        paused: queue.settings.paused,
    });
    QueueView {
        name: queue.name,
        tenant: queue.tenant,
        settings: queue.settings,
        stats,
    }
}

/// One queue with its numbers.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "the queue"), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = QueueView), (status = "4XX", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<QueueView>> {
    auth.require(Action::Read)?;
    validate_name("queue", &name)?;
    let tenant = auth.tenant(q.tenant.as_deref())?;
    let queue = state.store.queue_get(&tenant, &name).await?;
    let stats = state
        .store
        .queue_stats(Some(&tenant), state.clock.now())
        .await?
        .into_iter()
        .find(|s| s.queue == name);
    Ok(Json(view(queue, stats)))
}

/// Change some of a queue's settings; fields left out keep their current value.
#[utoipa::path(patch, path = "/v1/queues/{name}", tag = "queues", request_body = QueueSettings,
    params(("name" = String, Path, description = "the queue"), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Queue), (status = "4XX", body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<Queue>> {
    auth.require(Action::ManageQueues)?;
    validate_name("queue", &name)?;
    let patch: serde_json::Value = body.parse()?;
    let serde_json::Value::Object(patch) = patch else {
        return Err(Error::invalid(
            "request body must be a JSON object of settings, e.g. {\"paused\": true}",
        )
        .into());
    };
    let tenant = auth.tenant(q.tenant.as_deref())?;
    let current = state.store.queue_get(&tenant, &name).await?;
    let mut merged = serde_json::to_value(&current.settings)
        .map_err(|e| Error::internal("could not encode queue settings").with_source(e))?;
    if let serde_json::Value::Object(fields) = &mut merged {
        fields.extend(patch);
    }
    let bytes = serde_json::to_vec(&merged)
        .map_err(|e| Error::internal("could not encode queue settings").with_source(e))?;
    let settings: QueueSettings = parse_json(&bytes)?;
    settings.validate()?;
    let queue = state.store.queue_update(&tenant, &name, settings).await?;
    tracing::info!(tenant = %queue.tenant, queue = %queue.name, "queue settings changed");
    Ok(Json(queue))
}

//! Submitting, listing, cancelling and retrying jobs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use spillway_core::api::{Changed, Page, Problem, SubmitJob, Submitted};
use spillway_core::auth::Action;
use spillway_core::keys::{inputs_prefix, uploads_prefix};
use spillway_core::model::{Job, Task};
use spillway_core::state::{JobState, TaskState};
use spillway_core::{Error, clock};
use spillway_store::{JobList, JobSubmit, TaskList};
use utoipa::IntoParams;

use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::ids::{new_job_id, validate_upload_id};
use crate::metrics::Outcome;
use crate::problem::ApiResult;
use crate::routes::page_limit;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Submit a job. 201 with a new job, 200 when the idempotency key matched an earlier one.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = SubmitJob,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = Submitted), (status = 200, body = Submitted),
              (status = "4XX", body = Problem)))]
pub async fn submit(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    auth.require(Action::Submit)?;
    let mut req: SubmitJob = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    req.validate(state.config.payload_limit())?;
    let tenant = auth.tenant(req.tenant.as_deref())?;
    // Everything that can refuse the request is checked before the first write: 404 for a
    // missing queue (one found before needs no store read; job_submit reads its settings).
    if !state.shared.leases.queue_known(&tenant, &req.queue) {
        state.store.queue_get(&tenant, &req.queue).await?;
        state.shared.leases.queue_found(&tenant, &req.queue);
    }
    let upload = match &req.upload_id {
        Some(id) => {
            validate_upload_id(id)?;
            let prefix = uploads_prefix(&tenant, id);
            if state.blobs.list(&prefix).await?.is_empty() {
                return Err(Error::not_found(format!(
                    "upload {id:?} not found or empty: put files with PUT /v1/uploads/{id}/files/<path> first"
                ))
                .into());
            }
            Some(prefix)
        }
        None => None,
    };

    let now = state.clock.now();
    let job_id = new_job_id(now);
    let inputs = inputs_prefix(&tenant, &job_id);
    if let Some(upload) = &upload {
        state.blobs.copy_prefix(upload, &inputs).await?;
    }
    let payloads = match req.tasks {
        Some(tasks) => tasks.into_iter().map(|t| t.payload).collect(),
        None => vec![None; req.count.unwrap_or(1) as usize],
    };
    let submitted = state
        .store
        .job_submit(JobSubmit {
            id: job_id.clone(),
            tenant: tenant.clone(),
            queue: req.queue,
            name: req.name,
            labels: req.labels,
            spec: req.spec,
            priority: req.priority,
            burstable: req.burstable,
            idempotency_key: req.idempotency_key,
            delete_inputs_on_success: req.delete_inputs_on_success,
            has_inputs: upload.is_some(),
            payloads,
            run_at: req.delay.map_or(now, |d| clock::add(now, d)),
            now,
        })
        .await;
    let (job, created) = match submitted {
        Ok(done) => done,
        Err(e) => {
            if upload.is_some() {
                // The upload stays, so the same submit can be tried again.
                discard(&state, &inputs).await;
            }
            return Err(e.into());
        }
    };
    if let Some(upload) = &upload {
        if !created {
            // The earlier job with this idempotency key has its own inputs.
            discard(&state, &inputs).await;
        }
        discard(&state, upload).await;
    }
    tracing::info!(%tenant, job_id = %job.id, queue = %job.queue, tasks = job.task_count, created, "job submitted");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Submitted { job, created })))
}

/// Delete a prefix whose loss only leaves garbage behind; failures are logged, not returned.
async fn discard(state: &AppState, prefix: &str) {
    if let Err(error) = state.blobs.delete_prefix(prefix).await {
        tracing::warn!(%prefix, %error, "could not delete staged files; they are left behind");
    }
}

/// Filters of the job list.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    pub state: Option<String>,
    /// Only jobs with this label, as `key=value`; repeat for several (all must match).
    pub label: Vec<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Job>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Page<Job>>> {
    auth.require(Action::Read)?;
    let q = JobQuery::from_pairs(pairs)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    if let Some(queue) = &q.queue {
        spillway_core::names::validate_name("queue", queue)?;
    }
    let job_state = q.state.as_deref().map(JobState::parse).transpose()?;
    let mut labels = Vec::new();
    for label in &q.label {
        let (k, v) = label.split_once('=').ok_or_else(|| {
            Error::invalid(format!("invalid label filter {label:?}: use key=value"))
        })?;
        labels.push((k.to_string(), v.to_string()));
    }
    // The store filters by one label; any further ones are applied here, so a page may hold
    // fewer items than the limit while `next_cursor` still leads on.
    let mut rest = labels.into_iter();
    let first = rest.next();
    let rest: Vec<(String, String)> = rest.collect();
    let mut page = state
        .store
        .job_list(JobList {
            tenant: scope,
            queue: q.queue,
            state: job_state,
            label: first,
            limit: page_limit(q.limit)?,
            cursor: q.cursor,
        })
        .await?;
    page.items
        .retain(|job| rest.iter().all(|(k, v)| job.labels.get(k) == Some(v)));
    Ok(Json(page))
}

impl JobQuery {
    /// Read the query pairs by hand: `label` may repeat, nothing else may.
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        let mut q = JobQuery::default();
        for (key, value) in pairs {
            let once = |slot: &mut Option<String>| {
                if slot.is_some() {
                    return Err(Error::invalid(format!(
                        "invalid query string: {key} is given twice"
                    )));
                }
                *slot = Some(value.clone());
                Ok(())
            };
            match key.as_str() {
                "queue" => once(&mut q.queue)?,
                "state" => once(&mut q.state)?,
                "cursor" => once(&mut q.cursor)?,
                "tenant" => once(&mut q.tenant)?,
                "label" => q.label.push(value),
                "limit" => {
                    if q.limit.is_some() {
                        return Err(Error::invalid("invalid query string: limit is given twice"));
                    }
                    q.limit = Some(value.parse().map_err(|_| {
                        Error::invalid(format!(
                            "invalid query string: limit {value:?} is not a number"
                        ))
                    })?);
                }
                other => {
                    return Err(Error::invalid(format!(
                        "invalid query string: unknown parameter {other:?}; use queue, state, label, limit, cursor or tenant"
                    )));
                }
            }
        }
        Ok(q)
    }
}

/// One job with its task counts.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Job), (status = "4XX", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Job>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    Ok(Json(state.store.job_get(scope.as_deref(), &id).await?))
}

/// Cancel a job: waiting tasks are cancelled, running ones are asked to stop.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Job), (status = "4XX", body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Job>> {
    auth.require(Action::Cancel)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let before = state.store.job_get(scope.as_deref(), &id).await?;
    let job = state
        .store
        .job_cancel(scope.as_deref(), &id, state.clock.now())
        .await?;
    let cancelled = job.counts.cancelled.saturating_sub(before.counts.cancelled);
    state
        .metrics
        .outcome(&job.queue, Outcome::Cancelled, cancelled);
    tracing::info!(job_id = %job.id, cancelled, "job cancelled");
    Ok(Json(job))
}

/// Requeue a job's dead and cancelled tasks.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Changed), (status = "4XX", body = Problem)))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Changed>> {
    auth.require(Action::Requeue)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let changed = state
        .store
        .job_retry(scope.as_deref(), &id, state.clock.now())
        .await?;
    tracing::info!(job_id = %id, changed, "job retried");
    Ok(Json(Changed { changed }))
}

/// Filters of a job's task list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// A job's tasks in index order.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", tag = "jobs", params(("id" = String, Path), TaskQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Task>), (status = "4XX", body = Problem)))]
pub async fn tasks(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Page<Task>>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let task_state = q.state.as_deref().map(TaskState::parse).transpose()?;
    let limit = page_limit(q.limit)?;
    let job = state.store.job_get(scope.as_deref(), &id).await?;
    let page = state
        .store
        .task_list(TaskList {
            tenant: Some(job.tenant),
            job_id: Some(job.id),
            queue: None,
            state: task_state,
            limit,
            cursor: q.cursor,
        })
        .await?;
    Ok(Json(page))
}

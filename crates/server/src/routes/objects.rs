//! Staged files over HTTP: uploads before submit, a job's inputs and task results (through
//! [`crate::app::uploads`] and [`crate::app::jobs`]), and a worker's result uploads.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use spillway_blob::ByteStream;
use spillway_core::api::{ObjectInfo, Problem, UploadCreated};
use spillway_core::auth::Action;
use spillway_core::keys::{result_key, validate_relative_path};
use spillway_core::{Error, TaskId};
use spillway_store::LeaseCheck;

use crate::app::{Caller, jobs, uploads};
use crate::auth::Auth;
use crate::extract::{Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// The header that carries the lease token on result uploads and live log chunks.
pub const LEASE_TOKEN_HEADER: &str = "spillway-lease-token";

/// The lease token a worker's upload or log chunk carries in [`LEASE_TOKEN_HEADER`]: the
/// fence that refuses a stale attempt's writes.
pub fn lease_token(headers: &HeaderMap) -> Result<String, Error> {
    headers
        .get(LEASE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::invalid("missing header Spillway-Lease-Token: send the lease token of the task")
        })
}

/// Turn a request body into a blob stream that fails once more than `limit` bytes arrived.
/// A declared Content-Length over the limit is refused before anything is read or written.
fn limited_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<ByteStream, Error> {
    let too_large = move |size: u64| {
        Error::too_large(format!(
            "upload of {size} bytes is over the limit of {limit} bytes (max_upload_bytes): split the file or raise the limit"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared
        && size > limit
    {
        return Err(too_large(size));
    }
    let mut seen: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk =
            chunk.map_err(|e| Error::invalid("could not read the upload body").with_source(e))?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(too_large(seen));
        }
        Ok(chunk)
    });
    Ok(Box::pin(stream))
}

/// A download: the file's bytes as `application/octet-stream`.
fn download(stream: ByteStream) -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Open an upload area; put files in it, then pass its id as `upload_id` when submitting.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", params(TenantQuery),
    security(("bearer" = [])),
    responses((status = 201, body = UploadCreated), (status = "4XX", body = Problem)))]
pub async fn upload_create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<(StatusCode, Json<UploadCreated>)> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let upload_id = uploads::create(&state, caller).await?;
    Ok((StatusCode::CREATED, Json(UploadCreated { upload_id })))
}

/// Put one file into an upload area (the raw body is the file).
#[utoipa::path(put, path = "/v1/uploads/{id}/files/{path}", tag = "uploads",
    params(("id" = String, Path, description = "the upload id"),
           ("path" = String, Path, description = "the file's path relative to the job's inputs"),
           TenantQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses((status = 201, body = ObjectInfo), (status = "4XX", body = Problem)))]
pub async fn upload_put(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<ObjectInfo>)> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let limit = state.config.max_upload_bytes.0;
    let stored = uploads::put(&state, caller, &id, &path, || {
        limited_body(&headers, body, limit)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// The files staged as a job's inputs.
#[utoipa::path(get, path = "/v1/jobs/{id}/inputs", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<ObjectInfo>), (status = "4XX", body = Problem)))]
pub async fn inputs_list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<ObjectInfo>>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(jobs::inputs(&state, caller, &id).await?))
}

/// One input file's bytes.
#[utoipa::path(get, path = "/v1/jobs/{id}/inputs/{path}", tag = "jobs",
    params(("id" = String, Path), ("path" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = "4XX", body = Problem)))]
pub async fn input_get(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Response> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(download(jobs::input(&state, caller, &id, &path).await?))
}

/// Every result file of a job, as `<task index>/<path>`.
#[utoipa::path(get, path = "/v1/jobs/{id}/results", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<ObjectInfo>), (status = "4XX", body = Problem)))]
pub async fn results_list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<ObjectInfo>>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(jobs::results(&state, caller, &id).await?))
}

/// One result file's bytes.
#[utoipa::path(get, path = "/v1/jobs/{id}/results/{index}/{path}", tag = "jobs",
    params(("id" = String, Path), ("index" = u32, Path), ("path" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = "4XX", body = Problem)))]
pub async fn result_get(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, index, path)): Path<(String, u32, String)>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Response> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(download(
        jobs::result(&state, caller, &id, index, &path).await?,
    ))
}

/// Upload one result file of a leased task. Refused with 409 unless the lease is current.
#[utoipa::path(put, path = "/v1/tasks/{id}/results/{path}", tag = "work",
    params(("id" = i64, Path), ("path" = String, Path),
           ("Spillway-Lease-Token" = String, Header, description = "the lease token from the lease")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses((status = 201, body = ObjectInfo), (status = 409, body = Problem),
              (status = "4XX", body = Problem)))]
pub async fn result_put(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, path)): Path<(TaskId, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<ObjectInfo>)> {
    auth.require(Action::Work)?;
    validate_relative_path(&path)?;
    let token = lease_token(&headers)?;
    let stream = limited_body(&headers, body, state.config.max_upload_bytes.0)?;
    // The caller's tenant is part of the check: another tenant's task is a 404.
    let task = state
        .store
        .lease_check(LeaseCheck {
            tenant: auth.0.tenant.clone(),
            task_id: id,
            lease_token: token,
        })
        .await?;
    let key = result_key(&task.tenant, &task.job_id, task.index, &path);
    let size = state.blobs.put(&key, stream).await?;
    tracing::debug!(task_id = id, %path, size, "result file stored");
    Ok((StatusCode::CREATED, Json(ObjectInfo { path, size })))
}

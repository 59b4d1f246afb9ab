//! Health, readiness, metrics and the OpenAPI document: the routes without a bearer token.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::metrics::METRICS_CONTENT_TYPE;
use crate::problem::ApiResult;
use crate::state::AppState;

/// Liveness: answers while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "the process is alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: answers 200 while the store answers.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "the store answers", body = String),
              (status = 503, description = "the store does not answer", body = spillway_core::api::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store.ping().await?;
    Ok("ready")
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "metrics in the OpenMetrics text format", body = String,
               content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let text = state
        .metrics
        .render(state.store.as_ref(), state.clock.now())
        .await?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system",
    responses((status = 200, description = "the OpenAPI 3 document of this API")))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    let mut doc = crate::openapi::ApiDoc::openapi();
    if let Some(url) = &state.config.public_url {
        doc.servers = Some(vec![utoipa::openapi::Server::new(url.clone())]);
    }
    (StatusCode::OK, Json(doc)).into_response()
}

//! Health, readiness, metrics and the OpenAPI document: the routes without a bearer token
//! (`/metrics` asks for one when the server's `metrics_auth` is on).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use spillway_core::api::ServerVersion;
use utoipa::OpenApi;

use crate::app::{self, Caller};
use crate::metrics::format::Format;
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

/// Prometheus metrics: OpenMetrics 1.0 to a scraper whose `Accept` asks for
/// `application/openmetrics-text` (Prometheus does), the Prometheus text format 0.0.4 otherwise.
/// Open by default; with the server setting `metrics_auth` on, a bearer token of role `metrics`
/// or `admin` is required: one of every tenant sees every series, one bound to a tenant only
/// that tenant's queue series.
#[utoipa::path(get, path = "/metrics", tag = "system",
    security((), ("bearer" = [])),
    responses((status = 200, description = "metrics: OpenMetrics 1.0 when the Accept header asks for application/openmetrics-text, else the Prometheus text format 0.0.4",
               content((String = "text/plain"), (String = "application/openmetrics-text"))),
              (status = 401, description = "metrics_auth is on and no valid token was sent", body = spillway_core::api::Problem),
              (status = 403, description = "the token's role is neither metrics nor admin", body = spillway_core::api::Problem)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    // The token is looked at only when the server asks for one, so scrapers that send an old
    // or unrelated token keep working while metrics_auth is off.
    let principal = if state.config.metrics_auth {
        Some(crate::auth::resolve(&state, &headers).await?)
    } else {
        None
    };
    let format = Format::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    let text = app::metrics::scrape(&state, principal.as_ref().map(Caller::own)).await?;
    let text = format.encode(text)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}

/// The server's version. Open like `/healthz`: `spillway version` asks for it to tell a
/// client/server mismatch, which is most useful exactly when a token is missing or refused;
/// a release number is no secret worth a token.
#[utoipa::path(get, path = "/v1/version", tag = "system",
    responses((status = 200, description = "the server's version", body = ServerVersion)))]
pub async fn version() -> Json<ServerVersion> {
    Json(ServerVersion {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
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

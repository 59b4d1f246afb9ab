//! The route table: every path of the API, in the order of the contract. Handlers decode
//! a request, call one operation of [`crate::app`] and encode its answer.

pub mod admin;
pub mod dead;
pub mod jobs;
pub mod leasing;
pub mod logs;
pub mod objects;
pub mod pools;
pub mod queues;
pub mod system;
pub mod tasks;
pub mod why;
pub mod workers;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, patch, post, put};
use spillway_core::Error;
use std::time::Duration;

use axum::http::StatusCode;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;

use crate::problem::ApiError;
use crate::state::AppState;

/// The whole HTTP API over `state`.
pub fn router(state: AppState) -> Router {
    // Raw uploads are streamed with their own limit (max_upload_bytes); JSON bodies are
    // buffered and capped at max_body_bytes.
    let uploads = Router::new()
        .route("/v1/uploads/{id}/files/{*path}", put(objects::upload_put))
        .route("/v1/tasks/{id}/results/{*path}", put(objects::result_put))
        .layer(DefaultBodyLimit::disable());
    let api = Router::new()
        .route(
            "/v1/tenants",
            post(admin::tenant_create).get(admin::tenant_list),
        )
        .route(
            "/v1/tokens",
            post(admin::token_create).get(admin::token_list),
        )
        .route("/v1/tokens/{id}", delete(admin::token_revoke))
        .route("/v1/queues", post(queues::create).get(queues::list))
        .route("/v1/queues/{name}", get(queues::get).patch(queues::update))
        .route("/v1/uploads", post(objects::upload_create))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/cancel", post(jobs::cancel_matching))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/jobs/{id}/tasks", get(jobs::tasks))
        .route("/v1/jobs/{id}/inputs", get(objects::inputs_list))
        .route("/v1/jobs/{id}/inputs/{*path}", get(objects::input_get))
        .route("/v1/jobs/{id}/results", get(objects::results_list))
        .route(
            "/v1/jobs/{id}/results/{index}/{*path}",
            get(objects::result_get),
        )
        .route("/v1/tasks/{id}", get(tasks::get))
        .route("/v1/tasks/{id}/logs", get(tasks::logs))
        .route("/v1/tasks/{id}/logs/full", get(logs::full))
        .route("/v1/tasks/{id}/logs/follow", get(logs::follow))
        .route("/v1/tasks/{id}/logs/chunks/{seq}", put(logs::chunk_put))
        .route("/v1/tasks/{id}/why", get(why::why))
        .route("/v1/pools", get(pools::list))
        .route("/v1/pools/{name}", patch(pools::update))
        .route("/v1/workers", post(workers::register).get(workers::list))
        .route("/v1/workers/{id}/heartbeat", post(workers::heartbeat))
        .route("/v1/workers/{id}", delete(workers::exit))
        .route("/v1/tasks/lease", post(leasing::lease))
        .route("/v1/tasks/heartbeat", post(leasing::heartbeat))
        .route("/v1/tasks/complete", post(leasing::complete))
        .route("/v1/tasks/fail", post(leasing::fail))
        .route("/v1/tasks/release", post(leasing::release))
        .route("/v1/tasks/{id}/complete", post(leasing::complete_one))
        .route("/v1/tasks/{id}/fail", post(leasing::fail_one))
        .route("/v1/dead", get(dead::list))
        .route("/v1/dead/requeue", post(dead::requeue))
        .layer(DefaultBodyLimit::max(state.config.body_limit()));
    let app = Router::new()
        .merge(api)
        .merge(uploads)
        .merge(crate::dashboard::routes(&state))
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/version", get(system::version))
        .route("/metrics", get(system::metrics))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method);
    // Inside the security headers, so shed answers carry them too.
    let app = app.layer(middleware::from_fn_with_state(
        state.clone(),
        crate::admission::admit,
    ));
    crate::headers::all(app)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(TraceLayer::new_for_http().on_failure(trace_failure))
        // Outermost, so every span of the request is in the caller's trace.
        .layer(middleware::from_fn(crate::trace::propagate))
        .with_state(state)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(Error::not_found(format!(
        "no route for {method} {}: see /v1/openapi.json for the API",
        uri.path()
    )))
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> Response {
    crate::problem::method_not_allowed(format!(
        "method {method} is not allowed on {}: see /v1/openapi.json for the API",
        uri.path()
    ))
}

/// Log a failed answer: at error level, except 503s. Those are expected under overload (the
/// admission layer sheds them by the thousand, and one error line each would flood the log
/// when it can least afford it); a 503 with a cause is logged once where it arose, and every
/// one is counted in `spillway_http_requests_total`.
fn trace_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "answered 503 service unavailable");
        }
        class => tracing::error!(classification = %class, latency_ms, "response failed"),
    }
}

/// Count every request by its route template (never the raw path) and status, and time it.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // A latency, not a point in time: the monotonic clock, not the server's Clock.
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .http_request(&route, response.status().as_u16(), started.elapsed());
    response
}

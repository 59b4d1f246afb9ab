//! The web dashboard, served at `/` next to the API: server-rendered pages over the store,
//! sign-in with a token, forms guarded against cross-site requests, and live updates over
//! server-sent events. Everything it serves is compiled into the binary.
//!
//! What a person sees and may do follows their token: reads are scoped to its tenant (all
//! tenants for an admin of every tenant) and every action checks its role, through the same
//! operations of the application layer ([`crate::app`]) that the API calls. Pages only call
//! and render: they hold no rule and no store query of their own.

mod events;
pub mod html;
mod pages;
mod sampler;
pub mod session;

use std::sync::Arc;

use axum::extract::FromRequest;
use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::de::DeserializeOwned;
use spillway_core::{Error, ErrorKind};

use crate::problem::status_for;
use crate::state::AppState;
pub use sampler::{PoolSample, SAMPLE_INTERVAL, SAMPLES_KEPT, Sample, Samples};
pub use session::{Session, Sessions, Signed};

/// The dashboard's own in-memory state: the per-minute samples (sessions are in the store,
/// cached in the server's shared state so that revoking a token ends them at once).
#[derive(Debug, Default)]
pub struct Dashboard {
    /// Recent per-queue samples for the overview's charts.
    pub samples: Samples,
}

/// The dashboard's routes, ready to merge into the API router. Starts the sampler when
/// called inside a Tokio runtime; it stops when the server begins shutting down.
pub fn routes(state: &AppState) -> Router<AppState> {
    let dashboard = Arc::new(Dashboard::default());
    sampler::spawn(state, &dashboard);
    // The submit form: one input file within max_upload_bytes plus its other fields within
    // max_body_bytes, each also checked on its own while the form is read.
    let form_limit = usize::try_from(state.config.max_upload_bytes.0)
        .unwrap_or(usize::MAX)
        .saturating_add(state.config.body_limit());
    let router = Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/jobs", get(pages::jobs::list))
        .route("/jobs/{id}", get(pages::job::page))
        .route("/jobs/{id}/tasks", get(pages::job::tasks_fragment))
        .route("/jobs/{id}/cancel", post(pages::job::cancel))
        .route("/jobs/{id}/retry", post(pages::job::retry))
        .route("/jobs/{id}/inputs/{*path}", get(pages::job::input))
        .route(
            "/jobs/{id}/results/{index}/{*path}",
            get(pages::job::result),
        )
        .route("/tasks/{id}", get(pages::job::task))
        .route("/tasks/{id}/log", get(pages::logs::download))
        .route("/tasks/{id}/log/events", get(pages::logs::events))
        .route("/assets/log.js", get(pages::logs::script))
        .route("/queues", get(pages::queues::list))
        .route("/workers", get(pages::queues::workers))
        .route("/dead", get(pages::dead::list))
        .route("/dead/requeue", post(pages::dead::requeue))
        .route(
            "/submit",
            get(pages::submit::form)
                .post(pages::submit::submit)
                .layer(axum::extract::DefaultBodyLimit::max(form_limit)),
        )
        .route("/events", get(events::stream))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .layer(Extension(dashboard));
    crate::headers::dashboard(router)
}

const APP_CSS: &str = include_str!("../../assets/app.css");
const APP_JS: &str = include_str!("../../assets/app.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Nobody is signed in: go to the sign-in form.
    SignIn,
    /// Anything else, shown as an error page with the matching status.
    Failed(Error),
}

impl From<Error> for PageError {
    fn from(error: Error) -> Self {
        PageError::Failed(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = match self {
            PageError::SignIn => return Redirect::to("/login").into_response(),
            PageError::Failed(error) => error,
        };
        let status = status_for(error.kind());
        let detail = match error.kind() {
            ErrorKind::Internal | ErrorKind::Unavailable => {
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "dashboard page failed");
                "the server could not answer: see the server log".to_string()
            }
            _ => error.message().to_string(),
        };
        let body = format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\" data-back>Go back</a> · <a href=\"/\">Overview</a></p>",
            html::esc(&detail)
        );
        let title = status.canonical_reason().unwrap_or("Error");
        let mut response = (
            status,
            Html(html::page(title, html::Nav::None, None, &body)),
        )
            .into_response();
        if error.kind() == ErrorKind::Unavailable {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                crate::problem::RETRY_AFTER_SECONDS.into(),
            );
        }
        response
    }
}

/// Result of a page handler.
pub type PageResult<T = Response> = Result<T, PageError>;

/// A URL-encoded form whose rejection is an error page that says what was wrong.
#[derive(Debug)]
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, PageError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(PageForm(value)),
            Err(rejection) => Err(form_error(&rejection).into()),
        }
    }
}

fn form_error(rejection: &FormRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::too_large("the form is over the server's size limit: send less")
    } else {
        Error::invalid(format!(
            "could not read the form: {}",
            rejection.body_text().to_lowercase()
        ))
    }
}

//! One module per page.

pub mod dead;
pub mod job;
pub mod jobs;
pub mod login;
pub mod logs;
pub mod overview;
pub mod pools;
pub mod queues;
pub mod submit;

use axum::response::{Html, IntoResponse, Response};
use spillway_core::auth::Principal;

use super::Signed;
use super::html::{self, Nav};

/// Render a signed-in page.
pub fn render(signed: &Signed, title: &str, nav: Nav, body: &str) -> Response {
    let who = Some((&signed.0.principal, signed.0.csrf.as_str()));
    let mut response = Html(html::page(title, nav, who, body)).into_response();
    // Pages show tenant data: never keep them in shared caches.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Whether to show a tenant column (only an admin of every tenant sees several).
pub fn all_tenants(principal: &Principal) -> bool {
    principal.tenant.is_none()
}

/// Query parameters as given; empty values count as absent (an "any" choice in a form).
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first non-empty value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = super::PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|r| {
                spillway_core::Error::invalid(format!(
                    "invalid query string: {}",
                    r.body_text().to_lowercase()
                ))
                .into()
            })
    }
}

/// `<option>`s for `choices`, with `current` selected and a first "any" entry.
pub fn options(choices: &[String], current: Option<&str>, any: &str) -> String {
    let mut out = format!("<option value=\"\">{}</option>", html::esc(any));
    for c in choices {
        let selected = if current == Some(c.as_str()) {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{0}\"{selected}>{0}</option>",
            html::esc(c)
        ));
    }
    out
}

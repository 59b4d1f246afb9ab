//! Signing in and out.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use spillway_core::Error;

use crate::dashboard::html::{self, Nav, esc};
use crate::dashboard::session::{
    LOGIN_COOKIE, SESSION_COOKIE, SESSION_IDLE, check_origin, cookie, random_token, same_secret,
    set_cookie, sign_in,
};
use crate::dashboard::{PageForm, PageResult, Signed};
use crate::state::AppState;

/// How long the sign-in form's CSRF cookie lives.
const LOGIN_COOKIE_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

fn login_page(csrf: &str, message: Option<&str>, secure: bool) -> Response {
    let alert = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "{alert}<form class=\"card narrow\" method=\"post\" action=\"/login\">{}\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus \
          placeholder=\"sw_…\">\
         <p class=\"hint\">The admin token of <code>spillway up</code> is in <code>&lt;data-dir&gt;/admin.token</code>.</p>\
         <button type=\"submit\" class=\"primary\">Sign in</button></form>",
        html::csrf_field(csrf)
    );
    let mut response = Html(html::page("Sign in", Nav::None, None, &body)).into_response();
    if let Ok(value) =
        HeaderValue::from_str(&set_cookie(LOGIN_COOKIE, csrf, LOGIN_COOKIE_AGE, secure))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The sign-in form.
pub async fn form(State(state): State<AppState>) -> Response {
    login_page(&random_token(), None, state.config.secure_cookies)
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

/// Check the token and start a session.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> PageResult {
    check_origin(&Method::POST, &headers)?;
    // Double-submit: the form's token must match the cookie set with the form, so another
    // site cannot sign a visitor in with the attacker's token.
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &form.csrf) {
        return Err(Error::permission_denied(
            "the sign-in form expired or came from another site: reload the sign-in page and try again",
        )
        .into());
    }
    let (principal, token_expires_at) = match sign_in(&state, &form.token).await {
        Ok(found) => found,
        Err(error) if error.kind() == spillway_core::ErrorKind::Unauthenticated => {
            let mut page = login_page(
                &random_token(),
                Some(error.message()),
                state.config.secure_cookies,
            );
            *page.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            return Ok(page);
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(token_id = %principal.token_id, role = principal.role.as_str(), "dashboard sign-in");
    let (cookie_value, _session) = state
        .shared
        .sessions
        .create(&state, principal, token_expires_at)
        .await?;
    let mut response = Redirect::to("/").into_response();
    let secure = state.config.secure_cookies;
    let cookies = [
        set_cookie(SESSION_COOKIE, &cookie_value, SESSION_IDLE, secure),
        set_cookie(LOGIN_COOKIE, "", std::time::Duration::ZERO, secure),
    ];
    for c in cookies {
        if let Ok(value) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    #[serde(rename = "_csrf", default)]
    pub csrf: String,
}

/// End the session.
pub async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&form.csrf)?;
    state
        .shared
        .sessions
        .remove(&state, &signed.0.id_hash)
        .await?;
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        SESSION_COOKIE,
        "",
        std::time::Duration::ZERO,
        state.config.secure_cookies,
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

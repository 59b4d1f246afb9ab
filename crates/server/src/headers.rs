//! Security headers on every answer: no framing, no MIME sniffing, no referrer, and a
//! Content-Security-Policy (the dashboard's lets its pages load their own script, style and
//! event stream only; every other answer may load nothing).

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use tower_http::set_header::SetResponseHeaderLayer;

/// The dashboard's pages: their script, style sheet, event stream and forms come from this
/// server; they use no inline script, inline style or `javascript:` URL.
pub const DASHBOARD_CSP: &str = "default-src 'self'; base-uri 'none'; object-src 'none'; \
     form-action 'self'; frame-ancestors 'none'";
/// Every other answer (JSON, problem documents, downloads, metrics) loads nothing.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Give the dashboard's answers [`DASHBOARD_CSP`].
pub fn dashboard<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(SetResponseHeaderLayer::overriding(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    ))
}

/// Give every answer of `router` the security headers; a Content-Security-Policy set further
/// in (the dashboard's) is kept, others get [`API_CSP`].
pub fn all<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Not `no-referrer`: under it browsers send `Origin: null` on the dashboard's own form
        // posts, which the origin check (rightly) refuses. `same-origin` still tells no other
        // site where a user came from.
        .layer(SetResponseHeaderLayer::overriding(
            REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

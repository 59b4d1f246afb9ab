//! Signing in with a token: server-side sessions behind an HttpOnly, SameSite=Strict cookie,
//! and a CSRF token per session that every form carries.
//!
//! Sessions live in this process's memory (random id -> principal, with an expiry), so a
//! restart signs everyone out; the token behind a session is looked up again every few
//! seconds so a revoked token ends its sessions too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use spillway_core::Error;
use spillway_core::auth::Principal;

use super::{Dashboard, PageError};
use crate::auth::{TOKEN_CACHE_TTL, hash_secret};
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "spillway_session";
/// The cookie that carries the sign-in form's CSRF token before there is a session.
pub const LOGIN_COOKIE: &str = "spillway_login";
/// How long a session lasts after its last use.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept before expired ones are swept.
const SESSIONS_MAX: usize = 10_000;

/// A signed-in person's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session's id (the cookie value).
    pub id: String,
    /// Who signed in.
    pub principal: Principal,
    /// The token that must accompany every POST.
    pub csrf: String,
    token_hash: String,
    checked: Instant,
    last_used: Instant,
}

/// Every live session, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes in base64url: session ids and CSRF tokens.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// Start a session for `principal`, who signed in with the token hashing to `token_hash`.
    pub fn create(&self, principal: Principal, token_hash: String) -> Session {
        let now = Instant::now();
        let session = Session {
            id: random_token(),
            principal,
            csrf: random_token(),
            token_hash,
            checked: now,
            last_used: now,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SESSIONS_MAX {
            map.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        }
        map.insert(session.id.clone(), session.clone());
        session
    }

    /// End a session.
    pub fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// The live session `id`, marked used.
    fn touch(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(id)?;
        if session.last_used.elapsed() >= SESSION_IDLE {
            map.remove(id);
            return None;
        }
        session.last_used = Instant::now();
        Some(session.clone())
    }

    fn mark_checked(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(session) = map.get_mut(id) {
            session.checked = Instant::now();
        }
    }

    /// The session behind `headers`' cookie, if it is live and its token still valid.
    pub async fn resolve(&self, state: &AppState, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let session = self.touch(&id)?;
        if session.checked.elapsed() >= TOKEN_CACHE_TTL {
            match state.store.token_lookup(&session.token_hash).await {
                Ok(Some(_)) => self.mark_checked(&id),
                Ok(None) => {
                    tracing::info!(token_id = %session.principal.token_id, "token revoked: session ended");
                    self.remove(&id);
                    return None;
                }
                // A database hiccup should not sign people out; the next request checks again.
                Err(error) => tracing::warn!(%error, "could not recheck a session's token"),
            }
        }
        Some(session)
    }
}

/// Check a token secret and resolve its principal.
pub async fn sign_in(state: &AppState, secret: &str) -> Result<(Principal, String), Error> {
    let secret = secret.trim();
    let refused = || {
        Error::unauthenticated(
            "unknown or revoked token: check the token or ask an admin for a new one",
        )
    };
    if secret.is_empty() {
        return Err(refused());
    }
    let hash = hash_secret(secret);
    let info = state.store.token_lookup(&hash).await?.ok_or_else(refused)?;
    Ok((
        Principal {
            token_id: info.id,
            tenant: info.tenant,
            role: info.role,
        },
        hash,
    ))
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A Set-Cookie value: HttpOnly, SameSite=Strict, for the whole site, and `Secure` (sent
/// over HTTPS only) when `secure` (the server's `secure_cookies` setting).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Refuse a POST whose Origin header names another site (a second line behind SameSite and
/// the CSRF token). Requests without Origin (old browsers, curl) rely on the token alone.
pub fn check_origin(method: &Method, headers: &HeaderMap) -> Result<(), Error> {
    if method != Method::POST {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if origin_host == host {
        Ok(())
    } else {
        Err(Error::permission_denied(format!(
            "cross-site request from origin {origin:?} refused: use the dashboard's own forms"
        )))
    }
}

/// Compare two secrets without stopping at the first difference.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in request: pages redirect to the sign-in form without one.
#[derive(Debug, Clone)]
pub struct Signed(pub Session);

impl Signed {
    /// Who is signed in.
    pub fn principal(&self) -> &Principal {
        &self.0.principal
    }

    /// Fail unless `csrf` is this session's token.
    pub fn check_csrf(&self, csrf: &str) -> Result<(), Error> {
        if same_secret(csrf, &self.0.csrf) {
            Ok(())
        } else {
            Err(Error::permission_denied(
                "the form's CSRF token does not match your session: reload the page and try again",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        check_origin(&parts.method, &parts.headers)?;
        let dashboard = parts
            .extensions
            .get::<Arc<Dashboard>>()
            .cloned()
            .ok_or_else(|| Error::internal("dashboard state missing from request extensions"))?;
        match dashboard.sessions.resolve(state, &parts.headers).await {
            Some(session) => Ok(Signed(session)),
            None => Err(PageError::SignIn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; spillway_session=xyz"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7070"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7070"),
        );
        assert!(check_origin(&Method::POST, &headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(check_origin(&Method::POST, &headers).is_err());
        assert!(check_origin(&Method::GET, &headers).is_ok());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}

//! Signing in with a token: sessions behind an HttpOnly, SameSite=Strict cookie, and a CSRF
//! token per session that every form carries.
//!
//! Sessions are kept in the store (`Store::session_*`), so a restart signs no one out and a
//! session made on one replica works on every other. The store holds only the SHA-256 of the
//! cookie's value, never the value. A session ends after [`SESSION_IDLE`] without use, when
//! its person signs out, and when its token is revoked or expires. Each server keeps the
//! sessions it served recently in memory and asks the store again after [`TOKEN_CACHE_TTL`]
//! (marking the session used then), as it does for tokens: a page costs no store round trip,
//! a revocation through this server ends its sessions at once, one through another replica
//! within that time. Ended sessions are deleted by [`crate::services::session_sweeper`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use spillway_core::auth::Principal;
use spillway_core::{Error, Timestamp, clock};
use spillway_store::{SessionCreate, SessionTouch, StoredSession};

use super::PageError;
use crate::auth::{TOKEN_CACHE_TTL, hash_secret, principal_of};
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "spillway_session";
/// The cookie that carries the sign-in form's CSRF token before there is a session.
pub const LOGIN_COOKIE: &str = "spillway_login";
/// How long a session lasts after its last use.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions this server keeps in memory before it drops the ones not checked lately.
const SESSIONS_CACHED_MAX: usize = 10_000;

/// A signed-in person's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the session's cookie value: its id in the store.
    pub id_hash: String,
    /// Who signed in.
    pub principal: Principal,
    /// The token that must accompany every POST.
    pub csrf: String,
    /// When it ends unless used again (as last written to the store).
    expires_at: Timestamp,
    /// When its token expires, if it does.
    token_expires_at: Option<Timestamp>,
}

impl Session {
    fn from_stored(stored: StoredSession, now: Timestamp) -> Result<Session, Error> {
        let token_expires_at = stored.token.expires_at;
        Ok(Session {
            id_hash: stored.id_hash,
            principal: principal_of(stored.token, now)?,
            csrf: stored.csrf,
            expires_at: stored.expires_at,
            token_expires_at,
        })
    }

    /// Whether the session, or its token, has ended by `now`.
    fn ended(&self, now: Timestamp) -> bool {
        self.expires_at <= now || self.token_expires_at.is_some_and(|at| at <= now)
    }
}

/// A session as cached, with when the store last confirmed it.
#[derive(Debug, Clone)]
struct Cached {
    session: Session,
    checked: Instant,
}

/// The sessions this server served lately, by the hash of their cookie value; the store
/// holds them all.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Cached>>,
}

/// 32 random bytes in base64url: session ids and CSRF tokens.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `now` plus the idle time: when a session used now ends.
fn idle_end(now: Timestamp) -> Timestamp {
    clock::add(now, SESSION_IDLE)
}

impl Sessions {
    /// Start a session for `principal`, whose token expires at `token_expires_at` (if it
    /// does); answers the cookie value (shown to no one else, stored nowhere) and the session.
    pub async fn create(
        &self,
        state: &AppState,
        principal: Principal,
        token_expires_at: Option<Timestamp>,
    ) -> Result<(String, Session), Error> {
        let cookie_value = random_token();
        let now = state.clock.now();
        let session = Session {
            id_hash: hash_secret(&cookie_value),
            principal,
            csrf: random_token(),
            expires_at: idle_end(now),
            token_expires_at,
        };
        state
            .store
            .session_create(SessionCreate {
                id_hash: session.id_hash.clone(),
                token_id: session.principal.token_id.clone(),
                csrf: session.csrf.clone(),
                now,
                expires_at: session.expires_at,
            })
            .await?;
        self.put(session.clone());
        Ok((cookie_value, session))
    }

    /// End the session `id_hash` (signing out), here and in the store.
    pub async fn remove(&self, state: &AppState, id_hash: &str) -> Result<(), Error> {
        self.forget(id_hash);
        state.store.session_delete(id_hash).await
    }

    /// Drop the sessions of a revoked token from this server's memory; the store refuses
    /// them from now on.
    pub fn forget_token(&self, token_id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, c| c.session.principal.token_id != token_id);
    }

    fn forget(&self, id_hash: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id_hash);
    }

    fn put(&self, session: Session) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SESSIONS_CACHED_MAX {
            map.retain(|_, c| c.checked.elapsed() < TOKEN_CACHE_TTL);
        }
        map.insert(
            session.id_hash.clone(),
            Cached {
                session,
                checked: Instant::now(),
            },
        );
    }

    /// The cached session `id_hash`, if live at `now`; `fresh` also asks that the store
    /// confirmed it within [`TOKEN_CACHE_TTL`].
    fn cached(&self, id_hash: &str, now: Timestamp, fresh: bool) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id_hash)
            .filter(|c| !c.session.ended(now) && (!fresh || c.checked.elapsed() < TOKEN_CACHE_TTL))
            .map(|c| c.session.clone())
    }

    /// The session behind `headers`' cookie, if it is live and its token still valid.
    pub async fn resolve(&self, state: &AppState, headers: &HeaderMap) -> Option<Session> {
        let id_hash = hash_secret(&cookie(headers, SESSION_COOKIE)?);
        let now = state.clock.now();
        if let Some(session) = self.cached(&id_hash, now, true) {
            return Some(session);
        }
        match self.load(state, &id_hash, now).await {
            Ok(Some(session)) => {
                self.put(session.clone());
                Some(session)
            }
            Ok(None) => {
                self.forget(&id_hash);
                None
            }
            Err(error) => {
                // A database hiccup should not sign people out; the next request asks again.
                tracing::warn!(%error, "could not recheck a dashboard session");
                self.cached(&id_hash, now, false)
            }
        }
    }

    /// Read the session from the store and mark it used; `None` when it has ended.
    async fn load(
        &self,
        state: &AppState,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Session>, Error> {
        let Some(stored) = state.store.session_get(id_hash, now).await? else {
            return Ok(None);
        };
        let expires_at = idle_end(now);
        let touched = state
            .store
            .session_touch(SessionTouch {
                id_hash: id_hash.to_string(),
                now,
                expires_at,
            })
            .await?;
        if !touched {
            return Ok(None);
        }
        let mut session = Session::from_stored(stored, now)?;
        session.expires_at = expires_at;
        Ok(Some(session))
    }
}

/// Check a token secret and resolve its principal and its expiry (if it has one). An
/// expired token is refused saying when it expired.
pub async fn sign_in(
    state: &AppState,
    secret: &str,
) -> Result<(Principal, Option<Timestamp>), Error> {
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
    let expires_at = info.expires_at;
    Ok((principal_of(info, state.clock.now())?, expires_at))
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
        match state.shared.sessions.resolve(state, &parts.headers).await {
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

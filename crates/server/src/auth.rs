//! Bearer tokens: making and hashing secrets, resolving a request's [`Principal`], and the
//! tenant a request acts in.
//!
//! Secrets are `sw_` followed by 32 random bytes in unpadded base64url; only their SHA-256 is
//! stored. Resolved principals are cached for [`TOKEN_CACHE_TTL`] to keep the database off the
//! hot path; a revocation through this server takes effect at once, one through another
//! replica within that time. A token that expires is refused from its expiry on (by the
//! server's clock), cached or not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use spillway_core::auth::{Action, Principal};
use spillway_core::model::TokenInfo;
use spillway_core::{Error, Timestamp};

use crate::app::Caller;
use crate::problem::ApiError;
use crate::state::AppState;

/// The prefix of every token secret, so leaked secrets are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "sw_";
/// How long a resolved token is trusted without asking the store again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept before the cache drops expired ones.
const TOKEN_CACHE_MAX: usize = 10_000;

/// A new random token secret: `sw_` + 32 random bytes in base64url.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a secret: its SHA-256 in lowercase hex.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new public token id: `tok_` + 12 random hex digits.
pub fn new_token_id() -> String {
    let bytes: [u8; 6] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("tok_{hex}")
}

/// A resolved token as cached: who it is, when it expires, when it was read.
#[derive(Debug, Clone)]
struct Cached {
    principal: Principal,
    expires_at: Option<Timestamp>,
    read: Instant,
}

/// Recently resolved tokens, by secret hash.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl TokenCache {
    /// The cached principal of `hash`, unless the entry is older than [`TOKEN_CACHE_TTL`] or
    /// the token has expired by `now` (then the store is asked, and says so).
    fn get(&self, hash: &str, now: Timestamp) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|c| c.read.elapsed() < TOKEN_CACHE_TTL && !expired(c.expires_at, now))
            .map(|c| c.principal.clone())
    }

    fn put(&self, hash: String, principal: Principal, expires_at: Option<Timestamp>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, c| c.read.elapsed() < TOKEN_CACHE_TTL);
        }
        let read = Instant::now();
        entries.insert(
            hash,
            Cached {
                principal,
                expires_at,
                read,
            },
        );
    }

    /// Drop a revoked token so it stops working at once on this server.
    pub fn forget(&self, token_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, c| c.principal.token_id != token_id);
    }
}

/// Whether a token expiring at `expires_at` has expired by `now`.
fn expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// The principal a stored token stands for, once it is checked to be live at `now`: an
/// expired token is refused with when it expired and how to get a new one.
pub fn principal_of(info: TokenInfo, now: Timestamp) -> Result<Principal, Error> {
    if let Some(at) = info.expires_at
        && expired(Some(at), now)
    {
        return Err(Error::unauthenticated(format!(
            "token {} expired at {}: ask an admin for a new one (spillway tokens create --expires-in 30d)",
            info.id,
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(Principal {
        token_id: info.id,
        tenant: info.tenant,
        role: info.role,
        queues: info.queues,
    })
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Auth(resolve(state, &parts.headers).await?))
    }
}

/// The principal behind the bearer token of `headers`; unauthenticated when there is none or
/// it is unknown or revoked.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Principal, Error> {
    let secret = bearer(headers)?;
    let hash = hash_secret(secret);
    let cache = &state.shared.tokens;
    let now = state.clock.now();
    if let Some(principal) = cache.get(&hash, now) {
        return Ok(principal);
    }
    let info = state.store.token_lookup(&hash).await?.ok_or_else(|| {
        Error::unauthenticated(
            "unknown or revoked token: check the token or ask an admin for a new one",
        )
    })?;
    let expires_at = info.expires_at;
    let principal = principal_of(info, now)?;
    cache.put(hash, principal.clone(), expires_at);
    Ok(principal)
}

fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let missing = || {
        Error::unauthenticated(
            "missing bearer token: send the header 'Authorization: Bearer <token>'",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| Error::unauthenticated("authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}

impl Auth {
    /// Fail with 403 unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        self.0.require(action)
    }

    /// The tenant a write acts in: the token's own or, for an admin of every tenant, the one
    /// asked for (default `"default"`).
    pub fn tenant(&self, requested: Option<&str>) -> Result<String, Error> {
        Caller::new(&self.0, requested).tenant()
    }

    /// What a read may see: one tenant, or every tenant (`None`) for an admin of every
    /// tenant who named none.
    pub fn scope(&self, requested: Option<&str>) -> Result<Option<String>, Error> {
        Caller::new(&self.0, requested).scope()
    }
}

/// The tenant a request names in its body or its query string; they must agree when both
/// are given.
pub fn requested_tenant(
    body: Option<String>,
    query: Option<String>,
) -> Result<Option<String>, Error> {
    match (body, query) {
        (Some(b), Some(q)) if b != q => Err(Error::invalid(format!(
            "tenant {b:?} in the body differs from tenant {q:?} in the query string: give one"
        ))),
        (Some(b), _) => Ok(Some(b)),
        (None, q) => Ok(q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed_to_hex() {
        let a = new_secret();
        let b = new_secret();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_ne!(a, b);
        // 32 bytes in unpadded base64 are 43 characters.
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        let hash = hash_secret(&a);
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn revoked_tokens_leave_the_cache() {
        let cache = TokenCache::default();
        let p = Principal {
            token_id: "tok_1".into(),
            tenant: None,
            role: spillway_core::auth::Role::Admin,
            queues: None,
        };
        let now = chrono::Utc::now();
        cache.put("h".into(), p.clone(), None);
        assert_eq!(cache.get("h", now), Some(p));
        cache.forget("tok_1");
        assert_eq!(cache.get("h", now), None);
    }

    #[test]
    fn expired_tokens_leave_the_cache_at_their_expiry() {
        let cache = TokenCache::default();
        let p = Principal {
            token_id: "tok_2".into(),
            tenant: Some("a".into()),
            role: spillway_core::auth::Role::Viewer,
            queues: None,
        };
        let now = chrono::Utc::now();
        let expiry = now + chrono::TimeDelta::seconds(60);
        cache.put("h".into(), p.clone(), Some(expiry));
        assert_eq!(cache.get("h", now), Some(p));
        assert_eq!(cache.get("h", expiry), None, "not trusted past its expiry");
    }

    #[test]
    fn an_expired_token_is_refused_saying_when() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .expect("time")
            .to_utc();
        let info = TokenInfo {
            id: "tok_3".into(),
            name: "ci".into(),
            tenant: Some("a".into()),
            role: spillway_core::auth::Role::Submitter,
            created_at: at - chrono::TimeDelta::days(1),
            expires_at: Some(at),
            queues: None,
        };
        assert!(principal_of(info.clone(), at - chrono::TimeDelta::seconds(1)).is_ok());
        let refused = principal_of(info, at).expect_err("expired");
        assert_eq!(refused.kind(), spillway_core::ErrorKind::Unauthenticated);
        assert!(
            refused
                .message()
                .contains("expired at 2026-01-02T03:04:05Z: ask an admin for a new one"),
            "{refused}"
        );
    }
}

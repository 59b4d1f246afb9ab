//! Bearer tokens: making and hashing secrets, resolving a request's [`Principal`], and the
//! tenant a request acts in.
//!
//! Secrets are `sw_` followed by 32 random bytes in unpadded base64url; only their SHA-256 is
//! stored. Resolved principals are cached for [`TOKEN_CACHE_TTL`] to keep the database off the
//! hot path; a revocation through this server takes effect at once, one through another
//! replica within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use spillway_core::Error;
use spillway_core::auth::{Action, Principal};

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

/// Recently resolved tokens, by secret hash.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(principal, _)| principal.clone())
    }

    fn put(&self, hash: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
        }
        entries.insert(hash, (principal, Instant::now()));
    }

    /// Drop a revoked token so it stops working at once on this server.
    pub fn forget(&self, token_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (principal, _)| principal.token_id != token_id);
    }
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
    if let Some(principal) = cache.get(&hash) {
        return Ok(principal);
    }
    let info = state.store.token_lookup(&hash).await?.ok_or_else(|| {
        Error::unauthenticated(
            "unknown or revoked token: check the token or ask an admin for a new one",
        )
    })?;
    let principal = Principal {
        token_id: info.id,
        tenant: info.tenant,
        role: info.role,
    };
    cache.put(hash, principal.clone());
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
        };
        cache.put("h".into(), p.clone());
        assert_eq!(cache.get("h"), Some(p));
        cache.forget("tok_1");
        assert_eq!(cache.get("h"), None);
    }
}

//! A dashboard session as the store keeps it.

use spillway_core::Timestamp;
use spillway_core::model::TokenInfo;

/// A live dashboard session and the token behind it, as [`Store::session_get`] answers.
///
/// [`Store::session_get`]: crate::Store::session_get
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// SHA-256 of the session's cookie value, hex.
    pub id_hash: String,
    /// The token the person signed in with (live: neither revoked nor expired).
    pub token: TokenInfo,
    /// The CSRF token every form of the session carries.
    pub csrf: String,
    /// When the person signed in.
    pub created_at: Timestamp,
    /// The last use written to the store.
    pub last_used_at: Timestamp,
    /// When it ends unless used again.
    pub expires_at: Timestamp,
}

-- Tokens may expire, and may be limited to some queues of their tenant.
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
-- A JSON array of queue names; NULL: every queue of the token's tenant.
ALTER TABLE tokens ADD COLUMN queues TEXT;

-- Dashboard sessions, kept in the store so that a restart does not sign anyone out and a
-- session made on one server works on another. Only the SHA-256 of the cookie's value is
-- kept, so a copy of the database cannot be replayed as cookies. A session lives while its
-- token does (revoked or expired tokens end their sessions when they are read) and until
-- expires_at, which every use moves on by the idle time.
CREATE TABLE dashboard_sessions (
    id_hash      TEXT PRIMARY KEY,
    token_id     TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_by_token ON dashboard_sessions (token_id);

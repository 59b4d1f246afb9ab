//! Dashboard sessions.

use deadpool_postgres::Object;
use spillway_core::{Error, ErrorKind, Result, Timestamp};

use crate::postgres::error::{ctx, db};
use crate::postgres::rows::{self, get};
use crate::{SessionCreate, SessionSweep, SessionTouch, StoredSession};

/// "The token `t` works at `$2`" in SQL.
const TOKEN_LIVE: &str = "t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)";

pub(crate) async fn session_create(conn: &Object, p: &SessionCreate) -> Result<()> {
    conn.execute(
        "INSERT INTO dashboard_sessions
             (id_hash, token_id, csrf, created_at, last_used_at, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5)",
        &[&p.id_hash, &p.token_id, &p.csrf, &p.now, &p.expires_at],
    )
    .await
    .map_err(|e| match db("could not create the dashboard session", e) {
        e if e.kind() == ErrorKind::Conflict => {
            Error::conflict("a dashboard session with this id already exists: sign in again")
        }
        e => e,
    })?;
    Ok(())
}

pub(crate) async fn session_get(
    conn: &Object,
    id_hash: &str,
    now: Timestamp,
) -> Result<Option<StoredSession>> {
    // The token's columns under their own names, so `rows::token` reads them.
    let sql = format!(
        "SELECT s.id_hash, s.csrf, s.created_at AS session_created_at,
                s.last_used_at, s.expires_at AS session_expires_at,
                t.id, t.name, t.tenant, t.role, t.created_at, t.expires_at, t.queues
         FROM dashboard_sessions s JOIN tokens t ON t.id = s.token_id
         WHERE s.id_hash = $1 AND s.expires_at > $2 AND {TOKEN_LIVE}"
    );
    let Some(row) = conn
        .query_opt(&sql, &[&id_hash, &now])
        .await
        .map_err(ctx("could not read the dashboard session"))?
    else {
        return Ok(None);
    };
    Ok(Some(StoredSession {
        id_hash: get(&row, "id_hash")?,
        token: rows::token(&row)?,
        csrf: get(&row, "csrf")?,
        created_at: get(&row, "session_created_at")?,
        last_used_at: get(&row, "last_used_at")?,
        expires_at: get(&row, "session_expires_at")?,
    }))
}

pub(crate) async fn session_touch(conn: &Object, p: &SessionTouch) -> Result<bool> {
    let changed = conn
        .execute(
            "UPDATE dashboard_sessions SET last_used_at = $2, expires_at = $3
             WHERE id_hash = $1 AND expires_at > $2",
            &[&p.id_hash, &p.now, &p.expires_at],
        )
        .await
        .map_err(ctx("could not mark the dashboard session used"))?;
    Ok(changed > 0)
}

pub(crate) async fn session_delete(conn: &Object, id_hash: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM dashboard_sessions WHERE id_hash = $1",
        &[&id_hash],
    )
    .await
    .map_err(ctx("could not end the dashboard session"))?;
    Ok(())
}

pub(crate) async fn session_sweep(conn: &Object, p: &SessionSweep) -> Result<u64> {
    // Sessions are few (one per person signed in), so the token condition's scan is cheap;
    // the limit bounds the delete all the same. Replicas sweeping at once delete each row
    // once; the other's DELETE finds it gone.
    let sql = format!(
        "DELETE FROM dashboard_sessions WHERE id_hash IN (
             SELECT s.id_hash FROM dashboard_sessions s LEFT JOIN tokens t ON t.id = s.token_id
             WHERE s.expires_at <= $2 OR t.id IS NULL OR NOT ({TOKEN_LIVE})
             LIMIT $1)"
    );
    conn.execute(&sql, &[&i64::from(p.limit), &p.now])
        .await
        .map_err(ctx("could not sweep ended dashboard sessions"))
}

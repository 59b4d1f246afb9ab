//! Numbered schema migrations, applied in order and recorded in `schema_migrations`.
//!
//! A migration is never edited once it has shipped: change the schema with a new file.

use rusqlite::Connection;
use spillway_core::{Error, Result};

use super::rows::db;

/// Every migration, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];

/// Apply the migrations `conn`'s database has not seen yet, each in its own transaction.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(db("create the schema_migrations table"))?;
    let current: i64 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(db("read the schema version"))?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(Error::unavailable(format!(
            "the sqlite database is at schema version {current}, newer than this build knows ({newest}): run a newer spillway"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let now = chrono::Utc::now().timestamp_micros();
        let apply = format!(
            "BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_migrations (version, applied_at) VALUES ({version}, {now});\nCOMMIT;"
        );
        if let Err(e) = conn.execute_batch(&apply) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(
                Error::internal(format!("sqlite migration {version} failed")).with_source(e),
            );
        }
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

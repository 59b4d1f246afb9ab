//! Numbered schema migrations, applied in order and recorded in `schema_migrations` with the
//! checksum of their file (see [`crate::migrations`]).
//!
//! A migration is never edited once it has shipped: change the schema with a new file.

use rusqlite::{Connection, params};
use spillway_core::{Error, Result};

use super::rows::db;
use crate::migrations::{CHECKSUMS_FROM, Migration, verify};

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        file: "0001_init.sql",
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        file: "0002_migration_checksums.sql",
        sql: include_str!("../../migrations/sqlite/0002_migration_checksums.sql"),
    },
    Migration {
        version: 3,
        file: "0003_pool_status.sql",
        sql: include_str!("../../migrations/sqlite/0003_pool_status.sql"),
    },
    Migration {
        version: 4,
        file: "0004_queue_counts.sql",
        sql: include_str!("../../migrations/sqlite/0004_queue_counts.sql"),
    },
    Migration {
        version: 5,
        file: "0005_finished_state.sql",
        sql: include_str!("../../migrations/sqlite/0005_finished_state.sql"),
    },
    Migration {
        version: 6,
        file: "0006_token_scope_and_sessions.sql",
        sql: include_str!("../../migrations/sqlite/0006_token_scope_and_sessions.sql"),
    },
    Migration {
        version: 7,
        file: "0007_log_chunks.sql",
        sql: include_str!("../../migrations/sqlite/0007_log_chunks.sql"),
    },
    Migration {
        version: 8,
        file: "0008_pool_bounds.sql",
        sql: include_str!("../../migrations/sqlite/0008_pool_bounds.sql"),
    },
];

/// Check the recorded checksums, then apply the migrations `conn`'s database has not seen
/// yet, each in its own transaction with its record.
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
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > newest {
        return Err(Error::unavailable(format!(
            "the sqlite database is at schema version {current}, newer than this build knows ({newest}): run a newer spillway"
        )));
    }
    if current >= CHECKSUMS_FROM {
        verify("sqlite", MIGRATIONS, &recorded(conn)?)?;
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let now = chrono::Utc::now().timestamp_micros();
        // Before the migration that adds the columns, only the version can be recorded.
        let record = if m.version >= CHECKSUMS_FROM {
            format!(
                "INSERT INTO schema_migrations (version, applied_at, name, checksum) VALUES ({}, {now}, '{}', '{}');",
                m.version,
                m.name(),
                m.checksum()
            )
        } else {
            format!(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ({}, {now});",
                m.version
            )
        };
        let apply = format!("BEGIN IMMEDIATE;\n{}\n{record}\nCOMMIT;", m.sql);
        if let Err(e) = conn.execute_batch(&apply) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(
                Error::internal(format!("sqlite migration {} failed", m.file)).with_source(e),
            );
        }
        tracing::info!(
            version = m.version,
            file = m.file,
            "applied sqlite migration"
        );
    }
    record_missing_checksums(conn)
}

/// (version, checksum) of every migration whose checksum was recorded.
fn recorded(conn: &Connection) -> Result<Vec<(i64, String)>> {
    conn.prepare("SELECT version, checksum FROM schema_migrations WHERE checksum IS NOT NULL")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db("read the recorded migration checksums"))
}

/// Record name and checksum of migrations applied before checksums were kept: databases that
/// predate `0002_migration_checksums.sql`, and every new database's migrations before it. What
/// was applied back then cannot be read back, so this build's file is taken as the truth on the
/// first start that knows about checksums; every later start checks against it.
fn record_missing_checksums(conn: &Connection) -> Result<()> {
    let mut stmt = conn
        .prepare(
            "UPDATE schema_migrations SET name = ?2, checksum = ?3
             WHERE version = ?1 AND checksum IS NULL",
        )
        .map_err(db("record migration checksums"))?;
    for m in MIGRATIONS {
        stmt.execute(params![m.version, m.name(), m.checksum()])
            .map_err(db("record a migration checksum"))?;
    }
    Ok(())
}

//! Numbered schema migrations, applied once under an advisory lock and recorded in
//! `schema_migrations` with the checksum of their file (see [`crate::migrations`]).

use spillway_core::{Error, Result};
use tokio_postgres::{Client, NoTls};

use super::error::ctx;
use super::rows::get;
use crate::migrations::{CHECKSUMS_FROM, Migration, verify};

/// Every migration, in order. Never edit one that has shipped: add the next number.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        file: "0001_init.sql",
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        file: "0002_migration_checksums.sql",
        sql: include_str!("../../migrations/postgres/0002_migration_checksums.sql"),
    },
    Migration {
        version: 3,
        file: "0003_durations_in_milliseconds.sql",
        sql: include_str!("../../migrations/postgres/0003_durations_in_milliseconds.sql"),
    },
    Migration {
        version: 4,
        file: "0004_pool_status.sql",
        sql: include_str!("../../migrations/postgres/0004_pool_status.sql"),
    },
    Migration {
        version: 5,
        file: "0005_queue_counts.sql",
        sql: include_str!("../../migrations/postgres/0005_queue_counts.sql"),
    },
    Migration {
        version: 6,
        file: "0006_finished_jobs.sql",
        sql: include_str!("../../migrations/postgres/0006_finished_jobs.sql"),
    },
    Migration {
        version: 7,
        file: "0007_token_scope_and_sessions.sql",
        sql: include_str!("../../migrations/postgres/0007_token_scope_and_sessions.sql"),
    },
    Migration {
        version: 8,
        file: "0008_log_chunks.sql",
        sql: include_str!("../../migrations/postgres/0008_log_chunks.sql"),
    },
    Migration {
        version: 9,
        file: "0009_pool_bounds.sql",
        sql: include_str!("../../migrations/postgres/0009_pool_bounds.sql"),
    },
];

/// First key of the two-part advisory lock taken while migrating ("SPLW"); the second is the
/// hash of the schema name, so different schemas migrate independently.
const MIGRATION_LOCK_CLASS: i32 = 0x5350_4c57;

/// Create the schema if needed and apply missing migrations, on a dedicated connection that
/// holds the migration lock (released by the server if this process dies mid-way).
pub(super) async fn run(config: &tokio_postgres::Config, schema: Option<&str>) -> Result<()> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(ctx("could not connect to postgresql to migrate"))?;
    let driver = tokio::spawn(connection);
    let result = run_locked(&mut client, schema.unwrap_or("public"), schema.is_some()).await;
    drop(client);
    driver.abort();
    result
}

async fn run_locked(client: &mut Client, schema: &str, create_schema: bool) -> Result<()> {
    client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&MIGRATION_LOCK_CLASS, &schema],
        )
        .await
        .map_err(ctx("could not take the migration lock"))?;
    let result = apply(client, schema, create_schema).await;
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&MIGRATION_LOCK_CLASS, &schema],
        )
        .await
        .map_err(ctx("could not release the migration lock"));
    result.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut Client, schema: &str, create_schema: bool) -> Result<()> {
    if create_schema {
        // The name was validated by the caller as a plain identifier.
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))
            .await
            .map_err(ctx("could not create the schema"))?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(ctx("could not create the schema_migrations table"))?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(ctx("could not read applied migrations"))?
        .iter()
        .map(|row| get::<i32>(row, "version").map(i64::from))
        .collect::<Result<_>>()?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newer) = applied.iter().copied().find(|v| *v > known) {
        return Err(Error::unavailable(format!(
            "database schema {schema} is at migration {newer}, newer than this binary knows ({known}): upgrade spillway"
        )));
    }
    if applied.contains(&CHECKSUMS_FROM) {
        verify("postgres", MIGRATIONS, &recorded(client).await?)?;
    }
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let version = i32::try_from(m.version).map_err(|e| {
            Error::internal("a migration number does not fit INTEGER").with_source(e)
        })?;
        let tx = client
            .transaction()
            .await
            .map_err(ctx("could not start a migration"))?;
        tx.batch_execute(m.sql)
            .await
            .map_err(ctx("could not apply a migration"))?;
        // Before the migration that adds the column, only version and name can be recorded.
        let checksum = (m.version >= CHECKSUMS_FROM).then(|| m.checksum());
        let record = if checksum.is_some() {
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
        } else {
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
        };
        let name = m.name();
        let recorded = match &checksum {
            Some(sum) => tx.execute(record, &[&version, &name, sum]).await,
            None => tx.execute(record, &[&version, &name]).await,
        };
        recorded.map_err(ctx("could not record a migration"))?;
        tx.commit()
            .await
            .map_err(ctx("could not commit a migration"))?;
        tracing::info!(
            schema,
            version,
            file = m.file,
            "applied postgresql migration"
        );
    }
    record_missing_checksums(client).await
}

/// (version, checksum) of every migration whose checksum was recorded.
async fn recorded(client: &Client) -> Result<Vec<(i64, String)>> {
    client
        .query(
            "SELECT version, checksum FROM schema_migrations WHERE checksum IS NOT NULL",
            &[],
        )
        .await
        .map_err(ctx("could not read the recorded migration checksums"))?
        .iter()
        .map(|row| {
            Ok((
                i64::from(get::<i32>(row, "version")?),
                get(row, "checksum")?,
            ))
        })
        .collect()
}

/// Record the checksum of migrations applied before checksums were kept: schemas that
/// predate `0002_migration_checksums.sql`, and every new schema's migrations before it. What
/// was applied back then cannot be read back, so this build's file is taken as the truth on the
/// first start that knows about checksums; every later start checks against it.
async fn record_missing_checksums(client: &Client) -> Result<()> {
    for m in MIGRATIONS {
        let version = i32::try_from(m.version).map_err(|e| {
            Error::internal("a migration number does not fit INTEGER").with_source(e)
        })?;
        client
            .execute(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL",
                &[&version, &m.checksum()],
            )
            .await
            .map_err(ctx("could not record a migration checksum"))?;
    }
    Ok(())
}

//! Numbered schema migrations, applied once under an advisory lock.

use spillway_core::{Error, Result};
use tokio_postgres::{Client, NoTls};

use super::error::ctx;

/// Every migration, in order. Never edit one that has shipped: add the next number.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

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
    let applied: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(ctx("could not read applied migrations"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(newer) = applied.iter().copied().find(|v| *v > known) {
        return Err(Error::unavailable(format!(
            "database schema {schema} is at migration {newer}, newer than this binary knows ({known}): upgrade spillway"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = client
            .transaction()
            .await
            .map_err(ctx("could not start a migration"))?;
        tx.batch_execute(sql)
            .await
            .map_err(ctx("could not apply a migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(ctx("could not record a migration"))?;
        tx.commit()
            .await
            .map_err(ctx("could not commit a migration"))?;
        tracing::info!(schema, version, name, "applied postgresql migration");
    }
    Ok(())
}

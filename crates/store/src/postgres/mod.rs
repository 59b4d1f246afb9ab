//! The PostgreSQL backend: several server replicas share one database.
//!
//! Leasing uses `FOR UPDATE SKIP LOCKED`, so replicas never hand one task out twice and never
//! wait on each other's locks. Commits that make work leasable are followed by a coalesced
//! `NOTIFY spillway_work` (see [`notify`]); every replica LISTENs and wakes its own long-polls.
//! Migrations run at connect under an advisory lock, so replicas starting together migrate
//! exactly once.

mod counts;
mod error;
mod finisher;
mod leader;
mod listen;
mod migrate;
mod notify;
mod queries;
mod rows;
mod store;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use spillway_core::{Error, Result};
use tokio_postgres::NoTls;

use crate::{Leasable, Wakeups, Woken};

pub use leader::LeaderGuard;
#[cfg(test)]
pub(crate) use migrate::MIGRATIONS;

/// Most connections one store keeps open.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a caller waits for a pooled connection before the store reports unavailable.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening one connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`](crate::Store) on PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    schema: Option<String>,
    wakeups: Arc<Wakeups>,
    notifier: notify::Notifier,
    _listener: listen::Listener,
    folder: counts::Folder,
    finisher: finisher::Finisher,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: show only the schema.
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user@host:port/db`), create `schema` if given and use it
    /// on every connection, bring the tables up to date and start listening for wake-ups.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            // The url may carry a password, so it is not repeated in the message.
            Error::invalid(
                "invalid postgresql url: use the form postgres://user:password@host:5432/database",
            )
            .with_source(e)
        })?;
        if config.get_application_name().is_none() {
            // Names the sessions in pg_stat_activity.
            config.application_name("spillway");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if let Some(schema) = schema {
            validate_schema(schema)?;
            let options = match config.get_options() {
                Some(existing) => format!("{existing} -c search_path={schema}"),
                None => format!("-c search_path={schema}"),
            };
            config.options(&options);
        }
        migrate::run(&config, schema).await?;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::internal("could not build the postgresql pool").with_source(e))?;

        let wakeups = Arc::new(Wakeups::default());
        // Signs this store's notifications, so its listener skips its own echo: its waiters
        // were woken at the commit, and waking as many again would wake twice the waiters.
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let listener =
            listen::Listener::start(config.clone(), wakeups.clone(), origin.clone()).await?;
        tracing::info!(
            schema = schema.unwrap_or("public"),
            "postgresql store ready"
        );
        let notifier = notify::Notifier::start(pool.clone(), origin);
        let folder = counts::Folder::start(pool.clone());
        let finisher = finisher::Finisher::start(pool.clone());
        Ok(PostgresStore {
            pool,
            config,
            schema: schema.map(str::to_string),
            wakeups,
            notifier,
            _listener: listener,
            folder,
            finisher,
        })
    }

    /// Drop this store's schema with everything in it (for test cleanup). Invalid when the
    /// store was opened without a schema, so a test can never drop `public`.
    pub async fn drop_schema(&self) -> Result<()> {
        let Some(schema) = &self.schema else {
            return Err(Error::invalid(
                "this store was connected without a schema: drop_schema only drops a schema given to connect",
            ));
        };
        self.folder.stop();
        self.finisher.stop();
        let conn = self.conn().await?;
        // A fold of another store on this schema may hold the counter tables as the drop
        // wants them: PostgreSQL then breaks the deadlock, and the drop is tried again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            // The name was validated in connect as a plain lowercase identifier.
            match conn
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .map_err(error::ctx("could not drop the schema"))
            {
                Ok(()) => return Ok(()),
                Err(e) if attempts < 5 && e.kind() == spillway_core::ErrorKind::Unavailable => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Try to become the one leader for `key` among all replicas: a session-level advisory
    /// lock held on a dedicated connection. `None` when another session holds it. The lock
    /// is released when the guard drops or its connection dies; check
    /// [`LeaderGuard::is_held`] before acting as leader.
    pub async fn try_advisory_leader(&self, key: i64) -> Result<Option<LeaderGuard>> {
        leader::try_acquire(&self.config, key).await
    }

    /// Fold the task counters' pending changes into their totals now, instead of at the next
    /// tick of the background folder; returns how many changes were folded (0 while another
    /// replica folds). Counts read the same before and after: folding only keeps the pending
    /// changes few.
    pub async fn fold_task_counts(&self) -> Result<i64> {
        counts::fold(&self.pool).await
    }

    async fn conn(&self) -> Result<Object> {
        self.pool.get().await.map_err(error::pool)
    }

    /// Wake the long-polls on `queues` (tenant, queue) after the commit that made `leasable`
    /// tasks of each leasable (a write over several queues gives its total to each: more
    /// waiters woken than needed, never fewer): this process's at once, other replicas'
    /// through a coalesced NOTIFY that carries the count.
    fn wake(&self, queues: &Woken, leasable: Leasable) {
        for (tenant, queue) in queues {
            self.wakeups.signal(tenant, queue, leasable);
        }
        self.notifier.send(
            queues.iter().map(|(t, q)| (t.as_str(), q.as_str())),
            leasable,
        );
    }
}

/// Schema names become part of SQL text and connection options, so only plain identifiers
/// are accepted.
fn validate_schema(schema: &str) -> Result<()> {
    let ok = schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid postgresql schema name {schema:?}: use 1 to 63 characters of a-z, 0-9 and '_', starting with a letter or '_'"
        )))
    }
}

//! Exactly-one-replica election with a session-level advisory lock.

use spillway_core::Result;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use super::error::ctx;

/// Leadership for one key, held by a session-level advisory lock on a dedicated connection.
///
/// The lock goes when the guard is dropped (the connection closes) or when the connection
/// dies; [`LeaderGuard::is_held`] tells which, and [`LeaderGuard::lost`] waits for it.
pub struct LeaderGuard {
    key: i64,
    client: Client,
    driver: JoinHandle<std::result::Result<(), tokio_postgres::Error>>,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("key", &self.key)
            .field("held", &self.is_held())
            .finish()
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        // Closing the socket ends the session, and the server drops its advisory locks.
        self.driver.abort();
    }
}

impl LeaderGuard {
    /// The advisory lock key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Whether the connection holding the lock is still open.
    pub fn is_held(&self) -> bool {
        !self.driver.is_finished() && !self.client.is_closed()
    }

    /// Wait until leadership is lost (the connection died).
    pub async fn lost(&mut self) {
        if let Err(error) = (&mut self.driver).await {
            tracing::warn!(%error, key = self.key, "leader connection task stopped");
        }
    }

    /// Give leadership up now and wait until the server has released the lock.
    pub async fn release(self) -> Result<()> {
        self.client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await
            .map_err(ctx("could not release the leader lock"))?;
        Ok(())
    }
}

pub(super) async fn try_acquire(
    config: &tokio_postgres::Config,
    key: i64,
) -> Result<Option<LeaderGuard>> {
    let (client, connection) = config.connect(NoTls).await.map_err(ctx(
        "could not open a postgresql connection for leader election",
    ))?;
    let guard = LeaderGuard {
        key,
        client,
        driver: tokio::spawn(connection),
    };
    let row = guard
        .client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(ctx("could not try the leader lock"))?;
    let acquired: bool = row
        .try_get(0)
        .map_err(ctx("could not read the leader lock answer"))?;
    if acquired {
        tracing::info!(key, "became leader");
        Ok(Some(guard))
    } else {
        Ok(None)
    }
}

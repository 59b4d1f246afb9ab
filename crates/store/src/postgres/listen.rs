//! The LISTEN connection: forwards `NOTIFY spillway_work, '<tenant>/<queue>'` from any replica
//! to this process's [`Wakeups`], and reconnects after errors.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::future::poll_fn;
use spillway_core::Result;
use spillway_core::backoff::Backoff;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::error::ctx;
use crate::Wakeups;

/// The channel every replica listens on.
pub(super) const CHANNEL: &str = "spillway_work";
/// How often the idle listen connection is checked, so a silently dead one is replaced.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may take before the connection counts as dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Delays before reconnecting: doubling from 200ms, at most 10s.
const RECONNECT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The payload of a wake-up notification for one queue.
pub(super) fn payload(tenant: &str, queue: &str) -> String {
    format!("{tenant}/{queue}")
}

/// The background listener; stops when dropped.
pub(super) struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Open the first listen connection before returning, so that a store that connected
    /// successfully hears every notification sent after that.
    pub(super) async fn start(
        config: tokio_postgres::Config,
        wakeups: Arc<Wakeups>,
    ) -> Result<Self> {
        let first = Session::open(&config, &wakeups).await?;
        let task = tokio::spawn(run(config, wakeups, first));
        Ok(Self { task })
    }
}

async fn run(config: tokio_postgres::Config, wakeups: Arc<Wakeups>, first: Session) {
    first.watch().await;
    let mut retries = RECONNECT_BACKOFF.retries();
    let mut delay = retries.next_delay();
    loop {
        tokio::time::sleep(delay).await;
        match Session::open(&config, &wakeups).await {
            Ok(session) => {
                tracing::info!("postgresql listen connection restored");
                retries.reset();
                delay = retries.next_delay();
                session.watch().await;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "could not reopen the postgresql listen connection");
                delay = retries.next_delay();
            }
        }
    }
}

/// One listen connection: the client (kept so the connection stays open) and the task that
/// drives the connection and forwards notifications.
struct Session {
    client: Client,
    driver: JoinHandle<std::result::Result<(), tokio_postgres::Error>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Session {
    async fn open(config: &tokio_postgres::Config, wakeups: &Arc<Wakeups>) -> Result<Self> {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(ctx("could not open the postgresql listen connection"))?;
        let wakeups = wakeups.clone();
        let driver = tokio::spawn(poll_fn(move |cx| {
            loop {
                match connection.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                        forward(&wakeups, n.payload());
                    }
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }));
        let session = Session { client, driver };
        session
            .client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(ctx("could not listen for wake-ups"))?;
        Ok(session)
    }

    /// Run until the connection fails or stops answering pings.
    async fn watch(mut self) {
        loop {
            tokio::select! {
                ended = &mut self.driver => {
                    match ended {
                        Ok(Ok(())) => tracing::warn!("postgresql listen connection closed"),
                        Ok(Err(error)) => tracing::warn!(%error, "postgresql listen connection failed"),
                        Err(error) => tracing::warn!(%error, "postgresql listen task stopped"),
                    }
                    return;
                }
                () = tokio::time::sleep(PING_INTERVAL) => {
                    let ping = tokio::time::timeout(PING_TIMEOUT, self.client.simple_query("SELECT 1")).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        tracing::warn!("postgresql listen connection stopped answering");
                        return;
                    }
                }
            }
        }
    }
}

fn forward(wakeups: &Wakeups, payload: &str) {
    match payload.split_once('/') {
        Some((tenant, queue)) => wakeups.notify(tenant, queue),
        None => tracing::debug!(payload, "ignoring a malformed wake-up notification"),
    }
}

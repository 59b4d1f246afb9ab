//! The LISTEN connection: forwards `NOTIFY spillway_work` wake-ups from other replicas to this
//! process's [`Wakeups`], with the number of tasks they made leasable, and reconnects after
//! errors. Its own store's notifications are skipped: their waiters were woken at the commit.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::future::poll_fn;
use spillway_core::Result;
use spillway_core::backoff::Backoff;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::error::ctx;
use crate::{Leasable, Wakeups};

/// The channel every replica listens on.
pub(super) const CHANNEL: &str = "spillway_work";
/// How often the idle listen connection is checked, so a silently dead one is replaced.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may take before the connection counts as dead.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Delays before reconnecting: doubling from 200ms, at most 10s.
const RECONNECT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The payload of a wake-up notification for one queue: `<tenant>/<queue>/<tasks>/<origin>`,
/// `tasks` empty when unknown (wake every waiter). Names hold no '/'. A replica of an older
/// version sent `<tenant>/<queue>` alone, which wakes every waiter; it reads this payload as a
/// queue it does not know, so its long-polls find such work at their next recheck.
pub(super) fn payload(tenant: &str, queue: &str, leasable: Leasable, origin: &str) -> String {
    match leasable {
        Leasable::Tasks(n) => format!("{tenant}/{queue}/{n}/{origin}"),
        Leasable::All => format!("{tenant}/{queue}//{origin}"),
    }
}

/// A wake-up read from a payload: (tenant, queue, how many, origin), `None` if malformed.
fn parse(payload: &str) -> Option<(&str, &str, Leasable, Option<&str>)> {
    let mut parts = payload.splitn(4, '/');
    let tenant = parts.next()?;
    let queue = parts.next()?;
    let Some(tasks) = parts.next() else {
        return Some((tenant, queue, Leasable::All, None));
    };
    let origin = parts.next()?;
    let leasable = if tasks.is_empty() {
        Leasable::All
    } else {
        Leasable::Tasks(tasks.parse().ok()?)
    };
    Some((tenant, queue, leasable, Some(origin)))
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
    /// successfully hears every notification sent after that. Notifications signed `origin`
    /// (this store's) are skipped.
    pub(super) async fn start(
        config: tokio_postgres::Config,
        wakeups: Arc<Wakeups>,
        origin: String,
    ) -> Result<Self> {
        let me = Arc::new(Me { wakeups, origin });
        let first = Session::open(&config, &me).await?;
        let task = tokio::spawn(run(config, me, first));
        Ok(Self { task })
    }
}

/// Where wake-ups go, and this store's signature.
struct Me {
    wakeups: Arc<Wakeups>,
    origin: String,
}

async fn run(config: tokio_postgres::Config, me: Arc<Me>, first: Session) {
    first.watch().await;
    let mut retries = RECONNECT_BACKOFF.retries();
    let mut delay = retries.next_delay();
    loop {
        tokio::time::sleep(delay).await;
        match Session::open(&config, &me).await {
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
    async fn open(config: &tokio_postgres::Config, me: &Arc<Me>) -> Result<Self> {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(ctx("could not open the postgresql listen connection"))?;
        let me = me.clone();
        let driver = tokio::spawn(poll_fn(move |cx| {
            loop {
                match connection.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                        forward(&me, n.payload());
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

fn forward(me: &Me, payload: &str) {
    match parse(payload) {
        Some((_, _, _, Some(origin))) if origin == me.origin => {}
        Some((tenant, queue, leasable, _)) => me.wakeups.signal(tenant, queue, leasable),
        None => tracing::debug!(payload, "ignoring a malformed wake-up notification"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_the_count_and_the_origin() {
        let p = payload("acme", "render", Leasable::Tasks(3), "abc");
        assert_eq!(
            parse(&p),
            Some(("acme", "render", Leasable::Tasks(3), Some("abc")))
        );
        let p = payload("acme", "render", Leasable::All, "abc");
        assert_eq!(
            parse(&p),
            Some(("acme", "render", Leasable::All, Some("abc")))
        );
        // An older replica's payload wakes every waiter.
        assert_eq!(
            parse("acme/render"),
            Some(("acme", "render", Leasable::All, None))
        );
        assert_eq!(parse("acme"), None);
        assert_eq!(parse("acme/render/x/abc"), None);
    }
}

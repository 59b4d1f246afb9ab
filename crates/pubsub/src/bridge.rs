//! The bridge loop: pull a batch, submit one job per message, acknowledge what the server
//! stored, hand back or reject the rest.
//!
//! Delivery guarantees:
//! - A message is acknowledged only after the server answered its submit (201 for a new job,
//!   200 for the job an earlier delivery already made); the server answers only after a
//!   durable commit. A bridge killed at any point therefore loses nothing: unacknowledged
//!   messages come back once their ack deadline passes.
//! - Every submit carries the idempotency key `pubsub:<subscription scope>:<message id>`, so a
//!   redelivered message (after a crash, a lost ack, or an expired deadline) returns the job
//!   already made instead of a second one.
//! - While a batch is being stored, its ack deadlines are extended every
//!   [`BridgeConfig::extend_every`], so slow submits do not cause redeliveries.
//! - A message the server refuses as invalid (400/413), or whose data does not fit
//!   `--data-format`, is *rejected*: with a reject topic it is published there (data and
//!   attributes unchanged, plus `spillway_reject_reason`) and then acknowledged; without one it
//!   is left unacknowledged: Pub/Sub delivers it again once its ack deadline passes (a pause,
//!   not a hot loop), and the subscription's dead-letter policy, if any, moves it aside after
//!   its maximum delivery attempts.
//! - A submit that keeps failing with a passing error (server unreachable) is handed back at
//!   once (ack deadline 0), for this or another bridge to try again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use spillway_client::Client;
use spillway_core::backoff::Backoff;
use spillway_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::client::{PubSub, ReceivedMessage};
use crate::mapping::{self, JobTemplate, Rejection};

/// Default most messages asked for in one pull.
pub const DEFAULT_MAX_MESSAGES: u32 = 100;
/// Default submits in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default ack deadline given to messages still being stored, in seconds.
pub const DEFAULT_DEADLINE_EXTENSION_SECS: u32 = 60;
/// Default interval between two deadline extensions of a batch in progress.
pub const DEFAULT_EXTEND_EVERY: Duration = Duration::from_secs(5);
/// Default pause after a pull that found nothing, or failed with a passing error.
pub const DEFAULT_IDLE_WAIT: Duration = Duration::from_millis(500);
/// Attempts of one submit that fails with a passing error before the message is handed back.
const SUBMIT_ATTEMPTS: u32 = 6;
/// Pauses between submit attempts: doubling from 250ms, at most 10s.
const SUBMIT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
/// Longest pause after repeated pull failures.
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(30);

/// What the bridge does; every field has a named default except the subscription and job.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// `projects/P/subscriptions/S`.
    pub subscription: String,
    /// What every job shares (queue, command, …).
    pub template: JobTemplate,
    /// Most messages per pull (1 to 1000).
    pub max_messages: u32,
    /// Submits in flight at once.
    pub concurrency: usize,
    /// Publish rejected messages here and acknowledge them; without it they are left
    /// unacknowledged, for Pub/Sub to redeliver after the ack deadline (or dead-letter).
    pub reject_topic: Option<String>,
    /// Ack deadline (seconds) set on messages still being stored.
    pub deadline_extension_secs: u32,
    /// How often deadlines of a batch in progress are extended.
    pub extend_every: Duration,
    /// Pause after an empty pull.
    pub idle_wait: Duration,
}

impl BridgeConfig {
    /// A config with every tunable at its default.
    pub fn new(subscription: &str, template: JobTemplate) -> Self {
        Self {
            subscription: subscription.to_string(),
            template,
            max_messages: DEFAULT_MAX_MESSAGES,
            concurrency: DEFAULT_CONCURRENCY,
            reject_topic: None,
            deadline_extension_secs: DEFAULT_DEADLINE_EXTENSION_SECS,
            extend_every: DEFAULT_EXTEND_EVERY,
            idle_wait: DEFAULT_IDLE_WAIT,
        }
    }

    /// Check what can be checked before talking to anyone.
    pub fn validate(&self) -> Result<()> {
        validate_resource("subscription", &self.subscription, "subscriptions")?;
        if let Some(topic) = &self.reject_topic {
            validate_resource("reject topic", topic, "topics")?;
        }
        if !(1..=1000).contains(&self.max_messages) {
            return Err(Error::invalid(format!(
                "max messages {} is out of range: use 1 to 1000",
                self.max_messages
            )));
        }
        if self.concurrency == 0 {
            return Err(Error::invalid("concurrency must be at least 1"));
        }
        if !(10..=600).contains(&self.deadline_extension_secs) {
            return Err(Error::invalid(
                "the ack deadline extension must be 10 to 600 seconds",
            ));
        }
        if self.subscription.len() > 256 {
            return Err(Error::invalid(format!(
                "subscription path {:?} is longer than 256 characters, too long for the job label that records it; use a shorter subscription name",
                self.subscription
            )));
        }
        Ok(())
    }
}

/// Check `projects/P/<kind>/NAME`.
pub fn validate_resource(what: &str, path: &str, kind: &str) -> Result<()> {
    let parts: Vec<&str> = path.split('/').collect();
    let ok = parts.len() == 4
        && parts[0] == "projects"
        && !parts[1].is_empty()
        && parts[2] == kind
        && !parts[3].is_empty();
    if !ok {
        return Err(Error::invalid(format!(
            "{what} {path:?} is not a full resource name: write projects/PROJECT/{kind}/NAME"
        )));
    }
    Ok(())
}

/// Running totals, readable while the bridge runs.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages pulled (redeliveries count again).
    pub pulled: AtomicU64,
    /// Jobs created.
    pub created: AtomicU64,
    /// Submits that found the job of an earlier delivery.
    pub duplicates: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// Messages rejected (published to the reject topic, or left unacknowledged).
    pub rejected: AtomicU64,
    /// Messages handed back after passing failures.
    pub handed_back: AtomicU64,
}

impl BridgeStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What became of one message of a batch.
enum Fate {
    /// Stored (or rejected to the reject topic): acknowledge.
    Ack(String),
    /// Hand back for redelivery now.
    HandBack(String),
    /// Neither: let its ack deadline run out, so Pub/Sub delivers it again only after that
    /// pause (and counts the attempt for its dead-letter policy).
    LetExpire,
    /// A failure that every message would meet (bad token, missing queue): stop the bridge.
    Stop(String, Error),
}

/// Run until `cancel` fires, or a failure no retry can fix (missing subscription or queue,
/// missing permission). On cancel the batch in progress is finished first.
pub async fn run_bridge(
    pubsub: &PubSub,
    spillway: &Client,
    config: &BridgeConfig,
    stats: &BridgeStats,
    cancel: &CancellationToken,
) -> Result<()> {
    config.validate()?;
    // A server that is still starting (or briefly down) is waited for; a missing queue or a
    // refused token is not going to fix itself.
    let mut attempt = 0;
    loop {
        match spillway.queue_get(&config.template.queue).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() => {
                attempt += 1;
                let pause = pull_backoff(config.idle_wait).ceiling(attempt);
                tracing::warn!(error = %e, pause = ?pause, "the Spillway server is not answering; trying again");
                pause_or_cancel(pause, cancel).await;
                if cancel.is_cancelled() {
                    return Ok(());
                }
            }
            Err(e) => {
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "cannot use queue {:?}: {}",
                        config.template.queue,
                        e.message()
                    ),
                ));
            }
        }
    }
    tracing::info!(subscription = %config.subscription, queue = %config.template.queue, "bridge started");
    let mut pull_failures = 0u32;
    while !cancel.is_cancelled() {
        let pulled = tokio::select! {
            _ = cancel.cancelled() => break,
            pulled = pubsub.pull(&config.subscription, config.max_messages) => pulled,
        };
        let messages = match pulled {
            Ok(messages) => {
                pull_failures = 0;
                messages
            }
            Err(e) if e.is_retryable() => {
                pull_failures += 1;
                let pause = pull_backoff(config.idle_wait).ceiling(pull_failures);
                tracing::warn!(error = %e, pause = ?pause, "pull failed; trying again");
                pause_or_cancel(pause, cancel).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if messages.is_empty() {
            pause_or_cancel(config.idle_wait, cancel).await;
            continue;
        }
        BridgeStats::add(&stats.pulled, messages.len() as u64);
        process_batch(pubsub, spillway, config, stats, messages, cancel).await?;
    }
    tracing::info!(subscription = %config.subscription, "bridge stopped");
    Ok(())
}

/// Store one pulled batch, keeping its deadlines extended until the batch is acknowledged
/// (every message of it, since acknowledgements go out together at the end), then
/// acknowledge and hand back.
async fn process_batch(
    pubsub: &PubSub,
    spillway: &Client,
    config: &BridgeConfig,
    stats: &BridgeStats,
    messages: Vec<ReceivedMessage>,
    cancel: &CancellationToken,
) -> Result<()> {
    let in_flight: Arc<Vec<String>> = Arc::new(messages.iter().map(|m| m.ack_id.clone()).collect());
    let extender = tokio::spawn(extend_deadlines(
        pubsub.clone(),
        config.subscription.clone(),
        in_flight.clone(),
        config.deadline_extension_secs,
        config.extend_every,
    ));
    let fates: Vec<Fate> = futures::stream::iter(messages)
        .map(|message| store_one(pubsub, spillway, config, stats, message, cancel))
        .buffer_unordered(config.concurrency)
        .collect()
        .await;
    extender.abort();

    let mut acks = Vec::new();
    let mut hand_back = Vec::new();
    let mut stop = None;
    for fate in fates {
        match fate {
            Fate::Ack(id) => acks.push(id),
            Fate::HandBack(id) => hand_back.push(id),
            Fate::LetExpire => {}
            Fate::Stop(id, e) => {
                hand_back.push(id);
                stop.get_or_insert(e);
            }
        }
    }
    // An ack that fails is not fatal: the message comes back and its submit finds the job.
    if let Err(e) = pubsub.acknowledge(&config.subscription, &acks).await {
        tracing::warn!(error = %e, count = acks.len(), "acknowledge failed; these messages will be redelivered and deduplicated");
    } else {
        BridgeStats::add(&stats.acked, acks.len() as u64);
    }
    if let Err(e) = pubsub
        .modify_ack_deadline(&config.subscription, &hand_back, 0)
        .await
    {
        tracing::warn!(error = %e, count = hand_back.len(), "handing messages back failed; they return when their deadline passes");
    }
    tracing::debug!(
        pulled = stats.pulled.load(Ordering::Relaxed),
        created = stats.created.load(Ordering::Relaxed),
        duplicates = stats.duplicates.load(Ordering::Relaxed),
        acked = stats.acked.load(Ordering::Relaxed),
        rejected = stats.rejected.load(Ordering::Relaxed),
        "batch done"
    );
    match stop {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Keep extending the deadlines of the batch's messages until aborted.
async fn extend_deadlines(
    pubsub: PubSub,
    subscription: String,
    in_flight: Arc<Vec<String>>,
    seconds: u32,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = pubsub
            .modify_ack_deadline(&subscription, &in_flight, seconds)
            .await
        {
            tracing::warn!(error = %e, "extending ack deadlines failed; some messages may be redelivered (and deduplicated)");
        }
    }
}

/// Submit one message; retry passing failures, reject invalid ones.
async fn store_one(
    pubsub: &PubSub,
    spillway: &Client,
    config: &BridgeConfig,
    stats: &BridgeStats,
    message: ReceivedMessage,
    cancel: &CancellationToken,
) -> Fate {
    let submit = match mapping::submit_for(&config.template, &config.subscription, &message) {
        Ok(submit) => submit,
        Err(rejection) => return reject(pubsub, config, stats, &message, rejection).await,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match spillway.job_submit(&submit).await {
            Ok(answer) => {
                let counter = if answer.created {
                    &stats.created
                } else {
                    &stats.duplicates
                };
                BridgeStats::add(counter, 1);
                tracing::debug!(message_id = %message.message_id, job = %answer.job.id, created = answer.created, "stored");
                return Fate::Ack(message.ack_id);
            }
            Err(e) if matches!(e.kind(), ErrorKind::InvalidArgument | ErrorKind::TooLarge) => {
                let rejection = Rejection {
                    reason: format!("the server refused the job: {}", e.message()),
                };
                return reject(pubsub, config, stats, &message, rejection).await;
            }
            Err(e) if e.is_retryable() && attempt < SUBMIT_ATTEMPTS && !cancel.is_cancelled() => {
                let pause = SUBMIT_BACKOFF.ceiling(attempt);
                tracing::warn!(message_id = %message.message_id, error = %e, pause = ?pause, "submit failed; trying again");
                pause_or_cancel(pause, cancel).await;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(message_id = %message.message_id, error = %e, "submit failed; handing the message back");
                BridgeStats::add(&stats.handed_back, 1);
                return Fate::HandBack(message.ack_id);
            }
            Err(e) => {
                let e = Error::new(
                    e.kind(),
                    format!(
                        "submitting message {} to queue {:?} failed: {}",
                        message.message_id,
                        config.template.queue,
                        e.message()
                    ),
                );
                return Fate::Stop(message.ack_id, e);
            }
        }
    }
}

/// Publish to the reject topic and acknowledge, or hand back when there is none.
async fn reject(
    pubsub: &PubSub,
    config: &BridgeConfig,
    stats: &BridgeStats,
    message: &ReceivedMessage,
    rejection: Rejection,
) -> Fate {
    BridgeStats::add(&stats.rejected, 1);
    let Some(topic) = &config.reject_topic else {
        tracing::warn!(message_id = %message.message_id, reason = %rejection.reason, "message rejected; leaving it unacknowledged (set a dead-letter policy on the subscription, or --reject-topic, to move it aside)");
        return Fate::LetExpire;
    };
    let outgoing = mapping::rejection_message(message, &rejection.reason);
    match pubsub.publish(topic, &[outgoing]).await {
        Ok(_) => {
            tracing::warn!(message_id = %message.message_id, reason = %rejection.reason, topic = %topic, "message rejected to the reject topic");
            Fate::Ack(message.ack_id.clone())
        }
        Err(e) => {
            tracing::warn!(message_id = %message.message_id, error = %e, "publishing a rejected message failed; handing it back");
            Fate::HandBack(message.ack_id.clone())
        }
    }
}

/// Pauses after repeated pull failures (or an unanswering server at start): doubling from
/// the idle wait, at most [`MAX_PULL_BACKOFF`].
fn pull_backoff(idle_wait: Duration) -> Backoff {
    Backoff::new(idle_wait, MAX_PULL_BACKOFF)
}

async fn pause_or_cancel(pause: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(pause) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_must_be_full_paths() {
        assert!(
            validate_resource(
                "subscription",
                "projects/p/subscriptions/s",
                "subscriptions"
            )
            .is_ok()
        );
        for bad in [
            "s",
            "projects/p/topics/t",
            "projects//subscriptions/s",
            "projects/p/subscriptions/",
        ] {
            let err = validate_resource("subscription", bad, "subscriptions").expect_err(bad);
            assert!(
                err.message()
                    .contains("projects/PROJECT/subscriptions/NAME"),
                "{err}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let pull = pull_backoff(Duration::from_millis(100));
        assert_eq!(pull.ceiling(1), Duration::from_millis(100));
        assert_eq!(pull.ceiling(3), Duration::from_millis(400));
        assert_eq!(pull.ceiling(30), MAX_PULL_BACKOFF);
        assert_eq!(SUBMIT_BACKOFF.ceiling(1), Duration::from_millis(250));
        assert_eq!(SUBMIT_BACKOFF.ceiling(3), Duration::from_secs(1));
        assert_eq!(SUBMIT_BACKOFF.ceiling(30), Duration::from_secs(10));
    }
}

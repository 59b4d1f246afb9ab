//! Outcomes: one message per finished job that came from the subscription, published to a
//! topic, at least once.
//!
//! Each pass lists the queue's finished jobs (succeeded, failed, cancelled) that carry the
//! subscription's label, publishes those not yet recorded as published, then appends their ids
//! to the state file (fsync'd). A bridge that dies between the publish and the append publishes
//! those outcomes again when it restarts: consumers should treat `spillway_job_id` as the
//! dedupe key. Nothing is skipped: a job that finished while the bridge was down is found by the
//! next pass, as long as the server still keeps it (its retention).
//!
//! A pass pages through every finished job of the subscription the server still keeps, so its
//! cost grows with retention; the default pass interval is a few seconds.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spillway_client::{Client, JobListQuery};
use spillway_core::model::Job;
use spillway_core::state::JobState;
use spillway_core::{Error, Result};
use tokio_util::sync::CancellationToken;

use crate::bridge::validate_resource;
use crate::client::PubSub;
use crate::mapping::{self, LABEL_SUBSCRIPTION};

/// Default pause between two passes.
pub const DEFAULT_OUTCOME_INTERVAL: Duration = Duration::from_secs(5);
/// Messages per publish call (Pub/Sub takes up to 1000 and 10 MB).
const PUBLISH_BATCH: usize = 100;
/// Jobs per list page.
const PAGE_SIZE: u32 = 1000;

/// Where and how outcomes are published.
#[derive(Debug, Clone)]
pub struct OutcomeConfig {
    /// The subscription whose jobs are reported.
    pub subscription: String,
    /// The queue they were submitted to.
    pub queue: String,
    /// `projects/P/topics/T`.
    pub topic: String,
    /// The file recording published job ids, one per line.
    pub state_file: PathBuf,
    /// Pause between passes.
    pub interval: Duration,
}

/// The publisher with what it has published so far.
pub struct OutcomePublisher {
    config: OutcomeConfig,
    published: HashSet<String>,
}

impl OutcomePublisher {
    /// Load the state file (a missing one is an empty record).
    pub fn open(config: OutcomeConfig) -> Result<OutcomePublisher> {
        validate_resource("outcome topic", &config.topic, "topics")?;
        let published = load_state(&config.state_file)?;
        Ok(OutcomePublisher { config, published })
    }

    /// How many outcomes are recorded as published.
    pub fn published_count(&self) -> usize {
        self.published.len()
    }

    /// One pass: publish the outcome of every finished job not published yet; returns how
    /// many were published.
    pub async fn publish_pass(&mut self, pubsub: &PubSub, spillway: &Client) -> Result<usize> {
        let mut fresh: Vec<Job> = Vec::new();
        for state in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            let mut cursor = None;
            loop {
                let page = spillway
                    .job_list(&JobListQuery {
                        queue: Some(self.config.queue.clone()),
                        state: Some(state),
                        labels: [(
                            LABEL_SUBSCRIPTION.to_string(),
                            self.config.subscription.clone(),
                        )]
                        .into(),
                        limit: Some(PAGE_SIZE),
                        cursor,
                        tenant: None,
                        ..Default::default()
                    })
                    .await?;
                fresh.extend(
                    page.items
                        .into_iter()
                        .filter(|job| !self.published.contains(&job.id.to_string())),
                );
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        let mut count = 0;
        for chunk in fresh.chunks(PUBLISH_BATCH) {
            let messages: Vec<_> = chunk.iter().map(mapping::outcome_message).collect();
            pubsub.publish(&self.config.topic, &messages).await?;
            let ids: Vec<String> = chunk.iter().map(|job| job.id.to_string()).collect();
            append_state(&self.config.state_file, &ids)?;
            count += ids.len();
            self.published.extend(ids);
        }
        Ok(count)
    }

    /// Passes every interval until `cancel` fires; passing failures are logged and retried.
    pub async fn run(
        mut self,
        pubsub: &PubSub,
        spillway: &Client,
        cancel: &CancellationToken,
    ) -> Result<()> {
        while !cancel.is_cancelled() {
            match self.publish_pass(pubsub, spillway).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(published = n, topic = %self.config.topic, "outcomes published")
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "publishing outcomes failed; trying again next pass")
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
        Ok(())
    }
}

fn load_state(path: &Path) -> Result<HashSet<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(Error::unavailable(format!(
            "cannot read the outcome state file {}: check its permissions",
            path.display()
        ))
        .with_source(e)),
    }
}

fn append_state(path: &Path, ids: &[String]) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::unavailable(format!(
            "cannot append to the outcome state file {}: check the disk and its permissions",
            path.display()
        ))
        .with_source(e)
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    let mut text = String::new();
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_data().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/outcomes.ids");
        assert!(load_state(&path).expect("missing is fine").is_empty());
        append_state(&path, &["a".into(), "b".into()]).expect("append");
        append_state(&path, &["c".into()]).expect("append");
        let loaded = load_state(&path).expect("load");
        assert_eq!(loaded.len(), 3);
        assert!(loaded.contains("c"));
    }
}

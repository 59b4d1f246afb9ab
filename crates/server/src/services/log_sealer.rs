//! The log sealer: once an attempt has ended, writes its live log's chunks as one object
//! (`<tenant>/logs/<job>/<index>/<attempt>.log`), then deletes the chunks.
//!
//! Object stores cannot append, so a running attempt's log lives in the store as numbered
//! chunks (see [`crate::app::logs`]); no chunk is accepted once the attempt has ended, so the
//! object written from them is final. One replica seals at a time (a leader lease): two
//! sealers paging through the same chunks while one of them deletes them could otherwise
//! write a cut log over a whole one. Readers take the chunks while they exist and the object
//! after, so a reader never sees a log in between.

use std::time::Duration;

use bytes::Bytes;
use spillway_core::Result;
use spillway_core::keys::log_key;
use spillway_store::{LeaderLease, LogChunks, LogChunksDelete, SealableLog};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::app::logs::READ_PAGE;
use crate::services::Service;
use crate::state::AppState;

/// Default time between passes: a follower sees the end at once either way (it reads the
/// chunks until they are gone), so this only bounds how long chunks stay in the database.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_LOG_SEAL_INTERVAL;
/// Default attempts sealed per pass.
pub const DEFAULT_BATCH: u32 = 100;
/// The leader key of the sealer ("SPLWLOGS"), so one replica seals at a time.
pub const LEADER_KEY: i64 = 0x5350_4c57_4c4f_4753;

/// How the sealer runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// Attempts sealed per pass.
    pub batch: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            batch: DEFAULT_BATCH,
        }
    }
}

/// The sealer's leader lease, kept from pass to pass.
#[derive(Default)]
pub struct Leadership(Mutex<Option<LeaderLease>>);

/// One pass: when this replica is the sealer, seal up to `config.batch` ended attempts;
/// returns how many. A log that cannot be sealed now is left for the next pass.
pub async fn pass(state: &AppState, config: &Config, leadership: &Leadership) -> Result<u64> {
    let mut lease = leadership.0.lock().await;
    if !lease.as_ref().is_some_and(LeaderLease::is_held) {
        *lease = state.store.leader_try(LEADER_KEY).await?;
        if lease.is_none() {
            return Ok(0);
        }
    }
    let mut sealed = 0;
    for log in state.store.log_sealable(config.batch).await? {
        match seal(state, &log).await {
            Ok(()) => sealed += 1,
            Err(error) => {
                tracing::warn!(task_id = log.task_id, attempt = log.attempt, %error, "could not seal a live log; trying again next pass");
            }
        }
    }
    Ok(sealed)
}

/// Write one ended attempt's chunks as its log object, then delete them.
async fn seal(state: &AppState, log: &SealableLog) -> Result<()> {
    let key = log_key(&log.tenant, &log.job_id, log.index, log.attempt);
    let (task_id, attempt) = (log.task_id, log.attempt);
    let body = futures::stream::try_unfold(
        (state.clone(), None::<u64>),
        move |(state, after)| async move {
            let chunks = state
                .store
                .log_chunks(LogChunks {
                    task_id,
                    attempt,
                    after_seq: after,
                    limit: READ_PAGE,
                })
                .await?;
            let Some(last) = chunks.last().map(|c| c.seq) else {
                return Ok(None);
            };
            let data: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
            Ok(Some((Bytes::from(data), (state, Some(last)))))
        },
    );
    let size = state.blobs.put(&key, Box::pin(body)).await?;
    state
        .store
        .log_chunks_delete(LogChunksDelete { task_id, attempt })
        .await?;
    tracing::debug!(task_id, attempt, size, %key, "live log sealed");
    Ok(())
}

/// Start the sealer.
pub fn spawn(state: AppState, config: Config, stop: CancellationToken) -> Service {
    let leadership = std::sync::Arc::new(Leadership::default());
    Service::spawn("log_sealer", config.interval, stop, move || {
        let state = state.clone();
        let config = config.clone();
        let leadership = leadership.clone();
        async move { pass(&state, &config, &leadership).await }
    })
}

//! Cases for the live log: chunks under the lease, in order, bounded, sealed and swept.

use spillway_core::ErrorKind;
use spillway_core::api::LeasedTask;

use super::ops::complete_ok;
use super::{OTHER, QUEUE, TENANT, after, job, lease, must, must_fail, setup, submit, t0};
use crate::{
    DynStore, LogAppend, LogAppended, LogChunk, LogChunks, LogChunksDelete, RetentionSweep,
    SealableLog,
};

fn chunk(task: &LeasedTask, seq: u64, data: &[u8]) -> LogAppend {
    LogAppend {
        tenant: Some(TENANT.to_string()),
        task_id: task.task_id,
        lease_token: task.lease_token.clone(),
        seq,
        data: data.to_vec(),
        max_bytes: 10,
    }
}

async fn read(store: &DynStore, task: &LeasedTask, after_seq: Option<u64>) -> Vec<LogChunk> {
    must(
        "log_chunks",
        store
            .log_chunks(LogChunks {
                task_id: task.task_id,
                attempt: task.attempt,
                after_seq,
                limit: 100,
            })
            .await,
    )
}

/// Chunks are kept in order of their number, once each, only under the current lease and
/// the caller's tenant, up to the limit; an ended attempt is sealable until its chunks are
/// deleted; retention takes leftover chunks with their job.
pub async fn live_log_chunks_are_fenced_ordered_bounded_and_sealed(store: DynStore) {
    setup(&store).await;
    let job = submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let task = lease(&store, QUEUE, 1, t0()).await.remove(0);
    let appended = must("append 1", store.log_append(chunk(&task, 1, b"cd")).await);
    assert_eq!(
        appended,
        LogAppended {
            attempt: task.attempt,
            stored: true
        }
    );
    must("append 0", store.log_append(chunk(&task, 0, b"ab")).await);
    let again = must(
        "append 0 again",
        store.log_append(chunk(&task, 0, b"xx")).await,
    );
    assert!(!again.stored, "a chunk sent again is stored once");
    let all = read(&store, &task, None).await;
    let seqs: Vec<u64> = all.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!(all.concat_data(), b"abcd");
    assert_eq!(read(&store, &task, Some(0)).await.concat_data(), b"cd");

    must_fail(
        "append past the limit",
        ErrorKind::TooLarge,
        store.log_append(chunk(&task, 2, b"1234567")).await,
    );
    must_fail(
        "append from another tenant",
        ErrorKind::NotFound,
        store
            .log_append(LogAppend {
                tenant: Some(OTHER.to_string()),
                ..chunk(&task, 2, b"e")
            })
            .await,
    );
    must_fail(
        "append under a stale token",
        ErrorKind::Conflict,
        store
            .log_append(LogAppend {
                lease_token: "f".repeat(32),
                ..chunk(&task, 2, b"e")
            })
            .await,
    );
    assert!(
        must("sealable while running", store.log_sealable(10).await).is_empty(),
        "a running attempt is not sealed"
    );

    complete_ok(&store, &task, after(t0(), 1)).await;
    must_fail(
        "append after the attempt ended",
        ErrorKind::Conflict,
        store.log_append(chunk(&task, 2, b"e")).await,
    );
    let sealable = must("sealable", store.log_sealable(10).await);
    assert_eq!(
        sealable,
        vec![SealableLog {
            tenant: TENANT.to_string(),
            job_id: job.id.clone(),
            index: 0,
            task_id: task.task_id,
            attempt: task.attempt,
        }]
    );
    let gone = must(
        "delete",
        store
            .log_chunks_delete(LogChunksDelete {
                task_id: task.task_id,
                attempt: task.attempt,
            })
            .await,
    );
    assert_eq!(gone, 2);
    assert!(read(&store, &task, None).await.is_empty());
    assert!(must("sealable after", store.log_sealable(10).await).is_empty());

    // Leftover chunks go with their job.
    let second = submit(&store, super::job(TENANT, QUEUE, 1, t0())).await;
    let task = lease(&store, QUEUE, 1, t0()).await.remove(0);
    assert_eq!(task.job_id, second.id);
    must("append", store.log_append(chunk(&task, 0, b"left")).await);
    complete_ok(&store, &task, after(t0(), 1)).await;
    let swept = must(
        "sweep",
        store
            .retention_sweep(RetentionSweep {
                now: after(t0(), 3602),
                limit: 100,
            })
            .await,
    );
    assert_eq!(swept.len(), 2, "{swept:?}");
    assert!(read(&store, &task, None).await.is_empty());
}

trait Concat {
    fn concat_data(&self) -> Vec<u8>;
}

impl Concat for Vec<LogChunk> {
    fn concat_data(&self) -> Vec<u8> {
        self.iter().flat_map(|c| c.data.iter().copied()).collect()
    }
}

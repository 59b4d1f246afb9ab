//! The conformance suite every [`Store`](crate::Store) backend must pass.
//!
//! Each case is a `pub async fn` taking a fresh, isolated [`DynStore`] and panicking when the
//! backend misbehaves. [`store_conformance_tests!`](crate::store_conformance_tests) turns every
//! case into a `#[tokio::test]` for one backend:
//!
//! ```ignore
//! spillway_store::store_conformance_tests!(|| async { make_sqlite().await });
//! ```
//!
//! Time never comes from a clock here: every case starts at [`t0`] and moves `now` by hand, so
//! leases, backoff and retention are tested without sleeping. The one exception is the store's
//! own clock (`Store::clock_now`), compared with the host's. Timestamps stay on whole
//! milliseconds so that a backend storing microseconds returns exactly what it was given.
//!
//! Contract details the cases pin down, beyond the trait's doc comments:
//! - job ids sort by creation (callers give UUIDv7s); `job_list` is newest first (id desc),
//!   `task_list` and `dead_list` are in task id order, and a job's task ids ascend with index;
//! - a task leased through an expired (not yet reaped) lease may still be reported on; only a
//!   reap or a new lease makes the old token stale;
//! - a preempted release keeps the task's `run_at`, so it goes back to the front of its queue;
//! - `token_list` leaves revoked tokens out;
//! - `job_retry` clears the job's `cancel_requested` so its requeued tasks are leasable again;
//! - a heartbeat from a `down` worker makes it `active` (or `draining`) again.

mod admin;
mod autoscale;
mod counts;
mod finishing;
mod jobs;
mod lease;
mod lists;
mod logs;
mod ops;
mod sessions;

pub use admin::*;
pub use autoscale::*;
pub use counts::*;
pub use finishing::*;
pub use jobs::*;
pub use lease::*;
pub use lists::*;
pub use logs::*;
pub use ops::*;
pub use sessions::*;

use std::collections::BTreeMap;
use std::time::Duration;

use spillway_core::api::LeasedTask;
use spillway_core::model::{Job, QueueSettings, TaskSpec};
use spillway_core::{ErrorKind, Result, Timestamp};

use crate::TenantCreate;
use crate::{DynStore, JobSubmit, QueueCreate, TaskLease};

/// Expands to one `#[tokio::test]` per conformance case.
///
/// Either `store_conformance_tests!(make)`, where `make` is an async closure or fn returning a
/// fresh [`DynStore`](crate::DynStore) for each case, or `store_conformance_tests!(runner =
/// run)`, where `run` is an async fn given each case (`FnOnce(DynStore) -> impl Future`) that
/// sets up a store, runs the case and cleans up, or skips when its backend is not available.
#[macro_export]
macro_rules! store_conformance_tests {
    (runner = $run:path) => {
        $crate::store_conformance_tests!(@list run $run);
    };
    ($make:expr) => {
        $crate::store_conformance_tests!(@list make $make);
    };
    (@list $mode:ident $arg:expr) => {
        $crate::store_conformance_tests!(@cases $mode $arg;
            tenants_crud,
            queues_crud,
            tokens_crud,
            tokens_keep_expiry_and_queue_scope,
            sessions_live_while_used_and_their_token_lives,
            sessions_are_swept_in_bounded_passes,
            submit_creates_tasks,
            submit_is_idempotent_by_key,
            lease_takes_by_priority_then_run_at_then_id,
            lease_carries_the_trace_and_when_the_task_became_due,
            lease_skips_paused_scheduled_and_other_tenants,
            heartbeat_extends_only_the_current_lease,
            reports_from_another_tenant_change_nothing,
            complete_refuses_stale_tokens,
            fail_retries_with_backoff_then_dies,
            non_retryable_failure_is_dead_at_once,
            release_preempted_requeues_without_failure,
            release_clears_the_last_exit_code,
            lease_reap_fails_expired_leases,
            cancel_stops_waiting_and_flags_leased_tasks,
            job_retry_requeues_dead_and_cancelled,
            dead_list_and_requeue,
            dead_list_filters_by_job_labels,
            job_list_pages_and_filters,
            job_list_filters_by_several_labels,
            task_and_dead_lists_page,
            tenants_are_isolated,
            workers_lifecycle,
            retention_sweep_deletes_only_expired_finished_jobs,
            job_inputs_deletion_bookkeeping,
            lease_check_accepts_only_the_current_lease,
            queue_stats_counts_states,
            concurrent_leasers_never_share_a_task,
            wakeups_signal_on_submit,
            queue_demand_counts_backlog_leases_and_run_times,
            worker_drain_is_sticky,
            leader_lease_is_granted_and_held,
            pool_statuses_are_kept_replaced_and_forgotten,
            pool_bounds_are_kept_replaced_and_cleared,
            clock_now_is_the_current_time_and_moves_on,
            task_counters_stay_exact_under_concurrent_changes,
            jobs_are_listed_by_their_final_state_and_reopened_by_requeues,
            reaper_and_retention_handle_jobs_bigger_than_one_step,
            live_log_chunks_are_fenced_ordered_bounded_and_sealed,
        );
    };
    (@cases make $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let make = $make;
                let store: $crate::DynStore = make().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
    (@cases run $run:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $run($crate::conformance::$case).await;
            }
        )*
    };
}

/// The tenant most cases work in.
pub const TENANT: &str = "acme";
/// Another tenant, to check isolation.
pub const OTHER: &str = "globex";
/// The queue most cases work in.
pub const QUEUE: &str = "work";
/// The pool leases are taken for.
pub const POOL: &str = "pool-a";

/// The time every case starts at: 2030-01-01T00:00:00Z.
pub fn t0() -> Timestamp {
    Timestamp::UNIX_EPOCH + chrono::Duration::seconds(1_893_456_000)
}

/// `at` moved forward by `secs` seconds.
pub fn after(at: Timestamp, secs: i64) -> Timestamp {
    at + chrono::Duration::seconds(secs)
}

/// Unwrap a store result, panicking with what was being done.
pub(crate) fn must<T>(what: &str, r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error ({:?}): {e}", e.kind()),
    }
}

/// Assert a store result is an error of `kind`.
pub(crate) fn must_fail<T: std::fmt::Debug>(what: &str, kind: ErrorKind, r: Result<T>) {
    match r {
        Ok(v) => panic!("{what}: expected a {kind:?} error, got {v:?}"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: wrong error kind for {e}"),
    }
}

/// Queue settings with short, round numbers for tests.
pub fn test_settings() -> QueueSettings {
    QueueSettings {
        max_attempts: 3,
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(100),
        lease_duration: Duration::from_secs(30),
        retention: Duration::from_secs(3600),
        paused: false,
    }
}

/// Create `tenant` (if missing) and `queue` in it.
pub async fn setup_queue(store: &DynStore, tenant: &str, queue: &str, settings: QueueSettings) {
    if let Err(e) = store
        .tenant_create(TenantCreate {
            name: tenant.to_string(),
            now: t0(),
        })
        .await
    {
        assert_eq!(e.kind(), ErrorKind::Conflict, "tenant_create {tenant}: {e}");
    }
    must(
        "queue_create",
        store
            .queue_create(QueueCreate {
                tenant: tenant.into(),
                name: queue.into(),
                settings,
                now: t0(),
            })
            .await,
    );
}

/// The default store of a case: tenant [`TENANT`] with queue [`QUEUE`] in [`test_settings`].
pub async fn setup(store: &DynStore) {
    setup_queue(store, TENANT, QUEUE, test_settings()).await;
}

/// A submit of `n` tasks (payload `{"i": index}`) at `now`, runnable at once.
pub fn job(tenant: &str, queue: &str, n: usize, now: Timestamp) -> JobSubmit {
    JobSubmit {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.into(),
        queue: queue.into(),
        name: Some("test job".into()),
        labels: BTreeMap::new(),
        spec: TaskSpec {
            command: vec!["echo".into(), "{index}".into()],
            shell: false,
            env: BTreeMap::new(),
            timeout: None,
            resources: Default::default(),
            image: None,
            trace: None,
        },
        priority: 0,
        burstable: false,
        idempotency_key: None,
        delete_inputs_on_success: false,
        has_inputs: false,
        payloads: (0..n)
            .map(|i| Some(serde_json::json!({ "i": i })))
            .collect(),
        run_at: now,
        now,
    }
}

/// Submit and return the new job.
pub async fn submit(store: &DynStore, params: JobSubmit) -> Job {
    let (job, created) = must("job_submit", store.job_submit(params).await);
    assert!(
        created,
        "a submit without idempotency key must create a job"
    );
    job
}

/// A successful completion (exit code 0, no result) of each lease.
pub fn completions(leased: Vec<LeasedTask>) -> Vec<spillway_core::api::Completion> {
    leased
        .into_iter()
        .map(|t| spillway_core::api::Completion {
            task_id: t.task_id,
            lease_token: t.lease_token,
            exit_code: Some(0),
            result: None,
            log_tail: String::new(),
        })
        .collect()
}

/// Lease up to `max` tasks of [`TENANT`]'s `queue` for worker `w1` of [`POOL`].
pub async fn lease(store: &DynStore, queue: &str, max: u32, now: Timestamp) -> Vec<LeasedTask> {
    lease_as(store, TENANT, queue, POOL, max, now).await
}

/// Lease up to `max` tasks of `tenant`'s `queue` for a worker of `pool`.
pub async fn lease_as(
    store: &DynStore,
    tenant: &str,
    queue: &str,
    pool: &str,
    max: u32,
    now: Timestamp,
) -> Vec<LeasedTask> {
    must(
        "task_lease",
        store
            .task_lease(TaskLease {
                tenant: tenant.into(),
                queues: vec![queue.into()],
                worker_id: "w1".into(),
                worker_pool: pool.into(),
                burstable_only: false,
                max,
                now,
            })
            .await,
    )
}

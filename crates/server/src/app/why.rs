//! "Why is this task not running": where a waiting task stands in its queue (its position
//! in the lease order, read once per queue by [`Line`]) and what keeps it waiting, in words.
//! `GET /v1/tasks/{id}/why`, `spillway why` and the dashboard's job page all answer from here.

use spillway_autoscale::config::PoolConfig;
use spillway_core::api::{PoolStatus, TaskWhy, WaitReason, WaitReasonKind};
use spillway_core::auth::Action;
use spillway_core::model::{Task, WorkerState};
use spillway_core::state::TaskState;
use spillway_core::{Result, TaskId, Timestamp};
use spillway_store::TaskList;

use super::Caller;
use crate::autoscale::POOL_TENANT;
use crate::state::AppState;
use spillway_store::QueueDemandQuery;
use spillway_store::WorkerList;

/// Most waiting tasks read to tell positions in one queue; past this a position is reported
/// as unknown rather than making one request scan a huge queue.
pub const MAX_POSITION_SCAN: u64 = 20_000;

/// Page size of the position scan.
const SCAN_PAGE: u32 = 1000;

/// Where a task stands and why it is not running.
pub async fn why(state: &AppState, caller: Caller<'_>, id: TaskId) -> Result<TaskWhy> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let task = super::tasks::visible_task(state, caller, scope.as_deref(), id).await?;
    let now = state.clock.now();
    let holds = Holds::read(state, &task.tenant, &task.queue, leasable(&task, now), now).await?;
    let Standing { position, reasons } = holds.standing(&task);
    let estimated_start = match position {
        Some(position) if !holds.paused => estimate_start(state, &task, position, now).await?,
        _ => None,
    };
    Ok(TaskWhy {
        task_id: task.id,
        state: task.state,
        queue: task.queue,
        position,
        estimated_start,
        reasons,
    })
}

/// Where a task stands in its queue and why it is not running: the `position` and `reasons`
/// of [`TaskWhy`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// Leasable tasks a worker takes before it (0 means next); `None` when it is not leasable
    /// or its queue holds more than [`MAX_POSITION_SCAN`] waiting tasks.
    pub position: Option<u64>,
    /// Why it is not running, most important first; empty when it runs or finished.
    pub reasons: Vec<WaitReason>,
}

/// The [`Standing`] of each of `tasks` (in their order), as [`why`] answers for each alone;
/// each queue among them is read once. The tasks were read by an operation that checked
/// the caller (e.g. [`super::jobs::tasks`]).
pub async fn standings(state: &AppState, tasks: &[Task]) -> Result<Vec<Standing>> {
    let now = state.clock.now();
    let mut queues: Vec<((&str, &str), Holds)> = Vec::new();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        // A task that does not wait stands nowhere: nothing to read for it.
        if !task.state.is_waiting() {
            out.push(Standing::default());
            continue;
        }
        let key = (task.tenant.as_str(), task.queue.as_str());
        let found = queues.iter().position(|(k, _)| *k == key);
        let at = match found {
            Some(at) => at,
            None => {
                let with_line = tasks
                    .iter()
                    .any(|t| t.tenant == task.tenant && t.queue == task.queue && leasable(t, now));
                let holds = Holds::read(state, &task.tenant, &task.queue, with_line, now).await?;
                queues.push((key, holds));
                queues.len() - 1
            }
        };
        out.push(queues[at].1.standing(task));
    }
    Ok(out)
}

/// What holds the waiting tasks of one queue, read once and asked for any number of its
/// tasks: whether the queue is paused, the pools that may serve it, and its line.
#[derive(Debug)]
struct Holds {
    paused: bool,
    pools: Vec<PoolConfig>,
    statuses: Vec<PoolStatus>,
    /// `None` when not read (nothing asked is leasable) or past [`MAX_POSITION_SCAN`].
    line: Option<Line>,
    now: Timestamp,
}

impl Holds {
    /// Read what holds tasks of `tenant`'s `queue` at `now`; the line only when
    /// `with_line` (some task asked about is leasable), since it may scan the queue.
    async fn read(
        state: &AppState,
        tenant: &str,
        queue: &str,
        with_line: bool,
        now: Timestamp,
    ) -> Result<Self> {
        let settings = state.store.queue_get(tenant, queue).await?.settings;
        let line = if with_line {
            Line::read(state, tenant, queue, now).await?
        } else {
            None
        };
        // Pools serve the queues of the pool tenant only; elsewhere workers are started by hand.
        let pools = if tenant == POOL_TENANT {
            state.pools().pools()
        } else {
            Vec::new()
        };
        Ok(Self {
            paused: settings.paused,
            pools,
            statuses: state.pools().statuses(),
            line,
            now,
        })
    }

    /// The task's position (see [`Line::position`]; `None` when it is not leasable or the
    /// line was not counted) and why it waits, most important first.
    fn standing(&self, task: &Task) -> Standing {
        let position = self
            .line
            .as_ref()
            .and_then(|line| line.position(task, self.now));
        let mut reasons = wait_reasons(task, self.paused, self.now);
        if task.state.is_waiting()
            && let Some(reason) = pool_reason(task, &self.pools, &self.statuses)
        {
            reasons.retain(|r| r.kind != WaitReasonKind::WaitingForWorker);
            reasons.push(reason);
        }
        if task.state.is_waiting() {
            reasons.extend(pool_problems(task, &self.pools, &self.statuses));
        }
        Standing { position, reasons }
    }
}

/// The leasable tasks of one queue in lease order, read once: the one place a queue
/// position is computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The lease order key of every leasable task, sorted.
    keys: Vec<LeaseKey>,
}

/// The lease order: priority (highest first), then `run_at`, then id.
type LeaseKey = (std::cmp::Reverse<i32>, Timestamp, TaskId);

fn lease_key(task: &Task) -> LeaseKey {
    (std::cmp::Reverse(task.priority), task.run_at, task.id)
}

impl Line {
    /// Read the line of `tenant`'s `queue` at `now`; `None` when the queue holds more than
    /// [`MAX_POSITION_SCAN`] waiting tasks.
    pub async fn read(
        state: &AppState,
        tenant: &str,
        queue: &str,
        now: Timestamp,
    ) -> Result<Option<Self>> {
        let mut keys = Vec::new();
        let mut scanned = 0_u64;
        for waiting in [
            TaskState::Available,
            TaskState::Scheduled,
            TaskState::Retrying,
        ] {
            let mut cursor = None;
            loop {
                let page = state
                    .store
                    .task_list(TaskList {
                        tenant: Some(tenant.to_string()),
                        job_id: None,
                        queue: Some(queue.to_string()),
                        state: Some(waiting),
                        limit: SCAN_PAGE,
                        cursor,
                    })
                    .await?;
                scanned += page.items.len() as u64;
                if scanned > MAX_POSITION_SCAN {
                    return Ok(None);
                }
                keys.extend(
                    page.items
                        .iter()
                        .filter(|t| leasable(t, now))
                        .map(lease_key),
                );
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(Some(Self::from_keys(keys)))
    }

    fn from_keys(mut keys: Vec<LeaseKey>) -> Self {
        keys.sort_unstable();
        Self { keys }
    }

    /// How many leasable tasks of the queue a worker takes before `task`: 0 means next.
    /// `None` when `task` itself is not leasable at `now`.
    pub fn position(&self, task: &Task, now: Timestamp) -> Option<u64> {
        if !leasable(task, now) {
            return None;
        }
        let key = lease_key(task);
        Some(self.keys.partition_point(|other| *other < key) as u64)
    }
}

/// Whether a worker could lease the task now, queue pause aside.
pub fn leasable(task: &Task, now: Timestamp) -> bool {
    match task.state {
        TaskState::Available => true,
        TaskState::Scheduled | TaskState::Retrying => task.run_at <= now,
        _ => false,
    }
}

/// The reasons a task is not running, most important first; empty once it runs or finished.
pub fn wait_reasons(task: &Task, queue_paused: bool, now: Timestamp) -> Vec<WaitReason> {
    if !task.state.is_waiting() {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    if queue_paused {
        reasons.push(WaitReason {
            kind: WaitReasonKind::QueuePaused,
            message: format!(
                "queue {:?} is paused: resume it with `spillway queues resume {}`",
                task.queue, task.queue
            ),
            until: None,
        });
    }
    if task.run_at > now {
        let (kind, message) = match task.state {
            TaskState::Retrying => (
                WaitReasonKind::Backoff,
                format!(
                    "in backoff after {} failed attempt(s) until {}",
                    task.failures,
                    task.run_at.to_rfc3339()
                ),
            ),
            _ => (
                WaitReasonKind::Scheduled,
                format!("scheduled for {}", task.run_at.to_rfc3339()),
            ),
        };
        reasons.push(WaitReason {
            kind,
            message,
            until: Some(task.run_at),
        });
    }
    if reasons.is_empty() {
        reasons.push(WaitReason {
            kind: WaitReasonKind::WaitingForWorker,
            message: format!("waiting for a worker serving queue {:?}", task.queue),
            until: None,
        });
    }
    reasons
}

/// What the configured pools say about a waiting task: no pool serves its queue, every pool
/// that may take it is at its maximum, or (for a job that is not burstable) every home pool is.
/// `None` when no pool is configured or a pool may still grow for it.
pub fn pool_reason(
    task: &Task,
    pools: &[PoolConfig],
    statuses: &[PoolStatus],
) -> Option<WaitReason> {
    if pools.is_empty() {
        return None;
    }
    let queue = &task.queue;
    let serving: Vec<&PoolConfig> = pools.iter().filter(|p| p.serves(queue)).collect();
    if serving.is_empty() {
        return Some(WaitReason {
            kind: WaitReasonKind::NoPool,
            message: format!(
                "no pool serves queue {queue:?}: only workers started by hand take it; add it to a pool's `queues`"
            ),
            until: None,
        });
    }
    let full = |p: &PoolConfig| {
        statuses
            .iter()
            .find(|s| s.name == p.name)
            .is_some_and(|s| s.desired.max(s.actual) >= p.max)
    };
    let sizes = |pools: &[&PoolConfig]| {
        pools
            .iter()
            .map(|p| format!("{} at {}", p.name, p.max))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let home: Vec<&PoolConfig> = serving.iter().copied().filter(|p| p.tier == 0).collect();
    if !task.burstable && !home.is_empty() && home.iter().all(|p| full(p)) {
        let burst = serving.iter().any(|p| p.tier > 0);
        return Some(WaitReason {
            kind: WaitReasonKind::HomePoolFull,
            message: format!(
                "job is not burstable and every tier-0 pool serving {queue:?} is at its maximum ({}){}",
                sizes(&home),
                if burst {
                    "; burst pools take only burstable jobs"
                } else {
                    ""
                }
            ),
            until: None,
        });
    }
    if task.burstable && serving.iter().all(|p| full(p)) {
        return Some(WaitReason {
            kind: WaitReasonKind::PoolsAtMaximum,
            message: format!(
                "every pool serving {queue:?} is at its maximum ({}): raise a max with `spillway pools set NAME --max N`",
                sizes(&serving)
            ),
            until: None,
        });
    }
    None
}

/// The problems of the pools that may take the task (they serve its queue, and are tier 0 or
/// the job is burstable): why those pools have fewer workers than asked for.
pub fn pool_problems(
    task: &Task,
    pools: &[PoolConfig],
    statuses: &[PoolStatus],
) -> Vec<WaitReason> {
    pools
        .iter()
        .filter(|p| p.serves(&task.queue) && (p.tier == 0 || task.burstable))
        .filter_map(|p| statuses.iter().find(|s| s.name == p.name))
        .flat_map(|status| {
            status.problems.iter().map(|problem| WaitReason {
                kind: WaitReasonKind::PoolProblem,
                message: format!(
                    "pool {:?} has {} of {} workers: {problem}",
                    status.name, status.actual, status.desired
                ),
                until: None,
            })
        })
        .collect()
}

/// When the task should start: its position over the rate at which workers serving its queue
/// finish tasks (their slots over the queue's mean run time). `None` without a measured mean
/// or without a worker.
async fn estimate_start(
    state: &AppState,
    task: &Task,
    position: u64,
    now: Timestamp,
) -> Result<Option<Timestamp>> {
    let demand = state.store.queue_demand(QueueDemandQuery { now }).await?;
    let Some(mean) = demand
        .iter()
        .find(|d| d.tenant == task.tenant && d.queue == task.queue)
        .and_then(|d| d.mean_duration_seconds)
        .filter(|m| m.is_finite() && *m > 0.0)
    else {
        return Ok(None);
    };
    let slots: u64 = state
        .store
        .worker_list(WorkerList {
            tenant: Some(task.tenant.clone()),
            now,
        })
        .await?
        .iter()
        .filter(|w| w.state == WorkerState::Active && w.queues.contains(&task.queue))
        .map(|w| u64::from(w.concurrency))
        .sum();
    Ok(start_after(position, slots, mean).map(|wait| now + wait))
}

/// The wait of the task at `position` when `slots` tasks of `mean` seconds run at once: the
/// tasks ahead go in rounds of `slots`.
fn start_after(position: u64, slots: u64, mean: f64) -> Option<chrono::Duration> {
    if slots == 0 {
        return None;
    }
    let rounds = position / slots;
    let millis = (rounds as f64 * mean * 1000.0).min(i64::MAX as f64 / 2.0);
    Some(chrono::Duration::milliseconds(millis as i64))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    /// Whether `other` is leased before `task`.
    fn ahead(other: &Task, task: &Task) -> bool {
        lease_key(other) < lease_key(task)
    }

    fn task(state: TaskState, run_at_offset: i64) -> (Task, Timestamp) {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let task: Task = serde_json::from_value(serde_json::json!({
            "id": 7, "job_id": "0190a0a0-0000-7000-8000-000000000000", "tenant": "t",
            "queue": "q", "index": 0, "state": state, "priority": 0, "burstable": false,
            "run_at": now + Duration::seconds(run_at_offset), "attempt": 1, "failures": 1,
            "preemptions": 0, "max_attempts": 3, "payload": null, "lease": null,
            "cancel_requested": false, "exit_code": null, "last_error": null, "result": null,
            "avoid_pool": null, "created_at": now, "finished_at": null,
        }))
        .expect("task fixture parses");
        (task, now)
    }

    fn kinds(reasons: &[WaitReason]) -> Vec<WaitReasonKind> {
        reasons.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn retrying_task_in_the_future_is_in_backoff_until_run_at() {
        let (t, now) = task(TaskState::Retrying, 30);
        let reasons = wait_reasons(&t, false, now);
        assert_eq!(kinds(&reasons), [WaitReasonKind::Backoff]);
        assert_eq!(reasons[0].until, Some(t.run_at));
        assert!(!leasable(&t, now));
    }

    #[test]
    fn delayed_task_is_scheduled_and_paused_queue_comes_first() {
        let (t, now) = task(TaskState::Scheduled, 60);
        let reasons = wait_reasons(&t, true, now);
        assert_eq!(
            kinds(&reasons),
            [WaitReasonKind::QueuePaused, WaitReasonKind::Scheduled]
        );
        assert!(reasons[0].message.contains("resume"), "{:?}", reasons[0]);
    }

    #[test]
    fn due_task_waits_for_a_worker_and_running_task_has_no_reason() {
        let (t, now) = task(TaskState::Retrying, -5);
        assert!(leasable(&t, now));
        assert_eq!(
            kinds(&wait_reasons(&t, false, now)),
            [WaitReasonKind::WaitingForWorker]
        );
        let (running, now) = task(TaskState::Leased, 0);
        assert!(wait_reasons(&running, false, now).is_empty());
    }

    fn pool(name: &str, tier: u32, max: u32, queue: &str) -> PoolConfig {
        use spillway_autoscale::config::MEMORY_PROVIDER;
        let mut p = PoolConfig::new(name, MEMORY_PROVIDER, vec![queue.to_string()]);
        p.tier = tier;
        p.max = max;
        p
    }

    fn status(name: &str, desired: u32) -> PoolStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "provider": "memory", "tier": 0, "min": 0, "max": 0,
            "desired": desired, "actual": 0, "busy": 0, "idle": 0, "draining": 0, "down": 0,
            "problems": [], "decisions": [],
        }))
        .expect("status fixture parses")
    }

    #[test]
    fn pools_explain_a_waiting_task() {
        let (mut t, _) = task(TaskState::Available, 0);
        assert_eq!(pool_reason(&t, &[], &[]), None, "no pools, nothing to say");
        let other = [pool("elsewhere", 0, 2, "other")];
        let reason = pool_reason(&t, &other, &[]).expect("no pool serves q");
        assert_eq!(reason.kind, WaitReasonKind::NoPool);

        let pools = [pool("home", 0, 2, "q"), pool("spot", 1, 5, "q")];
        let home_full = [status("home", 2), status("spot", 0)];
        let reason = pool_reason(&t, &pools, &home_full).expect("home full");
        assert_eq!(reason.kind, WaitReasonKind::HomePoolFull);
        assert!(reason.message.contains("home at 2"), "{}", reason.message);
        t.burstable = true;
        assert_eq!(
            pool_reason(&t, &pools, &home_full),
            None,
            "spot may still grow"
        );
        let all_full = [status("home", 2), status("spot", 5)];
        let reason = pool_reason(&t, &pools, &all_full).expect("all full");
        assert_eq!(reason.kind, WaitReasonKind::PoolsAtMaximum);
        t.burstable = false;
        assert_eq!(
            pool_reason(&t, &pools, &[status("home", 1)]),
            None,
            "home may still grow"
        );
    }

    #[test]
    fn problems_of_pools_that_may_take_the_task_are_reasons() {
        let (mut t, _) = task(TaskState::Available, 0);
        let pools = [pool("home", 0, 2, "q"), pool("spot", 1, 9, "q")];
        let mut spot = status("spot", 4);
        spot.problems = vec!["QUOTA_EXCEEDED: CPUS in europe-west4".into()];
        let statuses = [status("home", 2), spot];
        assert!(
            pool_problems(&t, &pools, &statuses).is_empty(),
            "a job that is not burstable never runs on spot, so its quota is not a reason"
        );
        t.burstable = true;
        let reasons = pool_problems(&t, &pools, &statuses);
        assert_eq!(kinds(&reasons), [WaitReasonKind::PoolProblem]);
        assert!(
            reasons[0]
                .message
                .contains("\"spot\" has 0 of 4 workers: QUOTA_EXCEEDED"),
            "{}",
            reasons[0].message
        );
    }

    #[test]
    fn start_estimate_goes_in_rounds_of_the_slots() {
        assert_eq!(start_after(10, 0, 2.0), None, "no worker, no estimate");
        assert_eq!(start_after(3, 4, 2.0), Some(Duration::zero()));
        assert_eq!(start_after(9, 4, 2.0), Some(Duration::seconds(4)));
    }

    #[test]
    fn lease_order_is_priority_then_run_at_then_id() {
        let (t, _) = task(TaskState::Available, 0);
        let mut higher = t.clone();
        higher.priority = 5;
        higher.id = 100;
        assert!(ahead(&higher, &t));
        let mut older = t.clone();
        older.run_at -= Duration::seconds(1);
        older.id = 100;
        assert!(ahead(&older, &t));
        let mut later_id = t.clone();
        later_id.id = 8;
        assert!(!ahead(&later_id, &t));
        later_id.id = 6;
        assert!(ahead(&later_id, &t));
    }

    #[test]
    fn a_line_counts_the_leasable_tasks_ahead_from_zero() {
        let (t, now) = task(TaskState::Available, 0);
        let mut first = t.clone();
        first.priority = 1;
        first.id = 100;
        let mut later = t.clone();
        later.id = 8;
        let line = Line::from_keys([&t, &first, &later].iter().map(|x| lease_key(x)).collect());
        assert_eq!(line.position(&first, now), Some(0), "next to be leased");
        assert_eq!(
            line.position(&t, now),
            Some(1),
            "the task does not count itself"
        );
        assert_eq!(line.position(&later, now), Some(2));
        let (running, now) = task(TaskState::Leased, 0);
        assert_eq!(
            line.position(&running, now),
            None,
            "only leasable tasks stand in line"
        );
        let (backoff, now) = task(TaskState::Retrying, 30);
        assert_eq!(
            line.position(&backoff, now),
            None,
            "a task in backoff is not in line yet"
        );
    }
}

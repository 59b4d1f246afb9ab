//! The checker: a pure function over a recorded [`History`] and the final state read from the
//! API, answering which of the queue's promises were broken and where.
//!
//! What it checks:
//! - **(a) acknowledged work finishes**: every task of a job whose submit was answered 2xx
//!   exists in the final state and is terminal (succeeded, dead or cancelled).
//! - **(b) leases never overlap**: a lease is *valid* from its grant until the earlier of its
//!   last known expiry (the grant's, pushed on by every heartbeat answered `extended`) and the
//!   start of the first report on it that was applied or got no answer. Another grant of the
//!   same task answered before that, by more than [`SLACK`], is an anomaly; so is a heartbeat
//!   answered `extended` for a lease after a later attempt's grant was answered.
//! - **(c) no result under a stale lease**: a report answered applied, or a result upload
//!   answered 2xx, carrying a token whose lease had already been superseded (another grant of
//!   a later attempt answered before the request started) is an anomaly; so is a token no
//!   grant ever handed out.
//! - **(d) reported successes stick**: a complete answered applied means the final state has
//!   that task succeeded, on that attempt.
//! - **(e) one success per task**: two completes answered applied for one task is an anomaly.
//!
//! Times are conservative so that only real violations are flagged: a grant counts at the end
//! of its answer (the latest moment the server can have decided it), a lease's end at the
//! start of the report that ended it (the earliest).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use spillway_core::TaskId;
use spillway_core::state::TaskState;

use super::record::{BeatAnswer, Event, History, Op, ReportAnswer, ReportKind};

/// Tolerance for comparing a grant with another lease's expiry: expiries are wall-clock
/// times from the server, events are monotonic offsets from the proxy, mapped through an
/// anchor read once; both clocks are read on one machine, so the mapping is off by far less
/// than this (the reaper also only fails leases whose expiry has passed on the server's clock).
pub const SLACK: Duration = Duration::from_millis(50);

/// One task as the API shows it after the run.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalTask {
    /// The task.
    pub id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// Its latest attempt number (the succeeded one, for a succeeded task).
    pub attempt: u32,
}

/// The state read from the API after the run: the tasks of every job the history names.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// The tasks of each job, by job id.
    pub jobs: HashMap<String, Vec<FinalTask>>,
}

impl FinalState {
    fn task(&self, id: TaskId) -> Option<&FinalTask> {
        self.jobs.values().flatten().find(|t| t.id == id)
    }
}

/// Which promise was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// (a) An acknowledged task is missing or not terminal.
    NotFinished,
    /// (b) Two valid leases of one task overlapped.
    OverlappingLeases,
    /// (c) A report or upload was accepted under a superseded (or unknown) lease.
    StaleResult,
    /// (d) A success the API reported is not a success in the final state.
    LostSuccess,
    /// (e) A task succeeded more than once.
    DoubleSuccess,
}

/// One broken promise, with the slice of history that shows it.
#[derive(Debug, Clone)]
pub struct Anomaly {
    /// Which promise.
    pub kind: AnomalyKind,
    /// The task, when the anomaly is about one.
    pub task: Option<TaskId>,
    /// What is wrong, in words.
    pub detail: String,
    /// The task's operations in order, with times.
    pub slice: Vec<Event>,
    /// The task as the API showed it at the end.
    pub final_task: Option<FinalTask>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(task) = self.task {
            write!(f, " on task {task}")?;
        }
        writeln!(f, ": {}", self.detail)?;
        for event in &self.slice {
            writeln!(f, "    {event}")?;
        }
        if let Some(t) = &self.final_task {
            writeln!(f, "    final: {:?} at attempt {}", t.state, t.attempt)?;
        }
        Ok(())
    }
}

/// What a check looked at and found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Events checked.
    pub operations: usize,
    /// Leases granted.
    pub leases: usize,
    /// Leases granted for a second or later attempt (a fault made a task run again).
    pub releases: usize,
    /// Acknowledged jobs.
    pub jobs: usize,
    /// Acknowledged tasks.
    pub tasks: u64,
    /// Acknowledged tasks that ended succeeded.
    pub succeeded: u64,
    /// What was found.
    pub anomalies: Vec<Anomaly>,
}

impl Checked {
    /// The one-line summary a run prints.
    pub fn summary(&self, run: &str, faults: usize) -> String {
        format!(
            "history {run}: {} operations checked ({} leases, {} of them re-leases, {} acknowledged tasks in {} jobs), {faults} faults injected, {} anomalies found",
            self.operations,
            self.leases,
            self.releases,
            self.tasks,
            self.jobs,
            self.anomalies.len()
        )
    }

    /// The kinds found, sorted, each once.
    pub fn kinds(&self) -> Vec<AnomalyKind> {
        let mut kinds: Vec<_> = self.anomalies.iter().map(|a| a.kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Panic with every anomaly (at most the first 20, in full) unless there are none.
    pub fn assert_clean(&self) {
        if self.anomalies.is_empty() {
            return;
        }
        let shown: Vec<String> = self
            .anomalies
            .iter()
            .take(20)
            .map(|a| a.to_string())
            .collect();
        panic!(
            "{} anomalies in the history:\n{}",
            self.anomalies.len(),
            shown.join("\n")
        );
    }
}

/// One lease, as far as the history shows it.
struct Lease<'a> {
    grant: &'a Event,
    attempt: u32,
    token: &'a str,
    /// Until when it was surely valid, as an offset.
    valid_until: Duration,
}

/// Check `history` against `state`.
pub fn check(history: &History, state: &FinalState) -> Checked {
    let mut by_task: BTreeMap<TaskId, Vec<&Event>> = BTreeMap::new();
    let mut acked: Vec<(&str, u32)> = Vec::new();
    for event in &history.events {
        match (&event.op, event.op.task()) {
            (_, Some(task)) => by_task.entry(task).or_default().push(event),
            (Op::Submitted { job, tasks }, None) => acked.push((job, *tasks)),
            _ => {}
        }
    }
    let slice = |task: TaskId| -> Vec<Event> {
        let mut events: Vec<Event> = by_task
            .get(&task)
            .map(|e| e.iter().map(|e| (*e).clone()).collect())
            .unwrap_or_default();
        events.sort_by_key(|e| (e.start, e.seq));
        events
    };
    let mut anomalies = Vec::new();
    let mut anomaly = |kind, task: Option<TaskId>, detail: String| {
        anomalies.push(Anomaly {
            kind,
            task,
            detail,
            slice: task.map(slice).unwrap_or_default(),
            final_task: task.and_then(|t| state.task(t).cloned()),
        });
    };

    // (a) Every acknowledged task finished.
    let mut succeeded = 0;
    for (job, count) in &acked {
        let Some(tasks) = state.jobs.get(*job) else {
            anomaly(
                AnomalyKind::NotFinished,
                None,
                format!("acknowledged job {job} ({count} tasks) is missing"),
            );
            continue;
        };
        if tasks.len() != *count as usize {
            anomaly(
                AnomalyKind::NotFinished,
                None,
                format!(
                    "acknowledged job {job} has {} tasks, not {count}",
                    tasks.len()
                ),
            );
        }
        succeeded += tasks
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count() as u64;
        for task in tasks.iter().filter(|t| !t.state.is_final()) {
            anomaly(
                AnomalyKind::NotFinished,
                Some(task.id),
                format!("task of acknowledged job {job} ended {:?}", task.state),
            );
        }
    }

    let mut leases_seen = 0;
    let mut releases = 0;
    for (&task, events) in &by_task {
        let leases = leases_of(history, events);
        leases_seen += leases.len();
        releases += leases.iter().filter(|l| l.attempt > 1).count();
        let attempt_of = |token: &str| leases.iter().find(|l| l.token == token).map(|l| l.attempt);

        // (b) No grant while another lease of the task was surely valid.
        for (i, earlier) in leases.iter().enumerate() {
            for later in &leases[i + 1..] {
                if later.grant.end + SLACK < earlier.valid_until {
                    anomaly(
                        AnomalyKind::OverlappingLeases,
                        Some(task),
                        format!(
                            "attempt {} was granted at {:?} while attempt {} was valid until {:?}",
                            later.attempt, later.grant.end, earlier.attempt, earlier.valid_until
                        ),
                    );
                }
            }
        }

        let superseded = |attempt: u32, start: Duration| {
            leases
                .iter()
                .find(|l| l.attempt > attempt && l.grant.end < start)
        };
        let mut successes = 0;
        for event in events {
            // (b) No lease is extended once a later one was granted.
            if let Op::Heartbeat {
                token,
                answer: BeatAnswer::Extended(_),
                ..
            } = &event.op
                && let Some(attempt) = attempt_of(token)
                && let Some(newer) = superseded(attempt, event.start)
            {
                anomaly(
                    AnomalyKind::OverlappingLeases,
                    Some(task),
                    format!(
                        "heartbeat (#{}) extended attempt {attempt} after attempt {} was granted at {:?}",
                        event.seq, newer.attempt, newer.grant.end
                    ),
                );
            }
            let (token, what) = match &event.op {
                Op::Report {
                    token,
                    kind,
                    answer: ReportAnswer::Applied,
                    ..
                } => (token, format!("{kind:?} applied")),
                Op::Upload {
                    token,
                    path,
                    status: Some(s),
                    ..
                } if (200..300).contains(s) => (token, format!("upload of {path} answered {s}")),
                _ => continue,
            };
            // (c) Never under a superseded or unknown lease.
            let Some(attempt) = attempt_of(token) else {
                anomaly(
                    AnomalyKind::StaleResult,
                    Some(task),
                    format!("{what} (#{}) under a token no grant handed out", event.seq),
                );
                continue;
            };
            if let Some(newer) = superseded(attempt, event.start) {
                anomaly(
                    AnomalyKind::StaleResult,
                    Some(task),
                    format!(
                        "{what} (#{}) under attempt {attempt}, superseded by attempt {} granted at {:?}",
                        event.seq, newer.attempt, newer.grant.end
                    ),
                );
            }
            if !matches!(
                event.op,
                Op::Report {
                    kind: ReportKind::Complete,
                    ..
                }
            ) {
                continue;
            }
            successes += 1;
            // (d) A reported success is the final state.
            match state.task(task) {
                Some(t) if t.state == TaskState::Succeeded && t.attempt == attempt => {}
                other => anomaly(
                    AnomalyKind::LostSuccess,
                    Some(task),
                    format!(
                        "complete of attempt {attempt} applied (#{}), but the final state is {:?}",
                        event.seq,
                        other.map(|t| (t.state, t.attempt))
                    ),
                ),
            }
        }
        // (e) At most one success.
        if successes > 1 {
            anomaly(
                AnomalyKind::DoubleSuccess,
                Some(task),
                format!("{successes} completes applied"),
            );
        }
    }

    Checked {
        operations: history.events.len(),
        leases: leases_seen,
        releases,
        jobs: acked.len(),
        tasks: acked.iter().map(|(_, n)| u64::from(*n)).sum(),
        succeeded,
        anomalies,
    }
}

/// The leases of one task's events, in the order they were granted, with how long each was
/// surely valid.
fn leases_of<'a>(history: &History, events: &[&'a Event]) -> Vec<Lease<'a>> {
    let mut leases: Vec<Lease<'a>> = events
        .iter()
        .filter_map(|event| match &event.op {
            Op::Granted {
                attempt,
                token,
                expires,
                ..
            } => Some((*event, *attempt, token.as_str(), *expires)),
            _ => None,
        })
        .map(|(grant, attempt, token, expires)| {
            let mut expiry = history.offset(expires);
            let mut ended = Duration::MAX;
            for event in events {
                match &event.op {
                    Op::Heartbeat {
                        token: t,
                        answer: BeatAnswer::Extended(at),
                        ..
                    } if t == token => expiry = expiry.max(history.offset(*at)),
                    // An applied report ends the lease; one without an answer may have.
                    Op::Report {
                        token: t, answer, ..
                    } if t == token && !matches!(answer, ReportAnswer::Refused(_)) => {
                        ended = ended.min(event.start);
                    }
                    _ => {}
                }
            }
            Lease {
                grant,
                attempt,
                token,
                valid_until: expiry.min(ended),
            }
        })
        .collect();
    leases.sort_by_key(|l| (l.grant.end, l.grant.seq));
    leases
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    /// A synthetic history, built operation by operation with times in milliseconds.
    struct Script {
        anchor: DateTime<Utc>,
        events: Vec<Event>,
    }

    impl Script {
        fn new() -> Script {
            Script {
                anchor: Utc::now(),
                events: Vec::new(),
            }
        }

        fn at(&self, ms: u64) -> DateTime<Utc> {
            self.anchor + chrono::Duration::milliseconds(i64::try_from(ms).expect("small"))
        }

        fn push(&mut self, actor: &str, start: u64, end: u64, op: Op) -> &mut Self {
            self.events.push(Event {
                seq: self.events.len() as u64,
                actor: actor.to_string(),
                start: Duration::from_millis(start),
                end: Duration::from_millis(end),
                rewritten: false,
                op,
            });
            self
        }

        fn submit(&mut self, job: &str, tasks: u32) -> &mut Self {
            let op = Op::Submitted {
                job: job.to_string(),
                tasks,
            };
            self.push("client", 0, 1, op)
        }

        /// A grant answered at `at` ms, expiring at `expires` ms.
        fn grant(
            &mut self,
            who: &str,
            task: TaskId,
            attempt: u32,
            at: u64,
            expires: u64,
        ) -> &mut Self {
            let op = Op::Granted {
                task,
                job: "j".to_string(),
                attempt,
                token: format!("t{attempt}"),
                expires: self.at(expires),
                worker: who.to_string(),
            };
            self.push(who, at.saturating_sub(5), at, op)
        }

        fn beat(
            &mut self,
            who: &str,
            task: TaskId,
            attempt: u32,
            at: u64,
            until: u64,
        ) -> &mut Self {
            let op = Op::Heartbeat {
                task,
                token: format!("t{attempt}"),
                answer: BeatAnswer::Extended(self.at(until)),
            };
            self.push(who, at, at + 1, op)
        }

        fn report(
            &mut self,
            who: &str,
            task: TaskId,
            attempt: u32,
            at: u64,
            kind: ReportKind,
            answer: ReportAnswer,
        ) -> &mut Self {
            let op = Op::Report {
                task,
                token: format!("t{attempt}"),
                kind,
                answer,
            };
            self.push(who, at, at + 1, op)
        }

        fn complete(&mut self, who: &str, task: TaskId, attempt: u32, at: u64) -> &mut Self {
            self.report(
                who,
                task,
                attempt,
                at,
                ReportKind::Complete,
                ReportAnswer::Applied,
            )
        }

        fn upload(
            &mut self,
            who: &str,
            task: TaskId,
            attempt: u32,
            at: u64,
            status: u16,
        ) -> &mut Self {
            let op = Op::Upload {
                task,
                token: format!("t{attempt}"),
                path: "out.txt".to_string(),
                status: Some(status),
            };
            self.push(who, at, at + 1, op)
        }

        fn history(&self) -> History {
            History {
                anchor: self.anchor,
                events: self.events.clone(),
            }
        }
    }

    fn state(tasks: &[(TaskId, TaskState, u32)]) -> FinalState {
        let tasks = tasks
            .iter()
            .map(|&(id, state, attempt)| FinalTask { id, state, attempt })
            .collect();
        FinalState {
            jobs: HashMap::from([("j".to_string(), tasks)]),
        }
    }

    /// One task: w1 leases, its lease runs out, w2 leases and finishes it.
    fn retried_after_expiry() -> Script {
        let mut s = Script::new();
        s.submit("j", 1)
            .grant("w1", 1, 1, 10, 2_000)
            .beat("w1", 1, 1, 600, 2_600)
            .grant("w2", 1, 2, 3_000, 5_000)
            .report(
                "w1",
                1,
                1,
                3_100,
                ReportKind::Complete,
                ReportAnswer::Refused("answered 409".into()),
            )
            .upload("w2", 1, 2, 3_200, 201)
            .complete("w2", 1, 2, 3_300);
        s
    }

    #[test]
    fn history_a_clean_history_has_no_anomalies() {
        let s = retried_after_expiry();
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 2)]));
        checked.assert_clean();
        assert_eq!(
            (
                checked.operations,
                checked.leases,
                checked.releases,
                checked.jobs,
                checked.tasks
            ),
            (7, 2, 1, 1, 1)
        );
    }

    #[test]
    fn history_an_unfinished_or_missing_acknowledged_task_is_flagged() {
        let mut s = Script::new();
        s.submit("j", 2)
            .grant("w1", 1, 1, 10, 2_000)
            .complete("w1", 1, 1, 100);
        // Task 2 never ran; a second job vanished.
        let checked = check(
            &s.history(),
            &state(&[(1, TaskState::Succeeded, 1), (2, TaskState::Available, 0)]),
        );
        assert_eq!(checked.kinds(), [AnomalyKind::NotFinished]);
        assert_eq!(checked.anomalies[0].task, Some(2));
        s.submit("gone", 3);
        let checked = check(
            &s.history(),
            &state(&[(1, TaskState::Succeeded, 1), (2, TaskState::Dead, 1)]),
        );
        assert_eq!(checked.kinds(), [AnomalyKind::NotFinished]);
        assert!(
            checked.anomalies[0].detail.contains("gone"),
            "{}",
            checked.anomalies[0]
        );
    }

    #[test]
    fn history_a_grant_inside_another_valid_lease_is_flagged() {
        let mut s = Script::new();
        // The heartbeat pushed w1's lease to 2.6s; w2 got the task at 2.1s.
        s.submit("j", 1)
            .grant("w1", 1, 1, 10, 2_000)
            .beat("w1", 1, 1, 600, 2_600)
            .grant("w2", 1, 2, 2_100, 4_100)
            .complete("w2", 1, 2, 2_300);
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 2)]));
        assert_eq!(checked.kinds(), [AnomalyKind::OverlappingLeases]);
        let shown = checked.anomalies[0].to_string();
        assert!(shown.contains("attempt 2 was granted"), "{shown}");
        assert_eq!(checked.anomalies[0].slice.len(), 4, "{shown}");
    }

    #[test]
    fn history_a_lease_extended_after_it_was_superseded_is_flagged() {
        let mut s = retried_after_expiry();
        // w1 wakes and its heartbeat is answered as if it still held the task.
        s.beat("w1", 1, 1, 3_050, 5_050);
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 2)]));
        // Both the extension and the overlap it makes are flagged.
        assert_eq!(checked.kinds(), [AnomalyKind::OverlappingLeases]);
        let shown: Vec<String> = checked.anomalies.iter().map(|a| a.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|a| a.contains("heartbeat (#7) extended attempt 1 after attempt 2")),
            "{shown:?}"
        );
    }

    #[test]
    fn history_leases_ended_by_a_report_or_within_the_slack_do_not_overlap() {
        let mut s = Script::new();
        // w1 released at 500ms (answer lost), w2 got it at 510ms; w3 got it 30ms before
        // w2's lease ran out, within the slack.
        s.submit("j", 1)
            .grant("w1", 1, 1, 10, 2_000)
            .report(
                "w1",
                1,
                1,
                500,
                ReportKind::Release,
                ReportAnswer::Unknown("no answer".into()),
            )
            .grant("w2", 1, 2, 510, 2_510)
            .grant("w3", 1, 3, 2_480, 4_480)
            .complete("w3", 1, 3, 2_600);
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 3)]));
        checked.assert_clean();
    }

    #[test]
    fn history_a_result_under_a_superseded_lease_is_flagged() {
        let mut s = retried_after_expiry();
        // w1 wakes after w2's grant and its upload is accepted.
        s.upload("w1", 1, 1, 3_050, 201);
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 2)]));
        assert_eq!(checked.kinds(), [AnomalyKind::StaleResult]);
        assert!(
            checked.anomalies[0]
                .detail
                .contains("superseded by attempt 2")
        );

        // A report under a token never granted.
        let mut s = retried_after_expiry();
        s.push(
            "w9",
            4_000,
            4_001,
            Op::Report {
                task: 1,
                token: "forged".to_string(),
                kind: ReportKind::Fail,
                answer: ReportAnswer::Applied,
            },
        );
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 2)]));
        assert_eq!(checked.kinds(), [AnomalyKind::StaleResult]);
    }

    #[test]
    fn history_a_reported_success_missing_from_the_final_state_is_flagged() {
        let s = retried_after_expiry();
        let checked = check(&s.history(), &state(&[(1, TaskState::Retrying, 2)]));
        // Also not terminal.
        assert_eq!(
            checked.kinds(),
            [AnomalyKind::NotFinished, AnomalyKind::LostSuccess]
        );
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 3)]));
        assert_eq!(checked.kinds(), [AnomalyKind::LostSuccess]);
    }

    #[test]
    fn history_two_successes_of_one_task_are_flagged() {
        let mut s = Script::new();
        // Each success under its own current lease: only the double success is wrong.
        s.submit("j", 1)
            .grant("w1", 1, 1, 10, 2_000)
            .complete("w1", 1, 1, 100)
            .grant("w2", 1, 2, 200, 2_200)
            .complete("w2", 1, 2, 300);
        let checked = check(&s.history(), &state(&[(1, TaskState::Succeeded, 2)]));
        assert!(
            checked.kinds().contains(&AnomalyKind::DoubleSuccess),
            "{:?}",
            checked.kinds()
        );
        let double = checked
            .anomalies
            .iter()
            .find(|a| a.kind == AnomalyKind::DoubleSuccess)
            .expect("double success");
        assert!(double.detail.contains("2 completes applied"), "{double}");
    }
}

//! What a run's history holds: one event per task (or per job, for a submit) and per request,
//! with the time the request started and the time its answer ended, and how an exchange seen
//! by the proxy becomes those events.
//!
//! Batched requests (a lease of several tasks, a heartbeat or report of several leases) become
//! one event per task sharing the request's times, so the slice of one task is a filter.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use spillway_core::TaskId;
use spillway_core::api::{HeartbeatResponse, LeaseRequest, LeaseResponse, LeaseStatus};
use spillway_core::api::{ReportResponse, Submitted};

/// Which report a worker sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// The task is done.
    Complete,
    /// The task failed.
    Fail,
    /// The lease is handed back.
    Release,
}

/// How the server answered one report (one item of a batch, or a single-task report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportAnswer {
    /// Applied (`ok: true`, or 204 for a single-task report).
    Applied,
    /// Refused: the lease was not current or the task not found (nothing changed).
    Refused(String),
    /// No usable answer (the server died, or answered 5xx): it may or may not have applied.
    Unknown(String),
}

/// How the server answered one lease of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeatAnswer {
    /// Extended (possibly with a cancel request) until this time.
    Extended(DateTime<Utc>),
    /// The caller no longer holds the lease.
    Lost,
    /// No usable answer: the lease may or may not have been extended.
    Unknown(String),
}

/// One client-visible operation on one task (or one job).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A submit answered 2xx: the job and its tasks are acknowledged.
    Submitted {
        /// The job.
        job: String,
        /// How many tasks it has.
        tasks: u32,
    },
    /// A submit answered otherwise (or not at all): nothing is promised.
    SubmitRefused {
        /// The HTTP status, if an answer came.
        status: Option<u16>,
    },
    /// A lease answered with this task.
    Granted {
        /// The task.
        task: TaskId,
        /// Its job.
        job: String,
        /// The attempt number the lease is for.
        attempt: u32,
        /// The fencing token.
        token: String,
        /// The expiry the API returned.
        expires: DateTime<Utc>,
        /// The worker id the lease was asked for.
        worker: String,
    },
    /// One lease of a heartbeat.
    Heartbeat {
        /// The task.
        task: TaskId,
        /// The token the worker sent.
        token: String,
        /// The answer.
        answer: BeatAnswer,
    },
    /// One report (complete, fail or release).
    Report {
        /// The task.
        task: TaskId,
        /// The token the worker sent.
        token: String,
        /// Which report.
        kind: ReportKind,
        /// The answer.
        answer: ReportAnswer,
    },
    /// A result file upload.
    Upload {
        /// The task.
        task: TaskId,
        /// The token the worker sent.
        token: String,
        /// The file's path.
        path: String,
        /// The HTTP status, if an answer came.
        status: Option<u16>,
    },
}

impl Op {
    /// The task the operation is about, if it is about one.
    pub fn task(&self) -> Option<TaskId> {
        match self {
            Op::Submitted { .. } | Op::SubmitRefused { .. } => None,
            Op::Granted { task, .. }
            | Op::Heartbeat { task, .. }
            | Op::Report { task, .. }
            | Op::Upload { task, .. } => Some(*task),
        }
    }
}

/// One recorded operation: who sent it, when the request started and its answer ended
/// (offsets from the recorder's start, on the monotonic clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Order of recording.
    pub seq: u64,
    /// Who sent it: the name of the proxy door it came through (e.g. `worker-a`, `client`).
    pub actor: String,
    /// When the request reached the proxy.
    pub start: Duration,
    /// When its answer was complete (or the upstream failed).
    pub end: Duration,
    /// Whether the proxy rewrote the lease token (broken mode only).
    pub rewritten: bool,
    /// What happened.
    pub op: Op,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "#{:<5} {:>9.1}ms..{:>9.1}ms {:<10} {:?}",
            self.seq,
            ms(self.start),
            ms(self.end),
            self.actor,
            self.op
        )?;
        if self.rewritten {
            write!(f, " (token rewritten by the broken proxy)")?;
        }
        Ok(())
    }
}

/// Everything recorded, with the anchor that maps the API's wall-clock expiries onto the
/// monotonic offsets of the events.
#[derive(Debug, Clone)]
pub struct History {
    /// The wall-clock time of offset zero.
    pub anchor: DateTime<Utc>,
    /// The events, in recording order.
    pub events: Vec<Event>,
}

impl History {
    /// An API timestamp as an offset on the history's timeline (zero if before the start).
    pub fn offset(&self, at: DateTime<Utc>) -> Duration {
        (at - self.anchor).to_std().unwrap_or_default()
    }
}

/// Records events from many connections at once.
#[derive(Clone)]
pub struct Recorder {
    origin: Instant,
    anchor: DateTime<Utc>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// A recorder whose time starts now.
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            anchor: Utc::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The current offset.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Record the operations of one exchange.
    pub fn push(&self, exchange: &Exchange<'_>, ops: Vec<Op>) {
        let mut events = self.events.lock().expect("history lock");
        for op in ops {
            let seq = events.len() as u64;
            events.push(Event {
                seq,
                actor: exchange.actor.to_string(),
                start: exchange.start,
                end: exchange.end,
                rewritten: exchange.rewritten,
                op,
            });
        }
    }

    /// A copy of what was recorded so far.
    pub fn history(&self) -> History {
        History {
            anchor: self.anchor,
            events: self.events.lock().expect("history lock").clone(),
        }
    }

    /// How many events were recorded so far.
    pub fn len(&self) -> usize {
        self.events.lock().expect("history lock").len()
    }
}

/// The requests the history cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/jobs`.
    Submit,
    /// `POST /v1/tasks/lease`.
    Lease,
    /// `POST /v1/tasks/heartbeat`.
    Heartbeat,
    /// `POST /v1/tasks/{complete,fail,release}`.
    Batch(ReportKind),
    /// `POST /v1/tasks/{id}/{complete,fail}`.
    Single(ReportKind),
    /// `PUT /v1/tasks/{id}/results/{path}`.
    Upload(TaskId, String),
}

impl Route {
    /// The route of a request, if the history records it.
    pub fn of(method: &str, path: &str) -> Option<Route> {
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
        let kind = |name: &str| match name {
            "complete" => Some(ReportKind::Complete),
            "fail" => Some(ReportKind::Fail),
            "release" => Some(ReportKind::Release),
            _ => None,
        };
        match (method, parts.as_slice()) {
            ("POST", ["v1", "jobs"]) => Some(Route::Submit),
            ("POST", ["v1", "tasks", "lease"]) => Some(Route::Lease),
            ("POST", ["v1", "tasks", "heartbeat"]) => Some(Route::Heartbeat),
            ("POST", ["v1", "tasks", name]) => kind(name).map(Route::Batch),
            ("POST", ["v1", "tasks", id, name]) if id.parse::<TaskId>().is_ok() => {
                kind(name).map(Route::Single)
            }
            ("PUT", ["v1", "tasks", id, "results", file]) => id
                .parse::<TaskId>()
                .ok()
                .map(|id| Route::Upload(id, file.to_string())),
            _ => None,
        }
    }

    /// The JSON field holding the leases of a request body.
    pub fn items_field(&self) -> Option<&'static str> {
        match self {
            Route::Heartbeat => Some("leases"),
            Route::Batch(ReportKind::Complete) => Some("completions"),
            Route::Batch(ReportKind::Fail) => Some("failures"),
            Route::Batch(ReportKind::Release) => Some("releases"),
            _ => None,
        }
    }
}

/// One request and its answer as the proxy saw them.
pub struct Exchange<'a> {
    /// The door it came through.
    pub actor: &'a str,
    /// What it was.
    pub route: Route,
    /// When it started.
    pub start: Duration,
    /// When its answer ended.
    pub end: Duration,
    /// The request body (as the client sent it, before any rewriting).
    pub request: &'a [u8],
    /// The lease token header of an upload (as the client sent it).
    pub upload_token: Option<&'a str>,
    /// The upstream's status, or `None` when it gave no answer.
    pub status: Option<u16>,
    /// The upstream's body.
    pub response: &'a [u8],
    /// Whether the proxy rewrote a lease token.
    pub rewritten: bool,
}

/// The part of every lease reference the history needs.
#[derive(Debug, Deserialize)]
pub struct TokenRef {
    /// The task.
    pub task_id: TaskId,
    /// The token.
    pub lease_token: String,
}

/// The leases a heartbeat or report request names, in order.
pub fn request_leases(route: &Route, body: &[u8]) -> Vec<TokenRef> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let items = match route.items_field() {
        Some(field) => value.get(field).and_then(|v| v.as_array()).cloned(),
        None => Some(vec![value]),
    };
    items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect()
}

/// The operations of one exchange.
pub fn ops_of(exchange: &Exchange<'_>) -> Vec<Op> {
    let ok = exchange.status.is_some_and(|s| (200..300).contains(&s));
    let unknown = || match exchange.status {
        Some(status) => format!("answered {status}"),
        None => "no answer".to_string(),
    };
    match &exchange.route {
        Route::Submit => match serde_json::from_slice::<Submitted>(exchange.response) {
            Ok(submitted) if ok => vec![Op::Submitted {
                job: submitted.job.id,
                tasks: submitted.job.task_count,
            }],
            _ => vec![Op::SubmitRefused {
                status: exchange.status,
            }],
        },
        Route::Lease => {
            let worker = serde_json::from_slice::<LeaseRequest>(exchange.request)
                .map(|r| r.worker_id)
                .unwrap_or_default();
            let granted = serde_json::from_slice::<LeaseResponse>(exchange.response)
                .ok()
                .filter(|_| ok)
                .map(|r| r.tasks)
                .unwrap_or_default();
            granted
                .into_iter()
                .map(|t| Op::Granted {
                    task: t.task_id,
                    job: t.job_id,
                    attempt: t.attempt,
                    token: t.lease_token,
                    expires: t.lease_expires_at,
                    worker: worker.clone(),
                })
                .collect()
        }
        Route::Heartbeat => {
            let answers: HashMap<TaskId, BeatAnswer> =
                serde_json::from_slice::<HeartbeatResponse>(exchange.response)
                    .ok()
                    .filter(|_| ok)
                    .map(|r| r.results)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| {
                        let answer = match (r.status, r.lease_expires_at) {
                            (LeaseStatus::Lost, _) => BeatAnswer::Lost,
                            (_, Some(at)) => BeatAnswer::Extended(at),
                            (status, None) => {
                                BeatAnswer::Unknown(format!("{status:?} without an expiry"))
                            }
                        };
                        (r.task_id, answer)
                    })
                    .collect();
            request_leases(&exchange.route, exchange.request)
                .into_iter()
                .map(|lease| Op::Heartbeat {
                    answer: answers
                        .get(&lease.task_id)
                        .cloned()
                        .unwrap_or_else(|| BeatAnswer::Unknown(unknown())),
                    task: lease.task_id,
                    token: lease.lease_token,
                })
                .collect()
        }
        Route::Batch(kind) => {
            let answers: HashMap<TaskId, ReportAnswer> =
                serde_json::from_slice::<ReportResponse>(exchange.response)
                    .ok()
                    .filter(|_| ok)
                    .map(|r| r.results)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| {
                        let answer = if r.ok {
                            ReportAnswer::Applied
                        } else {
                            ReportAnswer::Refused(r.error.unwrap_or_default())
                        };
                        (r.task_id, answer)
                    })
                    .collect();
            request_leases(&exchange.route, exchange.request)
                .into_iter()
                .map(|lease| Op::Report {
                    answer: answers
                        .get(&lease.task_id)
                        .cloned()
                        .unwrap_or_else(|| ReportAnswer::Unknown(unknown())),
                    task: lease.task_id,
                    token: lease.lease_token,
                    kind: *kind,
                })
                .collect()
        }
        Route::Single(kind) => {
            let answer = match exchange.status {
                Some(s) if (200..300).contains(&s) => ReportAnswer::Applied,
                Some(s @ (404 | 409)) => ReportAnswer::Refused(format!("answered {s}")),
                _ => ReportAnswer::Unknown(unknown()),
            };
            request_leases(&exchange.route, exchange.request)
                .into_iter()
                .map(|lease| Op::Report {
                    task: lease.task_id,
                    token: lease.lease_token,
                    kind: *kind,
                    answer: answer.clone(),
                })
                .collect()
        }
        Route::Upload(task, path) => vec![Op::Upload {
            task: *task,
            token: exchange.upload_token.unwrap_or_default().to_string(),
            path: path.clone(),
            status: exchange.status,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_routes_are_recognised() {
        assert_eq!(Route::of("POST", "/v1/jobs"), Some(Route::Submit));
        assert_eq!(Route::of("POST", "/v1/tasks/lease"), Some(Route::Lease));
        assert_eq!(
            Route::of("POST", "/v1/tasks/release"),
            Some(Route::Batch(ReportKind::Release))
        );
        assert_eq!(
            Route::of("POST", "/v1/tasks/42/complete"),
            Some(Route::Single(ReportKind::Complete))
        );
        assert_eq!(
            Route::of("PUT", "/v1/tasks/42/results/dir/out.txt"),
            Some(Route::Upload(42, "dir/out.txt".to_string()))
        );
        assert_eq!(Route::of("GET", "/v1/tasks/42"), None);
        assert_eq!(Route::of("POST", "/v1/tasks/x/complete"), None);
    }

    #[test]
    fn history_batched_answers_become_one_event_per_task() {
        let request = br#"{"completions":[{"task_id":1,"lease_token":"a","exit_code":0},
                          {"task_id":2,"lease_token":"b"}]}"#;
        let response = br#"{"results":[{"task_id":1,"ok":true,"error":null},
                           {"task_id":2,"ok":false,"error":"not current"}]}"#;
        let exchange = Exchange {
            actor: "w",
            route: Route::Batch(ReportKind::Complete),
            start: Duration::ZERO,
            end: Duration::from_millis(1),
            request,
            upload_token: None,
            status: Some(200),
            response,
            rewritten: false,
        };
        let ops = ops_of(&exchange);
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(matches!(
            &ops[0],
            Op::Report {
                task: 1,
                answer: ReportAnswer::Applied,
                ..
            }
        ));
        assert!(
            matches!(&ops[1], Op::Report { task: 2, answer: ReportAnswer::Refused(e), .. } if e == "not current")
        );
        let lost = Exchange {
            status: None,
            response: b"",
            ..exchange
        };
        assert!(ops_of(&lost).iter().all(|op| matches!(
            op,
            Op::Report {
                answer: ReportAnswer::Unknown(_),
                ..
            }
        )));
    }
}

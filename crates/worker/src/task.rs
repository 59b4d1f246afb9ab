//! One leased task from start to report: scratch folder, inputs, command, results, report.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use spillway_core::api::{Completion, Failure, LeasedTask, Release, ReleaseReason};
use spillway_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span};

use crate::backoff;
use crate::log_stream::LogStream;
use crate::runtime::Shared;
use crate::scratch;
use crate::staging;
use crate::trace;
use spillway_executor::{ExecRequest, ExitKind};

/// How long a completion or failure report is retried while the server is unreachable;
/// past this the lease has long expired and the server has requeued the task anyway.
const REPORT_RETRY_FOR: Duration = Duration::from_secs(120);
/// How long a release on shutdown is retried: shutdown must not wait on a dead server.
const RELEASE_RETRY_FOR: Duration = Duration::from_secs(5);

/// Why the worker stopped a task before it ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The lease is no longer ours: report nothing.
    LeaseLost,
    /// The job was cancelled: release with reason cancelled.
    Cancelled,
    /// The worker is shutting down: release as preempted.
    Shutdown,
}

/// Stops one task and remembers the first reason given.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl StopHandle {
    /// Stop the task for `reason`, unless it was already stopped for another.
    pub fn stop(&self, reason: StopReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What to tell the server about a task.
#[derive(Debug)]
enum Verdict {
    Complete(Completion),
    Fail(Failure),
    Release(Release),
    /// The lease was lost; nothing may be reported.
    Nothing,
}

impl Verdict {
    /// What the spans say of it.
    fn outcome(&self) -> &'static str {
        match self {
            Verdict::Complete(_) => "complete",
            Verdict::Fail(_) => "fail",
            Verdict::Release(_) => "release",
            Verdict::Nothing => "lost",
        }
    }
}

/// Run `task` to its end and report it; removes its scratch folder if it made one.
/// It runs in the attempt's span (see [`crate::trace`]).
pub async fn run(shared: Arc<Shared>, task: LeasedTask, stop: StopHandle) {
    let attempt = trace::attempt_span(&task, &shared.worker_id());
    run_in(shared, task, stop, attempt.clone())
        .instrument(attempt)
        .await;
}

async fn run_in(shared: Arc<Shared>, task: LeasedTask, stop: StopHandle, attempt: Span) {
    let dir = scratch::task_path(&shared.scratch_root, &task);
    tracing::info!(task_id = task.task_id, job_id = %task.job_id, attempt = task.attempt, "task started");
    let mut created = false;
    let verdict = execute(&shared, &task, &dir, &mut created, &stop).await;
    let outcome = verdict.outcome();
    attempt.record("outcome", outcome);
    if matches!(verdict, Verdict::Fail(_)) {
        attempt.record("otel.status_code", "ERROR");
    }
    report(&shared, &task, verdict)
        .instrument(tracing::info_span!("report", outcome))
        .await;
    if created
        && let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(task_id = task.task_id, dir = %dir.display(), error = %e, "could not remove scratch folder");
    }
}

/// Run the attempt; `created` is set once its scratch folder `dir` exists because of it.
async fn execute(
    shared: &Shared,
    task: &LeasedTask,
    dir: &Path,
    created: &mut bool,
    stop: &StopHandle,
) -> Verdict {
    let input_dir = dir.join("input");
    let output_dir = dir.join("output");
    let payload_file = dir.join("payload.json");
    let payload = serde_json::to_vec(&task.payload.clone().unwrap_or(serde_json::Value::Null))
        .unwrap_or_else(|_| b"null".to_vec());
    if let Err(e) = scratch::create_task_dir(dir).await {
        return fail(
            task,
            format!("could not create the scratch folder: {e}"),
            None,
            String::new(),
        );
    }
    *created = true;
    if let Err(e) = prepare(&input_dir, &output_dir, &payload_file, &payload).await {
        return fail(
            task,
            format!("could not prepare the scratch folder: {e}"),
            None,
            String::new(),
        );
    }

    if task.has_inputs {
        let staged = tokio::select! {
            r = staging::download_inputs(&shared.client, &task.job_id, &input_dir)
                .instrument(tracing::info_span!("stage")) => r,
            () = stop.token.cancelled() => return stopped(task, stop, String::new()),
        };
        if let Err(e) = staged {
            if e.kind() == ErrorKind::Conflict {
                return Verdict::Nothing;
            }
            return fail(
                task,
                format!("staging inputs failed: {e}"),
                None,
                String::new(),
            );
        }
    }

    // Last, so that the downloaded inputs are the task user's too.
    if let Some(user) = shared.config.task_user
        && let Err(e) = crate::scratch_owner::give_to(dir, user).await
    {
        return fail(task, e.to_string(), None, String::new());
    }

    let run = tracing::info_span!(
        "run",
        exit_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let mut env = task_env(task, &input_dir, &output_dir, &payload_file);
    if let Some(trace) = trace::process_context(&run, task) {
        env.insert("TRACEPARENT".into(), trace.traceparent);
        if let Some(state) = trace.tracestate {
            env.insert("TRACESTATE".into(), state);
        }
    }
    let request = ExecRequest {
        argv: task
            .spec
            .command
            .iter()
            .map(|a| a.replace("{index}", &task.index.to_string()))
            .collect(),
        shell: task.spec.shell,
        env,
        cwd: dir.to_path_buf(),
        stdin: payload,
        timeout: task.spec.timeout,
        image: task.spec.image.clone(),
        resources: task.spec.resources.clone(),
    };
    let live = LogStream::start(
        shared.client.clone(),
        task.task_id,
        task.lease_token.clone(),
        shared.config.max_log_bytes,
    );
    let ran = shared
        .executor
        .run_live(request, stop.token.clone(), live.output())
        .instrument(run.clone())
        .await;
    // The last lines reach the server before the report ends the attempt.
    live.finish().await;
    let outcome = match ran {
        Ok(outcome) => outcome,
        Err(e) => {
            run.record("otel.status_code", "ERROR");
            return fail(task, e.message().to_string(), None, String::new());
        }
    };
    match outcome.exit {
        ExitKind::Exited(code) => {
            run.record("exit_code", code);
            if code != 0 {
                run.record("otel.status_code", "ERROR");
            }
        }
        _ => {
            run.record("otel.status_code", "ERROR");
        }
    }
    let log_tail = outcome.log_tail;
    match outcome.exit {
        ExitKind::Stopped => stopped(task, stop, log_tail),
        ExitKind::Exited(0) => {
            let uploaded = tokio::select! {
                r = staging::upload_results(&shared.client, task.task_id, &task.lease_token, &output_dir)
                    .instrument(tracing::info_span!("upload")) => r,
                () = stop.token.cancelled() => return stopped(task, stop, log_tail),
            };
            match uploaded {
                Ok(files) => Verdict::Complete(Completion {
                    task_id: task.task_id,
                    lease_token: task.lease_token.clone(),
                    exit_code: Some(0),
                    result: Some(serde_json::json!({ "files": files })),
                    log_tail,
                }),
                Err(e) if e.kind() == ErrorKind::Conflict => Verdict::Nothing,
                Err(e) => fail(
                    task,
                    format!("uploading results failed: {e}"),
                    Some(0),
                    log_tail,
                ),
            }
        }
        ExitKind::Exited(code) => fail(
            task,
            format!("exited with status {code}"),
            Some(code),
            log_tail,
        ),
        ExitKind::Signalled(signal) => {
            fail(task, format!("killed by signal {signal}"), None, log_tail)
        }
        ExitKind::TimedOut(after) => fail(
            task,
            format!("timed out after {}", humantime::format_duration(after)),
            None,
            log_tail,
        ),
    }
}

/// The command's environment: the job's variables, then Spillway's (which win).
fn task_env(
    task: &LeasedTask,
    input: &Path,
    output: &Path,
    payload: &Path,
) -> BTreeMap<String, String> {
    let mut env = task.spec.env.clone();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    env.insert("SPILLWAY_JOB_ID".into(), task.job_id.clone());
    env.insert("SPILLWAY_TASK_ID".into(), task.task_id.to_string());
    env.insert("SPILLWAY_TASK_INDEX".into(), task.index.to_string());
    env.insert("SPILLWAY_ATTEMPT".into(), task.attempt.to_string());
    env.insert("SPILLWAY_INPUT_DIR".into(), path(input));
    env.insert("SPILLWAY_OUTPUT_DIR".into(), path(output));
    env.insert("SPILLWAY_PAYLOAD".into(), path(payload));
    env
}

/// Fill the attempt's fresh scratch folder: input and output folders and the payload file.
async fn prepare(input: &Path, output: &Path, payload_file: &Path, payload: &[u8]) -> Result<()> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::internal(format!("could not {what} {}", p.display())).with_source(e)
    };
    for d in [input, output] {
        tokio::fs::create_dir(d)
            .await
            .map_err(|e| io("create", d, e))?;
    }
    tokio::fs::write(payload_file, payload)
        .await
        .map_err(|e| io("write", payload_file, e))
}

fn fail(task: &LeasedTask, error: String, exit_code: Option<i32>, log_tail: String) -> Verdict {
    Verdict::Fail(Failure {
        task_id: task.task_id,
        lease_token: task.lease_token.clone(),
        error,
        exit_code,
        retryable: true,
        log_tail,
    })
}

fn stopped(task: &LeasedTask, stop: &StopHandle, log_tail: String) -> Verdict {
    let reason = match stop.reason() {
        Some(StopReason::Cancelled) => ReleaseReason::Cancelled,
        Some(StopReason::Shutdown) => ReleaseReason::Preempted,
        Some(StopReason::LeaseLost) | None => return Verdict::Nothing,
    };
    Verdict::Release(Release {
        task_id: task.task_id,
        lease_token: task.lease_token.clone(),
        reason,
        log_tail,
    })
}

/// Send the verdict, retrying while the server is unreachable, and count it.
async fn report(shared: &Shared, task: &LeasedTask, verdict: Verdict) {
    let task_id = task.task_id;
    let (what, retry_for) = match &verdict {
        Verdict::Complete(_) => ("complete", REPORT_RETRY_FOR),
        Verdict::Fail(_) => ("fail", REPORT_RETRY_FOR),
        Verdict::Release(_) => ("release", RELEASE_RETRY_FOR),
        Verdict::Nothing => {
            tracing::warn!(
                task_id,
                "lease lost; the task was stopped and nothing is reported"
            );
            shared.count(|s| s.lost += 1);
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut backoff = backoff::retries(shared.config.retry_backoff_max);
    loop {
        // Sent along with the other tasks' reports of the same kind; the answer is this
        // task's own.
        let sent = match &verdict {
            Verdict::Complete(c) => shared.reporter.complete.report(c.clone()).await,
            Verdict::Fail(f) => shared.reporter.fail.report(f.clone()).await,
            Verdict::Release(r) => shared.reporter.release.report(r.clone()).await,
            Verdict::Nothing => Ok(()),
        };
        match sent {
            Ok(()) => {
                tracing::info!(task_id, outcome = what, "task reported");
                shared.count(|s| match &verdict {
                    Verdict::Complete(_) => s.succeeded += 1,
                    Verdict::Fail(_) => s.failed += 1,
                    Verdict::Release(_) => s.released += 1,
                    Verdict::Nothing => {}
                });
                return;
            }
            Err(e) if e.kind() == ErrorKind::Conflict || e.kind() == ErrorKind::NotFound => {
                tracing::warn!(task_id, outcome = what, error = %e, "report refused: the lease is no longer ours");
                shared.count(|s| s.lost += 1);
                return;
            }
            Err(e)
                if (e.is_retryable() || e.kind() == ErrorKind::Internal)
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(task_id, outcome = what, error = %e, "report failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                tracing::error!(task_id, outcome = what, error = %e, "giving up on the report; the lease will expire on the server");
                return;
            }
        }
    }
}

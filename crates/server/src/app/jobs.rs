//! Jobs: submit, list, read, cancel, retry; a job's tasks, its input files and its results.

use spillway_blob::ByteStream;
use spillway_core::api::{CancelJobs, JobsCancelled, ObjectInfo, Page, SubmitJob, Submitted};
use spillway_core::auth::Action;
use spillway_core::keys::{
    input_key, inputs_prefix, job_results_prefix, result_key, results_prefix, uploads_prefix,
    validate_relative_path,
};
use spillway_core::model::{Job, Task};
use spillway_core::names::LabelSelector;
use spillway_core::state::{JobState, TaskState};
use spillway_core::{Error, Result, clock};
use spillway_store::{JobList, JobSubmit, TaskList};

use super::{Caller, page_limit};
use crate::ids::{new_job_id, validate_upload_id};
use crate::metrics::Outcome;
use crate::state::AppState;
use crate::trace;
use opentelemetry::trace::TraceContextExt as _;
use spillway_store::{JobCancel, JobRetry};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Submit a job: validate the whole request, copy its upload (if any) to the job's inputs and
/// store the job with all its tasks. `created` is false when the idempotency key matched an
/// earlier job, which is returned instead. The request's `tenant` is the one it names.
///
/// It runs in a `submit` span (a child of the request's `traceparent`, if any) whose trace
/// context is kept in the job's spec: the job's tasks continue that trace (see
/// [`crate::trace`]).
pub async fn submit(state: &AppState, caller: Caller<'_>, req: SubmitJob) -> Result<Submitted> {
    let span = tracing::info_span!(
        "submit",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        tenant = tracing::field::Empty,
        queue = %req.queue,
        job_id = tracing::field::Empty,
        tasks = tracing::field::Empty,
        created = tracing::field::Empty,
    );
    let submitted = submit_in(state, caller, req, &span)
        .instrument(span.clone())
        .await;
    if submitted.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    submitted
}

async fn submit_in(
    state: &AppState,
    caller: Caller<'_>,
    mut req: SubmitJob,
    span: &tracing::Span,
) -> Result<Submitted> {
    caller.require(Action::Submit)?;
    req.validate(state.config.payload_limit())?;
    let tenant = caller.tenant()?;
    // A queue-scoped token is told which queues it may use.
    caller.principal.require_queue(&tenant, &req.queue)?;
    span.record("tenant", tenant.as_str());
    // Everything that can refuse the request is checked before the first write: 404 for a
    // missing queue (one found before needs no store read; job_submit reads its settings).
    if !state.shared.leases.queue_known(&tenant, &req.queue) {
        state.store.queue_get(&tenant, &req.queue).await?;
        state.shared.leases.queue_found(&tenant, &req.queue);
    }
    let upload = match &req.upload_id {
        Some(id) => {
            validate_upload_id(id)?;
            let prefix = uploads_prefix(&tenant, id);
            if state.blobs.list(&prefix).await?.is_empty() {
                return Err(Error::not_found(format!(
                    "upload {id:?} not found or empty: put files with PUT /v1/uploads/{id}/files/<path> first"
                )));
            }
            Some(prefix)
        }
        None => None,
    };

    let now = state.clock.now();
    let job_id = new_job_id(now);
    span.record("job_id", job_id.as_str());
    req.spec.trace = trace::job_context(span.context().span().span_context(), req.spec.trace);
    let inputs = inputs_prefix(&tenant, &job_id);
    if let Some(upload) = &upload {
        state.blobs.copy_prefix(upload, &inputs).await?;
    }
    let payloads = match req.tasks {
        Some(tasks) => tasks.into_iter().map(|t| t.payload).collect(),
        None => vec![None; req.count.unwrap_or(1) as usize],
    };
    let submitted = state
        .store
        .job_submit(JobSubmit {
            id: job_id.clone(),
            tenant: tenant.clone(),
            queue: req.queue,
            name: req.name,
            labels: req.labels,
            spec: req.spec,
            priority: req.priority,
            burstable: req.burstable,
            idempotency_key: req.idempotency_key,
            delete_inputs_on_success: req.delete_inputs_on_success,
            has_inputs: upload.is_some(),
            payloads,
            run_at: req.delay.map_or(now, |d| clock::add(now, d)),
            now,
        })
        .await;
    let (job, created) = match submitted {
        Ok(done) => done,
        Err(e) => {
            if upload.is_some() {
                // The upload stays, so the same submit can be tried again.
                discard(state, &inputs).await;
            }
            return Err(e);
        }
    };
    if let Some(upload) = &upload {
        if !created {
            // The earlier job with this idempotency key has its own inputs.
            discard(state, &inputs).await;
        }
        discard(state, upload).await;
    }
    span.record("tasks", i64::from(job.task_count));
    span.record("created", created);
    tracing::info!(%tenant, job_id = %job.id, queue = %job.queue, tasks = job.task_count, created, "job submitted");
    Ok(Submitted { job, created })
}

/// Delete a prefix whose loss only leaves garbage behind; failures are logged, not returned.
pub(crate) async fn discard(state: &AppState, prefix: &str) {
    if let Err(error) = state.blobs.delete_prefix(prefix).await {
        tracing::warn!(%prefix, %error, "could not delete staged files; they are left behind");
    }
}

/// Which jobs to list, as the caller gave them (checked by [`list`]).
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    pub state: Option<String>,
    /// Only jobs with every one of these labels, each `key=value`.
    pub labels: Vec<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Jobs the caller can see, newest first.
pub async fn list(state: &AppState, caller: Caller<'_>, filter: JobFilter) -> Result<Page<Job>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    if let Some(queue) = &filter.queue {
        spillway_core::names::validate_name("queue", queue)?;
    }
    let job_state = filter.state.as_deref().map(JobState::parse).transpose()?;
    let labels = filter
        .labels
        .iter()
        .map(|l| LabelSelector::parse(l))
        .collect::<Result<Vec<_>>>()?;
    // A token of several queues: its other queues' jobs are left out here, so a page may hold
    // fewer items than the limit while `next_cursor` still leads on.
    let queue = caller.queue_filter(scope.as_deref(), filter.queue)?;
    let mut page = state
        .store
        .job_list(JobList {
            tenant: scope,
            queue,
            state: job_state,
            labels,
            limit: page_limit(filter.limit)?,
            cursor: filter.cursor,
        })
        .await?;
    page.items
        .retain(|job| caller.sees_queue(&job.tenant, &job.queue));
    Ok(page)
}

/// Most jobs one bulk cancel reads per page of the listing it walks.
const CANCEL_PAGE: u32 = 500;

/// Cancel every unfinished job of the caller's tenant that matches `req` (at least one of
/// labels, queue and state), or with `dry_run` only say which. Jobs that finish meanwhile
/// are skipped; the answer lists the jobs cancelled.
pub async fn cancel_matching(
    state: &AppState,
    caller: Caller<'_>,
    req: CancelJobs,
) -> Result<JobsCancelled> {
    caller.require(Action::Cancel)?;
    if req.labels.is_empty() && req.queue.is_none() && req.state.is_none() {
        return Err(Error::invalid(
            "a bulk cancel needs a selector: give labels, a queue or a state (to cancel one job use POST /v1/jobs/{id}/cancel)",
        ));
    }
    if let Some(done) = req.state.filter(|s| s.is_final()) {
        return Err(Error::invalid(format!(
            "cannot cancel {done} jobs: they are finished; choose state queued or running, or none for both"
        )));
    }
    if let Some(queue) = &req.queue {
        spillway_core::names::validate_name("queue", queue)?;
    }
    let labels = req
        .labels
        .iter()
        .map(|l| LabelSelector::parse(l))
        .collect::<Result<Vec<_>>>()?;
    let scope = caller.scope()?;
    // A token limited to queues cancels only in them.
    let queue = caller.queue_filter(scope.as_deref(), req.queue.clone())?;
    // Collect first, then cancel: cancelling while paging would move jobs between states.
    // Each state is listed on its own, so only unfinished jobs are read.
    let states = match req.state {
        Some(one) => vec![one],
        None => vec![JobState::Queued, JobState::Running],
    };
    let mut matching = Vec::new();
    for job_state in states {
        let mut cursor = None;
        loop {
            let page = state
                .store
                .job_list(JobList {
                    tenant: scope.clone(),
                    queue: queue.clone(),
                    state: Some(job_state),
                    labels: labels.clone(),
                    limit: CANCEL_PAGE,
                    cursor,
                })
                .await?;
            matching.extend(
                page.items
                    .into_iter()
                    .filter(|j| !j.cancel_requested && caller.sees_queue(&j.tenant, &j.queue))
                    .map(|j| j.id),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    // Newest first, as listings are; a job that moved from queued to running while the two
    // states were read appears once.
    matching.sort_unstable_by(|a, b| b.cmp(a));
    matching.dedup();
    if req.dry_run {
        return Ok(JobsCancelled {
            jobs: matching,
            dry_run: true,
        });
    }
    let mut cancelled = Vec::with_capacity(matching.len());
    for id in matching {
        match cancel(state, caller, &id).await {
            Ok(_) => cancelled.push(id),
            // Deleted by retention since it was listed: nothing left to cancel.
            Err(e) if e.kind() == spillway_core::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(jobs = cancelled.len(), "jobs cancelled by filter");
    Ok(JobsCancelled {
        jobs: cancelled,
        dry_run: false,
    })
}

/// One job with its task counts.
pub async fn get(state: &AppState, caller: Caller<'_>, id: &str) -> Result<Job> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    visible_job(state, caller, scope.as_deref(), id).await
}

/// The job `id` of `scope`, not found unless the caller's queue scope covers its queue.
async fn visible_job(
    state: &AppState,
    caller: Caller<'_>,
    scope: Option<&str>,
    id: &str,
) -> Result<Job> {
    let job = state.store.job_get(scope, id).await?;
    caller.check_visible(&job.tenant, &job.queue, || format!("job {id:?} not found"))?;
    Ok(job)
}

/// Cancel a job: waiting tasks are cancelled, running ones are asked to stop.
pub async fn cancel(state: &AppState, caller: Caller<'_>, id: &str) -> Result<Job> {
    caller.require(Action::Cancel)?;
    let scope = caller.scope()?;
    let before = visible_job(state, caller, scope.as_deref(), id).await?;
    let job = state
        .store
        .job_cancel(JobCancel {
            tenant: scope,
            id: id.to_string(),
            now: state.clock.now(),
        })
        .await?;
    let cancelled = job.counts.cancelled.saturating_sub(before.counts.cancelled);
    state
        .metrics
        .outcome(&job.queue, Outcome::Cancelled, cancelled);
    tracing::info!(job_id = %job.id, cancelled, "job cancelled");
    Ok(job)
}

/// Requeue a job's dead and cancelled tasks; the answer is how many were requeued.
pub async fn retry(state: &AppState, caller: Caller<'_>, id: &str) -> Result<u64> {
    caller.require(Action::Requeue)?;
    let scope = caller.scope()?;
    if caller.principal.queue_scope().is_some() {
        visible_job(state, caller, scope.as_deref(), id).await?;
    }
    let changed = state
        .store
        .job_retry(JobRetry {
            tenant: scope,
            id: id.to_string(),
            now: state.clock.now(),
        })
        .await?;
    tracing::info!(job_id = %id, changed, "job retried");
    Ok(changed)
}

/// Which of a job's tasks to list, as the caller gave them (checked by [`tasks`]).
#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A job's tasks in index order.
pub async fn tasks(
    state: &AppState,
    caller: Caller<'_>,
    id: &str,
    filter: TaskFilter,
) -> Result<Page<Task>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let task_state = filter.state.as_deref().map(TaskState::parse).transpose()?;
    let limit = page_limit(filter.limit)?;
    let job = visible_job(state, caller, scope.as_deref(), id).await?;
    state
        .store
        .task_list(TaskList {
            tenant: Some(job.tenant),
            job_id: Some(job.id),
            queue: None,
            state: task_state,
            limit,
            cursor: filter.cursor,
        })
        .await
}

/// The files staged as a job's inputs.
pub async fn inputs(state: &AppState, caller: Caller<'_>, id: &str) -> Result<Vec<ObjectInfo>> {
    let job = get(state, caller, id).await?;
    state.blobs.list(&inputs_prefix(&job.tenant, &job.id)).await
}

/// One input file's bytes.
pub async fn input(
    state: &AppState,
    caller: Caller<'_>,
    id: &str,
    path: &str,
) -> Result<ByteStream> {
    caller.require(Action::Read)?;
    validate_relative_path(path)?;
    let job = get(state, caller, id).await?;
    state
        .blobs
        .get(&input_key(&job.tenant, &job.id, path))
        .await
}

/// Every result file of a job, as `<task index>/<path>`.
pub async fn results(state: &AppState, caller: Caller<'_>, id: &str) -> Result<Vec<ObjectInfo>> {
    let job = get(state, caller, id).await?;
    let prefix = job_results_prefix(&job.tenant, &job.id);
    state.blobs.list(&prefix).await
}

/// The result files of one task of a job (task `index`), by path under the task's results.
pub async fn task_results(state: &AppState, job: &Job, index: u32) -> Result<Vec<ObjectInfo>> {
    state
        .blobs
        .list(&results_prefix(&job.tenant, &job.id, index))
        .await
}

/// One result file's bytes.
pub async fn result(
    state: &AppState,
    caller: Caller<'_>,
    id: &str,
    index: u32,
    path: &str,
) -> Result<ByteStream> {
    caller.require(Action::Read)?;
    validate_relative_path(path)?;
    let job = get(state, caller, id).await?;
    let key = result_key(&job.tenant, &job.id, index, path);
    state.blobs.get(&key).await
}

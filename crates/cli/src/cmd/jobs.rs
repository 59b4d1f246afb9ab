//! Reading and steering jobs: `jobs`, `job`, `tasks`, `task`, `cancel`, `retry`, `results`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use spillway_client::{JobListQuery, TaskListQuery};
use spillway_core::api::{CancelJobs, JobsCancelled, ObjectInfo};
use spillway_core::model::{Attempt, Job, Task};
use spillway_core::names::LabelSelector;
use spillway_core::state::{JobState, TaskState};

use super::Ctx;
use crate::output::{self, Column, opt};

/// Options of `spillway jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs of this queue.
    #[arg(short, long)]
    queue: Option<String>,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    #[arg(short, long, value_parser = parse_job_state)]
    state: Option<JobState>,
    /// Only jobs with this label: `key=value`, or `key` for any value (repeatable: all must
    /// match).
    #[arg(short = 'l', long, value_name = "KEY[=VALUE]", value_parser = parse_selector)]
    label: Vec<LabelSelector>,
    /// How many jobs to show.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
}

/// A job id argument.
#[derive(Debug, Args)]
pub struct JobIdArg {
    /// The job's id.
    job: String,
}

/// Options of `spillway job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's id.
    job: String,
    /// How many of its tasks to list.
    #[arg(long, default_value_t = 20)]
    tasks: u32,
}

/// Options of `spillway tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// The job's id.
    job: String,
    /// Only tasks in this state (scheduled, available, leased, retrying, succeeded, dead, cancelled).
    #[arg(short, long, value_parser = |s: &str| TaskState::parse(s).map_err(|e| e.to_string()))]
    state: Option<TaskState>,
    /// How many tasks to show.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
}

/// Options of `spillway task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task's id (see `spillway tasks JOB`).
    task: i64,
}

/// Options of `spillway cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The jobs' ids. Leave them out to cancel by --label, --queue and --state instead.
    #[arg(value_name = "JOB")]
    jobs: Vec<String>,
    /// Cancel every job with this label: `key=value`, or `key` for any value (repeatable:
    /// all must match).
    #[arg(short = 'l', long, value_name = "KEY[=VALUE]", value_parser = parse_selector)]
    label: Vec<LabelSelector>,
    /// Cancel every job of this queue.
    #[arg(short, long)]
    queue: Option<String>,
    /// Cancel only jobs in this state: queued or running (default: both).
    #[arg(short, long, value_parser = parse_job_state)]
    state: Option<JobState>,
    /// List what would be cancelled, and cancel nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    LabelSelector::parse(text).map_err(|e| e.to_string())
}

fn parse_job_state(text: &str) -> Result<JobState, String> {
    JobState::parse(text).map_err(|e| e.to_string())
}

/// Put label selectors into a job query: pairs and bare keys. Two values for one key can
/// match no job, so they are refused here.
pub fn add_selectors(query: &mut JobListQuery, selectors: &[LabelSelector]) -> Result<()> {
    for selector in selectors {
        match &selector.value {
            Some(value) => {
                if let Some(other) = query.labels.get(&selector.key)
                    && other != value
                {
                    bail!(
                        "--label {}={other} and --label {selector} can match no job: give one value per key",
                        selector.key
                    );
                }
                query.labels.insert(selector.key.clone(), value.clone());
            }
            None => {
                query.label_keys.insert(selector.key.clone());
            }
        }
    }
    Ok(())
}

/// Options of `spillway results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The job's id.
    job: String,
    /// Only the results of the task with this index (0 for the first).
    #[arg(long, value_name = "N")]
    index: Option<u32>,
    /// Download every result file into this folder (as `<index>/<path>`).
    #[arg(long, value_name = "DIR")]
    download: Option<PathBuf>,
}

fn progress_cell(job: &Job) -> String {
    format!("{}/{}", job.counts.finished(), job.task_count)
}

/// The columns of `spillway jobs`.
const JOB_COLUMNS: &[Column<Job>] = &[
    Column::new("JOB", |j| j.id.clone()),
    Column::new("QUEUE", |j| j.queue.clone()),
    Column::new("NAME", |j| opt(j.name.clone())),
    Column::new("STATE", |j| j.state.to_string()),
    Column::new("DONE", progress_cell),
    Column::new("DEAD", |j| j.counts.dead.to_string()),
    Column::new("CREATED", |j| output::time(&j.created_at)),
    Column::wide("TENANT", |j| j.tenant.clone()),
    Column::wide("PRIORITY", |j| j.priority.to_string()),
    Column::wide("LABELS", |j| output::labels(&j.labels)),
    Column::wide("FINISHED", |j| {
        opt(j.finished_at.as_ref().map(output::time))
    }),
];

/// `spillway jobs`.
pub async fn list(ctx: &Ctx, args: JobsArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let mut query = JobListQuery {
        queue: args.queue,
        state: args.state,
        limit: Some(args.limit),
        cursor: args.cursor,
        tenant: ctx.tenant.clone(),
        ..Default::default()
    };
    add_selectors(&mut query, &args.label)?;
    let page = client.job_list(&query).await?;
    let hints: Vec<String> = page
        .next_cursor
        .iter()
        .map(|cursor| format!("more: spillway jobs --cursor {cursor}"))
        .collect();
    ctx.out
        .list(&page, &page.items, JOB_COLUMNS, |j| j.id.clone(), &hints)?;
    Ok(ExitCode::SUCCESS)
}

/// The columns of a task list.
const TASK_COLUMNS: &[Column<Task>] = &[
    Column::new("TASK", |t| t.id.to_string()),
    Column::new("INDEX", |t| t.index.to_string()),
    Column::new("STATE", |t| t.state.to_string()),
    Column::new("ATTEMPT", |t| t.attempt.to_string()),
    Column::new("FAILURES", |t| t.failures.to_string()),
    Column::new("EXIT", |t| opt(t.exit_code)),
    Column::new("WORKER", |t| {
        opt(t.lease.as_ref().map(|l| l.worker_id.clone()))
    }),
    Column::new("ERROR", |t| opt(t.last_error.clone())),
    Column::wide("PREEMPTED", |t| t.preemptions.to_string()),
    Column::wide("RUN AT", |t| output::time(&t.run_at)),
    Column::wide("FINISHED", |t| {
        opt(t.finished_at.as_ref().map(output::time))
    }),
];

/// `spillway job ID`.
pub async fn show(ctx: &Ctx, args: JobArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let job = client.job_get(&args.job).await?;
    let tasks = client
        .job_task_list(
            &job.id,
            &TaskListQuery {
                limit: Some(args.tasks.max(1)),
                ..Default::default()
            },
        )
        .await?;
    // One look-up for the first waiting task says what holds the waiting tasks (for people
    // only); a server without /why (older) just leaves the line out.
    let mut waiting = None;
    if !ctx.out.is_machine()
        && let Some(task) = tasks.items.iter().find(|t| t.state.is_waiting())
        && let Ok(why) = client.task_why(task.id).await
        && let Some(reason) = why.reasons.first()
    {
        waiting = Some(format!(
            "{} (task {}; `spillway why {}`)",
            reason.message, task.id, task.id
        ));
    }
    let value = serde_json::json!({ "job": job, "tasks": tasks.items });
    ctx.out.show(&value, &job.id, || {
        let mut text = job_text(&job, waiting.as_deref());
        text.push('\n');
        text.push_str(&ctx.out.table_text(&tasks.items, TASK_COLUMNS));
        if tasks.next_cursor.is_some() {
            text.push_str(&format!("more: spillway tasks {}\n", job.id));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A job's lines for people.
fn job_text(job: &Job, waiting: Option<&str>) -> String {
    let c = &job.counts;
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<9} {value}\n"));
    line("job", job.id.clone());
    line("name", opt(job.name.clone()));
    line("queue", format!("{} (tenant {})", job.queue, job.tenant));
    line(
        "state",
        format!(
            "{}{}",
            job.state,
            if job.cancel_requested {
                " (cancel requested)"
            } else {
                ""
            }
        ),
    );
    line("command", job.spec.command.join(" "));
    line(
        "tasks",
        format!(
            "{} total: {} waiting, {} running, {} retrying, {} succeeded, {} dead, {} cancelled",
            job.task_count,
            c.available + c.scheduled,
            c.leased,
            c.retrying,
            c.succeeded,
            c.dead,
            c.cancelled
        ),
    );
    line(
        "priority",
        format!(
            "{}{}",
            job.priority,
            if job.burstable { ", burstable" } else { "" }
        ),
    );
    line("created", output::time(&job.created_at));
    line("finished", opt(job.finished_at.as_ref().map(output::time)));
    if !job.labels.is_empty() {
        line("labels", output::labels(&job.labels));
    }
    if let Some(waiting) = waiting {
        line("waiting", waiting.to_string());
    }
    out
}

/// `spillway tasks JOB`.
pub async fn tasks(ctx: &Ctx, args: TasksArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let page = client
        .job_task_list(
            &args.job,
            &TaskListQuery {
                state: args.state,
                limit: Some(args.limit),
                cursor: args.cursor,
            },
        )
        .await?;
    let hints: Vec<String> = page
        .next_cursor
        .iter()
        .map(|cursor| format!("more: spillway tasks {} --cursor {cursor}", args.job))
        .collect();
    ctx.out.list(
        &page,
        &page.items,
        TASK_COLUMNS,
        |t| t.id.to_string(),
        &hints,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The columns of a task's attempts.
const ATTEMPT_COLUMNS: &[Column<Attempt>] = &[
    Column::new("ATTEMPT", |a| a.attempt.to_string()),
    Column::new("WORKER", |a| a.worker_id.clone()),
    Column::new("STARTED", |a| output::time(&a.started_at)),
    Column::new("ENDED", |a| opt(a.ended_at.as_ref().map(output::time))),
    Column::new("OUTCOME", |a| a.outcome.as_str().to_string()),
    Column::new("EXIT", |a| opt(a.exit_code)),
    Column::wide("TOOK", |a| {
        opt(a
            .ended_at
            .map(|end| output::seconds((end - a.started_at).num_milliseconds() as f64 / 1000.0)))
    }),
    Column::wide("ERROR", |a| opt(a.error.clone())),
];

/// `spillway task TASK`.
pub async fn task(ctx: &Ctx, args: TaskArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let detail = client.task_get(args.task).await?;
    ctx.out.show(&detail, &detail.task.id.to_string(), || {
        let t = &detail.task;
        let mut text = format!(
            "task      {} (index {} of job {})\n",
            t.id, t.index, t.job_id
        );
        text.push_str(&format!("queue     {} (tenant {})\n", t.queue, t.tenant));
        text.push_str(&format!(
            "state     {}{}\n",
            t.state,
            if t.cancel_requested {
                " (cancel requested)"
            } else {
                ""
            }
        ));
        text.push_str(&format!(
            "attempts  {} ({} failed of {} allowed, {} preempted)\n",
            t.attempt, t.failures, t.max_attempts, t.preemptions
        ));
        if let Some(error) = &t.last_error {
            text.push_str(&format!("error     {error}\n"));
        }
        text.push_str(&format!("created   {}\n", output::time(&t.created_at)));
        text.push_str(&format!(
            "finished  {}\n",
            opt(t.finished_at.as_ref().map(output::time))
        ));
        text.push('\n');
        if detail.attempts.is_empty() {
            text.push_str("no attempts yet: `spillway why ");
            text.push_str(&format!("{}` says what it waits for\n", t.id));
        } else {
            text.push_str(&ctx.out.table_text(&detail.attempts, ATTEMPT_COLUMNS));
            text.push_str(&format!("logs: spillway logs {} --attempt N\n", t.id));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `spillway cancel JOB...`, or `spillway cancel --label … --state …`.
pub async fn cancel(ctx: &Ctx, args: CancelArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let by_filter = !args.label.is_empty() || args.queue.is_some() || args.state.is_some();
    let outcome = match (args.jobs.is_empty(), by_filter) {
        (true, false) => bail!(
            "say which jobs to cancel: give job ids, or select them with --label, --queue or --state (add --dry-run to see them first)"
        ),
        (false, true) => bail!(
            "give job ids or --label/--queue/--state, not both: a filter already names the jobs"
        ),
        (false, false) => {
            let mut jobs = Vec::with_capacity(args.jobs.len());
            for id in &args.jobs {
                let job = if args.dry_run {
                    client.job_get(id).await
                } else {
                    client.job_cancel(id).await
                }
                .with_context(|| format!("cannot cancel job {id}"))?;
                jobs.push(job.id);
            }
            JobsCancelled {
                jobs,
                dry_run: args.dry_run,
            }
        }
        (true, true) => {
            client
                .job_cancel_matching(&CancelJobs {
                    labels: args.label.iter().map(ToString::to_string).collect(),
                    queue: args.queue.clone(),
                    state: args.state,
                    dry_run: args.dry_run,
                    tenant: ctx.tenant.clone(),
                })
                .await?
        }
    };
    let verb = if outcome.dry_run {
        "would cancel"
    } else {
        "cancelled"
    };
    let mut hints = vec![format!("{verb} {} jobs", outcome.jobs.len())];
    if outcome.dry_run && !outcome.jobs.is_empty() {
        hints.push("run again without --dry-run to cancel them".to_string());
    }
    ctx.out.list(
        &outcome,
        &outcome.jobs,
        &[Column::new("JOB", |id: &String| id.clone())],
        |id| id.clone(),
        &hints,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `spillway retry JOB`.
pub async fn retry(ctx: &Ctx, args: JobIdArg) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let changed = client.job_retry(&args.job).await?;
    ctx.out.done(
        &changed,
        &args.job,
        &format!("requeued {} tasks of job {}", changed.changed, args.job),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `spillway results JOB [--index N] [--download DIR]`.
pub async fn results(ctx: &Ctx, args: ResultsArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let job = client.job_get(&args.job).await?;
    let mut files = client.job_result_list(&job.id).await?;
    if let Some(index) = args.index {
        if index >= job.task_count {
            bail!(
                "job {} has {} tasks (indexes 0 to {}): --index {index} is none of them",
                job.id,
                job.task_count,
                job.task_count.saturating_sub(1)
            );
        }
        let prefix = format!("{index}/");
        files.retain(|f| f.path.starts_with(&prefix));
    }
    if let Some(dir) = &args.download {
        for file in &files {
            spillway_core::keys::validate_relative_path(&file.path)?;
            let (index, path) = file
                .path
                .split_once('/')
                .with_context(|| format!("unexpected result path {:?}", file.path))?;
            let index: u32 = index
                .parse()
                .with_context(|| format!("unexpected result path {:?}", file.path))?;
            let dest = dir.join(&file.path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let stream = client.job_result_get(&job.id, index, path).await?;
            spillway_client::stream_to_file(stream, &dest).await?;
        }
        if !ctx.out.is_machine() {
            println!(
                "downloaded {} result files of job {} into {}",
                files.len(),
                job.id,
                dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let which = args
        .index
        .map_or_else(|| "<index>".to_string(), |i| i.to_string());
    let hints = [format!(
        "{} result files under {}/results/{}/{which}/; download with: spillway results {}{} --download DIR",
        files.len(),
        job.tenant,
        job.id,
        job.id,
        args.index
            .map_or_else(String::new, |i| format!(" --index {i}"))
    )];
    ctx.out.list(
        &files,
        &files,
        &[
            Column::new("PATH", |f: &ObjectInfo| f.path.clone()),
            Column::new("BYTES", |f: &ObjectInfo| f.size.to_string()),
        ],
        |f| f.path.clone(),
        &hints,
    )?;
    Ok(ExitCode::SUCCESS)
}

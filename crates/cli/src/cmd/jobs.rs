//! Reading and steering jobs: `jobs`, `job`, `tasks`, `cancel`, `retry`, `results`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use spillway_client::{JobListQuery, TaskListQuery};
use spillway_core::model::{Job, Task};
use spillway_core::state::{JobState, TaskState};

use super::Ctx;
use crate::output::{self, opt};

/// Options of `spillway jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs of this queue.
    #[arg(short, long)]
    queue: Option<String>,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    #[arg(short, long, value_parser = |s: &str| JobState::parse(s).map_err(|e| e.to_string()))]
    state: Option<JobState>,
    /// Only jobs with this label `key=value`.
    #[arg(long, value_name = "KEY=VALUE")]
    label: Option<String>,
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

/// Options of `spillway results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The job's id.
    job: String,
    /// Download every result file into this folder (as `<index>/<path>`).
    #[arg(long, value_name = "DIR")]
    download: Option<PathBuf>,
}

fn progress_cell(job: &Job) -> String {
    format!("{}/{}", job.counts.finished(), job.task_count)
}

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
    if let Some(label) = args.label {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("label {label:?} is not of the form KEY=VALUE"))?;
        query.labels.insert(k.to_string(), v.to_string());
    }
    let page = client.job_list(&query).await?;
    if ctx.json {
        output::json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&["JOB", "QUEUE", "NAME", "STATE", "DONE", "DEAD", "CREATED"]);
    for job in &page.items {
        table.add_row(vec![
            job.id.clone(),
            job.queue.clone(),
            opt(job.name.clone()),
            job.state.to_string(),
            progress_cell(job),
            job.counts.dead.to_string(),
            output::time(&job.created_at),
        ]);
    }
    println!("{table}");
    if let Some(cursor) = page.next_cursor {
        println!("more: spillway jobs --cursor {cursor}");
    }
    Ok(ExitCode::SUCCESS)
}

fn task_table(tasks: &[Task]) -> comfy_table::Table {
    let mut table = output::table(&[
        "TASK", "INDEX", "STATE", "ATTEMPT", "FAILURES", "EXIT", "WORKER", "ERROR",
    ]);
    for t in tasks {
        table.add_row(vec![
            t.id.to_string(),
            t.index.to_string(),
            t.state.to_string(),
            t.attempt.to_string(),
            t.failures.to_string(),
            opt(t.exit_code),
            opt(t.lease.as_ref().map(|l| l.worker_id.clone())),
            opt(t.last_error.clone()),
        ]);
    }
    table
}

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
    if ctx.json {
        output::json(&serde_json::json!({ "job": job, "tasks": tasks.items }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &job.counts;
    println!("job       {}", job.id);
    println!("name      {}", opt(job.name.clone()));
    println!("queue     {} (tenant {})", job.queue, job.tenant);
    println!(
        "state     {}{}",
        job.state,
        if job.cancel_requested {
            " (cancel requested)"
        } else {
            ""
        }
    );
    println!("command   {}", job.spec.command.join(" "));
    println!(
        "tasks     {} total: {} waiting, {} running, {} retrying, {} succeeded, {} dead, {} cancelled",
        job.task_count,
        c.available + c.scheduled,
        c.leased,
        c.retrying,
        c.succeeded,
        c.dead,
        c.cancelled
    );
    println!(
        "priority  {}{}",
        job.priority,
        if job.burstable { ", burstable" } else { "" }
    );
    println!("created   {}", output::time(&job.created_at));
    println!(
        "finished  {}",
        opt(job.finished_at.as_ref().map(output::time))
    );
    if !job.labels.is_empty() {
        let labels: Vec<String> = job.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("labels    {}", labels.join(", "));
    }
    // One look-up for the first waiting task says what holds the waiting tasks; a server
    // without /why (older) just leaves the line out.
    if let Some(waiting) = tasks.items.iter().find(|t| t.state.is_waiting())
        && let Ok(why) = client.task_why(waiting.id).await
        && let Some(reason) = why.reasons.first()
    {
        println!(
            "waiting   {} (task {}; `spillway why {}`)",
            reason.message, waiting.id, waiting.id
        );
    }
    println!();
    println!("{}", task_table(&tasks.items));
    if tasks.next_cursor.is_some() {
        println!("more: spillway tasks {}", job.id);
    }
    Ok(ExitCode::SUCCESS)
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
    if ctx.json {
        output::json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", task_table(&page.items));
    if let Some(cursor) = page.next_cursor {
        println!("more: spillway tasks {} --cursor {cursor}", args.job);
    }
    Ok(ExitCode::SUCCESS)
}

/// `spillway cancel JOB`.
pub async fn cancel(ctx: &Ctx, args: JobIdArg) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let job = client.job_cancel(&args.job).await?;
    if ctx.json {
        output::json(&job)?;
    } else {
        println!(
            "cancelled job {}: {} tasks cancelled, {} running tasks told to stop",
            job.id, job.counts.cancelled, job.counts.leased
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `spillway retry JOB`.
pub async fn retry(ctx: &Ctx, args: JobIdArg) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let changed = client.job_retry(&args.job).await?;
    if ctx.json {
        output::json(&changed)?;
    } else {
        println!("requeued {} tasks of job {}", changed.changed, args.job);
    }
    Ok(ExitCode::SUCCESS)
}

/// `spillway results JOB [--download DIR]`.
pub async fn results(ctx: &Ctx, args: ResultsArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let job = client.job_get(&args.job).await?;
    let files = client.job_result_list(&job.id).await?;
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
        if !ctx.json {
            println!(
                "downloaded {} result files of job {} into {}",
                files.len(),
                job.id,
                dir.display()
            );
        }
    }
    if ctx.json {
        output::json(&files)?;
    } else if args.download.is_none() {
        let mut table = output::table(&["PATH", "BYTES"]);
        for f in &files {
            table.add_row(vec![f.path.clone(), f.size.to_string()]);
        }
        println!("{table}");
        println!(
            "{} result files under {}/results/{}/<index>/; download with: spillway results {} --download DIR",
            files.len(),
            job.tenant,
            job.id,
            job.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

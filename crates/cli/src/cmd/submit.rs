//! `spillway submit`: upload inputs, submit a job, and optionally watch it to the end;
//! `spillway wait`: watch a job submitted before.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use spillway_client::Client;
use spillway_core::api::{NewTask, SubmitJob};
use spillway_core::model::Job;
use spillway_core::state::JobState;

use super::Ctx;
use super::task_spec::{TaskSpecArgs, parse_pair};
use crate::output;

/// How often `--wait` asks the server for the job's progress.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// Options of `spillway submit`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  spillway submit -- echo hello
  spillway submit --count 100 -- python3 task.py --shard {index}
  spillway submit --from tasks.jsonl --input data/ --wait -- python3 task.py
  spillway submit --shell --timeout 10m -- 'make -C build && ./run.sh'")]
pub struct SubmitArgs {
    /// The command and its arguments, after `--`. `{index}` is replaced by each task's index.
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<String>,
    /// Queue to submit to.
    #[arg(short, long, default_value = "default", env = "SPILLWAY_QUEUE")]
    queue: String,
    /// Number of tasks (each gets its index as `{index}` and $SPILLWAY_TASK_INDEX).
    #[arg(short = 'n', long, conflicts_with = "from")]
    count: Option<u32>,
    /// A JSON Lines file with one payload per line, one task per line (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// A file or folder to upload as the job's inputs (repeatable). A folder keeps its name:
    /// `--input data/` appears to tasks as `$SPILLWAY_INPUT_DIR/data/…`.
    #[arg(long, value_name = "PATH")]
    input: Vec<PathBuf>,
    /// Allow the tasks to run on burst (cloud) capacity.
    #[arg(long)]
    burstable: bool,
    /// Higher runs first (-1000 to 1000).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// A label `key=value` to filter jobs by (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_pair)]
    label: Vec<(String, String)>,
    /// Do not start before this delay (e.g. `5m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    #[command(flatten)]
    spec: TaskSpecArgs,
    /// Submitting again with the same key returns the first job instead of a new one.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Delete the uploaded inputs once every task has succeeded.
    #[arg(long)]
    delete_inputs: bool,
    /// Show a progress bar until the job finishes; exit 1 if any task ended dead or cancelled.
    #[arg(short, long)]
    wait: bool,
}

/// Read one payload per non-empty line.
fn read_payloads(path: &Path) -> Result<Vec<NewTask>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut tasks = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let payload: serde_json::Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {} of {} is not valid JSON: each line must be one task's payload",
                n + 1,
                path.display()
            )
        })?;
        tasks.push(NewTask {
            payload: Some(payload),
        });
    }
    if tasks.is_empty() {
        bail!(
            "{} has no payloads: write one JSON value per line",
            path.display()
        );
    }
    Ok(tasks)
}

/// Every file to upload: (local path, relative object path).
fn input_files(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read folder {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel}/{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), &rel, out)?;
            } else if kind.is_file() {
                out.push((entry.path(), rel));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input)
            .with_context(|| format!("input {} does not exist", input.display()))?;
        let name = input
            .canonicalize()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("input {} has no name", input.display()))?;
        if meta.is_dir() {
            walk(input, &name, &mut files)?;
        } else {
            files.push((input.clone(), name));
        }
    }
    for (_, rel) in &files {
        spillway_core::keys::validate_relative_path(rel)?;
    }
    Ok(files)
}

/// Submit a job.
pub async fn run(ctx: &Ctx, args: SubmitArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let tasks = args.from.as_deref().map(read_payloads).transpose()?;
    let files = input_files(&args.input)?;

    let mut request = SubmitJob::command(&args.queue, args.command.clone());
    request.tenant = ctx.tenant.clone();
    request.name = args.name.clone();
    request.count = args.count;
    request.tasks = tasks;
    request.priority = args.priority;
    request.burstable = args.burstable;
    request.labels = args.label.iter().cloned().collect();
    request.idempotency_key = args.idempotency_key.clone();
    request.delete_inputs_on_success = args.delete_inputs;
    request.delay = args.delay;
    request.spec = args.spec.spec(args.command.clone());
    // Check locally first, so nothing is uploaded for a request the server would refuse.
    request.validate(usize::MAX)?;

    if !files.is_empty() {
        let upload = client.upload_create().await?;
        let bar = progress(files.len() as u64, "uploading inputs");
        for (path, rel) in &files {
            let (body, size) = spillway_client::file_body(path).await?;
            client
                .upload_put_file(&upload.upload_id, rel, body, Some(size))
                .await
                .with_context(|| format!("cannot upload {}", path.display()))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        request.upload_id = Some(upload.upload_id);
    }

    let submitted = client.job_submit(&request).await?;
    let job = submitted.job;
    if !args.wait {
        if ctx.out.is_machine() {
            ctx.out.show(&job, &job.id, String::new)?;
        } else if submitted.created {
            println!(
                "submitted job {} ({} tasks) to queue {}",
                job.id, job.task_count, job.queue
            );
            println!("watch it with: spillway job {}", job.id);
        } else {
            println!("job {} already exists for this idempotency key", job.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !ctx.out.is_machine() {
        eprintln!("submitted job {} ({} tasks)", job.id, job.task_count);
    }
    let finished = wait_for(&client, &job, ctx.out.is_machine()).await?;
    Ok(report(ctx, &finished))
}

/// Exit code of `spillway wait` when `--timeout` passed before the job finished.
pub const WAIT_TIMED_OUT: u8 = 2;

/// Options of `spillway wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The job's id (as `spillway submit` printed it).
    job: String,
    /// Give up after this long (e.g. `30m`) with exit code 2; the job goes on running.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
}

/// Wait for a submitted job as `submit --wait` does: a progress bar on a terminal, then the
/// outcome; exit 0 if every task succeeded, 1 if not, 2 on `--timeout`.
pub async fn wait(ctx: &Ctx, args: WaitArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let job = client.job_get(&args.job).await?;
    let waiting = wait_for(&client, &job, ctx.out.is_machine());
    let finished = match args.timeout {
        None => waiting.await?,
        Some(limit) => match tokio::time::timeout(limit, waiting).await {
            Ok(finished) => finished?,
            Err(_) => {
                eprintln!(
                    "job {} is still {} after {}: it goes on; wait again with: spillway wait {}",
                    job.id,
                    client.job_get(&job.id).await.map_or(job.state, |j| j.state),
                    humantime::format_duration(limit),
                    job.id
                );
                return Ok(ExitCode::from(WAIT_TIMED_OUT));
            }
        },
    };
    Ok(report(ctx, &finished))
}

fn progress(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Poll the job until every task is finished, showing a progress bar on a terminal.
pub async fn wait_for(client: &Client, job: &Job, quiet: bool) -> Result<Job> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        progress(u64::from(job.task_count), "running")
    };
    let mut misses = 0u32;
    loop {
        let current = match client.job_get(&job.id).await {
            Ok(job) => {
                misses = 0;
                job
            }
            // The server may be restarting; keep waiting for a while instead of giving up.
            Err(err) if err.is_retryable() && misses < 120 => {
                misses += 1;
                bar.set_message(format!("server unreachable, retrying: {err}"));
                tokio::time::sleep(WAIT_POLL).await;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        let c = &current.counts;
        bar.set_position(c.finished());
        bar.set_message(format!(
            "waiting {} running {} succeeded {} dead {}",
            c.available + c.scheduled + c.retrying,
            c.leased,
            c.succeeded,
            c.dead
        ));
        if current.state.is_final() {
            bar.finish_and_clear();
            return Ok(current);
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Print the outcome of a finished job; the exit code is 1 unless every task succeeded.
fn report(ctx: &Ctx, job: &Job) -> ExitCode {
    if ctx.out.is_machine() {
        let _ = ctx.out.show(job, &job.id, String::new);
    } else {
        let c = &job.counts;
        let took = job
            .finished_at
            .map(|f| (f - job.created_at).num_milliseconds() as f64 / 1000.0)
            .map_or_else(String::new, |s| format!(" in {}", output::seconds(s)));
        println!(
            "job {} {}{}: {} succeeded, {} dead, {} cancelled",
            job.id, job.state, took, c.succeeded, c.dead, c.cancelled
        );
        println!("results: spillway results {}", job.id);
        if c.dead > 0 {
            println!(
                "failures: spillway tasks {} --state dead, then spillway logs TASK",
                job.id
            );
        }
    }
    if job.state == JobState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

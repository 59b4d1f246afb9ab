//! `spillway logs TASK`: the whole log of a task's attempt, or following it live.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use spillway_client::LogEvent;
use tokio::io::AsyncWriteExt;

use super::Ctx;

/// Options of `spillway logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The task's id.
    task: i64,
    /// Which attempt (default: the latest).
    #[arg(long)]
    attempt: Option<u32>,
    /// Print the log so far, then what the task prints as it runs, until the attempt ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// `spillway logs TASK [--attempt N] [--follow]`. The log is the task's own output, written
/// to stdout as it is; with `--follow` the attempt's end is said on stderr.
pub async fn run(ctx: &Ctx, args: LogsArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let mut out = tokio::io::stdout();
    let write_err = "could not write the log to stdout";
    if args.follow {
        let mut events = client.task_log_follow(args.task, args.attempt).await?;
        while let Some(event) = events.next().await {
            match event? {
                LogEvent::Text(text) => {
                    out.write_all(text.as_bytes()).await.context(write_err)?;
                    out.flush().await.context(write_err)?;
                }
                LogEvent::End { attempt, outcome } => {
                    eprintln!("attempt {attempt} of task {} ended: {outcome}", args.task);
                    break;
                }
            }
        }
    } else {
        let mut log = client.task_log_full(args.task, args.attempt).await?;
        while let Some(part) = log.next().await {
            out.write_all(&part?).await.context(write_err)?;
        }
        out.flush().await.context(write_err)?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `spillway dead`: list dead letters and requeue them.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use spillway_client::DeadListQuery;
use spillway_core::api::RequeueRequest;

use super::Ctx;
use crate::output::{self, opt};

/// Options of `spillway dead`.
#[derive(Debug, Args)]
pub struct DeadArgs {
    #[command(subcommand)]
    action: Option<DeadAction>,
    /// Only dead tasks of this queue.
    #[arg(short, long, global = true)]
    queue: Option<String>,
    /// How many to list.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
enum DeadAction {
    /// List dead tasks (the default).
    List,
    /// Requeue dead tasks: the ids given, or with --all every dead task of --queue.
    Requeue {
        /// Task ids.
        tasks: Vec<i64>,
        /// Requeue every dead task of the queue named by --queue.
        #[arg(long)]
        all: bool,
    },
}

/// Run `spillway dead`.
pub async fn run(ctx: &Ctx, args: DeadArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    match args.action.unwrap_or(DeadAction::List) {
        DeadAction::List => {
            let page = client
                .dead_list(&DeadListQuery {
                    queue: args.queue,
                    limit: Some(args.limit),
                    cursor: args.cursor,
                })
                .await?;
            if ctx.json {
                output::json(&page)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut table =
                output::table(&["TASK", "JOB", "INDEX", "QUEUE", "FAILURES", "EXIT", "ERROR"]);
            for t in &page.items {
                table.add_row(vec![
                    t.id.to_string(),
                    t.job_id.clone(),
                    t.index.to_string(),
                    t.queue.clone(),
                    t.failures.to_string(),
                    opt(t.exit_code),
                    opt(t.last_error.clone()),
                ]);
            }
            println!("{table}");
            if let Some(cursor) = page.next_cursor {
                println!("more: spillway dead --cursor {cursor}");
            }
        }
        DeadAction::Requeue { tasks, all } => {
            if all != tasks.is_empty() {
                bail!("name dead task ids, or pass --all with --queue to requeue a whole queue");
            }
            if all && args.queue.is_none() {
                bail!("--all needs --queue: say which queue's dead tasks to requeue");
            }
            let changed = client
                .dead_requeue(&RequeueRequest {
                    task_ids: tasks,
                    queue: if all { args.queue } else { None },
                    tenant: ctx.tenant.clone(),
                })
                .await?;
            if ctx.json {
                output::json(&changed)?;
            } else {
                println!("requeued {} dead tasks", changed.changed);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

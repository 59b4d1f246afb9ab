//! `spillway dead`: list dead letters and requeue them.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use spillway_client::DeadListQuery;
use spillway_core::api::RequeueRequest;
use spillway_core::model::Task;
use spillway_core::names::LabelSelector;

use super::Ctx;
use crate::output::{self, Column, opt};

/// Options of `spillway dead`.
#[derive(Debug, Args)]
pub struct DeadArgs {
    #[command(subcommand)]
    action: Option<DeadAction>,
    /// Only dead tasks of this queue.
    #[arg(short, long, global = true)]
    queue: Option<String>,
    /// Only dead tasks whose job has this label: `key=value`, or `key` for any value
    /// (repeatable: all must match).
    #[arg(short = 'l', long, value_name = "KEY[=VALUE]", value_parser = parse_selector)]
    label: Vec<LabelSelector>,
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

/// The columns of `spillway dead`.
const COLUMNS: &[Column<Task>] = &[
    Column::new("TASK", |t| t.id.to_string()),
    Column::new("JOB", |t| t.job_id.clone()),
    Column::new("INDEX", |t| t.index.to_string()),
    Column::new("QUEUE", |t| t.queue.clone()),
    Column::new("FAILURES", |t| t.failures.to_string()),
    Column::new("EXIT", |t| opt(t.exit_code)),
    Column::new("ERROR", |t| opt(t.last_error.clone())),
    Column::wide("ATTEMPTS", |t| t.attempt.to_string()),
    Column::wide("FINISHED", |t| {
        opt(t.finished_at.as_ref().map(output::time))
    }),
];

fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    LabelSelector::parse(text).map_err(|e| e.to_string())
}

/// Run `spillway dead`.
pub async fn run(ctx: &Ctx, args: DeadArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    match args.action.unwrap_or(DeadAction::List) {
        DeadAction::List => {
            let page = client
                .dead_list(&DeadListQuery {
                    queue: args.queue,
                    labels: args.label.iter().map(ToString::to_string).collect(),
                    limit: Some(args.limit),
                    cursor: args.cursor,
                })
                .await?;
            let hints: Vec<String> = page
                .next_cursor
                .iter()
                .map(|cursor| format!("more: spillway dead --cursor {cursor}"))
                .collect();
            ctx.out
                .list(&page, &page.items, COLUMNS, |t| t.id.to_string(), &hints)?;
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
            let count = changed.changed.to_string();
            ctx.out
                .done(&changed, &count, &format!("requeued {count} dead tasks"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `spillway workers`: the workers the server knows, with their state and load.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use spillway_core::model::{Worker, WorkerState};

use super::Ctx;
use crate::output::{self, Column};

/// Options of `spillway workers`.
#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Only workers of this pool.
    #[arg(short, long)]
    pool: Option<String>,
    /// Only workers in this state (active, draining, down, exited).
    #[arg(short, long, value_parser = |s: &str| WorkerState::parse(s).map_err(|e| e.to_string()))]
    state: Option<WorkerState>,
}

/// The columns of `spillway workers`.
const COLUMNS: &[Column<Worker>] = &[
    Column::new("WORKER", |w| w.id.clone()),
    Column::new("POOL", |w| w.pool.clone()),
    Column::new("HOST", |w| w.hostname.clone()),
    Column::new("STATE", |w| w.state.as_str().to_string()),
    Column::new("RUNNING", |w| format!("{}/{}", w.running, w.concurrency)),
    Column::new("LAST HEARTBEAT", |w| output::time(&w.last_seen)),
    Column::wide("TENANT", |w| w.tenant.clone()),
    Column::wide("QUEUES", |w| w.queues.join(",")),
    Column::wide("STARTED", |w| output::time(&w.started_at)),
];

/// Run `spillway workers`.
pub async fn run(ctx: &Ctx, args: WorkersArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let mut list = client.worker_list().await?;
    list.workers.retain(|w| {
        args.pool.as_ref().is_none_or(|p| &w.pool == p) && args.state.is_none_or(|s| w.state == s)
    });
    let hints = if list.workers.is_empty() {
        vec![
            "no workers: start one with `spillway worker --queue default`, or let `spillway up` or a pool start them".to_string(),
        ]
    } else {
        Vec::new()
    };
    ctx.out
        .list(&list, &list.workers, COLUMNS, |w| w.id.clone(), &hints)?;
    Ok(ExitCode::SUCCESS)
}

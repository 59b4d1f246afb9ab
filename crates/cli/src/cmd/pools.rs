//! `spillway pools`: what the autoscaler has and decides per pool, and changing a pool's
//! bounds.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use spillway_core::api::{PoolStatus, PoolUpdate};

use super::Ctx;
use crate::output::{self, Column};

/// Options of `spillway pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    #[command(subcommand)]
    action: Option<PoolAction>,
}

#[derive(Debug, Subcommand)]
enum PoolAction {
    /// List pools with their sizes and latest decision (the default).
    List {
        /// Also print each pool's recent decisions with their reasons.
        #[arg(long)]
        decisions: bool,
    },
    /// Change a pool's bounds; the server keeps them across restarts and on every replica
    /// until `--reset`.
    #[command(
        after_help = "Examples:\n  spillway pools set home --min 1 --max 8\n  spillway pools set home --reset"
    )]
    Set {
        /// The pool's name.
        name: String,
        /// Fewest workers kept, even with no work.
        #[arg(long)]
        min: Option<u32>,
        /// Most workers.
        #[arg(long)]
        max: Option<u32>,
        /// Go back to the bounds spillway.toml gives the pool.
        #[arg(long, conflicts_with_all = ["min", "max"])]
        reset: bool,
    },
}

/// Run `spillway pools`.
pub async fn run(ctx: &Ctx, args: PoolsArgs) -> Result<ExitCode> {
    let client = ctx.client()?;
    match args.action.unwrap_or(PoolAction::List { decisions: false }) {
        PoolAction::List { decisions } => {
            let pools = client.pool_list().await?;
            if pools.is_empty() && !ctx.out.is_machine() {
                println!(
                    "no pools: add [[pools]] to spillway.toml to let the server scale workers (see docs/autoscaling.md)"
                );
            } else {
                let hints: Vec<String> = if decisions {
                    vec![decision_lines(&pools)]
                } else {
                    Vec::new()
                };
                ctx.out
                    .list(&pools, &pools, COLUMNS, |p| p.name.clone(), &hints)?;
            }
        }
        PoolAction::Set {
            name,
            min,
            max,
            reset,
        } => {
            if min.is_none() && max.is_none() && !reset {
                bail!(
                    "nothing to change: give --min N, --max N or both, or --reset for the configured bounds"
                );
            }
            let pool = client
                .pool_update(&name, &PoolUpdate { min, max, reset })
                .await?;
            ctx.out.done(
                &pool,
                &pool.name,
                &format!(
                    "pool {}: min {}, max {} (desired {}, actual {})",
                    pool.name, pool.min, pool.max, pool.desired, pool.actual
                ),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The latest decision of a pool, or the problem that stops it.
fn last_decision(p: &PoolStatus) -> String {
    match (p.decisions.last(), p.problems.first()) {
        (_, Some(problem)) => format!("problem: {problem}"),
        (Some(d), None) => format!("{} {}", output::time(&d.at), d.reason),
        (None, None) => "-".to_string(),
    }
}

/// The columns of the pools table.
const COLUMNS: &[Column<PoolStatus>] = &[
    Column::new("NAME", |p| p.name.clone()),
    Column::new("PROVIDER", |p| p.provider.clone()),
    Column::new("TIER", |p| p.tier.to_string()),
    Column::new("MIN", |p| p.min.to_string()),
    Column::new("MAX", |p| p.max.to_string()),
    Column::new("DESIRED", |p| p.desired.to_string()),
    Column::new("ACTUAL", |p| p.actual.to_string()),
    Column::new("BUSY", |p| p.busy.to_string()),
    Column::new("IDLE", |p| p.idle.to_string()),
    Column::new("DRAINING", |p| p.draining.to_string()),
    Column::new("DOWN", |p| p.down.to_string()),
    Column::new("LAST DECISION", last_decision),
    Column::wide("DECISIONS", |p| p.decisions.len().to_string()),
];

/// Every pool's recorded decisions, oldest first, one per line.
pub fn decision_lines(pools: &[PoolStatus]) -> String {
    let mut out = String::new();
    for p in pools {
        out.push_str(&format!("\n{}:\n", p.name));
        if p.decisions.is_empty() {
            out.push_str("  no change of size yet\n");
        }
        for d in &p.decisions {
            out.push_str(&format!(
                "  {}  {} → {}  {}\n",
                output::time(&d.at),
                d.from,
                d.to,
                d.reason
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use spillway_core::api::PoolDecisionRecord;

    use super::*;
    use crate::output::Printer;

    fn table(pools: &[PoolStatus]) -> String {
        Printer::default().table_text(pools, COLUMNS)
    }

    fn pool(problems: Vec<String>) -> PoolStatus {
        PoolStatus {
            name: "home".into(),
            provider: "local".into(),
            tier: 0,
            min: 0,
            max: 4,
            desired: 4,
            actual: 3,
            busy: 2,
            idle: 1,
            draining: 0,
            down: 0,
            problems,
            decisions: vec![PoolDecisionRecord {
                at: Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap(),
                from: 0,
                to: 4,
                reason: "0 → 4: backlog 40, mean 60 s assumed, drain target 60 s".into(),
            }],
        }
    }

    #[test]
    fn table_shows_sizes_and_the_latest_reason() {
        let text = table(&[pool(vec![])]).to_string();
        assert!(text.contains("LAST DECISION"), "{text}");
        assert!(text.contains("backlog 40"), "{text}");
        let lines = decision_lines(&[pool(vec![])]);
        assert!(lines.contains("0 → 4"), "{lines}");
    }

    #[test]
    fn a_provider_problem_replaces_the_last_decision() {
        let text = table(&[pool(vec!["quota reached".into()])]).to_string();
        assert!(text.contains("problem: quota reached"), "{text}");
    }
}

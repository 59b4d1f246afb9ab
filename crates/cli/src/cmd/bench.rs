//! `spillway bench`: queue throughput and latency on SQLite and PostgreSQL.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Ctx;

/// Options of `spillway bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Run the benchmark.
pub async fn run(_ctx: &Ctx, _args: BenchArgs) -> Result<ExitCode> {
    anyhow::bail!("the benchmark is not built into this binary yet")
}

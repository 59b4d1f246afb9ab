//! Black-box end-to-end tests: the real `spillway` binary started as child processes (server,
//! workers, `up`, the CLI), spoken to over HTTP on 127.0.0.1 the way a user would.
//!
//! Each test has its own data directory and port, kills its children when it ends, and
//! waits on conditions with deadlines, never on sleeps. The PostgreSQL tests need
//! `SPILLWAY_TEST_POSTGRES_URL` (scripts/test provides it). The fault runs of `history`
//! are checked by a recording proxy; `SPILLWAY_FAULT_TASKS` sets their size.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

#[path = "e2e/autoscale.rs"]
mod autoscale;
#[path = "e2e/bench.rs"]
mod bench;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/commands.rs"]
mod commands;
#[path = "e2e/example.rs"]
mod example;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/history/mod.rs"]
mod history;
#[path = "e2e/logs.rs"]
mod logs;
#[path = "e2e/netns.rs"]
mod netns;
#[path = "e2e/otel.rs"]
mod otel;
#[path = "e2e/postgres.rs"]
mod postgres;
#[path = "e2e/pubsub.rs"]
mod pubsub;
#[path = "e2e/secrets.rs"]
mod secrets;
#[path = "e2e/soak.rs"]
mod soak;
#[path = "e2e/support.rs"]
mod support;
#[path = "e2e/task_process.rs"]
mod task_process;
#[path = "e2e/workers_down.rs"]
mod workers_down;

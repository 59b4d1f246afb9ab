//! Administration: `queues`, `tokens`, `tenants`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use spillway_core::api::{CreateQueue, CreateTenant, CreateToken, QueueView};
use spillway_core::auth::Role;
use spillway_core::model::{QueueSettings, Tenant, TokenInfo};

use super::Ctx;
use crate::output::{self, Column, opt};

/// Options of `spillway queues`.
#[derive(Debug, Args)]
pub struct QueuesArgs {
    #[command(subcommand)]
    action: Option<QueueAction>,
}

/// Queue settings that can be given on the command line.
#[derive(Debug, Args)]
struct SettingsArgs {
    /// Failed attempts before a task is dead (default 5).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Lease length without a heartbeat (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// Delay before the first retry, doubling after (default 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff_base: Option<Duration>,
    /// Longest delay between retries (default 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff_max: Option<Duration>,
    /// How long finished jobs are kept (default 7days).
    #[arg(long, value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
}

impl SettingsArgs {
    fn apply(&self, s: &mut QueueSettings) {
        if let Some(v) = self.max_attempts {
            s.max_attempts = v;
        }
        if let Some(v) = self.lease {
            s.lease_duration = v;
        }
        if let Some(v) = self.backoff_base {
            s.backoff_base = v;
        }
        if let Some(v) = self.backoff_max {
            s.backoff_max = v;
        }
        if let Some(v) = self.retention {
            s.retention = v;
        }
    }
}

#[derive(Debug, Subcommand)]
enum QueueAction {
    /// List queues with their task counts (the default).
    List,
    /// Create a queue.
    Create {
        /// Its name.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change a queue's settings.
    Update {
        /// Its name.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Stop leasing from a queue (it still accepts jobs).
    Pause {
        /// Its name.
        name: String,
    },
    /// Lease from a paused queue again.
    Resume {
        /// Its name.
        name: String,
    },
}

/// The columns of `spillway queues`.
const QUEUE_COLUMNS: &[Column<QueueView>] = &[
    Column::new("QUEUE", |q| q.name.clone()),
    Column::new("TENANT", |q| q.tenant.clone()),
    Column::new("WAITING", |q| {
        (q.stats.counts.available + q.stats.counts.scheduled).to_string()
    }),
    Column::new("RUNNING", |q| q.stats.counts.leased.to_string()),
    Column::new("RETRYING", |q| q.stats.counts.retrying.to_string()),
    Column::new("SUCCEEDED", |q| q.stats.counts.succeeded.to_string()),
    Column::new("DEAD", |q| q.stats.counts.dead.to_string()),
    Column::new("OLDEST", |q| {
        opt(q.stats.oldest_available_age_seconds.map(output::seconds))
    }),
    Column::new("PAUSED", |q| {
        if q.settings.paused { "yes" } else { "no" }.to_string()
    }),
    Column::wide("MAX ATTEMPTS", |q| q.settings.max_attempts.to_string()),
    Column::wide("LEASE", |q| {
        humantime::format_duration(q.settings.lease_duration).to_string()
    }),
    Column::wide("RETENTION", |q| {
        humantime::format_duration(q.settings.retention).to_string()
    }),
];

/// Run `spillway queues`.
pub async fn queues(ctx: &Ctx, args: QueuesArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    match args.action.unwrap_or(QueueAction::List) {
        QueueAction::List => {
            let queues = client.queue_list().await?;
            ctx.out
                .list(&queues, &queues, QUEUE_COLUMNS, |q| q.name.clone(), &[])?;
        }
        QueueAction::Create { name, settings } => {
            let mut s = QueueSettings::default();
            settings.apply(&mut s);
            let queue = client
                .queue_create(&CreateQueue {
                    name,
                    tenant: ctx.tenant.clone(),
                    settings: s,
                })
                .await?;
            ctx.out.done(
                &queue,
                &queue.name,
                &format!("created queue {}", queue.name),
            )?;
        }
        QueueAction::Update { name, settings } => {
            let mut s = client.queue_get(&name).await?.settings;
            settings.apply(&mut s);
            let queue = client.queue_update(&name, &s).await?;
            ctx.out.done(
                &queue,
                &queue.name,
                &format!("updated queue {}", queue.name),
            )?;
        }
        QueueAction::Pause { name } => {
            let mut s = client.queue_get(&name).await?.settings;
            s.paused = true;
            let queue = client.queue_update(&name, &s).await?;
            ctx.out
                .done(&queue, &queue.name, &format!("paused queue {}", queue.name))?;
        }
        QueueAction::Resume { name } => {
            let mut s = client.queue_get(&name).await?.settings;
            s.paused = false;
            let queue = client.queue_update(&name, &s).await?;
            ctx.out.done(
                &queue,
                &queue.name,
                &format!("resumed queue {}", queue.name),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `spillway tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    action: Option<TokenAction>,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// List tokens (never their secrets; the default).
    List,
    /// Create a token and print its secret once.
    Create {
        /// A name for people, e.g. `ci-submitter`.
        #[arg(long)]
        name: String,
        /// admin, submitter, worker, viewer or metrics (reads /metrics and pool sizes only;
        /// made by an admin of every tenant without --tenant, it sees every tenant's series).
        #[arg(long, value_parser = |s: &str| Role::parse(s).map_err(|e| e.to_string()))]
        role: Role,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `spillway tokens`).
        id: String,
    },
}

/// The columns of `spillway tokens`.
const TOKEN_COLUMNS: &[Column<TokenInfo>] = &[
    Column::new("ID", |t| t.id.clone()),
    Column::new("NAME", |t| t.name.clone()),
    Column::new("ROLE", |t| t.role.as_str().to_string()),
    Column::new("TENANT", |t| {
        t.tenant.clone().unwrap_or_else(|| "(all)".to_string())
    }),
    Column::new("CREATED", |t| output::time(&t.created_at)),
];

/// Run `spillway tokens`. The token's tenant is --tenant (or the caller's own).
pub async fn tokens(ctx: &Ctx, args: TokensArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    match args.action.unwrap_or(TokenAction::List) {
        TokenAction::List => {
            let tokens = client.token_list().await?;
            ctx.out
                .list(&tokens, &tokens, TOKEN_COLUMNS, |t| t.id.clone(), &[])?;
        }
        TokenAction::Create { name, role } => {
            let created = client
                .token_create(&CreateToken {
                    name,
                    role,
                    tenant: ctx.tenant.clone(),
                })
                .await?;
            if ctx.out.is_machine() {
                ctx.out.show(&created, &created.info.id, String::new)?;
            } else {
                println!("{}", created.token);
                eprintln!(
                    "token {} ({} in tenant {}): the secret above is shown only once",
                    created.info.id,
                    created.info.role.as_str(),
                    opt(created.info.tenant.clone())
                );
            }
        }
        TokenAction::Revoke { id } => {
            client.token_delete(&id).await?;
            if !ctx.out.is_machine() {
                println!("revoked token {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `spillway tenants`.
#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[command(subcommand)]
    action: Option<TenantAction>,
}

#[derive(Debug, Subcommand)]
enum TenantAction {
    /// List tenants (the default).
    List,
    /// Create a tenant.
    Create {
        /// Its name, also its storage prefix.
        name: String,
    },
}

/// Run `spillway tenants`.
pub async fn tenants(ctx: &Ctx, args: TenantsArgs) -> Result<ExitCode> {
    let client = ctx.client()?;
    match args.action.unwrap_or(TenantAction::List) {
        TenantAction::List => {
            let tenants = client.tenant_list().await?;
            ctx.out.list(
                &tenants,
                &tenants,
                &[
                    Column::new("TENANT", |t: &Tenant| t.name.clone()),
                    Column::new("CREATED", |t: &Tenant| output::time(&t.created_at)),
                ],
                |t| t.name.clone(),
                &[],
            )?;
        }
        TenantAction::Create { name } => {
            let tenant = client.tenant_create(&CreateTenant { name }).await?;
            ctx.out.done(
                &tenant,
                &tenant.name,
                &format!("created tenant {}", tenant.name),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

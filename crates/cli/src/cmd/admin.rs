//! Administration: `queues`, `tokens`, `tenants`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
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
        /// Expire the token this long from now: a whole number with s, m, h or d, e.g. 30d.
        #[arg(long, value_parser = parse_expires_in, conflicts_with = "expires_at")]
        expires_in: Option<Duration>,
        /// Expire the token at this time (RFC 3339, e.g. 2026-12-31T23:00:00Z).
        #[arg(long, value_parser = parse_expires_at)]
        expires_at: Option<DateTime<Utc>>,
        /// Limit the token to this queue of its tenant; repeat for several (default: every
        /// queue). Not for admin or metrics tokens.
        #[arg(long = "queue", value_name = "QUEUE")]
        queues: Vec<String>,
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
    Column::new("QUEUES", |t| {
        t.queues
            .as_ref()
            .map_or_else(|| "(all)".to_string(), |q| q.join(","))
    }),
    Column::new("CREATED", |t| output::time(&t.created_at)),
    Column::new("EXPIRES", |t| {
        t.expires_at
            .as_ref()
            .map_or_else(|| "never".to_string(), output::time)
    }),
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
        TokenAction::Create {
            name,
            role,
            expires_in,
            expires_at,
            queues,
        } => {
            let expires_at = match expires_in {
                Some(d) => Some(
                    Utc::now()
                        + chrono::Duration::from_std(d)
                            .context("--expires-in is too long: give at most a few years")?,
                ),
                None => expires_at,
            };
            let created = client
                .token_create(&CreateToken {
                    name,
                    role,
                    tenant: ctx.tenant.clone(),
                    expires_at,
                    queues: (!queues.is_empty()).then_some(queues),
                })
                .await?;
            if ctx.out.is_machine() {
                ctx.out.show(&created, &created.info.id, String::new)?;
            } else {
                println!("{}", created.token);
                let queues = created
                    .info
                    .queues
                    .as_ref()
                    .map(|q| format!(", queues {}", q.join(", ")))
                    .unwrap_or_default();
                let expires = created
                    .info
                    .expires_at
                    .as_ref()
                    .map(|at| format!(", expires {}", output::time(at)))
                    .unwrap_or_default();
                eprintln!(
                    "token {} ({} in tenant {}{queues}{expires}): the secret above is shown only once",
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

/// `--expires-in`: a whole number followed by s, m, h or d.
fn parse_expires_in(value: &str) -> std::result::Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration {value:?}: use a whole number followed by s, m, h or d, e.g. 90m or 30d"
        )
    };
    let split = value.len().saturating_sub(1);
    let (number, unit) = (value.get(..split).ok_or_else(invalid)?, &value[split..]);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let count: u64 = number.parse().map_err(|_| invalid())?;
    if count == 0 {
        return Err(format!(
            "duration {value:?} is zero: give a time ahead, e.g. 30d"
        ));
    }
    count
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

/// `--expires-at`: an RFC 3339 time.
fn parse_expires_at(value: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|e| {
            format!("invalid time {value:?} ({e}): use RFC 3339, e.g. 2026-12-31T23:00:00Z")
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_durations_take_s_m_h_d() {
        assert_eq!(parse_expires_in("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_expires_in("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_expires_in("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_expires_in("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in ["", "d", "30", "30w", "-1d", "1.5h", "0d", "30 d"] {
            let err = parse_expires_in(bad).expect_err(bad);
            assert!(err.contains("e.g."), "{bad}: {err}");
        }
        assert!(parse_expires_at("2026-12-31T23:00:00Z").is_ok());
        assert!(parse_expires_at("tomorrow").is_err());
    }
}

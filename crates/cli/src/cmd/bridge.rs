//! `spillway bridge pubsub`: turn the messages of a Pub/Sub subscription into tasks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use spillway_pubsub::bridge::{
    DEFAULT_CONCURRENCY, DEFAULT_DEADLINE_EXTENSION_SECS, DEFAULT_MAX_MESSAGES,
};
use spillway_pubsub::mapping::{self, subscription_scope};
use spillway_pubsub::outcomes::DEFAULT_OUTCOME_INTERVAL;
use spillway_pubsub::{
    BridgeConfig, BridgeStats, DataFormat, JobTemplate, OutcomeConfig, OutcomePublisher, PubSub,
    ReceivedMessage, run_bridge,
};
use tokio_util::sync::CancellationToken;

use super::task_spec::TaskSpecArgs;
use super::{Ctx, shutdown_signal};

/// Options of `spillway bridge`.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    #[command(subcommand)]
    command: BridgeCommand,
}

#[derive(Debug, Subcommand)]
enum BridgeCommand {
    /// Pull messages from a Pub/Sub subscription and submit each as a one-task job.
    #[command(
        long_about = "Pull messages from a Pub/Sub subscription and submit each as a one-task job on QUEUE.

Every job runs the command given after `--` (the same for every message). The message's data
becomes the task's payload (in $SPILLWAY_PAYLOAD and on stdin; see --data-format), its
attributes become job labels, and its message id the label pubsub.message_id.

A message is acknowledged only after the server has stored its job. A message delivered again
(after a crash or an expired deadline) finds the job its first delivery made: the idempotency
key is the subscription plus the message id, so no message is lost and none makes two jobs.

Messages that cannot be jobs (data not matching --data-format, or refused by the server) go to
--reject-topic and are acknowledged; without that flag they are left unacknowledged, so
Pub/Sub delivers them again after the ack deadline and its dead-letter policy on the
subscription can move them aside.

Credentials: application default credentials (service account on Compute Engine/GKE,
GOOGLE_APPLICATION_CREDENTIALS, or gcloud). With PUBSUB_EMULATOR_HOST set, the emulator is
used without credentials. The account needs roles/pubsub.subscriber on the subscription and
roles/pubsub.publisher on the outcome and reject topics.",
        after_help = "Examples:
  spillway bridge pubsub --subscription projects/acme/subscriptions/renders --queue renders \\
      -- python3 render.py
  spillway bridge pubsub --subscription projects/acme/subscriptions/renders --queue renders \\
      --outcome-topic projects/acme/topics/render-results \\
      --reject-topic projects/acme/topics/render-rejects --image python:3.12-slim -- python3 render.py
  PUBSUB_EMULATOR_HOST=127.0.0.1:8085 spillway bridge pubsub \\
      --subscription projects/test/subscriptions/s --queue default --data-format text -- cat"
    )]
    Pubsub(PubsubArgs),
}

/// Options of `spillway bridge pubsub`.
#[derive(Debug, Args)]
pub struct PubsubArgs {
    /// The command each task runs, after `--`; it reads the message data from
    /// $SPILLWAY_PAYLOAD or stdin.
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<String>,
    /// The subscription to pull from: projects/PROJECT/subscriptions/NAME.
    #[arg(long, value_name = "PATH")]
    subscription: String,
    /// The queue jobs are submitted to (it must exist).
    #[arg(short, long, env = "SPILLWAY_QUEUE")]
    queue: String,
    /// How message data becomes the JSON payload: `json` (the data is a JSON document, taken
    /// as is), `text` (UTF-8, as a JSON string) or `base64` (any bytes, as a base64 string).
    #[arg(long, default_value_t = DataFormat::Json, value_name = "FORMAT")]
    data_format: DataFormat,
    /// Most messages per pull (1 to 1000).
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGES)]
    max_messages: u32,
    /// Submits in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Ack deadline (seconds, 10 to 600) kept on messages while their jobs are being stored.
    #[arg(long, default_value_t = DEFAULT_DEADLINE_EXTENSION_SECS, value_name = "SECS")]
    ack_extension: u32,
    /// Publish messages that cannot become jobs here, then acknowledge them:
    /// projects/PROJECT/topics/NAME.
    #[arg(long, value_name = "PATH")]
    reject_topic: Option<String>,
    /// Publish one message per finished job here (job id, state, message id; at least once):
    /// projects/PROJECT/topics/NAME.
    #[arg(long, value_name = "PATH")]
    outcome_topic: Option<String>,
    /// The file recording which outcomes were published (default:
    /// DATA_DIR/pubsub/outcomes-<subscription hash>.ids). Keep it across restarts.
    #[arg(long, value_name = "FILE", requires = "outcome_topic")]
    outcome_state: Option<PathBuf>,
    /// How often finished jobs are looked for.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s", requires = "outcome_topic")]
    outcome_interval: Duration,
    /// Higher runs first (-1000 to 1000).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Allow the tasks to run on burst (cloud) capacity.
    #[arg(long)]
    burstable: bool,
    #[command(flatten)]
    spec: TaskSpecArgs,
}

/// Run a bridge until SIGTERM/SIGINT (the batch in progress is finished first).
pub async fn run(ctx: &Ctx, args: BridgeArgs) -> Result<ExitCode> {
    match args.command {
        BridgeCommand::Pubsub(args) => pubsub(ctx, args).await,
    }
}

async fn pubsub(ctx: &Ctx, args: PubsubArgs) -> Result<ExitCode> {
    let template = JobTemplate {
        queue: args.queue.clone(),
        spec: args.spec.spec(args.command.clone()),
        priority: args.priority,
        burstable: args.burstable,
        data_format: args.data_format,
    };
    let mut config = BridgeConfig::new(&args.subscription, template.clone());
    config.max_messages = args.max_messages;
    config.concurrency = args.concurrency;
    config.deadline_extension_secs = args.ack_extension;
    config.reject_topic = args.reject_topic.clone();
    config.validate()?;
    check_job_spec(&template, &args.subscription)?;

    let spillway = ctx.client()?.with_tenant(ctx.tenant.clone());
    let pubsub = PubSub::from_env().await?;
    tracing::info!(pubsub = %pubsub.base_url(), server = %ctx.server_url, "pubsub bridge starting");

    let publisher = match &args.outcome_topic {
        Some(topic) => {
            let state_file = args.outcome_state.clone().unwrap_or_else(|| {
                ctx.data_dir.join("pubsub").join(format!(
                    "outcomes-{}.ids",
                    subscription_scope(&args.subscription)
                ))
            });
            Some(
                OutcomePublisher::open(OutcomeConfig {
                    subscription: args.subscription.clone(),
                    queue: args.queue.clone(),
                    topic: topic.clone(),
                    state_file,
                    interval: if args.outcome_interval.is_zero() {
                        DEFAULT_OUTCOME_INTERVAL
                    } else {
                        args.outcome_interval
                    },
                })
                .context("cannot start the outcome publisher")?,
            )
        }
        None => None,
    };

    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping: finishing the batch in progress");
            cancel.cancel();
        });
    }
    let stats = Arc::new(BridgeStats::default());
    let bridge = async {
        let result = run_bridge(&pubsub, &spillway, &config, &stats, &cancel).await;
        // Whatever ended the bridge ends the outcome publisher too.
        cancel.cancel();
        result
    };
    let outcomes = async {
        match publisher {
            Some(publisher) => {
                let result = publisher.run(&pubsub, &spillway, &cancel).await;
                cancel.cancel();
                result
            }
            None => Ok(()),
        }
    };
    let (bridged, published) = tokio::join!(bridge, outcomes);
    tracing::info!(
        created = stats.created.load(Ordering::Relaxed),
        duplicates = stats.duplicates.load(Ordering::Relaxed),
        rejected = stats.rejected.load(Ordering::Relaxed),
        acked = stats.acked.load(Ordering::Relaxed),
        "pubsub bridge stopped"
    );
    bridged.context("the pubsub bridge stopped")?;
    published.context("the outcome publisher stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Check the job spec the flags make before pulling anything, so a bad flag does not turn
/// every message into a rejection.
fn check_job_spec(template: &JobTemplate, subscription: &str) -> Result<()> {
    let sample = ReceivedMessage {
        ack_id: String::new(),
        message_id: "0".into(),
        data: b"null".to_vec(),
        attributes: BTreeMap::new(),
        publish_time: None,
        delivery_attempt: None,
    };
    let format = DataFormat::Json;
    let sample_template = JobTemplate {
        data_format: format,
        ..template.clone()
    };
    let submit = mapping::submit_for(&sample_template, subscription, &sample)
        .map_err(|r| anyhow::anyhow!(r.reason))?;
    submit.validate(usize::MAX)?;
    Ok(())
}

//! `spillway why TASK`: where a task stands in its queue and why it is not running.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use spillway_core::api::TaskWhy;

use super::Ctx;
use crate::output;

/// Options of `spillway why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The task's id (see `spillway tasks JOB`).
    task: i64,
}

/// Run `spillway why`.
pub async fn run(ctx: &Ctx, args: WhyArgs) -> Result<ExitCode> {
    let client = ctx.client()?.with_tenant(ctx.tenant.clone());
    let why = client.task_why(args.task).await?;
    ctx.out
        .show(&why, &why.task_id.to_string(), || render(&why))?;
    Ok(ExitCode::SUCCESS)
}

/// The answer as lines for people.
pub fn render(why: &TaskWhy) -> String {
    let mut out = format!("task      {} ({})\n", why.task_id, why.state);
    out.push_str(&format!("queue     {}\n", why.queue));
    if let Some(position) = why.position {
        let ahead = match position {
            0 => "next to be leased".to_string(),
            1 => "1 task ahead".to_string(),
            n => format!("{n} tasks ahead"),
        };
        out.push_str(&format!("position  {ahead}\n"));
    }
    if let Some(at) = &why.estimated_start {
        out.push_str(&format!("expected  {}\n", output::time(at)));
    }
    if why.reasons.is_empty() {
        let words = if why.state.is_final() {
            "finished"
        } else {
            "running"
        };
        out.push_str(&format!("why       nothing is holding it: it is {words}\n"));
    }
    for (i, reason) in why.reasons.iter().enumerate() {
        let label = if i == 0 { "why" } else { "" };
        out.push_str(&format!("{label:<9} {}\n", reason.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use spillway_core::api::{WaitReason, WaitReasonKind};
    use spillway_core::state::TaskState;

    use super::*;

    #[test]
    fn renders_position_and_every_reason() {
        let why = TaskWhy {
            task_id: 42,
            state: TaskState::Available,
            queue: "default".into(),
            position: Some(3),
            estimated_start: None,
            reasons: vec![
                WaitReason {
                    kind: WaitReasonKind::QueuePaused,
                    message: "queue \"default\" is paused".into(),
                    until: None,
                },
                WaitReason {
                    kind: WaitReasonKind::WaitingForWorker,
                    message: "waiting for a worker".into(),
                    until: None,
                },
            ],
        };
        let text = render(&why);
        assert!(text.contains("3 tasks ahead"), "{text}");
        assert!(
            text.contains("why       queue \"default\" is paused"),
            "{text}"
        );
        assert!(text.contains("          waiting for a worker"), "{text}");
    }

    #[test]
    fn running_task_says_nothing_holds_it() {
        let why = TaskWhy {
            task_id: 1,
            state: TaskState::Leased,
            queue: "q".into(),
            position: None,
            estimated_start: None,
            reasons: vec![],
        };
        let text = render(&why);
        assert!(text.contains("it is running"), "{text}");
        assert!(!text.contains("position"), "{text}");
    }
}

//! The conformance suite every [`Executor`] must pass.
//!
//! # The contract
//!
//! An executor runs one request, prepared by the worker, to its end and says how it ended.
//! A command that exits on its own is reported as [`ExitKind::Exited`] with the code it gave,
//! zero or not; a command still running when `request.timeout` has passed is ended and
//! reported as [`ExitKind::TimedOut`] with the timeout asked for; a command still running when
//! the caller cancels `stop` is ended and reported as [`ExitKind::Stopped`]. The log tail is
//! the last [`LOG_TAIL_BYTES`] of what the command wrote, byte for byte when it fits; after a
//! stop it holds what was written until then. Every variable of `request.env` reaches the
//! command with its value unchanged (the attempt's `SPILLWAY_JOB_ID`, `SPILLWAY_TASK_ID` and
//! `SPILLWAY_ATTEMPT` among them), except the worker-local paths `SPILLWAY_INPUT_DIR`,
//! `SPILLWAY_OUTPUT_DIR` and `SPILLWAY_PAYLOAD`, which an executor running the command
//! elsewhere leaves out or points at its own places. Once `run` has returned, nothing of the
//! run goes on: no process of it (background children included) on the worker's machine, no
//! Job or pod of it in a cluster once the cluster has collected its garbage.
//!
//! Not pinned here, because executors honour them differently and test them on their own:
//! how the payload arrives (stdin locally, a file in a pod), the working directory, `shell`
//! mode, signals, and the error of a command that cannot start.
//!
//! # How the cases run
//!
//! Each case is a `pub async fn` taking a fresh [`Harness`] and panicking when the executor
//! breaks the contract. A case describes what its command does as a [`Behaviour`]; the
//! harness makes a request act it out ([`Harness::act_out`]): the local process harness as a
//! `sh -c` script, the Kubernetes harness by playing the kubelet of a fake API server so that
//! the Job's pod ends that way. [`Harness::leftovers`] says what of a run still runs (local:
//! processes of its process group; Kubernetes: its Job and pods).
//! [`executor_conformance_tests!`](crate::executor_conformance_tests) turns every case into a
//! `#[tokio::test]`:
//!
//! ```ignore
//! spillway_executor::executor_conformance_tests!(|| async { make_harness().await });
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spillway_core::model::LOG_TAIL_BYTES;
use tokio_util::sync::CancellationToken;

use crate::seam::{ExecOutcome, ExecRequest, Executor, ExitKind};

pub mod local;

/// How long a run, or any condition a case waits for, may take before the case fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Time between two looks while waiting for a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The timeout of the timeout case: one second, the finest a Kubernetes Job's
/// `activeDeadlineSeconds` can express.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// The Spillway job id of every conformance request (a UUIDv7, as the server makes them).
pub const JOB_ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
/// The variable the environment case sets; its value has spaces and shell metacharacters so
/// that quoting mistakes show.
pub const ENV_NAME: &str = "SPILLWAY_CONFORMANCE_GREETING";
/// The value the environment case gives [`ENV_NAME`].
pub const ENV_VALUE: &str = "hello  'world' \"$HOME\" ;|*";

/// What the command of a case does, in terms every harness can act out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Write `log` to stdout, start a background child that would outlive the command, and
    /// exit with `code`.
    Exit {
        /// The exit code.
        code: i32,
        /// What the command writes.
        log: String,
    },
    /// Write one `NAME=value` line per name (an empty value when it is not set), then exit 0.
    PrintEnv {
        /// The variables to print, each a valid shell name.
        names: Vec<String>,
    },
    /// Write `log`, start a background child, then run until ended from outside.
    Hang {
        /// What the command writes before it waits.
        log: String,
    },
}

/// What a case needs: the executor under test and a way to act out behaviours on it.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The executor under test.
    fn executor(&self) -> Arc<dyn Executor>;

    /// Make `request` act out `behaviour` when it runs. The case has set the attempt's
    /// identity, env and timeout; the harness sets the command (argv, shell, cwd, image) and,
    /// for an executor that cannot run commands here, arranges for the run to end that way.
    async fn act_out(&self, request: &mut ExecRequest, behaviour: &Behaviour);

    /// Whether the command of `request` has started and written its log (for
    /// [`Behaviour::Hang`]).
    async fn started(&self, request: &ExecRequest) -> bool;

    /// What of the run of `request` is left, in words (e.g. `"process 123 (sleep)"`,
    /// `"pod spillway-7-1-x2k4p (Running)"`); empty when nothing is. Local processes count
    /// while they run; a cluster's Jobs and pods count while they exist. A harness with a fake
    /// may move it along (garbage collection, the kubelet) before it looks.
    async fn leftovers(&self, request: &ExecRequest) -> Vec<String>;
}

/// A boxed harness, as the cases take it.
pub type DynHarness = Box<dyn Harness>;

/// The request of attempt 1 of task `task_id` of [`JOB_ID`], with the variables the worker
/// always sets, no command yet (see [`Harness::act_out`]), no timeout.
pub fn request(task_id: i64) -> ExecRequest {
    ExecRequest {
        argv: Vec::new(),
        shell: false,
        env: BTreeMap::from([
            ("SPILLWAY_JOB_ID".to_string(), JOB_ID.to_string()),
            ("SPILLWAY_TASK_ID".to_string(), task_id.to_string()),
            ("SPILLWAY_TASK_INDEX".to_string(), "0".to_string()),
            ("SPILLWAY_ATTEMPT".to_string(), "1".to_string()),
        ]),
        cwd: std::env::temp_dir(),
        stdin: Vec::new(),
        timeout: None,
        image: None,
        resources: Default::default(),
    }
}

/// Poll `check` until it holds, failing the case with `what` after [`DEADLINE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "waited {DEADLINE:?} for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Wait until nothing of the run of `request` is left, failing with what still runs.
async fn nothing_left(h: &dyn Harness, request: &ExecRequest, after: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = h.leftovers(request).await;
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{after}, this still runs after {DEADLINE:?}: {left:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Act `behaviour` out as `request` and run it to its end.
async fn run(h: &dyn Harness, mut request: ExecRequest, behaviour: &Behaviour) -> ExecOutcome {
    h.act_out(&mut request, behaviour).await;
    let executor = h.executor();
    let running = executor.run(request, CancellationToken::new());
    match tokio::time::timeout(DEADLINE, running).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => panic!("running {behaviour:?} failed: {err}"),
        Err(_) => panic!("running {behaviour:?} did not end within {DEADLINE:?}"),
    }
}

/// A command exiting 0 is `Exited(0)`, its output is the log tail, and the background child
/// it left does not outlive the run.
pub async fn exit_zero_is_reported_with_the_output(h: DynHarness) {
    let request = request(101);
    let behaviour = Behaviour::Exit {
        code: 0,
        log: "all done\n".to_string(),
    };
    let outcome = run(h.as_ref(), request.clone(), &behaviour).await;
    assert_eq!(outcome.exit, ExitKind::Exited(0), "{outcome:?}");
    assert_eq!(outcome.log_tail, "all done\n");
    nothing_left(h.as_ref(), &request, "after exit 0").await;
}

/// A command exiting non-zero is `Exited(code)` with that code (not a signal, not a timeout),
/// with its output, and leaves nothing running.
pub async fn a_non_zero_exit_is_reported_with_its_code(h: DynHarness) {
    let request = request(102);
    let behaviour = Behaviour::Exit {
        code: 3,
        log: "bad input on line 7\n".to_string(),
    };
    let outcome = run(h.as_ref(), request.clone(), &behaviour).await;
    assert_eq!(outcome.exit, ExitKind::Exited(3), "{outcome:?}");
    assert_eq!(outcome.log_tail, "bad input on line 7\n");
    nothing_left(h.as_ref(), &request, "after exit 3").await;
}

/// Output longer than [`LOG_TAIL_BYTES`] leaves exactly its last [`LOG_TAIL_BYTES`] bytes.
pub async fn the_log_tail_keeps_the_last_bytes(h: DynHarness) {
    // 1,000 numbered lines of 100 bytes: more than the tail holds, few enough lines for a
    // line-limited log reader.
    let log: String = (0..1000)
        .map(|i| format!("line {i:04} {}\n", "x".repeat(89)))
        .collect();
    assert!(log.len() > LOG_TAIL_BYTES);
    let request = request(103);
    let behaviour = Behaviour::Exit {
        code: 0,
        log: log.clone(),
    };
    let outcome = run(h.as_ref(), request.clone(), &behaviour).await;
    assert_eq!(outcome.exit, ExitKind::Exited(0), "{:?}", outcome.exit);
    assert_eq!(outcome.log_tail.len(), LOG_TAIL_BYTES);
    assert!(
        outcome.log_tail == log[log.len() - LOG_TAIL_BYTES..],
        "the tail is not the last {LOG_TAIL_BYTES} bytes; it starts {:?} and ends {:?}",
        &outcome.log_tail[..80.min(outcome.log_tail.len())],
        &outcome.log_tail[outcome.log_tail.len().saturating_sub(80)..],
    );
    nothing_left(h.as_ref(), &request, "after a long output").await;
}

/// The request's variables, the attempt's identity among them, reach the command unchanged.
pub async fn the_request_env_reaches_the_command(h: DynHarness) {
    let mut request = request(104);
    request
        .env
        .insert(ENV_NAME.to_string(), ENV_VALUE.to_string());
    let names = [
        ENV_NAME,
        "SPILLWAY_JOB_ID",
        "SPILLWAY_TASK_ID",
        "SPILLWAY_ATTEMPT",
    ];
    let behaviour = Behaviour::PrintEnv {
        names: names.iter().map(|n| n.to_string()).collect(),
    };
    let outcome = run(h.as_ref(), request.clone(), &behaviour).await;
    assert_eq!(outcome.exit, ExitKind::Exited(0), "{outcome:?}");
    assert_eq!(
        outcome.log_tail,
        format!(
            "{ENV_NAME}={ENV_VALUE}\nSPILLWAY_JOB_ID={JOB_ID}\nSPILLWAY_TASK_ID=104\n\
             SPILLWAY_ATTEMPT=1\n"
        )
    );
    nothing_left(h.as_ref(), &request, "after printing the env").await;
}

/// Cancelling `stop` ends a running command as `Stopped`, keeps what it wrote, and leaves
/// nothing of it running.
pub async fn stop_ends_the_run_as_stopped_and_leaves_nothing(h: DynHarness) {
    let mut request = request(105);
    h.act_out(
        &mut request,
        &Behaviour::Hang {
            log: "working on it\n".to_string(),
        },
    )
    .await;
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (executor, request, stop) = (h.executor(), request.clone(), stop.clone());
        async move { executor.run(request, stop).await }
    });
    wait_for("the command to start", || h.started(&request)).await;
    if running.is_finished() {
        panic!(
            "a command that waits to be stopped ended on its own: {:?}",
            running.await
        );
    }
    assert!(
        !h.leftovers(&request).await.is_empty(),
        "the harness sees nothing of a command that is running"
    );
    stop.cancel();
    let outcome = match tokio::time::timeout(DEADLINE, running).await {
        Ok(Ok(Ok(outcome))) => outcome,
        Ok(Ok(Err(err))) => panic!("a stopped run failed: {err}"),
        Ok(Err(panicked)) => panic!("the run panicked: {panicked}"),
        Err(_) => panic!("the run did not end within {DEADLINE:?} of the stop"),
    };
    assert_eq!(outcome.exit, ExitKind::Stopped, "{outcome:?}");
    assert!(
        outcome.log_tail.contains("working on it"),
        "{:?}",
        outcome.log_tail
    );
    nothing_left(h.as_ref(), &request, "after a stop").await;
}

/// A command running past `request.timeout` ends as `TimedOut` with that timeout and leaves
/// nothing of it running.
pub async fn a_timeout_ends_the_run_as_timed_out_and_leaves_nothing(h: DynHarness) {
    let mut request = request(106);
    request.timeout = Some(TIMEOUT);
    let behaviour = Behaviour::Hang {
        log: "still going\n".to_string(),
    };
    let outcome = run(h.as_ref(), request.clone(), &behaviour).await;
    assert_eq!(outcome.exit, ExitKind::TimedOut(TIMEOUT), "{outcome:?}");
    nothing_left(h.as_ref(), &request, "after a timeout").await;
}

/// Turn every conformance case into a `#[tokio::test]`; `$make` is a closure returning a
/// future of a fresh [`DynHarness`].
#[macro_export]
macro_rules! executor_conformance_tests {
    ($make:expr) => {
        $crate::executor_conformance_tests!(@cases $make;
            exit_zero_is_reported_with_the_output,
            a_non_zero_exit_is_reported_with_its_code,
            the_log_tail_keeps_the_last_bytes,
            the_request_env_reaches_the_command,
            stop_ends_the_run_as_stopped_and_leaves_nothing,
            a_timeout_ends_the_run_as_timed_out_and_leaves_nothing,
        );
    };
    (@cases $make:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let make = $make;
                $crate::conformance::$case(make().await).await;
            }
        )*
    };
}

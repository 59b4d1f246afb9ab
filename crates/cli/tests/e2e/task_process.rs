//! What a task process sees and leaves: none of the worker's own `SPILLWAY_*` settings, and
//! nothing running once it has ended, not even a process that left its session (`setsid`),
//! whether it ended on its own, by a timeout or by a stop. Also the executor conformance
//! suite and signal reporting for `LocalProcess` under the binary's task reaper.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use spillway_core::api::SubmitJob;
use spillway_core::state::{JobState, TaskState};
use spillway_executor::conformance::local::LocalHarness;
use spillway_executor::{ExecRequest, Executor, ExitKind, LocalProcess, ReaperCommand};
use tokio_util::sync::CancellationToken;

use crate::support::{
    BIN, STATE_DEADLINE, Server, WorkerSpec, create_queue, fast_settings, free_port, only_task,
    start_worker, wait_job_final, wait_task, wait_until,
};

/// How long a process may take to write its pid or to end.
const DEADLINE: Duration = Duration::from_secs(30);

/// The executor `spillway worker` uses for local tasks.
fn reaped() -> LocalProcess {
    LocalProcess::new().with_reaper(ReaperCommand::new(BIN, ["__task-reaper"]))
}

mod reaper_conformance {
    use super::*;

    spillway_executor::executor_conformance_tests!(|| async { LocalHarness::boxed(reaped()) });
}

/// Whether `pid` still runs (a zombie waiting for its reaper counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Wait until `pid` has ended; SIGKILL it if it has not by the deadline (so that a failing
/// test leaves nothing behind) and fail.
async fn wait_dead(pid: u32, after: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    while alive(pid) {
        if tokio::time::Instant::now() >= until {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!(
                "{after}, the process {pid} it started with setsid still runs after {DEADLINE:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_pid(path: &Path) -> u32 {
    wait_until("the setsid child's pid file", DEADLINE, || async {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .await
}

/// A `sh -c` script that starts `sleep 1000` in a session of its own, which writes its pid
/// to `pid_file` (atomically), waits until it has, then runs `then`.
fn setsid_script(pid_file: &Path, then: &str) -> String {
    let pid = pid_file.display();
    format!(
        "setsid sh -c 'echo $$ > {pid}.tmp && mv {pid}.tmp {pid} && exec sleep 1000' & \
         while [ ! -s {pid} ]; do sleep 0.01; done; {then}"
    )
}

fn request(dir: &Path, script: String) -> ExecRequest {
    ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script],
        shell: false,
        env: BTreeMap::new(),
        cwd: dir.to_path_buf(),
        stdin: Vec::new(),
        timeout: None,
        image: None,
        resources: Default::default(),
    }
}

#[tokio::test]
async fn under_the_reaper_exits_and_signals_are_reported_as_the_task_ended() {
    let dir = tempfile::tempdir().unwrap();
    for (script, exit) in [
        ("echo oops >&2; exit 137", ExitKind::Exited(137)),
        ("kill -9 $$", ExitKind::Signalled(9)),
        ("kill -TERM $$", ExitKind::Signalled(15)),
        ("kill -PIPE $$", ExitKind::Signalled(13)),
    ] {
        let out = reaped()
            .run(request(dir.path(), script.into()), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(out.exit, exit, "{script}: {out:?}");
    }
    let err = reaped()
        .run(
            ExecRequest {
                argv: vec!["spillway-no-such-program".into()],
                ..request(dir.path(), String::new())
            },
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), spillway_core::ErrorKind::InvalidArgument);
    assert!(err.message().contains("spillway-no-such-program"), "{err}");
}

#[tokio::test]
async fn under_the_reaper_a_setsid_child_ends_with_its_task_on_exit_timeout_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    // Exit.
    let pid_file = dir.path().join("exit.pid");
    let out = reaped()
        .run(
            request(dir.path(), setsid_script(&pid_file, "echo done")),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(out.exit, ExitKind::Exited(0), "{out:?}");
    assert_eq!(out.log_tail, "done\n");
    wait_dead(read_pid(&pid_file).await, "after the task exited").await;

    // Timeout.
    let pid_file = dir.path().join("timeout.pid");
    let mut req = request(dir.path(), setsid_script(&pid_file, "wait"));
    req.timeout = Some(Duration::from_secs(1));
    let out = reaped().run(req, CancellationToken::new()).await.unwrap();
    assert_eq!(
        out.exit,
        ExitKind::TimedOut(Duration::from_secs(1)),
        "{out:?}"
    );
    wait_dead(read_pid(&pid_file).await, "after the timeout").await;

    // Stop.
    let pid_file = dir.path().join("stop.pid");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (req, stop) = (
            request(dir.path(), setsid_script(&pid_file, "wait")),
            stop.clone(),
        );
        async move { reaped().run(req, stop).await }
    });
    let pid = read_pid(&pid_file).await;
    assert!(alive(pid));
    stop.cancel();
    let out = running.await.unwrap().unwrap();
    assert_eq!(out.exit, ExitKind::Stopped, "{out:?}");
    wait_dead(pid, "after the stop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillway_worker_tasks_see_no_worker_settings_and_leave_no_setsid_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    create_queue(&client, "q", fast_settings(1)).await;
    let mut spec = WorkerSpec::new("q");
    // start_worker also gives it SPILLWAY_SERVER, SPILLWAY_TOKEN and SPILLWAY_DATA_DIR.
    spec.env.push(("SPILLWAY_ANYTHING", "worker-only"));
    let _worker = start_worker("worker", dir.path(), &server.url, &server.token, &spec);

    // What the task sees: its own SPILLWAY_* variables, none of the worker's.
    let mut env_job = SubmitJob::command(
        "q",
        vec![
            "sh".into(),
            "-c".into(),
            "env | grep ^SPILLWAY_ | sort".into(),
        ],
    );
    env_job
        .spec
        .env
        .insert("SPILLWAY_FROM_JOB".into(), "job".into());
    let env_job = client.job_submit(&env_job).await.unwrap().job;
    let task = only_task(&client, &env_job.id).await;
    let done = wait_task(&client, task.id, "finished", |d| d.task.state.is_final()).await;
    assert_eq!(done.task.state, TaskState::Succeeded, "{done:?}");
    let names: Vec<&str> = done.attempts[0]
        .log_tail
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    assert_eq!(
        names,
        [
            "SPILLWAY_ATTEMPT",
            "SPILLWAY_FROM_JOB",
            "SPILLWAY_INPUT_DIR",
            "SPILLWAY_JOB_ID",
            "SPILLWAY_OUTPUT_DIR",
            "SPILLWAY_PAYLOAD",
            "SPILLWAY_TASK_ID",
            "SPILLWAY_TASK_INDEX",
        ],
        "{}",
        done.attempts[0].log_tail
    );

    // A setsid child ends with a task that exits, and with one that times out.
    for (name, then, timeout, state) in [
        ("exit", "echo done", None, JobState::Succeeded),
        (
            "timeout",
            "wait",
            Some(Duration::from_secs(1)),
            JobState::Failed,
        ),
    ] {
        let pid_file = dir.path().join(format!("{name}.pid"));
        let mut job = SubmitJob::command(
            "q",
            vec!["sh".into(), "-c".into(), setsid_script(&pid_file, then)],
        );
        job.spec.timeout = timeout;
        let job = client.job_submit(&job).await.unwrap().job;
        let pid = read_pid(&pid_file).await;
        let ended = wait_job_final(&client, &job.id, STATE_DEADLINE).await;
        assert_eq!(ended.state, state, "{name}: {ended:?}");
        wait_dead(pid, &format!("after the task's {name}")).await;
    }
}

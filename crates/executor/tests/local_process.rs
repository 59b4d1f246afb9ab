//! The LocalProcess executor against real child processes.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use spillway_core::ErrorKind;
use spillway_core::model::LOG_TAIL_BYTES;
use spillway_executor::{ExecOutcome, ExecRequest, Executor, ExitKind, LocalProcess};
use spillway_testkit::wait_until;
use tokio_util::sync::CancellationToken;

/// How long a process may take to write its pid or to end.
const DEADLINE: Duration = Duration::from_secs(10);

fn request(dir: &Path, argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        shell: false,
        env: BTreeMap::new(),
        cwd: dir.to_path_buf(),
        stdin: Vec::new(),
        timeout: None,
        image: None,
        resources: Default::default(),
    }
}

async fn run(req: ExecRequest) -> ExecOutcome {
    LocalProcess::new()
        .run(req, CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn arguments_with_spaces_are_not_split_and_stdin_env_and_cwd_reach_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        &[
            "sh",
            "-c",
            "printf '%s|' \"$@\"; echo; echo \"v=$MY_VAR tok=${SPILLWAY_TOKEN:-none}\"; pwd; cat",
            "sh",
            "a b",
            "c",
        ],
    );
    req.env.insert("MY_VAR".into(), "hello world".into());
    req.env.insert("SPILLWAY_TOKEN".into(), "leak".into());
    req.stdin = br#"{"n":1}"#.to_vec();
    let out = run(req).await;
    assert_eq!(out.exit, ExitKind::Exited(0));
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(
        out.log_tail,
        format!(
            "a b|c|\nv=hello world tok=leak\n{}\n{{\"n\":1}}",
            cwd.display()
        )
    );
}

#[tokio::test]
async fn shell_mode_joins_the_arguments_into_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(dir.path(), &["echo", "hello", "|", "tr", "h", "H", ">&2"]);
    req.shell = true;
    let out = run(req).await;
    assert_eq!(out.exit, ExitKind::Exited(0));
    assert_eq!(out.log_tail, "Hello\n");
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(request(dir.path(), &["sh", "-c", "echo oops >&2; exit 3"])).await;
    assert_eq!(out.exit, ExitKind::Exited(3));
    assert_eq!(out.log_tail, "oops\n");
    let out = run(request(dir.path(), &["sh", "-c", "kill -9 $$"])).await;
    assert_eq!(out.exit, ExitKind::Signalled(9));
}

#[tokio::test]
async fn a_missing_program_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalProcess::new()
        .run(
            request(dir.path(), &["spillway-no-such-program"]),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("spillway-no-such-program"), "{err}");
}

#[tokio::test]
async fn the_log_tail_keeps_only_the_last_64_kib() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(request(
        dir.path(),
        &[
            "sh",
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' 'a'; head -c 300000 /dev/zero | tr '\\0' 'b' >&2; echo END",
        ],
    ))
    .await;
    assert_eq!(out.exit, ExitKind::Exited(0));
    assert_eq!(out.log_tail.len(), LOG_TAIL_BYTES);
    assert!(out.log_tail.ends_with("bbbbEND\n"));
    assert!(!out.log_tail.contains('a'));
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

async fn wait_dead(pid: u32) {
    let what = format!("process {pid} to end");
    wait_until(&what, DEADLINE, || async { (!alive(pid)).then_some(()) }).await;
}

async fn read_pid(path: &Path) -> u32 {
    wait_until("the pid file", DEADLINE, || async {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .await
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group_including_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        &["sh", "-c", "sleep 100 & echo $! > grandchild.pid; wait"],
    );
    req.timeout = Some(Duration::from_millis(500));
    let out = run(req).await;
    assert_eq!(out.exit, ExitKind::TimedOut(Duration::from_millis(500)));
    let pid = read_pid(&dir.path().join("grandchild.pid")).await;
    wait_dead(pid).await;
}

#[tokio::test]
async fn stopping_kills_the_group_and_reports_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let req = request(
        dir.path(),
        &["sh", "-c", "sleep 100 & echo $! > grandchild.pid; wait"],
    );
    let pid_file = dir.path().join("grandchild.pid");
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { LocalProcess::new().run(req, stop).await }
    });
    let pid = read_pid(&pid_file).await;
    assert!(alive(pid));
    stop.cancel();
    let out = running.await.unwrap().unwrap();
    assert_eq!(out.exit, ExitKind::Stopped);
    wait_dead(pid).await;
}

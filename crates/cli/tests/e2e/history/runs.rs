//! Fault runs checked by the history checker. Each submits `SPILLWAY_FAULT_TASKS` tasks
//! (default [`DEFAULT_TASKS`](super::DEFAULT_TASKS), a CI-sized run of tens of seconds) through
//! the recording proxy, injects its faults while they run, and asserts that the checker finds
//! no anomaly, that faults were injected and that operations were checked. Each prints one
//! line: operations checked, faults injected, anomalies found.
//!
//! A larger run (with a fault per 150 tasks):
//! `SPILLWAY_FAULT_TASKS=5000 cargo nextest run -p spillway --test e2e history`.
//! The PostgreSQL run needs `SPILLWAY_TEST_POSTGRES_URL` (skipped without it, except under
//! `CI=true`).

use std::time::Duration;

use nix::sys::signal::Signal;
use spillway_core::api::SubmitJob;
use spillway_core::model::QueueSettings;
use spillway_core::state::TaskState;

use super::checker::{AnomalyKind, Checked};
use super::pg_cluster::PgCluster;
use super::proxy::Mode;
use super::record::{BeatAnswer, Op, ReportAnswer};
use super::{Load, QUEUE, Rig, completed, fault_tasks, granted_again, held_by, latest_expiry};
use crate::netns::TestNetwork;
use crate::postgres::TempDatabase;
use crate::support::{STATE_DEADLINE, WorkerSpec, fast_settings, wait_until};

/// Tasks per submitted job.
pub(super) const PER_JOB: u32 = 10;
/// What each task runs: long enough that faults catch tasks under lease.
pub(super) const TASK: &[&str] = &["sleep", "0.2"];
/// Time between submits: about what the workers get through ([`PER_JOB`] tasks of 0.2s on 8
/// to 12 slots), so the load lasts as long as the run.
pub(super) const PACE: Duration = Duration::from_millis(200);

/// Short leases so that expiries come quickly; enough attempts to ride out many faults.
pub(super) fn settings() -> QueueSettings {
    fast_settings(30)
}

/// Faults a run injects: `ci` at the CI size, one per 150 tasks in larger runs.
pub(super) fn fault_count(ci: u32) -> u32 {
    ci.max(fault_tasks() / 150)
}

/// The assertions every fault run ends with.
pub(super) fn assert_checked(checked: &Checked, faults: usize) {
    checked.assert_clean();
    assert!(faults > 0, "no fault was injected");
    assert!(
        checked.tasks >= u64::from(fault_tasks()),
        "only {} tasks acknowledged",
        checked.tasks
    );
    // Every task here runs a command that succeeds, and attempts outnumber the faults.
    assert_eq!(
        checked.succeeded, checked.tasks,
        "acknowledged tasks that did not succeed"
    );
    assert!(
        checked.leases as u64 >= checked.tasks,
        "{} leases for {} tasks",
        checked.leases,
        checked.tasks
    );
}

/// Wait until `done` completes were applied (faults are spread over the run by progress).
pub(super) async fn wait_completed(rig: &Rig, done: u32) {
    wait_until(&format!("{done} tasks completed"), STATE_DEADLINE, || {
        let completed = completed(&rig.proxy.history());
        async move { (completed >= done as usize).then_some(()) }
    })
    .await;
}

/// Once `done` tasks completed, the first of `names` that holds leases: its index and the
/// leases it holds (task, attempt).
async fn victim(rig: &Rig, names: &[String], done: u32) -> (usize, Vec<(i64, u32)>) {
    wait_completed(rig, done).await;
    wait_until("a worker holding a lease", STATE_DEADLINE, || {
        let history = rig.proxy.history();
        let found = names.iter().enumerate().find_map(|(slot, name)| {
            let held = held_by(&history, name);
            (!held.is_empty()).then_some((slot, held))
        });
        async move { found }
    })
    .await
}

/// Wait until one of the leases `actor` holds was granted to another worker (true), or until
/// `actor` holds none any more because reports already on their way landed (false: the fault
/// caught nothing and is tried again). The leases it holds are those it held when the fault
/// began (`held`: task, attempt) and any granted to it since: a long poll sent before the
/// fault may be answered during it, and that lease too must expire and move.
async fn leased_again(rig: &Rig, actor: &str, held: &[(i64, u32)]) -> bool {
    wait_until(
        &format!("a task of {actor} to be leased again"),
        STATE_DEADLINE,
        || {
            let history = rig.proxy.history();
            let holding = held_by(&history, actor);
            let again = held
                .iter()
                .chain(&holding)
                .any(|&(task, attempt)| granted_again(&history, actor, task, attempt));
            async move { (again || holding.is_empty()).then_some(again) }
        },
    )
    .await
}

/// Kill the server with -9 while workers and the load generator are busy and restart it on the
/// same data, twice (the second time after every lease has expired); nothing acknowledged may
/// be lost or run twice, and the workers ride it out.
async fn server_killed_under_load(run: &str, store: Option<String>) {
    let target = fault_tasks();
    let mut rig = Rig::start(store, settings()).await;
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let mut workers = [
        rig.worker("worker-a", &spec).await,
        rig.worker("worker-b", &spec).await,
    ];
    let load = Load::start(&rig, TASK, PER_JOB, target, PACE).await;
    let kills = fault_count(2);
    for k in 1..=kills {
        wait_completed(&rig, target * k / (kills + 1)).await;
        // Mid-stream: some tasks under lease.
        wait_until("tasks under lease", STATE_DEADLINE, || async {
            let queue = rig.admin.queue_get(QUEUE).await.ok()?;
            (queue.stats.counts.leased > 0).then_some(())
        })
        .await;
        rig.kill_server();
        let unanswered = rig.proxy.unanswered();
        wait_until(
            "a request unanswered while the server is down",
            STATE_DEADLINE,
            || async { (rig.proxy.unanswered() > unanswered).then_some(()) },
        )
        .await;
        if k == kills {
            // Stay down until every lease handed out has run out, so the restarted server
            // finds expired leases to reap and tasks run again.
            let expiry = latest_expiry(&rig.proxy.history());
            wait_until("every lease to expire", STATE_DEADLINE, || async {
                expiry
                    .is_none_or(|at| chrono::Utc::now() > at)
                    .then_some(())
            })
            .await;
        }
        rig.restart_server().await;
    }
    load.finish().await;
    let checked = rig.check(run, kills as usize).await;
    assert_checked(&checked, kills as usize);
    // The workers reconnected by themselves rather than dying with the server.
    for worker in &mut workers {
        worker.assert_running();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_server_killed_under_load_on_sqlite() {
    server_killed_under_load("server-killed-sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_server_killed_under_load_on_postgres() {
    let Some(admin_url) = crate::postgres::admin_url_or_skip("the PostgreSQL fault run") else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    server_killed_under_load("server-killed-postgres", Some(db.url.clone())).await;
}

/// Kill workers with -9 while they hold leases and start replacements; their tasks must run
/// again once the leases expire, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_workers_killed_mid_run() {
    let target = fault_tasks();
    let rig = Rig::start(None, settings()).await;
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let mut workers = [
        rig.worker("worker-0", &spec).await,
        rig.worker("worker-1", &spec).await,
        rig.worker("worker-2", &spec).await,
    ];
    let mut names: Vec<String> = (0..3).map(|n| format!("worker-{n}")).collect();
    let load = Load::start(&rig, TASK, PER_JOB, target, PACE).await;
    let kills = fault_count(3);
    for k in 1..=kills {
        let (slot, _) = victim(&rig, &names, target * k / (kills + 1)).await;
        workers[slot].kill9();
        names[slot] = format!("worker-{slot}-{k}");
        workers[slot] = rig.worker(&names[slot], &spec).await;
    }
    load.finish().await;
    let checked = rig.check("workers-killed", kills as usize).await;
    assert_checked(&checked, kills as usize);
    assert!(
        checked.releases > 0,
        "no task was leased again after a kill"
    );
}

/// Freeze workers (SIGSTOP) while they hold leases until one of their tasks is leased to
/// another worker, then let them go on (SIGCONT): their late reports must change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_workers_frozen_past_their_lease() {
    let target = fault_tasks();
    let rig = Rig::start(None, settings()).await;
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let names: Vec<String> = (0..3).map(|n| format!("worker-{n}")).collect();
    let mut workers = Vec::new();
    for name in &names {
        workers.push(rig.worker(name, &spec).await);
    }
    // Tasks long enough to be caught running.
    let load = Load::start(&rig, &["sleep", "0.5"], PER_JOB, target, PACE * 2).await;
    let freezes = fault_count(3);
    let mut k = 1;
    while k <= freezes {
        let (slot, held) = victim(&rig, &names, target * k / (freezes + 1)).await;
        let frozen = &names[slot];
        workers[slot].signal(Signal::SIGSTOP);
        // A report already on its way when the worker froze may still land: then none of
        // its leases is left to lose, and the freeze is tried again.
        let relet = leased_again(&rig, frozen, &held).await;
        workers[slot].signal(Signal::SIGCONT);
        if relet {
            k += 1;
        }
    }
    load.finish().await;
    let checked = rig.check("workers-frozen", freezes as usize).await;
    assert_checked(&checked, freezes as usize);
    assert!(
        checked.releases > 0,
        "no task of a frozen worker was leased again"
    );
    for worker in &mut workers {
        worker.assert_running();
    }
}

/// The checker's own test: a worker frozen past its lease wakes while another worker runs
/// the task again and reports. With fencing (normal mode) its reports are refused and the
/// history is clean; through the broken proxy, which swaps its stale token for the current
/// one as a server without lease checks would accept, the checker must flag a stale result.
async fn stale_worker(broken: bool) -> (Checked, bool) {
    let rig = Rig::start(None, fast_settings(3)).await;
    rig.proxy.set_broken(broken);
    let gate = rig.path().join("gate");
    // Attempt 1 outlives the moment its worker is frozen; attempt 2 waits (at most a minute)
    // for the test to open the gate, so the stale worker wakes while it still runs.
    let script = format!(
        "if [ \"$SPILLWAY_ATTEMPT\" = 1 ]; then sleep 2; else \
         i=0; while [ ! -e '{}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi; \
         printf %s \"$MARK\" > \"$SPILLWAY_OUTPUT_DIR/who.txt\"",
        gate.display()
    );
    let client = rig.client("client").await;
    crate::support::submit(&client, QUEUE, &["sh", "-c", &script], 1).await;

    let spec = |mark| WorkerSpec {
        env: vec![("MARK", mark)],
        ..WorkerSpec::new(QUEUE)
    };
    let w1 = rig.worker("worker-1", &spec("w1")).await;
    let (task, attempt) = wait_until("worker-1 to hold the lease", STATE_DEADLINE, || {
        let held = held_by(&rig.proxy.history(), "worker-1");
        async move { held.first().copied() }
    })
    .await;
    w1.signal(Signal::SIGSTOP);
    let _w2 = rig.worker("worker-2", &spec("w2")).await;
    wait_until("worker-2 to lease the task again", STATE_DEADLINE, || {
        let again = granted_again(&rig.proxy.history(), "worker-1", task, attempt);
        async move { again.then_some(()) }
    })
    .await;
    let resumed = rig.proxy.recorded();
    w1.signal(Signal::SIGCONT);
    // Wait for the stale worker's last word: a report, a lost heartbeat or a refused upload.
    wait_until("worker-1 to act on its stale lease", STATE_DEADLINE, || {
        let history = rig.proxy.history();
        let acted = history.events[resumed..].iter().any(|e| {
            e.actor == "worker-1"
                && match &e.op {
                    Op::Report { .. } => true,
                    Op::Heartbeat { answer, .. } => *answer == BeatAnswer::Lost,
                    Op::Upload { status, .. } => !status.is_some_and(|s| s < 300),
                    _ => false,
                }
        });
        async move { acted.then_some(()) }
    })
    .await;
    std::fs::write(&gate, b"open").expect("open the gate");
    let checked = rig
        .check(
            if broken {
                "stale-broken"
            } else {
                "stale-fenced"
            },
            1,
        )
        .await;
    let detail = rig.admin.task_get(task).await.expect("task");
    assert_eq!(detail.task.state, TaskState::Succeeded, "{detail:?}");
    let stale_applied = rig.proxy.history().events.iter().any(|e| {
        e.actor == "worker-1"
            && matches!(
                &e.op,
                Op::Report {
                    answer: ReportAnswer::Applied,
                    ..
                }
            )
    });
    (checked, stale_applied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_a_stale_worker_is_fenced_and_the_history_is_clean() {
    let (checked, stale_applied) = stale_worker(false).await;
    assert!(!stale_applied, "a report of the stale worker was applied");
    checked.assert_clean();
    assert_eq!(checked.leases, 2, "two attempts, one per worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_the_checker_flags_a_stale_result_when_fencing_is_defeated() {
    let (checked, stale_applied) = stale_worker(true).await;
    assert!(
        stale_applied,
        "the broken proxy did not get a stale report applied"
    );
    for anomaly in &checked.anomalies {
        eprintln!("found, as it should: {anomaly}");
    }
    assert!(
        checked.kinds().contains(&AnomalyKind::StaleResult),
        "the broken run was not flagged: {:?}",
        checked.kinds()
    );
}

/// A door that refuses takes no traffic; one that stalls holds it until it opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_proxy_doors_refuse_and_stall_traffic() {
    let rig = Rig::start(None, settings()).await;
    let client = rig.client("probe").await;
    client.readyz().await.expect("ready through an open door");
    rig.proxy.set_mode("probe", Mode::Refuse);
    assert!(
        client.readyz().await.is_err(),
        "a refusing door let traffic through"
    );
    rig.proxy.set_mode("probe", Mode::Stall);
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.readyz().await }
    });
    wait_until("the request to be held", STATE_DEADLINE, || async {
        (rig.proxy.stalled() == 1).then_some(())
    })
    .await;
    assert!(!held.is_finished(), "a stalled request was answered");
    rig.proxy.set_mode("probe", Mode::Open);
    held.await
        .expect("request task")
        .expect("the held request goes through once the door opens");
}

/// Workers on two test hosts (network namespaces joined by veth) and one beside the server.
/// One host at a time is cut off while its worker holds leases, until one of its tasks has
/// moved to another worker, then healed: the cut worker's late reports must change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_workers_partitioned_from_the_server_and_healed() {
    let Some(mut network) = TestNetwork::create() else {
        return;
    };
    let target = fault_tasks();
    let rig = Rig::start(None, settings()).await;
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let hosts = [network.add_host(), network.add_host()];
    let names: Vec<String> = (0..hosts.len()).map(|n| format!("host-{n}")).collect();
    let mut workers = Vec::new();
    for (host, name) in hosts.iter().zip(&names) {
        workers.push(rig.worker_on(host, network.server_ip(), name, &spec).await);
    }
    // A worker that is never cut off, so work goes on during every partition.
    workers.push(rig.worker("local", &spec).await);
    let load = Load::start(&rig, TASK, PER_JOB, target, PACE).await;
    let cuts = fault_count(2);
    let mut k = 1;
    while k <= cuts {
        let (slot, held) = victim(&rig, &names, target * k / (cuts + 1)).await;
        let cut = &names[slot];
        hosts[slot].cut();
        let moved = leased_again(&rig, cut, &held).await;
        hosts[slot].heal();
        if moved {
            k += 1;
        }
    }
    load.finish().await;
    let checked = rig.check("workers-partitioned", cuts as usize).await;
    assert_checked(&checked, cuts as usize);
    assert!(
        checked.releases > 0,
        "no task was leased again during a partition"
    );
    // The healed workers came back to work rather than giving up.
    for worker in &mut workers {
        worker.assert_running();
    }
}

/// PostgreSQL itself crashes (stopped with `-m immediate`) and comes back twice while workers
/// and the load generator are busy: the server rides it out with retryable errors, and nothing
/// acknowledged is lost or run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_postgres_restarted_mid_run() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let target = fault_tasks();
    let rig = Rig::start(Some(cluster.url()), settings()).await;
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let mut workers = [
        rig.worker("worker-a", &spec).await,
        rig.worker("worker-b", &spec).await,
    ];
    let load = Load::start(&rig, TASK, PER_JOB, target, PACE).await;
    let restarts = fault_count(2);
    for k in 1..=restarts {
        wait_completed(&rig, target * k / (restarts + 1)).await;
        cluster.restart();
        // The server answers again once it has reconnected.
        wait_until(
            "the server to reach PostgreSQL again",
            STATE_DEADLINE,
            || async { rig.admin.queue_get(QUEUE).await.ok().map(drop) },
        )
        .await;
    }
    load.finish().await;
    let checked = rig.check("postgres-restarted", restarts as usize).await;
    assert_checked(&checked, restarts as usize);
    for worker in &mut workers {
        worker.assert_running();
    }
}

/// A small filesystem of the test's own (tmpfs), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mount `mib` MiB of tmpfs, or `None` where this process may not mount (not root).
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "mounting a small tmpfs is required under CI=true (run as root)"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Write zeros to `file` until the filesystem is full.
    fn fill(&self, file: &std::path::Path) {
        use std::io::Write;
        let mut out = std::fs::File::create(file).expect("create the filler");
        let chunk = vec![0u8; 1 << 20];
        while out.write_all(&chunk).is_ok() {}
        let _ = out.flush();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The data directory's disk fills up while workers and the load generator are busy, stays
/// full until a submit is refused with a clear, retryable error, and is freed: the server
/// keeps running, answers again, and nothing acknowledged is lost or run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_the_data_disk_fills_up_and_is_freed() {
    let Some(disk) = SmallDisk::mount(64) else {
        return;
    };
    let target = fault_tasks();
    let data = disk.path().join("data");
    let mut rig = Rig::start_at(Some(data.clone()), None, settings()).await;
    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(QUEUE)
    };
    let _workers = [
        rig.worker("worker-a", &spec).await,
        rig.worker("worker-b", &spec).await,
    ];
    let load = Load::start(&rig, TASK, PER_JOB, target, PACE).await;
    let fills = fault_count(1);
    let filler = disk.path().join("filler");
    let mut request = SubmitJob::command(QUEUE, vec!["true".into()]);
    request.count = Some(1);
    for k in 1..=fills {
        wait_completed(&rig, target * k / (fills + 1)).await;
        disk.fill(&filler);
        // Until the disk is freed a write cannot commit; the answer says why and may be retried.
        let refused = wait_until("a submit refused for the full disk", STATE_DEADLINE, || {
            let admin = rig.admin.clone();
            let request = request.clone();
            async move { admin.job_submit(&request).await.err() }
        })
        .await;
        assert!(
            refused.is_retryable() && refused.to_string().contains("full"),
            "a full disk must answer a retryable error that says so, not: {refused}"
        );
        std::fs::remove_file(&filler).expect("free the disk");
        wait_until("the server to accept submits again", STATE_DEADLINE, || {
            let admin = rig.admin.clone();
            let request = request.clone();
            async move { admin.job_submit(&request).await.ok().map(drop) }
        })
        .await;
    }
    load.finish().await;
    let checked = rig.check("disk-full", fills as usize).await;
    assert_checked(&checked, fills as usize);
    rig.server.process.assert_running();
}

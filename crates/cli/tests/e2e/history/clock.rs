//! The wall clock steps forward and back on one of two replicas on PostgreSQL (issue 12).
//!
//! Lease expiries are wall-clock timestamps that one replica writes and another compares with
//! its own time, so a replica whose clock runs ahead reaps the others' live leases, and one
//! that runs behind hands out leases the others think expired. Replica A runs under
//! libfaketime, whose offset from the real time the test rewrites in a file; replica B keeps
//! the host's clock. Workers lease through both replicas, the load generator submits through B.
//! While workers of both hold leases, A's clock steps an hour ahead, and stays there for
//! [`hold`] (the first time): long enough that a replica keeping its host's time, even slewed at
//! 5% across the step, would get a whole lease ahead of B and reap B's live leases. Then A is
//! killed and started again with its clock still ahead (a replica that starts on a host whose
//! clock is off: keeping its host's time it would start an hour ahead and reap B's leases on its
//! first pass); A's clock steps back two hours, to an hour behind, then forward to the right
//! time. Larger runs repeat the cycle. Replicas keep the database's time
//! (`spillway_server::services::clock_sync`), so the history must be clean. The expiries both
//! replicas announce are then the database's time, which on one host is the test's clock too,
//! so the checker's anchor needs no shift for A's steps.
//!
//! Each step is shown to have reached A, so a libfaketime that silently did nothing fails the
//! run: A's `spillway_clock_offset_seconds` (its host's clock minus the database's) must move
//! to about the step, and after each step ahead A's HTTP `Date` header, which hyper takes from
//! the system clock, must be an hour ahead of the test's clock. (hyper keeps the `Date` of each
//! thread until the clock passes the second after it, so after a step back it stands still and
//! cannot show that step: the gauge does.)
//!
//! Needs `SPILLWAY_TEST_POSTGRES_URL` and libfaketime (`SPILLWAY_TEST_LIBFAKETIME`, else the
//! Debian package's path); skipped without them, except under `CI=true`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use spillway_core::clock::SLEW_RATE;
use spillway_core::model::QueueSettings;

use super::record::{Op, ReportAnswer};
use super::runs::{PACE, PER_JOB, assert_checked, fault_count, settings, wait_completed};
use super::{Load, Rig, fault_tasks, held_by};
use crate::postgres::TempDatabase;
use crate::support::{STATE_DEADLINE, Server, ServerExtras, WorkerSpec, free_port, wait_until};

/// Where Debian's `libfaketime` package puts the library.
const LIBFAKETIME_DEBIAN: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// One step of the clock, in seconds.
const HOUR: i64 = 3_600;
/// How near A's offset (or `Date`) must come to the one set: far under the hour of a step, far
/// over the delays of a reading.
const OFFSET_TOLERANCE: f64 = 60.0;
/// Both replicas read the database's clock this often, so a step shows in A's gauge quickly.
const CONFIG: &str = "[server]\nclock_sync_interval = \"300ms\"\n";
/// Long enough that steps catch tasks under lease.
const TASK: &[&str] = &["sleep", "0.5"];
/// The shortest lease there is, so that the skew it takes to reap a live lease comes soon.
const LEASE: Duration = Duration::from_secs(1);

/// The run's queue: [`LEASE`]-long leases, otherwise as the other runs.
fn lease_settings() -> QueueSettings {
    QueueSettings {
        lease_duration: LEASE,
        ..settings()
    }
}

/// How long A stays an hour ahead after the first step: a quarter more than the time a clock
/// slewing at [`SLEW_RATE`] towards a clock an hour ahead takes to get a whole lease ahead. A
/// replica keeping its host's time would reap every lease B handed out, heartbeats or not, on
/// each pass of those last seconds.
fn hold() -> Duration {
    LEASE.div_f64(SLEW_RATE) * 5 / 4
}

/// Skip (printing why) unless `CI=true`, where a missing prerequisite fails the run.
fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "required under CI=true (scripts/test provides it): {reason}"
    );
    println!("skipped: {reason}");
    None
}

/// The libfaketime library: `SPILLWAY_TEST_LIBFAKETIME`, else the Debian package's.
fn libfaketime() -> Option<PathBuf> {
    let path = std::env::var_os("SPILLWAY_TEST_LIBFAKETIME")
        .map_or_else(|| PathBuf::from(LIBFAKETIME_DEBIAN), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    skip(&format!(
        "libfaketime is not at {} (install the Debian package libfaketime, or set SPILLWAY_TEST_LIBFAKETIME)",
        path.display()
    ))
}

/// A faked wall clock for the processes started with [`FakeClock::env`]: libfaketime reads
/// the offset from a file on every call (`FAKETIME_NO_CACHE`), and leaves the monotonic clock
/// alone.
struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
}

impl FakeClock {
    /// A clock at the right time, its offset kept in `dir`.
    fn new(lib: PathBuf, dir: &Path) -> FakeClock {
        let clock = FakeClock {
            lib,
            file: dir.join("faketime"),
        };
        clock.set(0);
        clock
    }

    /// The environment that puts a process on this clock.
    fn env(&self) -> Vec<(String, OsString)> {
        vec![
            ("LD_PRELOAD".into(), self.lib.clone().into_os_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.clone().into_os_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// Set the clock `offset` seconds from the real time (a rename, so that no reader sees a
    /// half-written file).
    fn set(&self, offset: i64) {
        let next = self.file.with_extension("next");
        std::fs::write(&next, format!("{offset:+}\n")).expect("write the faketime offset");
        std::fs::rename(&next, &self.file).expect("move the faketime offset in place");
    }
}

/// A's `spillway_clock_offset_seconds`: how far its host's clock is ahead of the database's.
async fn clock_offset(url: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix("spillway_clock_offset_seconds{reference=\"database\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

/// How far the `Date` header of `url`'s answers is ahead of the test's clock, in seconds.
async fn date_ahead(url: &str) -> Option<f64> {
    let answer = reqwest::get(format!("{url}/healthz")).await.ok()?;
    let date = answer.headers().get(reqwest::header::DATE)?.to_str().ok()?;
    let at = chrono::DateTime::parse_from_rfc2822(date).ok()?;
    Some((at.with_timezone(&Utc) - Utc::now()).as_seconds_f64())
}

/// Wait until replica `url` shows its clock `offset` seconds from the database's (and, for a
/// clock ahead, its `Date` header as far ahead of the test's clock).
async fn wait_clock_shown(url: &str, offset: i64) {
    let near = |seen: f64| (seen - offset as f64).abs() < OFFSET_TOLERANCE;
    let seen = wait_until(
        &format!("replica A to report its clock {offset:+}s from the database's"),
        STATE_DEADLINE,
        || async { clock_offset(url).await.filter(|&s| near(s)) },
    )
    .await;
    println!("replica A's clock is {seen:+.3}s from the database's");
    if offset > 0 {
        let ahead = wait_until(
            &format!("replica A's Date header to be {offset:+}s ahead"),
            STATE_DEADLINE,
            || async { date_ahead(url).await.filter(|&s| near(s)) },
        )
        .await;
        println!("replica A's Date header is {ahead:+.0}s ahead");
    }
}

/// Wait until workers through each replica hold leases (by the history).
async fn both_holding(rig: &Rig, through_a: &[&str], through_b: &[&str]) {
    wait_until(
        "workers through both replicas to hold leases",
        STATE_DEADLINE,
        || {
            let history = rig.proxy.history();
            let holds = |names: &[&str]| names.iter().any(|n| !held_by(&history, n).is_empty());
            let both = holds(through_a) && holds(through_b);
            async move { both.then_some(()) }
        },
    )
    .await;
}

/// Wait until a report from a worker through replica A was applied after event `since`: A
/// still serves, and its workers' leases are still theirs, once a fault has taken effect.
async fn a_applies_reports(rig: &Rig, through_a: &[&str], since: usize) {
    wait_until(
        "replica A to apply a report after the fault",
        STATE_DEADLINE,
        || {
            let history = rig.proxy.history();
            let applied = history.events.iter().skip(since).any(|e| {
                through_a.contains(&e.actor.as_str())
                    && matches!(
                        e.op,
                        Op::Report {
                            answer: ReportAnswer::Applied,
                            ..
                        }
                    )
            });
            async move { applied.then_some(()) }
        },
    )
    .await;
}

/// Keep A an hour ahead for [`hold`] while work goes on through both replicas. The wait is
/// the fault's length, not a wait for something to happen; it ends by checking that workers
/// through both replicas still hold leases, so the hold had leases for A to reap.
async fn hold_ahead(rig: &Rig, through_a: &[&str], through_b: &[&str]) {
    let held_from = Instant::now();
    let hold = hold();
    wait_until(
        &format!("replica A to have been an hour ahead for {hold:?}"),
        hold + STATE_DEADLINE,
        || async { (held_from.elapsed() >= hold).then_some(()) },
    )
    .await;
    both_holding(rig, through_a, through_b).await;
    println!("replica A was an hour ahead for {:?}", held_from.elapsed());
}

/// The faults of one cycle, in order.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// A's clock steps an hour ahead (and stays there for [`hold`], the first time).
    StepAhead,
    /// A is killed and started again, its clock still an hour ahead.
    RestartAhead,
    /// A's clock steps back two hours, to an hour behind.
    StepBack,
    /// A's clock steps forward an hour, to the right time.
    StepRight,
}

const CYCLE: [Fault; 4] = [
    Fault::StepAhead,
    Fault::RestartAhead,
    Fault::StepBack,
    Fault::StepRight,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_the_wall_clock_steps_on_one_replica_on_postgres() {
    let Some(admin_url) = crate::postgres::admin_url_or_skip("the PostgreSQL fault run") else {
        return;
    };
    let Some(lib) = libfaketime() else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    let target = fault_tasks();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("spillway.toml");
    std::fs::write(&config, CONFIG).expect("write the config");
    let extras = ServerExtras {
        config: Some(config),
        env: Vec::new(),
    };
    // The rig's own server is replica B, on the host's clock.
    let mut rig = Rig::start_in(
        dir,
        None,
        Some(db.url.clone()),
        lease_settings(),
        extras.clone(),
    )
    .await;
    let fake = FakeClock::new(lib, rig.path());
    let a_extras = ServerExtras {
        env: fake.env(),
        ..extras
    };
    let a_port = free_port();
    let mut a: Server = rig.replica_with("replica-a", a_port, &a_extras).await;
    wait_clock_shown(&a.url, 0).await;

    let spec = WorkerSpec {
        concurrency: 4,
        ..WorkerSpec::new(super::QUEUE)
    };
    let through_a = ["a-worker-0", "a-worker-1"];
    let through_b = ["b-worker-0", "b-worker-1"];
    let mut workers = Vec::new();
    for name in through_a {
        workers.push(rig.worker_to(name, &a.url, &spec).await);
    }
    for name in through_b {
        workers.push(rig.worker(name, &spec).await);
    }
    // A load that outlasts the hold twice, so faults after it still find work under lease.
    let jobs = (target / PER_JOB).max(1);
    let pace = (hold() * 2 / jobs).max(PACE * 2);
    let load = Load::start(&rig, TASK, PER_JOB, target, pace).await;

    let faults = fault_count(CYCLE.len() as u32);
    let mut restarts = 0;
    for k in 1..=faults {
        let fault = CYCLE[(k as usize - 1) % CYCLE.len()];
        wait_completed(&rig, target * k / (faults + 1)).await;
        both_holding(&rig, &through_a, &through_b).await;
        let offset = match fault {
            Fault::StepAhead => {
                fake.set(HOUR);
                HOUR
            }
            Fault::RestartAhead => {
                a.process.kill9();
                restarts += 1;
                a = rig
                    .replica_with(&format!("replica-a-{restarts}"), a_port, &a_extras)
                    .await;
                HOUR
            }
            Fault::StepBack => {
                fake.set(-HOUR);
                -HOUR
            }
            Fault::StepRight => {
                fake.set(0);
                0
            }
        };
        println!("fault {k}: {fault:?}");
        wait_clock_shown(&a.url, offset).await;
        if k == 1 {
            hold_ahead(&rig, &through_a, &through_b).await;
        }
        let since = rig.proxy.recorded();
        a_applies_reports(&rig, &through_a, since).await;
    }
    load.finish().await;
    let checked = rig.check("clock-stepped-postgres", faults as usize).await;
    assert_checked(&checked, faults as usize);
    a.process.assert_running();
    rig.server.process.assert_running();
    for worker in &mut workers {
        worker.assert_running();
    }
}

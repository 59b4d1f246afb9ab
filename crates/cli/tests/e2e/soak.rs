//! Soak: many tasks through `spillway up` with local workers, while the server's resident
//! memory, open files and SQLite WAL are sampled. After a warm-up, none may keep growing.
//!
//! CI runs 20,000 tasks; `SPILLWAY_SOAK_TASKS=1000000` runs the full soak:
//!
//! ```sh
//! SPILLWAY_SOAK_TASKS=1000000 cargo nextest run --release -p spillway --test e2e soak --no-capture
//! ```
//!
//! SQLite keeps every page it touches until its page cache is full, so with a cache bigger than
//! the database the server's memory grows with the database: by design, up to the
//! `sqlite_cache` setting, but indistinguishable here from a leak. The soak therefore gives
//! SQLite its smallest cache (1MiB, full within any warm-up), so what it measures is the
//! server's own memory. `SPILLWAY_SOAK_SQLITE_CACHE=64MiB` measures the default instead; the
//! database passes 64 MiB at about 250,000 tasks, the end of a million-task run's warm-up.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use spillway_client::Client;

use crate::support::{ChildGuard, START_DEADLINE, free_port, spillway, submit, wait_ready};

/// Tasks in CI; `SPILLWAY_SOAK_TASKS` overrides.
const CI_TASKS: u64 = 20_000;
/// SQLite's page cache during the soak; `SPILLWAY_SOAK_SQLITE_CACHE` overrides.
const SQLITE_CACHE: &str = "1MiB";
/// Tasks per job.
const JOB_TASKS: u64 = 2_000;
/// Jobs submitted but not finished at any time, so the queue never runs dry.
const JOBS_AHEAD: usize = 3;
/// Allowed growth of each measure from the end of the warm-up to the end of the run.
const MAX_GROWTH: f64 = 0.10;
/// Open files may move by a few descriptors (a connection more or less) whatever the size.
const FD_SLACK: u64 = 8;
/// The WAL moves by up to a checkpoint's worth of pages between samples.
const WAL_SLACK_BYTES: u64 = 8 << 20;

/// One reading of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    done: u64,
    rss_bytes: u64,
    open_files: u64,
    wal_bytes: u64,
    /// The database file, not checked: it grows with the tasks kept, and shows when the page
    /// cache can be full.
    db_bytes: u64,
}

fn read_sample(pid: Pid, db: &Path, wal: &Path, done: u64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let wal_bytes = std::fs::metadata(wal).map_or(0, |m| m.len());
    let db_bytes = std::fs::metadata(db).map_or(0, |m| m.len());
    Some(Sample {
        done,
        rss_bytes: rss_kib * 1024,
        open_files,
        wal_bytes,
        db_bytes,
    })
}

/// The largest value of `measure` among samples taken while `done` was in `[from, to)`.
fn peak(samples: &[Sample], from: u64, to: u64, measure: impl Fn(&Sample) -> u64) -> u64 {
    samples
        .iter()
        .filter(|s| s.done >= from && s.done < to)
        .map(measure)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_through_up_keeps_memory_open_files_and_wal_flat() {
    let total: u64 = std::env::var("SPILLWAY_SOAK_TASKS")
        .ok()
        .map(|v| v.parse().expect("SPILLWAY_SOAK_TASKS is a number of tasks"))
        .unwrap_or(CI_TASKS);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = spillway(dir.path());
    up.arg("--data-dir")
        .arg(&data)
        .arg("up")
        .arg("--workers")
        .arg("2")
        .arg("--concurrency")
        .arg("8")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--sqlite-cache")
        .arg(std::env::var("SPILLWAY_SOAK_SQLITE_CACHE").unwrap_or_else(|_| SQLITE_CACHE.into()));
    let mut up = ChildGuard::spawn("up", up, dir.path());
    let token = wait_ready(&mut up, &url, &data).await;
    let client = Client::new(&url, Some(token)).expect("client");

    // `up` runs the server in its own process; the workers are its children.
    let server = up.pid();
    let db = data.join("spillway.db");
    let wal = data.join("spillway.db-wal");
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (done, samples, db, wal) = (done.clone(), samples.clone(), db.clone(), wal.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                let now = done.load(std::sync::atomic::Ordering::Relaxed);
                if let Some(sample) = read_sample(server, &db, &wal, now) {
                    samples.lock().expect("samples").push(sample);
                }
            }
        })
    };

    let started = std::time::Instant::now();
    let mut submitted = 0u64;
    let mut running: std::collections::VecDeque<(String, u64)> = Default::default();
    let mut last_print = std::time::Instant::now();
    while submitted < total || !running.is_empty() {
        while submitted < total && running.len() < JOBS_AHEAD {
            let count = JOB_TASKS.min(total - submitted);
            let job = submit(&client, "default", &["true"], count as u32).await;
            running.push_back((job.id.to_string(), count));
            submitted += count;
        }
        let (oldest, count) = running.front().cloned().expect("a running job");
        let job = client.job_get(&oldest).await.expect("read the oldest job");
        if job.state.is_final() {
            assert_eq!(
                job.counts.succeeded, count,
                "every task of job {oldest} must succeed: {:?}",
                job.counts
            );
            running.pop_front();
            done.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        } else {
            // Pacing of a progress poll, not a synchronisation: the loop re-reads the job.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            // With the latest sample, so a long run cut short still shows its trend.
            let latest = samples.lock().expect("samples").last().copied();
            eprintln!(
                "soak: {} of {total} tasks done after {:.0?}; latest {latest:?}",
                done.load(std::sync::atomic::Ordering::Relaxed),
                started.elapsed()
            );
            last_print = std::time::Instant::now();
        }
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let samples = samples.lock().expect("samples").clone();

    // Warm-up is the first quarter; its end (the second quarter) is the baseline, the last
    // quarter is what the run grew to.
    let quarter = total / 4;
    let check = |name: &str, measure: &dyn Fn(&Sample) -> u64, slack: u64| {
        let base = peak(&samples, quarter, 2 * quarter, measure);
        let end = peak(&samples, 3 * quarter, u64::MAX, measure);
        let allowed = (base as f64 * (1.0 + MAX_GROWTH)) as u64 + slack;
        eprintln!("soak: {name}: {base} after warm-up, {end} at the end (allowed {allowed})");
        (name.to_string(), base, end, allowed)
    };
    let results = [
        check("rss_bytes", &|s| s.rss_bytes, 0),
        check("open_files", &|s| s.open_files, FD_SLACK),
        check("wal_bytes", &|s| s.wal_bytes, WAL_SLACK_BYTES),
    ];
    eprintln!(
        "soak: {total} tasks in {elapsed:.1?} ({:.0} tasks/s), {} samples, database {} bytes at the end",
        total as f64 / elapsed.as_secs_f64(),
        samples.len(),
        samples.last().map_or(0, |s| s.db_bytes)
    );
    assert!(
        samples.iter().filter(|s| s.done >= 3 * quarter).count() > 0
            && samples
                .iter()
                .filter(|s| s.done >= quarter && s.done < 2 * quarter)
                .count()
                > 0,
        "too few samples to compare: {samples:?}"
    );
    for (name, base, end, allowed) in results {
        assert!(
            end <= allowed,
            "{name} grew from {base} to {end} (more than {:.0}% after warm-up)",
            MAX_GROWTH * 100.0
        );
    }

    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(START_DEADLINE).await;
    assert!(status.success(), "`spillway up` exited with {status}");
}

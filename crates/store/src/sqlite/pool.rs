//! Opening connections, and the small pool of read-only connections used for reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::hooks::{CheckpointMode, Wal};
use rusqlite::{Connection, OpenFlags};
use spillway_core::{Error, Result};
use std::ffi::c_int;
use tokio::sync::Semaphore;

use super::rows::db;

/// Read connections open at most; a read waits for one to come free. Bounded so that a burst
/// of reads cannot open a connection (and a page cache) each: memory stays within the cache
/// setting, and more connections than cores would only queue on the CPU instead.
pub(crate) const MAX_READERS: usize = 8;
/// How long a connection waits for a lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 128;

/// Open the read-write connection the writer thread owns: WAL, and `synchronous=FULL` so a
/// commit is on disk before anyone is told it happened. New files use 8 KiB pages: fewer
/// page splits and btree levels per task than 4 KiB (about 5% less writer CPU in the
/// throughput bench). Checkpoints run every [`CHECKPOINT_PAGES`] pages (see
/// [`checkpoint_when_full`]); a WAL that grew past that anyway is cut back to 40 MiB (a little
/// over one checkpoint's worth) when it restarts. The page cache holds `cache_kib` KiB.
pub(crate) fn open_writer(path: &Path, cache_kib: u64) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| {
        Error::unavailable(format!("could not open sqlite database {}", path.display()))
            .with_source(e)
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set the busy timeout"))?;
    conn.execute_batch(&format!(
        "PRAGMA page_size = 8192;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache_kib};
         PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
    ))
    .map_err(db("configure the write connection"))?;
    // Replaces SQLite's own automatic checkpoint, which is a wal hook too.
    conn.wal_hook(Some(checkpoint_when_full));
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Bytes a restarted WAL is cut back to: a little over one checkpoint's worth.
const JOURNAL_SIZE_LIMIT: u64 = 40 << 20;

/// WAL pages (32 MiB at 8 KiB) after which a commit checkpoints: rather than SQLite's 1,000,
/// so that busy periods fsync the main file less often.
const CHECKPOINT_PAGES: c_int = 4096;

/// Run after every commit of the writer with the WAL's length in pages: past
/// [`CHECKPOINT_PAGES`], checkpoint in RESTART mode. SQLite's own automatic checkpoint is
/// PASSIVE: it copies only the pages no reader still needs, and under a steady stream of
/// short reads some reader always did, so the WAL outgrew its 32 MiB (to 45 MB in a
/// 400,000-task soak) before one attempt happened to find no reader. RESTART waits (by the
/// busy timeout) for the reads in flight, which take milliseconds, to end, so the next commit
/// writes the WAL from its start again. The commit has happened by the time this runs, so a
/// failed checkpoint is logged and never reported as the commit's error; the next commit
/// tries again.
fn checkpoint_when_full(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages >= CHECKPOINT_PAGES
        && let Err(err) = wal.checkpoint_v2(CheckpointMode::RESTART)
    {
        tracing::warn!(error = %err, pages, "a WAL checkpoint did not complete; the next commit tries again");
    }
    Ok(())
}

fn open_reader(path: &Path, cache_kib: u64) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::unavailable(format!(
            "could not open sqlite database {} for reading",
            path.display()
        ))
        .with_source(e)
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set the busy timeout"))?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};"))
        .map_err(db("configure a read connection"))?;
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Turn on the query planner stability guarantee. Without it SQLite reads bound values while
/// planning (a `LIMIT ?`, a parameter matched against a partial index's constant) and then
/// marks the statement expired whenever its parameters are rebound or cleared, which
/// rusqlite's statement cache does on every return: such statements (the lease query among
/// them) were compiled again on every call.
pub(crate) fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(drop)
        .map_err(db("enable the query planner stability guarantee"))
}

/// Up to [`MAX_READERS`] read-only connections, each used by one blocking task at a time and
/// kept open between reads.
#[derive(Clone)]
pub(crate) struct ReadPool {
    path: PathBuf,
    /// Page cache of each connection, in KiB.
    cache_kib: u64,
    /// One permit per connection that may be in use.
    permits: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub(crate) fn new(path: &Path, cache_kib: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            cache_kib,
            permits: Arc::new(Semaphore::new(MAX_READERS)),
            idle: Arc::default(),
        }
    }

    /// Run `work` on a read connection inside one read transaction (a consistent snapshot).
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.clone();
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal("the sqlite read pool was closed").with_source(e))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => open_reader(&pool.path, pool.cache_kib)?,
            };
            // Cached statements: parsing BEGIN and COMMIT on every read showed in profiles.
            conn.prepare_cached("BEGIN")
                .and_then(|mut s| s.execute([]))
                .map_err(db("begin a read"))?;
            let result = work(&conn);
            // A read transaction has nothing to keep; ending it lets the WAL be checkpointed.
            let ended = conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]));
            if ended.is_ok() {
                pool.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::internal("a sqlite read task panicked").with_source(e))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .expect("read a pragma")
    }

    #[test]
    fn connections_get_the_page_cache_they_are_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spillway.db");
        let writer = open_writer(&path, 4096).expect("open the writer");
        // A negative cache_size is a size in KiB rather than a number of pages.
        assert_eq!(pragma(&writer, "cache_size"), -4096);
        assert_eq!(
            pragma(&writer, "journal_size_limit"),
            JOURNAL_SIZE_LIMIT as i64
        );
        let reader = open_reader(&path, 512).expect("open a reader");
        assert_eq!(pragma(&reader, "cache_size"), -512);
    }

    /// Frames in the WAL, read through a PASSIVE checkpoint.
    fn wal_frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .expect("run a passive checkpoint")
    }

    #[test]
    fn a_full_wal_restarts_even_though_a_reader_held_an_older_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spillway.db");
        let writer = open_writer(&path, 1024).expect("open the writer");
        writer
            .execute_batch("CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'00');")
            .expect("a first commit, so the reader's snapshot is in the WAL");
        // A reader whose snapshot ends at that first commit: a PASSIVE checkpoint cannot copy
        // the pages after it while it reads.
        let reader = open_reader(&path, 128).expect("open a reader");
        reader.execute_batch("BEGIN").expect("begin");
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("read");
        // The reader ends its read once the writer waits for it (its busy handler runs), or
        // once the commit returned without waiting.
        static WRITER_WAITS: AtomicBool = AtomicBool::new(false);
        let committed = Arc::new(AtomicBool::new(false));
        writer
            .busy_handler(Some(|_| {
                WRITER_WAITS.store(true, Ordering::SeqCst);
                std::thread::yield_now();
                true
            }))
            .expect("set a busy handler");
        let held = std::thread::spawn({
            let committed = committed.clone();
            move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while !WRITER_WAITS.load(Ordering::SeqCst) && !committed.load(Ordering::SeqCst) {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the commit never came"
                    );
                    std::thread::yield_now();
                }
                reader.execute_batch("COMMIT").expect("end the read");
            }
        });
        let rows = CHECKPOINT_PAGES + 100;
        writer
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO t SELECT randomblob(7000) FROM n",
                [rows],
            )
            .expect("a commit past the checkpoint size");
        committed.store(true, Ordering::SeqCst);
        held.join().expect("the reader thread");
        // The checkpoint after that commit copied everything, so this commit starts the WAL
        // over: a few frames, not thousands.
        writer
            .execute("INSERT INTO t VALUES (x'01')", [])
            .expect("a small commit");
        let frames = wal_frames(&writer);
        assert!(frames < 16, "the WAL holds {frames} frames after a restart");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_beyond_the_connection_limit_wait_for_a_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spillway.db");
        drop(open_writer(&path, 1024).expect("create the database"));
        let pool = ReadPool::new(&path, 128);
        // Hold every connection: each read blocks until its sender is dropped.
        let mut holds = Vec::new();
        let mut held = Vec::new();
        for _ in 0..MAX_READERS {
            let (hold, wait) = std::sync::mpsc::channel::<()>();
            let (started, on_start) = tokio::sync::oneshot::channel();
            holds.push(hold);
            let pool = pool.clone();
            held.push(tokio::spawn(async move {
                pool.call(move |_| {
                    let _ = started.send(());
                    let _ = wait.recv();
                    Ok(())
                })
                .await
            }));
            on_start.await.expect("the read started");
        }
        let extra = tokio::spawn({
            let pool = pool.clone();
            async move { pool.call(|_| Ok(())).await }
        });
        assert!(
            pool.permits.try_acquire().is_err(),
            "with every connection in use no further read may start"
        );
        assert!(
            !extra.is_finished(),
            "the extra read waits for a connection"
        );
        holds.pop();
        extra.await.expect("join").expect("the extra read ran");
        drop(holds);
        for read in held {
            read.await.expect("join").expect("a held read ran");
        }
        let idle = pool.idle.lock().expect("idle").len();
        assert_eq!(idle, MAX_READERS, "connections are kept for the next reads");
    }
}

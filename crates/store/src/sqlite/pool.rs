//! Opening connections, and the small pool of read-only connections used for reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use spillway_core::{Error, Result};
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
/// throughput bench). Checkpoints run every 4,096 pages (32 MiB of WAL) rather than SQLite's
/// 1,000, so busy periods fsync the main file less often. A WAL that grew past that while
/// readers held the checkpoint back is cut back to 40 MiB (a little over one checkpoint's
/// worth) when it restarts, so one busy moment does not keep its size for good. The page
/// cache holds `cache_kib` KiB.
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
         PRAGMA wal_autocheckpoint = 4096;
         PRAGMA journal_size_limit = 41943040;"
    ))
    .map_err(db("configure the write connection"))?;
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
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
        assert_eq!(pragma(&writer, "journal_size_limit"), 40 << 20);
        let reader = open_reader(&path, 512).expect("open a reader");
        assert_eq!(pragma(&reader, "cache_size"), -512);
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

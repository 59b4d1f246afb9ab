//! Opening connections, and the small pool of read-only connections used for reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use spillway_core::{Error, Result};

use super::rows::db;

/// Idle read connections kept open; more are opened under load and closed afterwards.
const MAX_IDLE_READERS: usize = 4;
/// How long a connection waits for a lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 128;

/// Open the read-write connection the writer thread owns: WAL, and `synchronous=FULL` so a
/// commit is on disk before anyone is told it happened. New files use 8 KiB pages: fewer
/// page splits and btree levels per task than 4 KiB (about 5% less writer CPU in the
/// throughput bench). Checkpoints run every 4,096 pages (32 MiB of WAL) rather than SQLite's
/// 1,000, so busy periods fsync the main file less often; the WAL file is truncated back to
/// 256 MiB at most after a checkpoint.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| {
        Error::unavailable(format!("could not open sqlite database {}", path.display()))
            .with_source(e)
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set the busy timeout"))?;
    conn.execute_batch(
        "PRAGMA page_size = 8192;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 4096;
         PRAGMA journal_size_limit = 268435456;",
    )
    .map_err(db("configure the write connection"))?;
    stable_plans(&conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection> {
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
    conn.execute_batch("PRAGMA cache_size = -16384;")
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

/// Read-only connections, each used by one blocking task at a time.
#[derive(Clone)]
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
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
        tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(conn) => conn,
                None => open_reader(&pool.path)?,
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
                let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| Error::internal("a sqlite read task panicked").with_source(e))?
    }
}

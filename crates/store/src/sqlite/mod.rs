//! The SQLite backend: one file, durable, fast enough for a single server.
//!
//! # Group commit
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every commit waits for an
//! fsync, which costs far more than the writes themselves. So all writes go through one
//! dedicated thread that owns the only read-write connection ([`writer`]). Callers send it a
//! closure over a channel and await a oneshot answer. The thread takes the first request,
//! then drains every other request already queued (up to a bound), and runs them all in ONE
//! `BEGIN IMMEDIATE … COMMIT`: one fsync pays for the whole group. Each request runs inside
//! its own `SAVEPOINT`, so a request that fails is rolled back alone and the others still
//! commit (a group of one skips the savepoint and rolls back the transaction if it fails). Only after the `COMMIT` returns is any caller answered, so an answer always means
//! "on disk". Under load the groups grow by themselves (requests pile up while the previous
//! fsync runs), which is what lets many small calls reach high throughput; at rest a single
//! request commits at once, with no added delay.
//!
//! A single writer also makes leasing trivially safe: no two lease calls ever interleave, so
//! a task can never be handed to two workers.
//!
//! Reads run on a small pool of read-only connections on the blocking thread pool; WAL mode
//! lets them proceed while the writer commits, each inside one read transaction (a snapshot).
//!
//! Job counts are not stored: they are counted from the tasks of the job grouped by state on
//! read (index `tasks_by_job`), so completing a task never contends on a hot job row.

mod migrate;
mod pool;
mod queries;
mod rows;
mod store;
mod writer;

use std::path::Path;

use spillway_core::{Error, Result};

use crate::Wakeups;
#[cfg(test)]
pub(crate) use migrate::MIGRATIONS;
use pool::ReadPool;
use writer::Writer;

/// A [`Store`](crate::Store) on one SQLite file.
pub struct SqliteStore {
    writer: Writer,
    readers: ReadPool,
    wakeups: Wakeups,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// How a [`SqliteStore`] uses memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Bytes of page cache for the whole store: half for the write connection, the other half
    /// shared by the read connections. SQLite fills a cache with every
    /// page it touches until the cache is full, so the server's memory grows with the database
    /// up to this much and then stays put.
    pub cache_bytes: u64,
}

impl SqliteOptions {
    /// The default page cache: 64 MiB, enough for the hot pages of millions of tasks.
    pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
    /// The smallest page cache accepted: 1 MiB.
    pub const MIN_CACHE_BYTES: u64 = 1 << 20;

    /// Page cache of the write connection, in KiB.
    fn writer_cache_kib(self) -> u64 {
        self.cache_bytes / 2 / 1024
    }

    /// Page cache of each read connection, in KiB.
    fn reader_cache_kib(self) -> u64 {
        self.cache_bytes / 2 / pool::MAX_READERS as u64 / 1024
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
        }
    }
}

impl SqliteStore {
    /// Open (creating the file and its folders if needed) and migrate the database at `path`,
    /// with the default [`SqliteOptions`].
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Open and migrate the database at `path` with `options`.
    pub async fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        if options.cache_bytes < SqliteOptions::MIN_CACHE_BYTES {
            return Err(Error::invalid(format!(
                "a SQLite page cache of {} bytes is too small: give at least 1MiB",
                options.cache_bytes
            )));
        }
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::unavailable(format!(
                        "could not create the folder {} for the sqlite database: check permissions",
                        dir.display()
                    ))
                    .with_source(e)
                })?;
            }
            make_private(&path)?;
            let conn = pool::open_writer(&path, options.writer_cache_kib())?;
            migrate::migrate(&conn)?;
            tracing::info!(path = %path.display(), "opened sqlite store");
            Ok(SqliteStore {
                writer: Writer::start(conn)?,
                readers: ReadPool::new(&path, options.reader_cache_kib()),
                wakeups: Wakeups::default(),
            })
        })
        .await
        .map_err(|e| Error::internal("opening the sqlite store panicked").with_source(e))?
    }
}

/// Mode of the database file: it holds token hashes, payloads and commands, so its owner
/// only. SQLite gives the `-wal` and `-shm` files the database file's mode.
const DATABASE_FILE_MODE: u32 = 0o600;

/// Create the database file with [`DATABASE_FILE_MODE`] before SQLite does (which would use
/// 0644), and take group and other access away from an existing one and its `-wal`/`-shm`.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::unavailable(format!(
            "could not {what} the sqlite database file {}: check that the folder belongs to this user",
            p.display()
        ))
        .with_source(e)
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(DATABASE_FILE_MODE)
        .open(path)
        .map_err(|e| io("create", path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        let mode = match std::fs::metadata(file) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("inspect", file, e)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(DATABASE_FILE_MODE))
                .map_err(|e| io("restrict the mode of", file, e))?;
            tracing::info!(path = %file.display(), old_mode = format!("{:o}", mode & 0o7777), "made the sqlite file readable by its owner only");
        }
    }
    Ok(())
}

//! The one writer thread and its group commit (see the module doc of [`super`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use spillway_core::{Error, Result};
use tokio::sync::oneshot;

/// Most requests folded into one transaction; bounds how long one commit keeps callers waiting.
const MAX_GROUP: usize = 512;

/// Most writes waiting for the writer thread. Four full groups: a write accepted into a full
/// queue is committed within about four commits (a few fsyncs, tens of milliseconds), which
/// is still a useful answer; beyond that, queueing only grows memory and latency, so the write
/// is refused as unavailable (503 with Retry-After over HTTP) and the caller tries again. The
/// server's in-flight limit (1024 requests by default) normally sheds load before this fills;
/// this bound is the backstop when the disk stalls or that limit is raised.
pub(crate) const QUEUE_CAPACITY: usize = 4 * MAX_GROUP;

/// How a finished request answers its caller once the fate of the commit is known.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued write: run it (in a savepoint when grouped), learn whether it failed, answer
/// after commit.
trait Request: Send {
    /// Run against the open transaction; returns whether it failed and how to answer.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Answer);
    /// Answer without running (the transaction could not be opened).
    fn abort(self: Box<Self>, message: &str);
}

struct Call<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Request for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Answer) {
        let Call { work, reply } = *self;
        let result = (work)(conn);
        let failed = result.is_err();
        let answer: Answer = Box::new(move |commit_error| {
            let outcome = match commit_error {
                None => result,
                Some(message) => Err(Error::unavailable(message.to_string())),
            };
            // The caller may have gone away (request cancelled); nothing to do then.
            let _ = reply.send(outcome);
        });
        (failed, answer)
    }

    fn abort(self: Box<Self>, message: &str) {
        let _ = self
            .reply
            .send(Err(Error::unavailable(message.to_string())));
    }
}

/// The handle callers use to queue writes.
pub(crate) struct Writer {
    sender: Option<mpsc::SyncSender<Box<dyn Request>>>,
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start the writer thread owning `conn`, with a queue of [`QUEUE_CAPACITY`].
    pub(crate) fn start(conn: Connection) -> Result<Self> {
        Self::with_capacity(conn, QUEUE_CAPACITY)
    }

    /// Start the writer thread owning `conn`, with room for `capacity` waiting writes.
    fn with_capacity(conn: Connection, capacity: usize) -> Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Box<dyn Request>>(capacity);
        let thread = std::thread::Builder::new()
            .name("spillway-sqlite-writer".into())
            .spawn(move || run(conn, receiver))
            .map_err(|e| {
                Error::internal("could not start the sqlite writer thread").with_source(e)
            })?;
        Ok(Self {
            sender: Some(sender),
            capacity,
            thread: Some(thread),
        })
    }

    /// Run `work` inside the next group transaction and return its result once committed.
    ///
    /// Unavailable at once, with nothing written, when [`QUEUE_CAPACITY`] writes are waiting
    /// already: a refused write was never accepted, so the caller may simply try again.
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::unavailable("the sqlite writer has stopped: restart the server");
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        match sender.try_send(Box::new(Call { work, reply })) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                return Err(Error::unavailable(format!(
                    "the server is overloaded: {} sqlite writes are already waiting to be committed; retry in a second",
                    self.capacity
                )));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        answer.await.map_err(|_| {
            Error::internal("a sqlite write panicked or the writer stopped before answering")
        })?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it commits what is queued.
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, receiver: mpsc::Receiver<Box<dyn Request>>) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(&conn, group);
    }
    tracing::debug!("sqlite writer stopped");
}

/// Run one fixed control statement (BEGIN, SAVEPOINT, COMMIT, ...) from the statement cache,
/// so the writer does not parse it again for every group.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Run every request of `group` in one transaction, commit once, then answer them all.
///
/// With several requests, each runs in its own savepoint so a failed one is rolled back
/// alone. A lone request needs no savepoint: if it fails, the whole transaction is rolled
/// back instead of committed.
fn commit_group(conn: &Connection, group: Vec<Box<dyn Request>>) {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        let message = format!("sqlite could not begin a write transaction: {e}");
        tracing::error!(error = %e, requests = group.len(), "sqlite begin failed");
        for request in group {
            request.abort(&message);
        }
        return;
    }
    let size = group.len();
    let alone = size == 1;
    let mut answers = Vec::with_capacity(size);
    let mut any_ok = false;
    for request in group {
        if !alone && let Err(e) = control(conn, "SAVEPOINT request") {
            request.abort(&format!("sqlite could not open a savepoint: {e}"));
            continue;
        }
        let (failed, answer) = match catch_unwind(AssertUnwindSafe(|| request.run(conn))) {
            Ok(done) => done,
            Err(_) => {
                tracing::error!("a sqlite write request panicked; its changes are rolled back");
                // The reply sender was dropped in the unwind: the caller sees an internal error.
                (true, Box::new(|_: Option<&str>| {}) as Answer)
            }
        };
        answers.push(answer);
        any_ok |= !failed;
        if alone {
            break;
        }
        let closed = if failed {
            control(conn, "ROLLBACK TO request").and_then(|()| control(conn, "RELEASE request"))
        } else {
            control(conn, "RELEASE request")
        };
        if let Err(e) = closed {
            tracing::error!(error = %e, "sqlite could not close a savepoint");
        }
    }
    if !any_ok {
        // Nothing to keep: every request failed (each answers with its own error). Some
        // errors (disk full, I/O) already ended the transaction.
        if !conn.is_autocommit()
            && let Err(e) = control(conn, "ROLLBACK")
        {
            tracing::error!(error = %e, "sqlite could not roll back a failed group");
        }
        for answer in answers {
            answer(None);
        }
        return;
    }
    match control(conn, "COMMIT") {
        Ok(()) => {
            for answer in answers {
                answer(None);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = size, "sqlite group commit failed");
            let _ = control(conn, "ROLLBACK");
            let message = format!("sqlite could not commit: {e}");
            for answer in answers {
                answer(Some(&message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use spillway_core::{Error, ErrorKind, Result};

    use super::Writer;

    fn writer() -> Writer {
        writer_with_capacity(super::QUEUE_CAPACITY)
    }

    fn writer_with_capacity(capacity: usize) -> Writer {
        let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("open: {e}"));
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)")
            .unwrap_or_else(|e| panic!("schema: {e}"));
        Writer::with_capacity(conn, capacity).unwrap_or_else(|e| panic!("start: {e}"))
    }

    /// Insert `n`, then fail when `n` is odd: a failed write must leave nothing behind.
    async fn insert(writer: &Writer, n: i64) -> Result<()> {
        writer
            .call(move |c| {
                c.execute("INSERT INTO t (n) VALUES (?1)", [n])
                    .map_err(|e| Error::internal("insert").with_source(e))?;
                if n % 2 == 1 {
                    return Err(Error::conflict(format!("odd {n}")));
                }
                Ok(())
            })
            .await
    }

    async fn rows(writer: &Writer) -> Vec<i64> {
        writer
            .call(|c| {
                c.prepare("SELECT n FROM t ORDER BY n")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .map_err(|e| Error::internal("read").with_source(e))
            })
            .await
            .unwrap_or_else(|e| panic!("read: {e}"))
    }

    #[tokio::test]
    async fn a_lone_failed_write_is_rolled_back() {
        let writer = writer();
        let err = insert(&writer, 1).await.err();
        assert!(err.is_some_and(|e| e.to_string().contains("odd 1")));
        insert(&writer, 2)
            .await
            .unwrap_or_else(|e| panic!("insert: {e}"));
        assert_eq!(rows(&writer).await, vec![2]);
    }

    /// However the requests are grouped, each failed one is rolled back alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_writes_in_a_group_roll_back_alone() {
        let writer = writer();
        let results = futures::future::join_all((0..64).map(|n| insert(&writer, n))).await;
        for (n, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), n % 2 == 0, "request {n}: {result:?}");
        }
        let expected: Vec<i64> = (0..64).filter(|n| n % 2 == 0).collect();
        assert_eq!(rows(&writer).await, expected);
    }

    /// With the writer thread held inside a write, the queue fills; the next write is refused
    /// at once as unavailable and never written, while the queued ones all commit.
    #[tokio::test]
    async fn a_full_queue_refuses_writes_without_losing_queued_ones() {
        let writer = writer_with_capacity(2);
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let mut held = Box::pin(writer.call(move |c| {
            c.execute("INSERT INTO t (n) VALUES (0)", [])
                .map_err(|e| Error::internal("insert").with_source(e))?;
            let _ = started_tx.send(());
            // Held here until the test has filled the queue.
            release_rx
                .recv()
                .map_err(|e| Error::internal("released").with_source(e))
        }));
        assert!(futures::poll!(&mut held).is_pending());
        // The writer thread has taken the held write off the queue: the queue is empty.
        started
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the held write never started: {e}"));
        let mut queued = vec![Box::pin(insert(&writer, 2)), Box::pin(insert(&writer, 4))];
        for call in &mut queued {
            assert!(
                futures::poll!(call).is_pending(),
                "queued, not yet committed"
            );
        }

        // Refused at the first poll, not queued.
        let refused = match futures::poll!(Box::pin(insert(&writer, 6))) {
            std::task::Poll::Ready(result) => result.err(),
            std::task::Poll::Pending => panic!("a third write was queued beyond the capacity of 2"),
        };
        assert!(
            refused
                .as_ref()
                .is_some_and(|e| e.kind() == ErrorKind::Unavailable
                    && e.message().contains("2 sqlite writes are already waiting")),
            "{refused:?}"
        );

        release.send(()).unwrap_or_else(|e| panic!("release: {e}"));
        held.await.unwrap_or_else(|e| panic!("held write: {e}"));
        for call in queued {
            call.await.unwrap_or_else(|e| panic!("queued write: {e}"));
        }
        assert_eq!(
            rows(&writer).await,
            vec![0, 2, 4],
            "the refused 6 was written"
        );
    }
}

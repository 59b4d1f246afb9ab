//! The one writer thread and its group commit (see the module doc of [`super`]).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use spillway_core::{Error, Result};
use tokio::sync::oneshot;

/// Most requests folded into one transaction; bounds how long one commit keeps callers waiting.
const MAX_GROUP: usize = 512;

/// How a finished request answers its caller once the fate of the commit is known.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued write: run it in a savepoint, learn whether it failed, answer after commit.
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
    sender: Option<mpsc::Sender<Box<dyn Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Start the writer thread owning `conn`.
    pub(crate) fn start(conn: Connection) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Request>>();
        let thread = std::thread::Builder::new()
            .name("spillway-sqlite-writer".into())
            .spawn(move || run(conn, receiver))
            .map_err(|e| {
                Error::internal("could not start the sqlite writer thread").with_source(e)
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Run `work` inside the next group transaction and return its result once committed.
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::unavailable("the sqlite writer has stopped: restart the server");
        self.sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(Box::new(Call { work, reply }))
            .map_err(|_| stopped())?;
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

/// Run every request of `group` in one transaction, each in its own savepoint, commit once,
/// then answer them all.
fn commit_group(conn: &Connection, group: Vec<Box<dyn Request>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = format!("sqlite could not begin a write transaction: {e}");
        tracing::error!(error = %e, requests = group.len(), "sqlite begin failed");
        for request in group {
            request.abort(&message);
        }
        return;
    }
    let size = group.len();
    let mut answers = Vec::with_capacity(size);
    for request in group {
        if let Err(e) = conn.execute_batch("SAVEPOINT request") {
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
        let end = if failed {
            "ROLLBACK TO request; RELEASE request"
        } else {
            "RELEASE request"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "sqlite could not close a savepoint");
        }
        answers.push(answer);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for answer in answers {
                answer(None);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = size, "sqlite group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            let message = format!("sqlite could not commit: {e}");
            for answer in answers {
                answer(Some(&message));
            }
        }
    }
}

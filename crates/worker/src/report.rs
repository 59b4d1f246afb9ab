//! The worker's reports, batched: outcomes of its tasks that arrive while a report of their
//! kind is in flight go together in the next call, one call per kind (complete, fail,
//! release). No timer holds a report back: a lone outcome is sent at once, and a worker whose
//! tasks end together sends a few calls instead of one per task.
//!
//! Each task gets its own answer (applied, or refused with the server's reason). A call that
//! fails as a whole (the server unreachable, an error answer) is answered with that error to
//! every task in it; retrying is each task's own business, as it was when tasks reported one
//! by one (see `task::report`).

use std::future::Future;

use spillway_client::Client;
use spillway_core::api::{
    CompleteRequest, Completion, FailRequest, Failure, MAX_LEASE_BATCH, Release, ReleaseRequest,
    ReportResponse,
};
use spillway_core::{Error, Result, TaskId};
use tokio::sync::{mpsc, oneshot};

/// Most reports in one call: the server's limit.
const MAX_BATCH: usize = MAX_LEASE_BATCH as usize;

/// A report of one task.
pub(crate) trait Item: Send + 'static {
    /// The task reported on.
    fn task_id(&self) -> TaskId;
}

impl Item for Completion {
    fn task_id(&self) -> TaskId {
        self.task_id
    }
}

impl Item for Failure {
    fn task_id(&self) -> TaskId {
        self.task_id
    }
}

impl Item for Release {
    fn task_id(&self) -> TaskId {
        self.task_id
    }
}

/// A report waiting to be sent, and where its answer goes.
type Pending<T> = (T, oneshot::Sender<Result<()>>);

/// One kind of report: its queue, emptied by a task that sends one call at a time. The task
/// ends once the lane is dropped and the queue is empty.
pub(crate) struct Lane<T> {
    queue: mpsc::UnboundedSender<Pending<T>>,
}

impl<T: Item> Lane<T> {
    /// Start the lane's sender; `send` makes one call with the reports given, in order.
    pub(crate) fn start<F, Fut>(mut send: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<ReportResponse>> + Send,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Pending<T>>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                // Everything that arrived while the last call was in flight.
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (items, answers): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
                let tasks: Vec<TaskId> = items.iter().map(Item::task_id).collect();
                let answered = send(items).await;
                for (answer, reply) in answer_each(&tasks, answered).into_iter().zip(answers) {
                    // The task that asked may be gone (its worker stopping): nobody to tell.
                    let _ = reply.send(answer);
                }
            }
        });
        Self { queue }
    }

    /// Send `item` with the other reports of its kind and wait for its own answer: `Ok` when
    /// applied, a conflict when the server refused it (the lease is no longer this worker's
    /// or the task is not found), the call's error when the call failed.
    pub(crate) async fn report(&self, item: T) -> Result<()> {
        let stopped = || Error::unavailable("the worker's reporter stopped");
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Each task's answer from the answer to the call that carried `tasks`.
fn answer_each(tasks: &[TaskId], answered: Result<ReportResponse>) -> Vec<Result<()>> {
    let whole = |e: &Error| -> Vec<Result<()>> {
        tasks
            .iter()
            .map(|_| Err(Error::new(e.kind(), e.message().to_string())))
            .collect()
    };
    let response = match answered {
        Ok(response) => response,
        Err(e) => return whole(&e),
    };
    if response.results.len() != tasks.len() {
        return whole(&Error::internal(format!(
            "the server answered {} reports with {} results",
            tasks.len(),
            response.results.len()
        )));
    }
    tasks
        .iter()
        .zip(response.results)
        .map(|(task, result)| {
            if result.task_id != *task {
                Err(Error::internal(format!(
                    "the server answered the report of task {task} as task {}",
                    result.task_id
                )))
            } else if result.ok {
                Ok(())
            } else {
                Err(Error::conflict(
                    result.error.unwrap_or_else(|| "report refused".to_string()),
                ))
            }
        })
        .collect()
}

/// The worker's three lanes.
pub(crate) struct Reporter {
    pub(crate) complete: Lane<Completion>,
    pub(crate) fail: Lane<Failure>,
    pub(crate) release: Lane<Release>,
}

impl Reporter {
    /// Start the lanes, which report through `client`.
    pub(crate) fn start(client: &Client) -> Self {
        let complete = {
            let client = client.clone();
            Lane::start(move |completions| {
                let client = client.clone();
                async move { client.task_complete(&CompleteRequest { completions }).await }
            })
        };
        let fail = {
            let client = client.clone();
            Lane::start(move |failures| {
                let client = client.clone();
                async move { client.task_fail(&FailRequest { failures }).await }
            })
        };
        let release = {
            let client = client.clone();
            Lane::start(move |releases| {
                let client = client.clone();
                async move { client.task_release(&ReleaseRequest { releases }).await }
            })
        };
        Self {
            complete,
            fail,
            release,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use spillway_core::ErrorKind;
    use spillway_core::api::ReportResult;
    use tokio::sync::Semaphore;

    use super::*;

    fn completion(task_id: TaskId) -> Completion {
        Completion {
            task_id,
            lease_token: format!("lease-{task_id}"),
            exit_code: Some(0),
            result: None,
            log_tail: String::new(),
        }
    }

    /// A lane whose calls are recorded and answer only when `gate` lets them; task 3's
    /// report is refused as stale, and a call carrying task 99 fails as a whole.
    fn lane(gate: Arc<Semaphore>, calls: Arc<Mutex<Vec<Vec<TaskId>>>>) -> Lane<Completion> {
        Lane::start(move |items: Vec<Completion>| {
            let (gate, calls) = (gate.clone(), calls.clone());
            async move {
                let ids: Vec<TaskId> = items.iter().map(|c| c.task_id).collect();
                calls.lock().expect("calls").push(ids.clone());
                gate.acquire().await.expect("gate").forget();
                if ids.contains(&99) {
                    return Err(Error::unavailable("the server is restarting"));
                }
                Ok(ReportResponse {
                    results: ids
                        .into_iter()
                        .map(|task_id| ReportResult {
                            task_id,
                            ok: task_id != 3,
                            error: (task_id == 3).then(|| "lease no longer current".into()),
                        })
                        .collect(),
                })
            }
        })
    }

    async fn calls_made(calls: &Arc<Mutex<Vec<Vec<TaskId>>>>, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
        while calls.lock().expect("calls").len() < n {
            assert!(tokio::time::Instant::now() < deadline, "no call {n} made");
            tick.tick().await;
        }
    }

    #[tokio::test]
    async fn reports_that_arrive_during_a_call_go_together_and_each_gets_its_own_answer() {
        let gate = Arc::new(Semaphore::new(0));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let lane = Arc::new(lane(gate.clone(), calls.clone()));
        let first = {
            let lane = lane.clone();
            tokio::spawn(async move { lane.report(completion(1)).await })
        };
        calls_made(&calls, 1).await;
        // While the first call is in flight, seven more tasks end: the first poll of `rest`
        // queues all seven, before `release` lets the first call answer.
        let rest = futures::future::join_all((2..=8).map(|id| lane.report(completion(id))));
        let release = async {
            tokio::task::yield_now().await;
            gate.add_permits(2);
        };
        let (rest, ()) = tokio::join!(rest, release);
        assert!(first.await.expect("report").is_ok());
        let answers: Vec<_> = (2..=8).zip(rest).collect();
        assert_eq!(
            *calls.lock().expect("calls"),
            vec![vec![1], (2..=8).collect::<Vec<_>>()],
            "one call for the first, one for the seven that came while it was in flight"
        );
        for (id, answer) in answers {
            match answer {
                Ok(()) => assert_ne!(id, 3),
                Err(e) => {
                    assert_eq!(id, 3, "task {id} was refused: {e}");
                    assert_eq!(e.kind(), ErrorKind::Conflict);
                    assert!(e.message().contains("no longer current"), "{e}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_call_that_fails_fails_every_report_in_it_with_its_error() {
        let gate = Arc::new(Semaphore::new(10));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let lane = lane(gate, calls);
        let failed = lane
            .report(completion(99))
            .await
            .expect_err("the call failed");
        assert_eq!(failed.kind(), ErrorKind::Unavailable);
        assert!(failed.is_retryable());
        lane.report(completion(5))
            .await
            .expect("the next call applies");
    }
}

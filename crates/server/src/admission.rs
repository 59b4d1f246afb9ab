//! Admission control: a bound on the requests served at once, so that load beyond what the
//! server can serve is refused at once instead of queueing in memory and slowing every answer.
//!
//! - Every request except the probes (`/healthz`, `/readyz`) and `/metrics` takes an in-flight
//!   permit when it arrives (`max_in_flight_requests`). With none left it is answered at once,
//!   before its body is read: 503 `application/problem+json` with `Retry-After`.
//! - A lease long-poll gives its permit back while it is parked waiting for work, and holds a
//!   long-poll slot instead (`max_long_polls`), so a fleet of idle workers never uses up the
//!   in-flight limit. Once woken it waits for a permit again until its deadline; the semaphore
//!   is fair, so woken workers (who drain the backlog) are served before new arrivals.
//! - A lease that would park beyond `max_long_polls` is answered 503 with `Retry-After` too.
//!   Not an empty answer: a worker asks again at once after an empty answer, which would turn
//!   the cap into a busy loop of store calls, while it backs off after a 503.
//!
//! The permit covers the handler up to its answer's head; a streamed download body is sent
//! after the permit is given back.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use spillway_core::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{DEFAULT_MAX_IN_FLIGHT_REQUESTS, DEFAULT_MAX_LONG_POLLS};
use crate::problem::{RETRY_AFTER_SECONDS, error_response};
use crate::state::AppState;

/// Paths never shed: an overloaded server must still look alive and ready to its orchestrator
/// (restarting it would only make things worse) and still be observable.
pub(crate) const NEVER_SHED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The two bounds and what is counted against them.
#[derive(Debug)]
pub struct Admission {
    in_flight: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
    max_in_flight: usize,
    max_long_polls: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT_REQUESTS, DEFAULT_MAX_LONG_POLLS)
    }
}

impl Admission {
    /// At most `max_in_flight` requests served at once and `max_long_polls` leases parked
    /// (each at least 1 and at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(max_in_flight: usize, max_long_polls: usize) -> Self {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        let max_long_polls = max_long_polls.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            long_polls: Arc::new(Semaphore::new(max_long_polls)),
            max_in_flight,
            max_long_polls,
        }
    }

    /// Requests being served now (parked long-polls not counted).
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }

    /// Lease long-polls parked now, waiting for work or for a permit to go on.
    pub fn parked(&self) -> usize {
        self.max_long_polls - self.long_polls.available_permits()
    }

    /// A ticket holding an in-flight permit, or `None` when the limit is reached.
    fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let permit = self.in_flight.clone().try_acquire_owned().ok()?;
        Some(Ticket {
            permit: Arc::new(Mutex::new(Some(permit))),
            admission: self.clone(),
        })
    }

    fn overloaded(&self) -> Error {
        Error::unavailable(format!(
            "the server is overloaded: {} requests are already being served (max_in_flight_requests); retry after {RETRY_AFTER_SECONDS} second",
            self.max_in_flight
        ))
    }
}

/// The admission of one request: its in-flight permit, given back while a lease is parked.
/// Handlers reach it as a request extension.
#[derive(Debug, Clone)]
pub struct Ticket {
    permit: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    admission: Arc<Admission>,
}

impl Ticket {
    /// Park: give the in-flight permit back and hold a long-poll slot until [`Parked::resume`]
    /// or drop. Unavailable when `max_long_polls` are parked already.
    pub(crate) fn park(&self) -> Result<Parked<'_>, Error> {
        let max = self.admission.max_long_polls;
        let slot = self
            .admission
            .long_polls
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Error::unavailable(format!(
                    "the server is overloaded: {max} lease long-polls are already waiting for work (max_long_polls); retry after {RETRY_AFTER_SECONDS} second"
                ))
            })?;
        self.set(None);
        Ok(Parked {
            ticket: self,
            _slot: slot,
        })
    }

    fn set(&self, permit: Option<OwnedSemaphorePermit>) {
        *self.permit.lock().unwrap_or_else(|p| p.into_inner()) = permit;
    }
}

/// A parked lease: counted against `max_long_polls`, not against the in-flight limit.
#[derive(Debug)]
pub(crate) struct Parked<'a> {
    ticket: &'a Ticket,
    _slot: OwnedSemaphorePermit,
}

impl Parked<'_> {
    /// Back in flight: wait (in arrival order, ahead of new requests) for an in-flight permit
    /// until `deadline`. False when none came in time; the caller then answers with nothing.
    pub(crate) async fn resume(self, deadline: Instant) -> bool {
        let semaphore = self.ticket.admission.in_flight.clone();
        match tokio::time::timeout_at(deadline, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.ticket.set(Some(permit));
                true
            }
            // Elapsed, or the semaphore closed (it never is).
            _ => false,
        }
    }
}

/// The middleware: admit the request or answer 503 at once.
pub async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if NEVER_SHED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let admission = state.admission();
    let Some(ticket) = admission.admit() else {
        tracing::debug!(
            path = request.uri().path(),
            "request shed: server overloaded"
        );
        return error_response(&admission.overloaded());
    };
    // Handlers take what they need out of the request (a body extractor drops the rest), so
    // the middleware keeps its own handle: the permit lives until the handler has answered.
    request.extensions_mut().insert(ticket.clone());
    let response = next.run(request).await;
    drop(ticket);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_parked_request_frees_its_permit_and_resumes_once_one_is_free() {
        let admission = Arc::new(Admission::new(1, 1));
        let first = admission.admit().expect("the first is admitted");
        assert!(admission.admit().is_none(), "admitted over the limit");

        let parked = first.park().expect("a long-poll slot is free");
        assert_eq!((admission.in_flight(), admission.parked()), (0, 1));
        let err = first.park().expect_err("parked beyond max_long_polls");
        assert!(err.message().contains("max_long_polls"), "{err}");

        let other = admission.admit().expect("the parked one's permit is free");
        assert!(
            !parked.resume(Instant::now()).await,
            "resumed without a free permit"
        );
        assert_eq!((admission.in_flight(), admission.parked()), (1, 0));

        let parked = first.park().expect("the slot was given back");
        drop(other);
        assert!(parked.resume(Instant::now()).await, "a permit was free");
        assert_eq!((admission.in_flight(), admission.parked()), (1, 0));
        drop(first);
        assert_eq!(admission.in_flight(), 0);
    }
}

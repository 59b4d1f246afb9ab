//! Admission control: a bound on the requests served at once, so that load beyond what the
//! server can serve is refused at once instead of queueing in memory and slowing every answer.
//!
//! - Every request except the probes (`/healthz`, `/readyz`) and `/metrics` takes an in-flight
//!   permit when it arrives (`max_in_flight_requests`). With none left it is answered at once,
//!   before its body is read: 503 `application/problem+json` with `Retry-After`.
//! - Within that bound, API requests (all but the streamed uploads, `PUT`) are held to an
//!   adaptive limit that follows their latency ([`limit`]): once answers queue, fewer are
//!   served at once and the rest are turned away the same way, so the requests admitted keep
//!   the latency of a server that keeps up. An upload's time is its client's bandwidth, not the
//!   server's load, so uploads count against `max_in_flight_requests` only.
//! - A lease long-poll gives its permit back while it is parked waiting for work, and holds a
//!   long-poll slot instead (`max_long_polls`), so a fleet of idle workers never uses up the
//!   in-flight limit. Once woken it waits for a permit again until its deadline; the semaphore
//!   is fair, so woken workers (who drain the backlog) are served before new arrivals. Its
//!   latency, mostly waiting for work, is not a sample of the limit.
//! - A lease that would park beyond `max_long_polls` is answered 503 with `Retry-After` too.
//!   Not an empty answer: a worker asks again at once after an empty answer, which would turn
//!   the cap into a busy loop of store calls, while it backs off after a 503.
//!
//! The permit covers the handler up to its answer's head; a streamed download body is sent
//! after the permit is given back.

mod limit;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use spillway_core::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use self::limit::AdaptiveLimit;
use crate::config::{DEFAULT_MAX_IN_FLIGHT_REQUESTS, DEFAULT_MAX_LONG_POLLS};
use crate::problem::{RETRY_AFTER_SECONDS, error_response};
use crate::state::AppState;

/// Paths never shed: an overloaded server must still look alive and ready to its orchestrator
/// (restarting it would only make things worse) and still be observable.
pub(crate) const NEVER_SHED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The bounds and what is counted against them.
#[derive(Debug)]
pub struct Admission {
    in_flight: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
    max_in_flight: usize,
    max_long_polls: usize,
    /// API requests being served (uploads and parked long-polls not counted).
    api_in_flight: AtomicUsize,
    /// The adaptive limit on `api_in_flight`, as last set by `adaptive`.
    api_limit: AtomicUsize,
    /// `None` when the limit is fixed (`adaptive_in_flight_limit = false`).
    adaptive: Option<Mutex<AdaptiveLimit>>,
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
            api_in_flight: AtomicUsize::new(0),
            api_limit: AtomicUsize::new(max_in_flight),
            adaptive: Some(Mutex::new(AdaptiveLimit::new(
                max_in_flight,
                Instant::now(),
            ))),
        }
    }

    /// The same bounds, with the in-flight limit fixed at `max_in_flight`.
    pub fn fixed(max_in_flight: usize, max_long_polls: usize) -> Self {
        Self {
            adaptive: None,
            ..Self::new(max_in_flight, max_long_polls)
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

    /// API requests served at once for now: the adaptive limit, at most `max_in_flight`.
    pub fn api_limit(&self) -> usize {
        self.api_limit.load(Ordering::Relaxed)
    }

    /// A ticket holding an in-flight permit, or `None` when a limit is reached. An `api`
    /// request also counts against the adaptive limit.
    fn admit(self: &Arc<Self>, api: bool) -> Option<Ticket> {
        if let Some(adaptive) = &self.adaptive
            && api
            && self.api_in_flight.load(Ordering::Relaxed) >= self.api_limit()
        {
            lock(adaptive).turned_away();
            return None;
        }
        let permit = self.in_flight.clone().try_acquire_owned().ok()?;
        Some(Ticket {
            slot: Arc::new(Mutex::new(Some(self.slot(permit, api)))),
            parked: Arc::new(AtomicBool::new(false)),
            api,
            admission: self.clone(),
        })
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit, api: bool) -> Slot {
        if api {
            self.api_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        Slot {
            _permit: permit,
            api: api.then(|| self.clone()),
        }
    }

    /// Feed an answered API request's latency to the adaptive limit.
    fn answered(&self, latency: std::time::Duration) {
        let Some(adaptive) = &self.adaptive else {
            return;
        };
        let changed = lock(adaptive).sample(latency, Instant::now());
        if let Some(limit) = changed {
            self.api_limit.store(limit, Ordering::Relaxed);
            tracing::debug!(limit, "adaptive in-flight limit changed");
        }
    }

    fn overloaded(&self) -> Error {
        let limit = self.api_limit();
        if limit < self.max_in_flight {
            Error::unavailable(format!(
                "the server is overloaded: it is serving {limit} requests at once, as many as it can answer promptly now (max_in_flight_requests is {}); retry after {RETRY_AFTER_SECONDS} second",
                self.max_in_flight
            ))
        } else {
            Error::unavailable(format!(
                "the server is overloaded: {} requests are already being served (max_in_flight_requests); retry after {RETRY_AFTER_SECONDS} second",
                self.max_in_flight
            ))
        }
    }
}

/// The adaptive limit's state; a panic while it was held left plain numbers, still usable.
fn lock(adaptive: &Mutex<AdaptiveLimit>) -> std::sync::MutexGuard<'_, AdaptiveLimit> {
    adaptive.lock().unwrap_or_else(|p| p.into_inner())
}

/// An in-flight permit, and for an API request its place in the adaptive limit's count.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    api: Option<Arc<Admission>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(admission) = &self.api {
            admission.api_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The admission of one request: its in-flight permit, given back while a lease is parked.
/// Handlers reach it as a request extension.
#[derive(Debug, Clone)]
pub struct Ticket {
    slot: Arc<Mutex<Option<Slot>>>,
    /// Whether the request ever parked: its latency is then not the server's.
    parked: Arc<AtomicBool>,
    api: bool,
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
        self.parked.store(true, Ordering::Relaxed);
        self.set(None);
        Ok(Parked {
            ticket: self,
            _slot: slot,
        })
    }

    fn set(&self, slot: Option<Slot>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = slot;
    }

    fn was_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
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
        let admission = &self.ticket.admission;
        let semaphore = admission.in_flight.clone();
        match tokio::time::timeout_at(deadline, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => {
                self.ticket
                    .set(Some(admission.slot(permit, self.ticket.api)));
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
    // Uploads stream their bodies inside the handler: their time is the client's bandwidth.
    let api = request.method() != Method::PUT;
    let Some(ticket) = admission.admit(api) else {
        tracing::debug!(
            path = request.uri().path(),
            "request shed: server overloaded"
        );
        return error_response(&admission.overloaded());
    };
    // Handlers take what they need out of the request (a body extractor drops the rest), so
    // the middleware keeps its own handle: the permit lives until the handler has answered.
    request.extensions_mut().insert(ticket.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    if api && !ticket.was_parked() {
        admission.answered(started.elapsed());
    }
    drop(ticket);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_parked_request_frees_its_permit_and_resumes_once_one_is_free() {
        let admission = Arc::new(Admission::new(1, 1));
        let first = admission.admit(true).expect("the first is admitted");
        assert!(admission.admit(true).is_none(), "admitted over the limit");

        let parked = first.park().expect("a long-poll slot is free");
        assert_eq!((admission.in_flight(), admission.parked()), (0, 1));
        let err = first.park().expect_err("parked beyond max_long_polls");
        assert!(err.message().contains("max_long_polls"), "{err}");

        let other = admission
            .admit(true)
            .expect("the parked one's permit is free");
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

    /// Answer `count` windows of API requests, each taking `latency`.
    async fn windows(admission: &Arc<Admission>, count: usize, latency: std::time::Duration) {
        for _ in 0..count {
            tokio::time::advance(limit::WINDOW).await;
            for _ in 0..limit::MIN_SAMPLES {
                admission.answered(latency);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn once_answers_queue_api_requests_are_held_to_fewer_but_uploads_are_not() {
        let ms = std::time::Duration::from_millis(1);
        let admission = Arc::new(Admission::new(1024, 1));
        windows(&admission, 1, 2 * ms).await;
        assert_eq!(
            admission.api_limit(),
            1024,
            "a server that keeps up keeps its limit"
        );
        windows(&admission, 20, 400 * ms).await;
        assert_eq!(admission.api_limit(), limit::MIN_LIMIT);

        let held: Vec<Ticket> = (0..limit::MIN_LIMIT)
            .map(|_| admission.admit(true).expect("under the adaptive limit"))
            .collect();
        assert!(
            admission.admit(true).is_none(),
            "admitted over the adaptive limit"
        );
        let err = admission.overloaded();
        assert!(err.message().contains("answer promptly"), "{err}");
        let upload = admission
            .admit(false)
            .expect("uploads count against max_in_flight only");

        // A parked lease leaves the adaptive count, and its wait is not a sample.
        let parked = held[0].park().expect("a long-poll slot is free");
        let other = admission
            .admit(true)
            .expect("the parked lease's place is free");
        assert!(held[0].was_parked());
        drop((other, upload, parked));
        drop(held);
        assert_eq!(admission.api_in_flight.load(Ordering::Relaxed), 0);

        // Fast answers while requests are turned away: the limit climbs back.
        for _ in 0..100 {
            // Admit until one is turned away.
            let full: Vec<Ticket> = std::iter::from_fn(|| admission.admit(true)).collect();
            assert_eq!(full.len(), admission.api_limit());
            drop(full);
            windows(&admission, 1, 2 * ms).await;
        }
        assert_eq!(admission.api_limit(), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limit_stays_put_however_slow_the_answers() {
        let admission = Arc::new(Admission::fixed(64, 1));
        windows(&admission, 20, std::time::Duration::from_millis(400)).await;
        assert_eq!(admission.api_limit(), 64);
        let held: Vec<Ticket> = std::iter::from_fn(|| admission.admit(true)).collect();
        assert_eq!(held.len(), 64);
    }
}

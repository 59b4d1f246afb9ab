//! The Compute Engine provider against the fake Compute API over 127.0.0.1: the provider
//! conformance suite on a zonal and a regional group, the exact requests it sends, failures
//! (quota, stock-out, 403, 429/503, unknown group), draining through a real SQLite store, and
//! two regional pools serving one queue.

mod conformance;
mod credentials;
mod drain;
mod failures;
mod guide;
mod regions;
mod requests;
mod support;

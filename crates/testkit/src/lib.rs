//! What Spillway's tests share: [`TestServer`], a real server over HTTP on 127.0.0.1 with a
//! temporary SQLite store, and [`wait_until`], polling a condition until a deadline instead of
//! sleeping.
//!
//! Only tests depend on this crate (as a dev-dependency); it sits above the server in the crate
//! table of ARCHITECTURE.md, and the `spillway` binary does not link it.

mod server;
mod wait;

pub use server::{TestServer, TestServerBuilder};
pub use wait::{DEFAULT_DEADLINE, POLL_INTERVAL, wait_until};

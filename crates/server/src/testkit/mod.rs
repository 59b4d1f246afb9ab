//! What tests share, behind the `testkit` feature (the binary does not enable it):
//! [`TestServer`], a real server over HTTP on 127.0.0.1 with a temporary SQLite store, and
//! [`wait_until`] and [`wait_until_seen`], polling a condition until a deadline instead of
//! sleeping.
//!
//! It lives here, not only in `spillway-testkit`, so that this crate's own tests can use it
//! without a dependency cycle; other crates' tests reach it through `spillway-testkit`, which
//! re-exports it and adds what needs the client.

mod server;
mod wait;

pub use server::{SteppedClock, TestServer, TestServerBuilder};
pub use wait::{DEFAULT_DEADLINE, POLL_INTERVAL, wait_until, wait_until_seen};

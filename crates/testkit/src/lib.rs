//! What Spillway's tests share: [`TestServer`], a real server over HTTP on 127.0.0.1 with a
//! temporary SQLite store, [`TestServerExt::admin_client`], a typed client of it, and
//! [`wait_until`] and [`wait_until_seen`], polling a condition until a deadline instead of
//! sleeping.
//!
//! The server and the wait come from `spillway_server::testkit` (behind the server's `testkit`
//! feature, so the server's own tests share them without a dependency cycle); this crate adds
//! what needs `spillway-client`. Only tests depend on it (as a dev-dependency); it sits above
//! the server in the crate table of ARCHITECTURE.md, and the `spillway` binary does not link it.

pub use spillway_server::testkit::{
    DEFAULT_DEADLINE, POLL_INTERVAL, SteppedClock, TestServer, TestServerBuilder, wait_until,
    wait_until_seen,
};

/// What a test does with a [`TestServer`] through the typed client.
pub trait TestServerExt {
    /// A client of its API with the admin token.
    ///
    /// # Panics
    /// When the client cannot be built (a malformed base URL, which cannot happen here).
    fn admin_client(&self) -> spillway_client::Client;
}

impl TestServerExt for TestServer {
    fn admin_client(&self) -> spillway_client::Client {
        spillway_client::Client::new(&self.base, Some(self.admin.clone())).expect("admin client")
    }
}

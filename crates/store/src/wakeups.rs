//! In-process wake-ups for long-polling lease calls.
//!
//! A waiter takes the queue's [`Notify`], enables a `notified()` future *before* it tries to
//! lease, and awaits it only if the lease came back empty, so no signal falls between the
//! failed lease and the wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One [`Notify`] per (tenant, queue), made on first use.
#[derive(Debug, Default)]
pub struct Wakeups {
    queues: Mutex<HashMap<(String, String), Arc<Notify>>>,
}

impl Wakeups {
    /// The signal for one queue.
    pub fn listener(&self, tenant: &str, queue: &str) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry((tenant.to_string(), queue.to_string()))
            .or_default()
            .clone()
    }

    /// Wake every waiter on one queue.
    pub fn notify(&self, tenant: &str, queue: &str) {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = queues.get(&(tenant.to_string(), queue.to_string())) {
            n.notify_waiters();
        }
    }
}

/// The (tenant, queue) pairs whose waiters a write should wake once it has committed.
pub(crate) type Woken = std::collections::BTreeSet<(String, String)>;

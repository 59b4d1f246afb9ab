//! The SQL of the PostgreSQL backend, as plain functions over a pooled connection, named as
//! the [`Store`](crate::Store) methods they serve.
//!
//! Functions that need several statements to agree open their own transaction on the
//! connection they are given; the others run one statement. None of them wakes anyone: they
//! return the queues that got leasable work and [`store`](super::store) wakes them once the
//! commit is done.

pub(crate) mod admin;
pub(crate) mod demand;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod report;
pub(crate) mod sessions;
pub(crate) mod tasks;

//! The HTTP API end to end: a real server on 127.0.0.1 over SQLite in a temporary folder and
//! in-memory blobs, spoken to with reqwest the way a client would.

mod support;

mod autoscale;
mod flow;
mod limits;
mod overload;
mod providers;
mod rejects;
mod roles;
mod services;
mod system;
mod tenancy;
mod token_scope;
mod wakeups;
mod work_scope;

//! Spillway's worker: leases tasks, stages inputs, runs commands, uploads results, survives preemption.
